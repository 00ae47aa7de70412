"""Nemesis: no acknowledged write lost, no stale linearizable read, while nodes crash, restart
and freeze.

Three raftcask nodes; CLIENTS threads, each with its own connection to one node (another,
chosen at random, after a failure), do random SET key unique-value / GET key on a few keys,
recording when each operation was invoked and when its reply came. Meanwhile a nemesis
thread, one fault at a time so that a majority always stays up, kills a node with SIGKILL
(often the leader) and restarts it, or freezes one with SIGSTOP and thaws it with SIGCONT.
After NEMESIS_SECONDS (environment, default 20) everything is healed; once a leader is
known and every node applied the same index, each key is read through every node, and the
history of each key, final reads included, must be linearizable (linearizability.py). A
lost acknowledged write shows up there as a final read that does not see it.

A write's outcome is unknown (indeterminate: applied or not, at any time after it was sent)
unless it was acknowledged (+OK) or its error says "was not applied"; such writes are left
out of the history, so a read of one of their values fails the check as a read of a value
never written. Reads without a value tell nothing and are left out.

NEMESIS_SECONDS=120 (or more) runs it longer by hand; NEMESIS_SEED replays the random choices
of the clients and the nemesis (not the timing); NEMESIS_NODE_ARGS adds flags to every node
(e.g. "--read-consistency local", which must make the check fail: a test of the test).
"""
import os
import random
import signal
import socket
import threading
import time

import pytest

from conftest import (RespConnection, RespError, ServerProcess, attach_log, raftcask_only,
                      require_raftcask, wait_for)
from linearizability import Op, check_register

NEMESIS_SECONDS = float(os.environ.get("NEMESIS_SECONDS", "20"))
CLIENTS = 6
KEYS = [f"nemesis:{i}" for i in range(5)]
CLIENT_TIMEOUT_S = 2.0
HEAL_TIMEOUT_S = 30.0
MIN_ACKED_WRITES = 50
HISTORY_LINES_SHOWN = 120
NODE_ARGS = os.environ.get("NEMESIS_NODE_ARGS", "").split()

pytestmark = raftcask_only


# ---------------------------------------------------------------- the cluster

def call(server, *command, timeout_s=1.0):
    """One command on a fresh connection; None when the node does not answer."""
    try:
        with RespConnection(server.port, timeout_s=timeout_s) as conn:
            return conn.call(*command)
    except (OSError, ConnectionError):
        return None


def stats(server, timeout_s=1.0):
    reply = call(server, "RAFTSTATS", timeout_s=timeout_s)
    if not isinstance(reply, list):
        return None
    return {reply[i].decode(): reply[i + 1].decode() for i in range(0, len(reply) - 1, 2)}


def voters_everywhere(nodes):
    for node in nodes:
        peers = call(node, "RAFTPEERS")
        if not isinstance(peers, list) or len(peers) != len(nodes):
            return False
        if any(row[3] != b"voter" for row in peers):
            return False
    return True


