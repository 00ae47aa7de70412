#!/usr/bin/python3
"""bench/cluster.py — a 3-node raftcask cluster beside a 3-member etcd cluster and redis-server.

Usage: /usr/bin/python3 bench/cluster.py PATH/TO/raftcask    (run by `make bench`)

Four subjects, each started by this script on free 127.0.0.1 ports in fresh temporary
directories, and stopped by PID whatever happens:
  raftcask-cluster  three nodes of the release binary given on the command line, --loglevel
                    warning: node 1 bootstraps, nodes 2 and 3 --join it; ready once RAFTPEERS
                    lists 3 voters and every node names the same RAFTLEADER. A write is
                    fdatasynced in the Raft log of a majority before its reply; a GET is
                    linearizable (a ReadIndex round), the default.
  etcd-cluster      three members of Debian's etcd 3.4 (etcd-server), --initial-cluster, default
                    (durable, fsyncing) settings, --log-level error; ready once /health says
                    true on each member and all three name the same leader.
  redis-aof         redis-server --save '' --appendonly yes --appendfsync always (every write is
                    fsynced before its reply; one process, no replication)
  redis-mem         redis-server --save '' --appendonly no (memory only)

Throughput: per run, each subject in turn (the order above) is started fresh, loaded at 50
connections with 64-byte values, and stopped; the median of BENCH_RUNS runs (default 3) is
reported, because the machine (2 cores) is shared and noisy. The load goes to the leader.
  raftcask, redis   redis-benchmark -c 50 -n N -d 64 -t set,get -q --csv, at -P 1 and -P 16
                    (N = BENCH_REQUESTS, default 100000; redis-aof at -P 1 is fsync-bound and
                    gets BENCH_AOF_P1_REQUESTS, default 50000: what is compared is a rate).
                    Without -r every request uses the one key key:__rand_int__.
  etcd              wrk -t 1 -c 50 -d BENCH_WRK_SECONDS (default 5) against the JSON gRPC
                    gateway: set = POST /v3/kv/put, get = POST /v3/kv/range (linearizable, the
                    default: serializable is false), one key "key:__rand_int__" and a 64-byte
                    value, base64-encoded as the gateway wants. "-P 16" is HTTP/1.1 pipelining
                    of 16 requests per connection (wrk's documented way): Go's HTTP server
                    answers a connection's requests one at a time, so for etcd it removes the
                    client's round trips but not the server's serialisation. Any non-2xx reply
                    or socket error fails the benchmark.
Each subject is checked after its load: GET key:__rand_int__ (range of the key for etcd) must
return the 64-byte value.

Failover: in each run, after the throughput figures, three client threads (one per node,
one connection each, SET in a loop with a 0.5 s socket timeout, reconnecting on any error)
write to the raftcask cluster; after 1 s the leader is killed with SIGKILL. The figure is
the time from the kill to the completion of the first SET that was sent after the kill and
answered +OK (by a surviving node, which proxies to the new leader). Median of the runs.

Also reported: the resident memory (VmRSS, VmHWM from /proc/PID/status) of each raftcask node
after the last run's load, and the raw fdatasync latency of the disk under TMPDIR (a 64-byte
append + os.fdatasync, 300 times before the runs and 100 times at the start of each; median
and p99), since every durable figure depends on it and it drifts on a shared machine.

Output: `bench: <subject> <metric> <value> <unit>`, `ratio: <metric> raftcask/<ref> <value>`,
then `target:` lines with PASS or MISS computed from the medians. Any failure (a process that
does not start, a load tool error, a wrong value read back) stops the benchmark with exit 1.

Environment: BENCH_RUNS (default 3), BENCH_REQUESTS (default 100000), BENCH_AOF_P1_REQUESTS
(default 50000), BENCH_WRK_SECONDS (default 5), BENCH_RAFTCASK_LOGLEVEL (the nodes'
--loglevel, default warning; their logs are shown when one fails), TMPDIR (default /tmp).
"""
# note: the load tools run on the same 2 shared cores as the servers (here three server
# processes for each cluster) and compete with them for CPU; every throughput is that of
# client and servers together.

