#!/usr/bin/python3
"""bench/install.py — how long a follower stops answering while it installs a snapshot.

Usage: /usr/bin/python3 bench/install.py PATH/TO/raftcask

Per run (BENCH_RUNS, default 3): three nodes of the given binary on free 127.0.0.1 ports in
fresh temporary directories (--snapshot-threshold 1000 --snapshot-trailing 100, so that the
leader compacts soon); a follower is stopped (SIGTERM); BENCH_INSTALL_KEYS keys (default
1,000,000; 16-byte keys, 100-byte values) are loaded into the leader through
`redis-cli --pipe`; once the leader's log starts past the stopped node's, the node is
started again: it is sent the leader's snapshot, rebuilds its store from it, and applies
the entries written after it. From its start until its applied index reaches the leader's,
one connection sends it a PING every 5 ms and the longest time between two replies is
recorded (a node that rebuilds on its event loop answers nothing for as long as the rebuild
takes). Every process is stopped by its PID whatever happens.

Prints per run a `# run` line with the node's own log lines about the install, then
  bench: raftcask install_longest_pause <median> ms
  bench: raftcask install_catch_up <median> s        (start to applied index caught up)
  bench: raftcask install_rebuilt_keys <median> keys (in the snapshot it was sent)
There is no reference system here (no ratio line): compare runs of two binaries.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cluster import (READY_DEADLINE_S, Process, Processes, RespConnection,  # noqa: E402
                     poll_until, resp_call)
from server import BenchError, binary_and_tools, env_int, free_port  # noqa: E402
from server import run as run_bench  # noqa: E402

FLAGS = ["--snapshot-threshold", "1000", "--snapshot-trailing", "100"]
CATCH_UP_DEADLINE_S = 300.0
PING_EVERY_S = 0.005


def raft_info(port):
    reply = resp_call(port, "INFO", "raft", timeout_s=5.0)
    if not isinstance(reply, bytes):
        raise BenchError(f"INFO raft on {port}: {reply!r}")
    out = {}
    for line in reply.decode().splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k] = v.strip()
    return out


def start_cluster(processes, binary, run):
    nodes = []
    first = None
    for i in range(3):
        port, peer = free_port(), free_port()
        argv = [binary, "--bind", f"127.0.0.1:{port}", "--peer-bind", f"127.0.0.1:{peer}",
                "--loglevel", "info", *FLAGS]
        if first:
            argv += ["--join", first]
        node = processes.start(f"run{run}-node{i + 1}",
                               lambda d, a=argv: a + ["--dir", os.path.join(d, "data")])
        node.port = port
        node.argv = argv + ["--dir", os.path.join(node.dir, "data")]
        nodes.append(node)
        poll_until(f"{node.name} answering PING", READY_DEADLINE_S,
                   lambda p=port: True if resp_call(p, "PING") == "PONG" else None, [node])
        if i == 0:
            first = f"127.0.0.1:{port}"

    def formed():
        peers = resp_call(nodes[0].port, "RAFTPEERS")
        if not isinstance(peers, list) or sum(1 for r in peers if r[3] == b"voter") != 3:
            return None
        leaders = {resp_call(n.port, "RAFTLEADER") for n in nodes}
        if len(leaders) != 1:
            return None
        address = leaders.pop()
        return next((n for n in nodes if isinstance(address, bytes)
                     and address.decode() == f"127.0.0.1:{n.port}"), None)

    leader = poll_until("3 voters and one leader", READY_DEADLINE_S, formed, nodes)
    return nodes, leader


def load(port, keys):
    value = b"v" * 100
    pipe = subprocess.Popen(["redis-cli", "-p", str(port), "--pipe"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    chunk = []
    for i in range(keys):
        key = b"key:%012d" % i
        chunk.append(b"*3\r\n$3\r\nSET\r\n$16\r\n%s\r\n$100\r\n%s\r\n" % (key, value))
        if len(chunk) == 10000:
            pipe.stdin.write(b"".join(chunk))
            chunk = []
    pipe.stdin.write(b"".join(chunk))
    pipe.stdin.close()
    out = pipe.stdout.read().decode(errors="replace")
    if pipe.wait() != 0 or "errors: 0" not in out:
        raise BenchError(f"redis-cli --pipe: {out.strip()}")


def one_run(processes, binary, run, keys):
    nodes, leader = start_cluster(processes, binary, run)
    follower = next(n for n in nodes if n is not leader)
    last = int(raft_info(follower.port)["raft_last_log_index"])
    complaint = follower.stop()
    processes.running.remove(follower)
    if complaint:
        raise BenchError(complaint)
    load(leader.port, keys)
    poll_until("the leader to compact past the stopped node", CATCH_UP_DEADLINE_S,
               lambda: True if int(raft_info(leader.port)["raft_first_log_index"]) > last + 1
               else None, [leader])
    target = int(raft_info(leader.port)["raft_applied_index"])
    node = Process(follower.name, follower.argv, follower.dir, False)
    node.port = follower.port
    processes.running.append(node)
    conn = poll_until(f"{node.name} accepting connections", READY_DEADLINE_S,
                      lambda: RespConnection(node.port, 30.0), [node])
    started = last_reply = time.monotonic()
    longest = 0.0
    pings = 0
    try:
        while True:
            if conn.call("PING") != "PONG":
                raise BenchError(f"{node.name}: PING not answered PONG")
            now = time.monotonic()
            longest = max(longest, now - last_reply)
            last_reply = now
            pings += 1
            if pings % 20 == 0 and int(raft_info(node.port)["raft_applied_index"]) >= target:
                break
            if now - started > CATCH_UP_DEADLINE_S:
                raise BenchError(f"{node.name} did not catch up in {CATCH_UP_DEADLINE_S:.0f} s")
            node.check_alive("catching up")
            time.sleep(PING_EVERY_S)
    finally:
        conn.close()
    caught_up = time.monotonic() - started
    with open(node.log_path, errors="replace") as f:
        lines = [ln.rstrip() for ln in f if "snapshot" in ln and ("install" in ln or "rebuil" in ln)]
    if not any("installed a snapshot" in ln for ln in lines):
        raise BenchError(f"{node.name} was not sent a snapshot (it caught up by log)")
    rebuilt = 0
    for ln in lines:
        if "store rebuilt from the snapshot" in ln:
            rebuilt = int(ln.split(": ", 1)[1].split(" keys")[0].split()[-1])
    processes.stop_group([n for n in nodes if n is not follower] + [node])
    return longest * 1000, caught_up, rebuilt, lines


def main():
    binary = binary_and_tools([("redis-cli", "redis-tools")])
    runs = env_int("BENCH_RUNS", 3, 1, 99)
    keys = env_int("BENCH_INSTALL_KEYS", 1000000, 1000, 100000000)
    temp_root = tempfile.mkdtemp(prefix="raftcask-install-")
    processes = Processes(temp_root)
    pauses, catch_ups, rebuilt = [], [], []
    try:
        for run in range(runs):
            pause, caught_up, keys_rebuilt, lines = one_run(processes, binary, run + 1, keys)
            pauses.append(pause)
            catch_ups.append(caught_up)
            rebuilt.append(keys_rebuilt)
            print(f"# run {run + 1}/{runs}: longest pause {pause:.1f} ms, caught up in "
                  f"{caught_up:.2f} s")
            for ln in lines:
                print(f"#   {ln.split(' ', 3)[-1]}")
            sys.stdout.flush()
        print(f"bench: raftcask install_longest_pause {statistics.median(pauses):.1f} ms")
        print(f"bench: raftcask install_catch_up {statistics.median(catch_ups):.2f} s")
        print(f"bench: raftcask install_rebuilt_keys {statistics.median(rebuilt):.0f} keys")
    finally:
        processes.stop_all()
        shutil.rmtree(temp_root, ignore_errors=True)


if __name__ == "__main__":
    run_bench(main)