def port_outside_ephemeral_range(rng):
    """A free loopback port (and its successor, the default --peer-bind) below the kernel's
    ephemeral range: a killed node restarts on the same ports, which an outgoing connection
    (the clients make thousands) must not have taken meanwhile."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = rng.randrange(max(1025, low - 12000), low - 2)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise RuntimeError("no free pair of loopback ports below the ephemeral range")


@pytest.fixture
def start_node(request, tmp_path):
    """Like conftest's start_server, but on ports outside the ephemeral range; every node is
    stopped (SIGCONT first, in case it is frozen) and checked when the test ends."""
    require_raftcask()
    nodes = []
    rng = random.Random()

    def start(extra_args=(), name=None):
        node = ServerProcess("raftcask", tmp_path / name, extra_args, name=name)
        node.port = port_outside_ephemeral_range(rng)
        nodes.append(node)
        attach_log(request.node, node)
        return node.start()

    yield start
    errors = []
    for node in nodes:
        if node.alive():
            os.kill(node.pid, signal.SIGCONT)
        try:
            node.stop(check=True)
        except AssertionError as exc:
            errors.append(str(exc))
        marker = node.sanitizer_report()
        if marker:
            errors.append(f"{node.name} log reports '{marker}':\n{node.log_tail()}")
    if errors:
        pytest.fail("\n".join(errors))


def start_cluster(start_node, size=3):
    """Node 1 bootstraps, the others join one after the other (concurrent joins are
    another test's business: one of them used to hang, the learner never promoted)."""
    first = start_node(NODE_ARGS, name="n1")
    nodes = [first]
    for i in range(2, size + 1):
        nodes.append(start_node([*NODE_ARGS, "--join", f"127.0.0.1:{first.port}"], name=f"n{i}"))
        wait_for(lambda: voters_everywhere(nodes), 20.0, f"every node to list {len(nodes)} voters", 0.05)
    return nodes


class Cluster:
    """The nodes and their fault state; the nemesis alone changes it (paused, down)."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.paused = set()   # indexes of nodes stopped with SIGSTOP
        self.leaders_seen = set()

    def pause(self, i):
        os.kill(self.nodes[i].pid, signal.SIGSTOP)
        self.paused.add(i)

    def resume(self, i):
        if i in self.paused:
            os.kill(self.nodes[i].pid, signal.SIGCONT)
            self.paused.discard(i)

    def resume_all(self):
        for i in list(self.paused):
            try:
                self.resume(i)
            except ProcessLookupError:
                self.paused.discard(i)

    def leader_index(self):
        """The index of the node that calls itself leader in the highest term, or None."""
        best = None
        for i, node in enumerate(self.nodes):
            if i in self.paused or not node.alive():
                continue
            st = stats(node, timeout_s=0.5)
            if st and st.get("state") == "Leader":
                term = int(st["term"])
                self.leaders_seen.add((term, node.name))
                if best is None or term > best[0]:
                    best = (term, i)
        return None if best is None else best[1]


# ---------------------------------------------------------------- clients

class Client(threading.Thread):
    def __init__(self, number, cluster, stop, seed):
        super().__init__(name=f"client-{number}", daemon=True)
        self.number = number
        self.cluster = cluster
        self.stop_event = stop
        self.rng = random.Random(seed)
        self.conn = None
        self.node = self.rng.randrange(len(cluster.nodes))
        self.ops = []            # (key, Op) of determinate writes, indeterminate writes, reads
        self.not_applied = {}    # value -> (key, Op): writes refused with "was not applied"
        self.errors = {}         # error text (shortened) -> count
        self.next_value = 0

    def note_error(self, text):
        text = text[:60]
        self.errors[text] = self.errors.get(text, 0) + 1

    def rotate(self):
        if self.conn:
            self.conn.close()
            self.conn = None
        self.node = self.rng.randrange(len(self.cluster.nodes))

    def run(self):
        try:
            while not self.stop_event.is_set():
                self.one_operation()
        finally:
            if self.conn:
                self.conn.close()

    def one_operation(self):
        if self.conn is None:
            try:
                self.conn = RespConnection(self.cluster.nodes[self.node].port, timeout_s=CLIENT_TIMEOUT_S)
            except OSError as exc:  # nothing was sent: no operation to record
                self.note_error(type(exc).__name__)
                self.rotate()
                self.stop_event.wait(0.05)
                return
        key = self.rng.choice(KEYS)
        if self.rng.random() < 0.5:
            self.next_value += 1
            value = f"c{self.number}-{self.next_value}"
            self.write(key, value)
        else:
            self.read(key)

    def write(self, key, value):
        invoke = time.monotonic()
        try:
            reply = self.conn.call("SET", key, value)
        except (OSError, ConnectionError) as exc:
            self.ops.append((key, Op("write", value, invoke, None, self.number, type(exc).__name__)))
            self.note_error(type(exc).__name__)
            self.rotate()
            return
        complete = time.monotonic()
        if reply == "OK":
            self.ops.append((key, Op("write", value, invoke, complete, self.number)))
        elif isinstance(reply, RespError) and "was not applied" in str(reply):
            self.not_applied[value] = (key, Op("write", value, invoke, complete, self.number, str(reply)))
            self.note_error(str(reply))
            self.stop_event.wait(0.02)
        else:
            self.ops.append((key, Op("write", value, invoke, None, self.number, str(reply))))
            self.note_error(str(reply))
            self.stop_event.wait(0.02)

    def read(self, key):
        invoke = time.monotonic()
        try:
            reply = self.conn.call("GET", key)
        except (OSError, ConnectionError) as exc:
            self.note_error(type(exc).__name__)
            self.rotate()
            return
        complete = time.monotonic()
        if reply is None or isinstance(reply, bytes):
            value = None if reply is None else reply.decode()
            self.ops.append((key, Op("read", value, invoke, complete, self.number)))
        else:
            self.note_error(str(reply))
            self.stop_event.wait(0.02)


# ---------------------------------------------------------------- the nemesis

class Nemesis(threading.Thread):
    """One fault at a time: kill -9 and restart, or SIGSTOP and SIGCONT; never two nodes
    down together."""

    def __init__(self, cluster, stop, seed):
        super().__init__(name="nemesis", daemon=True)
        self.cluster = cluster
        self.stop_event = stop
        self.rng = random.Random(seed)
        self.kills = 0
        self.leader_kills = 0
        self.stops = 0
        self.leader_stops = 0
        self.log = []            # (time, text)
        self.failure = None

    def note(self, text):
        self.log.append((time.monotonic(), text))

    def target(self):
        """The leader half of the time (when one is known), else a random node; the leader
        first of all, so that even a short run kills it."""
        if self.rng.random() < 0.5 or self.kills == 0:
            leader = self.cluster.leader_index()
            if leader is not None:
                return leader, True
        i = self.rng.randrange(len(self.cluster.nodes))
        return i, i == self.cluster.leader_index()

    def run(self):
        try:
            while not self.stop_event.wait(self.rng.uniform(0.5, 1.0)):
                i, is_leader = self.target()
                node = self.cluster.nodes[i]
                role = "leader " if is_leader else ""
                if self.rng.random() < 0.5 or self.kills == 0:
                    self.note(f"kill -9 {role}{node.name}")
                    node.kill()
                    self.kills += 1
                    self.leader_kills += is_leader
                    time.sleep(self.rng.uniform(0.2, 1.0))
                    node.start()
                    self.note(f"restarted {node.name}")
                else:
                    self.note(f"SIGSTOP {role}{node.name}")
                    self.cluster.pause(i)
                    self.stops += 1
                    self.leader_stops += is_leader
                    time.sleep(self.rng.uniform(0.5, 1.5))
                    self.cluster.resume(i)
                    self.note(f"SIGCONT {node.name}")
        except Exception as exc:  # reported by the test, which heals what is left
            self.failure = exc
        finally:
            self.cluster.resume_all()


# ---------------------------------------------------------------- healing and checking

def heal(cluster):
    cluster.resume_all()
    for node in cluster.nodes:
        if not node.alive():
            node.start()

    def one_leader():
        leaders = {call(node, "RAFTLEADER") for node in cluster.nodes}
        if len(leaders) == 1 and isinstance(next(iter(leaders)), bytes):
            return cluster.leader_index() is not None
        return False

    wait_for(one_leader, HEAL_TIMEOUT_S, "all nodes to agree on a leader", 0.05)

    last = {}

    def converged():
        everyone = [stats(node) for node in cluster.nodes]
        last["stats"] = everyone
        if any(st is None for st in everyone):
            return None
        applied = {st["applied_index"] for st in everyone}
        committed = {st["commit_index"] for st in everyone}
        if len(applied) == 1 and applied == committed:
            return int(applied.pop())
        return None

    try:
        return wait_for(converged, HEAL_TIMEOUT_S, "all nodes to apply the same index", 0.05)
    except TimeoutError as exc:
        fields = ("state", "term", "leader", "commit_index", "applied_index", "last_log_index",
                  "first_log_index", "last_snapshot_index")
        rows = [f"  {node.name}: " + ("no answer" if st is None else
                                      ", ".join(f"{f}={st.get(f)}" for f in fields))
                for node, st in zip(cluster.nodes, last.get("stats", []))]
        raise AssertionError(f"{exc}; RAFTSTATS at the end:\n" + "\n".join(rows)) from None


def final_reads(cluster):
    """Each key read through every node (linearizable, proxied to the leader) and from every
    node's own store (READONLY: local reads, which after convergence must agree)."""
    ops = []
    diverged = []
    for node in cluster.nodes:
        with RespConnection(node.port, timeout_s=10.0) as conn:
            for key in KEYS:
                invoke = time.monotonic()
                reply = conn.call("GET", key)
                assert reply is None or isinstance(reply, bytes), f"final GET {key} on {node.name}: {reply!r}"
                ops.append((key, Op("read", None if reply is None else reply.decode(), invoke,
                                    time.monotonic(), f"final@{node.name}")))
            assert conn.call("READONLY") == "OK"
            for key in KEYS:
                local = conn.call("GET", key)
                linear = next(op.value for k, op in reversed(ops) if k == key)
                if (None if local is None else local.decode()) != linear:
                    diverged.append(f"{node.name} holds {key}={local!r}, the leader {linear!r}")
    return ops, diverged


def describe_failure(key, result, ops, not_applied, nemesis, t0, out_dir):
    """The failing key's history around the trouble (the whole of it goes to a file in
    out_dir), the nemesis' actions, refused writes whose value was read."""
    path = out_dir / f"history-{key.replace(':', '-')}.txt"
    with open(path, "w") as f:
        for op in sorted(ops, key=lambda op: op.invoke):
            f.write(op.describe(t0) + "\n")
    lines = [f"key {key}: {result.reason.replace(chr(10), chr(10) + '  ')}"]
    read_values = {op.value for op in ops if op.kind == "read"}
    ghosts = [op for value, (k, op) in not_applied.items() if k == key and value in read_values]
    if ghosts:
        lines.append("writes answered 'was not applied' whose value was nevertheless read:")
        lines += ["  " + op.describe(t0) for op in ghosts]
    stuck = result.stuck or ops
    low = min(op.invoke for op in stuck) - 0.25
    high = max(op.invoke if op.complete is None else op.complete for op in stuck) + 0.05
    window = [op for op in sorted(ops, key=lambda op: op.invoke)
              if not (op.complete is not None and op.complete < low or op.invoke > high)]
    shown = window[-HISTORY_LINES_SHOWN:]
    lines.append(f"history of {key} from {low - t0:.3f} s to {high - t0:.3f} s"
                 f"{f' (its last {len(shown)} ops)' if len(shown) < len(window) else ''}; "
                 f"all {len(ops)} ops in {path}:")
    lines += ["  " + op.describe(t0) for op in shown]
    lines.append("nemesis:")
    lines += [f"  [{when - t0:7.3f}] {text}" for when, text in nemesis.log]
    return "\n".join(lines)


# ---------------------------------------------------------------- the test

def test_no_acknowledged_write_lost_and_reads_linearizable(start_node, capsys, tmp_path):
    seed = int(os.environ.get("NEMESIS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    cluster = Cluster(start_cluster(start_node))
    stop = threading.Event()
    clients = [Client(n, cluster, stop, rng.randrange(1 << 30)) for n in range(CLIENTS)]
    nemesis = Nemesis(cluster, stop, rng.randrange(1 << 30))
    t0 = time.monotonic()
    try:
        for thread in clients + [nemesis]:
            thread.start()
        stop.wait(NEMESIS_SECONDS)
        stop.set()
        # A client waits at most CLIENT_TIMEOUT_S per call; the nemesis at most a restart.
        for thread in clients + [nemesis]:
            thread.join(timeout=30.0)
        assert not any(thread.is_alive() for thread in clients + [nemesis]), "a worker thread hangs"
        if nemesis.failure:
            raise nemesis.failure
        t_heal = time.monotonic()
        applied_index = heal(cluster)
        finals, diverged = final_reads(cluster)
        heal_s = time.monotonic() - t_heal
    finally:
        stop.set()
        cluster.resume_all()

    history = {key: [] for key in KEYS}
    not_applied = {}
    errors = {}
    for client in clients:
        for key, op in client.ops:
            history[key].append(op)
        not_applied.update(client.not_applied)
        for text, count in client.errors.items():
            errors[text] = errors.get(text, 0) + count
    for key, op in finals:
        history[key].append(op)

    all_ops = [op for ops in history.values() for op in ops]
    acked = sum(op.kind == "write" and op.complete is not None for op in all_ops)
    unknown = sum(op.kind == "write" and op.complete is None for op in all_ops)
    reads = sum(op.kind == "read" for op in all_ops)
    summary = (f"nemesis (seed {seed}, {NEMESIS_SECONDS:g} s): {len(all_ops)} ops, {acked} acked writes, "
               f"{unknown} indeterminate, {len(not_applied)} not applied, {reads} reads; "
               f"{nemesis.kills} kills ({nemesis.leader_kills} of the leader), {nemesis.stops} stops "
               f"({nemesis.leader_stops} of the leader); {len(cluster.leaders_seen)} leaders seen; "
               f"applied index {applied_index}")
    with capsys.disabled():
        print("\n" + summary)
        print("  client errors: " + (", ".join(f"{n}x {t!r}" for t, n in
                                               sorted(errors.items(), key=lambda e: -e[1])) or "none"))

    dump = os.environ.get("NEMESIS_DUMP")
    if dump:  # the history as JSON lines (key, kind, value, invoke, complete), for study
        import json
        with open(dump, "w") as f:
            for key, ops in history.items():
                for op in ops:
                    f.write(json.dumps([key, op.kind, op.value, op.invoke, op.complete, str(op.client)]) + "\n")

    failures = []
    t_check = time.monotonic()
    for key in KEYS:
        result = check_register(history[key], t0=t0)
        if not result.ok:
            failures.append(describe_failure(key, result, history[key], not_applied, nemesis, t0,
                                             tmp_path))
    check_s = time.monotonic() - t_check
    with capsys.disabled():
        print(f"  healed in {heal_s:.1f} s, checked in {check_s:.1f} s")
    assert not failures, summary + "\n\n" + "\n\n".join(failures)
    assert not diverged, "replicas differ after convergence:\n" + "\n".join(diverged)
    assert acked >= MIN_ACKED_WRITES, f"only {acked} writes acknowledged: the test says little\n{summary}"
    assert nemesis.leader_kills >= 1, f"the leader was never killed\n{summary}"