import base64
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from server import (CLIENTS, VALUE_BYTES, BenchError, binary_and_tools,  # noqa: E402
                    env_int, free_port, metric_name, print_targets, read_memory_kib,
                    run_redis_benchmark)
from server import run as run_bench  # noqa: E402

PIPELINES = (1, 16)
TESTS = ("set", "get")
SUBJECTS = ("raftcask-cluster", "etcd-cluster", "redis-aof", "redis-mem")
# The short names the ratio lines use for the references.
REF_NAMES = {"etcd-cluster": "etcd", "redis-aof": "redis-aof", "redis-mem": "redis-mem"}
KEY = "key:__rand_int__"  # what redis-benchmark uses without -r; etcd gets the same key

RATIOS = [
    ("set_p1", "etcd-cluster"), ("set_p16", "etcd-cluster"), ("get_p1", "etcd-cluster"),
    ("get_p16", "etcd-cluster"), ("set_p1", "redis-aof"), ("set_p16", "redis-aof"),
    ("get_p1", "redis-mem"), ("get_p16", "redis-mem"),
]
# (metric, reference, minimum ratio raftcask/reference)
TARGETS = [
    ("set_p1", "etcd-cluster", 5.0),
    ("set_p1", "redis-aof", 0.8),
    ("get_p1", "redis-mem", 0.8),
]

READY_DEADLINE_S = 30.0
STOP_DEADLINE_S = 30.0
LOAD_DEADLINE_S = 300.0
FAILOVER_DEADLINE_S = 20.0
FAILOVER_WARMUP_S = 1.0
FSYNC_SAMPLES = 300
RUN_FSYNC_SAMPLES = 100


# ============================== a tiny RESP client ==============================


class RespConnection:
    """One blocking connection; enough RESP2 for PING, SET, GET, RAFTPEERS and RAFTLEADER."""

    def __init__(self, port, timeout_s):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.buffer = b""

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("connection closed by the server")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _exact(self, n):
        while len(self.buffer) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise OSError("connection closed by the server")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RespError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise OSError(f"unexpected RESP reply {line[:40]!r}")

    def call(self, *args):
        request = b"*%d\r\n" % len(args)
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            request += b"$%d\r\n%s\r\n" % (len(data), data)
        self.sock.sendall(request)
        return self._reply()


class RespError(str):
    """An error reply (a value, not an exception: callers decide)."""


def resp_call(port, *args, timeout_s=2.0):
    conn = RespConnection(port, timeout_s)
    try:
        return conn.call(*args)
    finally:
        conn.close()


# ============================== processes ==============================


class Process:
    """One server process with its own directory and log, stopped by its PID."""

    def __init__(self, name, argv, directory, sigterm_status_ok):
        self.name = name
        self.dir = directory
        self.log_path = os.path.join(directory, "server.log")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)
        self.pid = self.process.pid
        self.killed = False  # set when this script kills it on purpose
        # etcd, as Go programs do, re-raises SIGTERM after its clean shutdown.
        self.clean_statuses = (0, -signal.SIGTERM) if sigterm_status_ok else (0,)

    def log_tail(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-10:]).rstrip()
        except OSError as e:
            return f"(no log: {e})"

    def check_alive(self, doing):
        if self.process.poll() is not None:
            raise BenchError(f"{self.name} (pid {self.pid}) exited with status "
                             f"{self.process.returncode} while {doing}:\n{self.log_tail()}")

    def kill9(self):
        self.killed = True
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self):
        """SIGTERM, then SIGKILL past the deadline. Returns a complaint, or None."""
        if self.process.poll() is not None:
            status = self.process.returncode
            if status in self.clean_statuses or self.killed:
                return None
            return f"{self.name} (pid {self.pid}) had exited with status {status}:\n" \
                   f"{self.log_tail()}"
        os.kill(self.pid, signal.SIGTERM)
        try:
            status = self.process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait()
            return f"{self.name} (pid {self.pid}) ignored SIGTERM for " \
                   f"{STOP_DEADLINE_S:.0f} s and was killed"
        if status not in self.clean_statuses:
            return f"{self.name} (pid {self.pid}) stopped with status {status}:\n" \
                   f"{self.log_tail()}"
        return None


class Processes:
    """Every process this script started, so that all are stopped whatever happens."""

    def __init__(self, temp_root):
        self.temp_root = temp_root
        self.running = []

    def start(self, name, argv_for_dir, sigterm_status_ok=False):
        directory = tempfile.mkdtemp(prefix=f"{name}-", dir=self.temp_root)
        proc = Process(name, argv_for_dir(directory), directory, sigterm_status_ok)
        self.running.append(proc)
        return proc

    def stop_group(self, procs):
        """Stops all of procs (each one even if another complains), then raises the first
        complaint."""
        complaints = []
        for proc in procs:
            if proc in self.running:
                self.running.remove(proc)
            complaint = proc.stop()
            shutil.rmtree(proc.dir, ignore_errors=True)
            if complaint:
                complaints.append(complaint)
        if complaints:
            raise BenchError("\n".join(complaints))

    def stop_all(self):
        """For the finally clause: stops what is left and reports, but never raises."""
        for proc in list(self.running):
            self.running.remove(proc)
            try:
                complaint = proc.stop()
            except OSError as e:
                complaint = f"{proc.name} (pid {proc.pid}): {e}"
            if complaint:
                print(f"bench: {complaint}", file=sys.stderr)


def poll_until(what, deadline_s, probe, procs):
    """Calls probe() until it returns something other than None; fails at once if one of
    procs exits, and at the deadline with the last error seen."""
    deadline = time.monotonic() + deadline_s
    last = "no attempt"
    while time.monotonic() < deadline:
        for proc in procs:
            proc.check_alive(what)
        try:
            result = probe()
            if result is not None:
                return result
            last = "not yet"
        except (OSError, ValueError, BenchError) as e:
            last = str(e)
        time.sleep(0.05)
    tails = "\n".join(f"{p.name}: {p.log_tail()}" for p in procs)
    raise BenchError(f"{what}: not done after {deadline_s:.0f} s ({last})\n{tails}")


# ============================== the subjects ==============================


class RaftcaskCluster:
    """Three raftcask nodes; .leader is the node that leads once the cluster has formed."""

    def __init__(self, processes, binary, label):
        self.nodes = []
        self.ports = []
        first_client = None
        for i in range(3):
            client_port, peer_port = free_port(), free_port()
            argv = [binary, "--bind", f"127.0.0.1:{client_port}",
                    "--peer-bind", f"127.0.0.1:{peer_port}", "--loglevel",
                    os.environ.get("BENCH_RAFTCASK_LOGLEVEL", "warning")]
            if first_client:
                argv += ["--join", first_client]
            node = processes.start(f"{label}-node{i + 1}",
                                   lambda d, a=argv: a + ["--dir", os.path.join(d, "data")])
            node.port = client_port
            self.nodes.append(node)
            if i == 0:
                first_client = f"127.0.0.1:{client_port}"
                poll_until(f"{node.name} answering PING", READY_DEADLINE_S,
                           lambda: True if resp_call(client_port, "PING") == "PONG" else None,
                           [node])
        self.leader = poll_until(f"{label}: 3 voters and one leader", READY_DEADLINE_S,
                                 self._formed_leader, self.nodes)

    def _formed_leader(self):
        peers = resp_call(self.nodes[0].port, "RAFTPEERS")
        if not isinstance(peers, list):
            return None
        voters = [row for row in peers if isinstance(row, list) and len(row) > 3
                  and row[3] == b"voter"]
        if len(voters) != 3:
            return None
        named = set()
        for node in self.nodes:
            reply = resp_call(node.port, "RAFTLEADER")
            if not isinstance(reply, bytes):
                return None
            named.add(reply.decode())
        if len(named) != 1:
            return None
        address = named.pop()
        for node in self.nodes:
            if address == f"127.0.0.1:{node.port}":
                return node
        return None


class EtcdCluster:
    """Three etcd members; .leader is the member that leads once all agree on one."""

    def __init__(self, processes, label):
        ports = [(free_port(), free_port()) for _ in range(3)]
        names = [f"m{i + 1}" for i in range(3)]
        initial = ",".join(f"{n}=http://127.0.0.1:{peer}" for n, (_, peer) in zip(names, ports))
        self.members = []
        for name, (client, peer) in zip(names, ports):
            argv = ["etcd", "--name", name,
                    "--listen-client-urls", f"http://127.0.0.1:{client}",
                    "--advertise-client-urls", f"http://127.0.0.1:{client}",
                    "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                    "--initial-cluster", initial, "--initial-cluster-state", "new",
                    "--initial-cluster-token", label,
                    "--logger", "zap", "--log-outputs", "stderr", "--log-level", "error"]
            member = processes.start(f"{label}-{name}",
                                     lambda d, a=argv: a + ["--data-dir", os.path.join(d, "data")],
                                     sigterm_status_ok=True)
            member.port = client
            self.members.append(member)
        self.leader = poll_until(f"{label}: healthy, one leader", READY_DEADLINE_S,
                                 self._agreed_leader, self.members)

    def _agreed_leader(self):
        leaders = set()
        ids = {}
        for member in self.members:
            health = etcd_post(member.port, "/health", None, method="GET")
            if health.get("health") != "true":
                return None
            status = etcd_post(member.port, "/v3/maintenance/status", {})
            leaders.add(status.get("leader"))
            ids[status["header"]["member_id"]] = member
        if len(leaders) != 1 or None in leaders or "0" in leaders:
            return None
        return ids.get(leaders.pop())


def etcd_post(port, path, body, method="POST", timeout_s=2.0):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                     method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as e:
        raise BenchError(f"etcd {path}: HTTP {e.code}: {e.read()[:200]!r}") from None


def start_redis(processes, subject, label):
    port = free_port()

    def argv(directory):
        base = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", directory,
                "--save", "", "--daemonize", "no", "--loglevel", "warning"]
        if subject == "redis-mem":
            return base + ["--appendonly", "no"]
        return base + ["--appendonly", "yes", "--appendfsync", "always"]

    server = processes.start(label, argv)
    server.port = port
    poll_until(f"{label} answering PING", READY_DEADLINE_S,
               lambda: True if resp_call(port, "PING") == "PONG" else None, [server])
    return server


# ============================== load ==============================


def check_resp_value(subject, port):
    value = resp_call(port, "GET", KEY, timeout_s=5.0)
    if not isinstance(value, bytes) or len(value) != VALUE_BYTES:
        raise BenchError(f"{subject}: GET {KEY} after the load replied {value!r:.80}")


def write_wrk_script(path, url_path, body, pipeline):
    """A wrk Lua script that POSTs body to url_path, pipeline requests at a time."""
    lines = ['wrk.method = "POST"', f'wrk.path = "{url_path}"',
             'wrk.headers["Content-Type"] = "application/json"',
             f"wrk.body = '{json.dumps(body)}'"]
    if pipeline > 1:
        lines += ["local batch",
                  "init = function(args)",
                  "  local r = {}",
                  f"  for i = 1, {pipeline} do r[i] = wrk.format() end",
                  "  batch = table.concat(r)",
                  "end",
                  "request = function() return batch end"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def run_wrk(subject, port, script, seconds, what):
    argv = ["wrk", "-t", "1", "-c", str(CLIENTS), "-d", f"{seconds}s", "--timeout", "5s",
            "-s", script, f"http://127.0.0.1:{port}"]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=seconds + LOAD_DEADLINE_S)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk against {subject} ({what}) did not finish") from None
    out = done.stdout
    rate = re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M)
    if done.returncode != 0 or not rate:
        raise BenchError(f"wrk against {subject} ({what}) exited with status "
                         f"{done.returncode}:\n{out}{done.stderr}")
    for bad in ("Non-2xx or 3xx responses", "Socket errors"):
        if bad in out:
            raise BenchError(f"wrk against {subject} ({what}): {bad}:\n{out}")
    return float(rate.group(1))


def b64(text_or_bytes):
    data = text_or_bytes.encode() if isinstance(text_or_bytes, str) else text_or_bytes
    return base64.b64encode(data).decode()


def etcd_throughput(cluster, work_dir, seconds):
    port = cluster.leader.port
    value = b"v" * VALUE_BYTES
    loads = {"set": ("/v3/kv/put", {"key": b64(KEY), "value": b64(value)}),
             "get": ("/v3/kv/range", {"key": b64(KEY)})}
    rps = {}
    for pipeline in PIPELINES:
        for test in TESTS:
            url_path, body = loads[test]
            script = os.path.join(work_dir, f"{test}_p{pipeline}.lua")
            write_wrk_script(script, url_path, body, pipeline)
            rps[metric_name(test, pipeline)] = run_wrk(
                "etcd-cluster", port, script, seconds, f"{url_path} -P {pipeline}")
            if test == "set":
                got = etcd_post(port, "/v3/kv/range", {"key": b64(KEY)})
                kvs = got.get("kvs") or [{}]
                if kvs[0].get("value") != b64(value):
                    raise BenchError(f"etcd-cluster: range of {KEY} after the load: {got}")
    return rps


def resp_throughput(subject, port, requests, aof_p1_requests):
    rps = {}
    for pipeline in PIPELINES:
        n = aof_p1_requests if (subject, pipeline) == ("redis-aof", 1) else requests
        rps.update(run_redis_benchmark(subject, port, pipeline, n, TESTS, LOAD_DEADLINE_S))
        check_resp_value(subject, port)
    return rps


# ============================== failover ==============================


def measure_failover(cluster):
    """Seconds from SIGKILL of the leader to the first +OK for a SET sent after it."""
    lock = threading.Lock()
    state = {"kill_at": None, "first_ok": None, "ok_before": 0}
    stop = threading.Event()

    def writer(node):
        conn = None
        i = 0
        while not stop.is_set():
            try:
                if conn is None:
                    conn = RespConnection(node.port, 0.5)
                sent_at = time.monotonic()
                i += 1
                reply = conn.call("SET", f"failover:{node.port}:{i}", "x" * VALUE_BYTES)
                done_at = time.monotonic()
            except OSError:
                if conn is not None:
                    conn.close()
                    conn = None
                time.sleep(0.002)
                continue
            if reply != "OK":
                time.sleep(0.002)
                continue
            with lock:
                kill_at = state["kill_at"]
                if kill_at is None:
                    state["ok_before"] += 1
                elif sent_at >= kill_at and (state["first_ok"] is None
                                            or done_at < state["first_ok"]):
                    state["first_ok"] = done_at
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=writer, args=(node,), daemon=True)
               for node in cluster.nodes]
    for t in threads:
        t.start()
    try:
        time.sleep(FAILOVER_WARMUP_S)
        with lock:
            if state["ok_before"] == 0:
                raise BenchError("failover: no SET succeeded before the kill")
            state["kill_at"] = time.monotonic()
        cluster.leader.kill9()
        deadline = state["kill_at"] + FAILOVER_DEADLINE_S
        while time.monotonic() < deadline:
            with lock:
                if state["first_ok"] is not None:
                    return state["first_ok"] - state["kill_at"]
            time.sleep(0.005)
        raise BenchError(f"failover: no SET succeeded within {FAILOVER_DEADLINE_S:.0f} s of "
                         f"killing the leader")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=5.0)


# ============================== disk ==============================


def fdatasync_latency_us(directory, count):
    """Median and p99 of count 64-byte appends, each followed by os.fdatasync, in
    microseconds."""
    path = os.path.join(directory, "fdatasync.probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    samples = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, b"x" * VALUE_BYTES)
            os.fdatasync(fd)
            samples.append((time.perf_counter() - start) * 1e6)
    finally:
        os.close(fd)
        os.remove(path)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


# ============================== one run ==============================


def run_subject(processes, subject, run, binary, temp_root, requests, aof_p1_requests,
                wrk_seconds, extras):
    label = f"{subject}-run{run + 1}"
    if subject == "raftcask-cluster":
        cluster = RaftcaskCluster(processes, binary, label)
        try:
            rps = resp_throughput(subject, cluster.leader.port, requests, aof_p1_requests)
            followers = [n for n in cluster.nodes if n is not cluster.leader]
            extras["rss"] = [(f"{role}", node.name.rsplit("-", 1)[1], read_memory_kib(node.pid))
                             for role, node in (("leader", cluster.leader),
                                                ("follower1", followers[0]),
                                                ("follower2", followers[1]))]
            extras["failover_s"] = measure_failover(cluster)
        finally:
            processes.stop_group(cluster.nodes)
        return rps
    if subject == "etcd-cluster":
        cluster = EtcdCluster(processes, label)
        work_dir = tempfile.mkdtemp(prefix=f"{label}-wrk-", dir=temp_root)
        try:
            return etcd_throughput(cluster, work_dir, wrk_seconds)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
            processes.stop_group(cluster.members)
    server = start_redis(processes, subject, label)
    try:
        return resp_throughput(subject, server.port, requests, aof_p1_requests)
    finally:
        processes.stop_group([server])


# ============================== report ==============================


def print_report(results, failovers, rss, fsync_us, run_fsync_us, runs):
    medians = {s: {m: statistics.median(v) for m, v in results[s].items()} for s in SUBJECTS}
    metrics = [metric_name(t, p) for p in PIPELINES for t in TESTS]
    for m in metrics:
        for s in SUBJECTS:
            print(f"bench: {s} {m} {medians[s][m]:.0f} ops/s")
    print(f"bench: raftcask-cluster failover_median {statistics.median(failovers):.3f} s")
    print(f"bench: raftcask-cluster failover_max {max(failovers):.3f} s")
    for role, node, kib in rss:
        print(f"bench: raftcask-{role} rss {kib['VmRSS'] / 1024:.1f} MiB")
        print(f"bench: raftcask-{role} peak_rss {kib['VmHWM'] / 1024:.1f} MiB")
    print(f"bench: disk fdatasync_median {fsync_us[0]:.0f} us")
    print(f"bench: disk fdatasync_p99 {fsync_us[1]:.0f} us")
    print(f"bench: disk fdatasync_median_of_runs {statistics.median(run_fsync_us):.0f} us")
    for m, ref in RATIOS:
        x = medians["raftcask-cluster"][m] / medians[ref][m]
        print(f"ratio: {m} raftcask/{REF_NAMES[ref]} {x:.3f}")
    print_targets(medians["raftcask-cluster"], medians, TARGETS, runs, REF_NAMES.get)


# ============================== main ==============================


def main():
    binary = binary_and_tools((("redis-server", "redis-server"),
                               ("redis-benchmark", "redis-tools"), ("etcd", "etcd-server"),
                               ("wrk", "wrk")), "scripts/install-deps bench installs")
    runs = env_int("BENCH_RUNS", 3, 1, 15)
    requests = env_int("BENCH_REQUESTS", 100000, 1000, 100000000)
    aof_p1_requests = env_int("BENCH_AOF_P1_REQUESTS", min(50000, requests), 1000, 100000000)
    wrk_seconds = env_int("BENCH_WRK_SECONDS", 5, 1, 600)

    print(f"# raftcask cluster benchmark: medians of {runs} runs; in each run "
          f"{', '.join(SUBJECTS)} in turn, each started fresh")
    print("#   on free 127.0.0.1 ports in fresh temporary directories; the load goes to the "
          "leader.")
    print("# raftcask-cluster: 3 nodes of the release binary; writes fdatasynced on a majority "
          "before the reply; GETs linearizable (ReadIndex).")
    print("# etcd-cluster: 3 members of etcd 3.4 (Debian), default durable settings; set = PUT,"
          " get = linearizable range, through the JSON gateway.")
    print("# redis-aof: one redis-server, appendonly yes, appendfsync always. redis-mem: one "
          "redis-server, memory only.")
    print(f"# raftcask, redis: redis-benchmark -c {CLIENTS} -n {requests} -d {VALUE_BYTES} "
          f"-t set,get -q --csv at -P 1 and -P 16 (redis-aof at -P 1: -n {aof_p1_requests}).")
    print(f"# etcd: wrk -t 1 -c {CLIENTS} -d {wrk_seconds}s, POST /v3/kv/put and /v3/kv/range, "
          f"{VALUE_BYTES}-byte value; p16 = 16 requests pipelined per connection (HTTP/1.1).")
    print("# One key throughout (key:__rand_int__). The load tools share the 2 cores with the "
          "servers: each figure is client and servers together.")
    print("# failover: 3 client threads SET in a loop, one per node; SIGKILL the leader; time to "
          "the first +OK for a SET sent after the kill.")
    print("# Every ratio is raftcask's figure / the reference's.")
    sys.stdout.flush()

    started = time.monotonic()
    temp_root = tempfile.mkdtemp(prefix="raftcask-cbench-",
                                 dir=os.environ.get("TMPDIR") or "/tmp")
    processes = Processes(temp_root)
    try:
        fsync_us = fdatasync_latency_us(temp_root, FSYNC_SAMPLES)
        print(f"# disk: fdatasync of a 64-byte append under {temp_root}: median "
              f"{fsync_us[0]:.0f} us, p99 {fsync_us[1]:.0f} us ({FSYNC_SAMPLES} samples)")
        results = {s: {} for s in SUBJECTS}
        failovers = []
        run_fsync_us = []
        extras = {}
        for run in range(runs):
            # The disk is shared and its latency drifts: each run says what it was then.
            probe = fdatasync_latency_us(temp_root, RUN_FSYNC_SAMPLES)
            run_fsync_us.append(probe[0])
            print(f"# run {run + 1}/{runs} disk: fdatasync median {probe[0]:.0f} us, p99 "
                  f"{probe[1]:.0f} us ({RUN_FSYNC_SAMPLES} samples)")
            for subject in SUBJECTS:
                phase_start = time.monotonic()
                rps = run_subject(processes, subject, run, binary, temp_root, requests,
                                  aof_p1_requests, wrk_seconds, extras)
                for m, value in rps.items():
                    results[subject].setdefault(m, []).append(value)
                figures = " ".join(f"{m}={v:.0f}" for m, v in rps.items())
                if subject == "raftcask-cluster":
                    failovers.append(extras["failover_s"])
                    figures += f" failover={extras['failover_s']:.3f}s"
                print(f"# run {run + 1}/{runs} {subject}: {figures} "
                      f"({time.monotonic() - phase_start:.1f} s)")
                sys.stdout.flush()
        for role, node, kib in extras["rss"]:
            print(f"# memory raftcask {role} ({node}; last run, after its load): "
                  f"VmHWM={kib['VmHWM']} kB VmRSS={kib['VmRSS']} kB "
                  f"RssAnon={kib['RssAnon']} kB RssFile={kib['RssFile']} kB")
        print_report(results, failovers, extras["rss"], fsync_us, run_fsync_us, runs)
        print(f"# total time {time.monotonic() - started:.1f} s")
    finally:
        processes.stop_all()
        shutil.rmtree(temp_root, ignore_errors=True)


if __name__ == "__main__":
    run_bench(main)
