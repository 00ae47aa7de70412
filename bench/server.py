#!/usr/bin/python3
"""bench/server.py — the raftcask server under redis-benchmark, beside redis-server.

Usage: /usr/bin/python3 bench/server.py PATH/TO/raftcask    (run by `make bench`)

Three subjects, each started by this script on a free 127.0.0.1 port in a fresh temporary
directory, and stopped by PID whatever happens:
  raftcask    the release binary given on the command line, --loglevel warning: a one-node
              Raft cluster, so every write is in its fsynced Raft log before the reply — for
              writes redis-aof is the like-for-like reference; the SET targets against
              redis-mem (from the single-node issue, when writes were fsynced once a second)
              are kept as they were and now miss
  redis-mem   redis-server --save '' --appendonly no (memory only)
  redis-aof   redis-server --save '' --appendonly yes --appendfsync always (every write is
              fsynced before its reply; --save '' so that no RDB snapshot forks mid-run)

Throughput: per run, for each subject in turn (raftcask, redis-mem, redis-aof), a fresh server
is started and measured with
  redis-benchmark -c 50 -n 200000 -d 64 -t set,get,incr,mset -q --csv
at -P 1 and then at -P 16, and stopped. The subjects are interleaved within a run, and the
median of BENCH_RUNS runs (default 3) is reported per test and pipeline depth, because the
machine is shared and noisy. One exception to -n 200000: redis-aof at -P 1 is bound by fsync
latency (a few thousand writes per second here), so it gets -n 100000, which keeps the whole
benchmark within about 6 minutes; what is compared is a rate, and 100000 requests still take
several seconds per test at that rate.

Memory: 1,000,000 distinct keys with 64-byte values are loaded into a fresh raftcask and a
fresh redis-mem with `redis-cli --pipe`; DBSIZE must then be 1000000, and the server's peak
and current resident memory are read from /proc/PID/status (VmHWM, VmRSS).

Output: `bench: <subject> <metric> <value> <unit>`, `ratio: <metric> raftcask/<ref> <value>`,
then `target:` lines with PASS or MISS computed from the medians. Any failure (a server that
does not start, a redis-benchmark error, a wrong DBSIZE) stops the benchmark with exit 1.

Environment: BENCH_RUNS (default 3), BENCH_REQUESTS (-n, default 200000),
BENCH_AOF_P1_REQUESTS (-n for redis-aof at -P 1, default 100000), BENCH_KEYS (keys loaded for
the memory figures, default 1000000; the metric names follow it), TMPDIR (default /tmp).
"""
# note: redis-benchmark runs on the same 2 shared cores as the server it measures and competes
# with it for CPU; every throughput is that of the client and the server together.

import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLIENTS = 50
VALUE_BYTES = 64
TESTS = ("set", "get", "incr", "mset")
PIPELINES = (1, 16)
SUBJECTS = ("raftcask", "redis-mem", "redis-aof")
MEMORY_SUBJECTS = ("raftcask", "redis-mem")
REFERENCES = ("redis-mem", "redis-aof")

# redis-benchmark's CSV names its tests thus; the metric names are ours.
CSV_TEST_NAMES = {"SET": "set", "GET": "get", "INCR": "incr", "MSET (10 keys)": "mset"}

# (metric, reference, minimum ratio raftcask/reference)
TARGETS = [
    ("get_p1", "redis-mem", 0.9),
    ("set_p1", "redis-mem", 0.9),
    ("get_p16", "redis-mem", 0.9),
    ("set_p16", "redis-mem", 0.9),
]

READY_DEADLINE_S = 15.0
STOP_DEADLINE_S = 30.0
BENCHMARK_DEADLINE_S = 600.0
PIPE_DEADLINE_S = 300.0


class BenchError(Exception):
    """A failure after which the figures would mean nothing."""


def env_int(name, default, lo, hi):
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise BenchError(f"{name}={text}: expected an integer in [{lo}, {hi}]")
    return value


def metric_name(test, pipeline):
    return f"{test}_p{pipeline}"


def binary_and_tools(tools, how="apt-get install"):
    """The raftcask binary named on the command line; checks that each (tool, package) is
    installed (`how` names the way to install a missing package)."""
    if len(sys.argv) != 2:
        raise BenchError(f"usage: {sys.argv[0]} PATH/TO/raftcask")
    binary = os.path.abspath(sys.argv[1])
    if not os.access(binary, os.X_OK):
        raise BenchError(f"{binary}: not an executable (build it first)")
    for tool, package in tools:
        if not shutil.which(tool):
            raise BenchError(f"{tool} not found ({how} {package})")
    return binary


def print_targets(subject_medians, medians, targets, runs, ref_name=lambda ref: ref):
    """`target:` lines: subject_medians[m] / medians[ref][m] against each minimum."""
    print(f"# targets, from the medians above ({runs} runs)")
    for m, ref, minimum in targets:
        x = subject_medians[m] / medians[ref][m]
        print(f"target: {m} raftcask/{ref_name(ref)} >= {minimum:.2f}: {x:.3f} "
              f"{'PASS' if x >= minimum else 'MISS'}")


# ============================== a tiny RESP client ==============================


def resp_command(port, *args, timeout_s=5.0):
    """Sends one command and returns its reply's first line (type byte included), decoded.

    Only simple, error and integer replies are needed here (PING, DBSIZE)."""
    request = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        request += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as conn:
        conn.sendall(request)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = conn.recv(4096)
            if not chunk:
                raise BenchError(f"port {port}: connection closed before a reply to {args[0]}")
            reply += chunk
    return reply.decode(errors="replace").rstrip("\r\n")


def free_port():
    """A port that was free a moment ago: bind port 0 and ask which one the kernel chose."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ============================== servers ==============================


class Server:
    """One server process, started in its own directory and stopped by its PID."""

    def __init__(self, subject, raftcask_path, temp_root, label):
        self.subject = subject
        self.dir = tempfile.mkdtemp(prefix=f"{label}-", dir=temp_root)
        self.port = free_port()
        if subject == "raftcask":
            # Its own free port for Raft traffic too (the default, client port + 1, may be taken).
            argv = [raftcask_path, "--bind", f"127.0.0.1:{self.port}", "--peer-bind",
                    f"127.0.0.1:{free_port()}", "--dir", os.path.join(self.dir, "data"),
                    "--loglevel", "warning"]
        else:
            argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
                    "--dir", self.dir, "--save", "", "--daemonize", "no",
                    "--loglevel", "warning"]
            if subject == "redis-mem":
                argv += ["--appendonly", "no"]
            else:
                argv += ["--appendonly", "yes", "--appendfsync", "always"]
        self.log_path = os.path.join(self.dir, "server.log")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)
        self.pid = self.process.pid

    def log_tail(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-10:]).rstrip()
        except OSError as e:
            return f"(no log: {e})"

    def wait_ready(self):
        """Polls PING until +PONG or the deadline; fails at once if the process exits."""
        deadline = time.monotonic() + READY_DEADLINE_S
        last_error = "no attempt"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.subject} (pid {self.pid}) exited with status "
                                 f"{self.process.returncode} while starting:\n{self.log_tail()}")
            try:
                reply = resp_command(self.port, "PING", timeout_s=1.0)
                if reply == "+PONG":
                    return
                last_error = f"PING replied {reply!r}"
            except (OSError, BenchError) as e:
                last_error = str(e)
            time.sleep(0.02)
        raise BenchError(f"{self.subject} (pid {self.pid}) not answering PING on port "
                         f"{self.port} after {READY_DEADLINE_S:.0f} s ({last_error}):\n"
                         f"{self.log_tail()}")

    def stop(self):
        """SIGTERM, then SIGKILL if the process outlives the deadline. Returns a complaint, or
        None when the server stopped cleanly."""
        if self.process.poll() is not None:
            status = self.process.returncode
            return None if status == 0 else f"{self.subject} (pid {self.pid}) had exited " \
                                            f"with status {status}:\n{self.log_tail()}"
        os.kill(self.pid, signal.SIGTERM)
        try:
            status = self.process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait()
            return f"{self.subject} (pid {self.pid}) ignored SIGTERM for " \
                   f"{STOP_DEADLINE_S:.0f} s and was killed"
        if status != 0:
            return f"{self.subject} (pid {self.pid}) stopped with status {status}:\n" \
                   f"{self.log_tail()}"
        return None


class Servers:
    """Every server this script started, so that all are stopped whatever happens."""

    def __init__(self, raftcask_path, temp_root):
        self.raftcask_path = raftcask_path
        self.temp_root = temp_root
        self.running = []

    def start(self, subject, label):
        server = Server(subject, self.raftcask_path, self.temp_root, label)
        self.running.append(server)
        server.wait_ready()
        return server

    def stop(self, server):
        self.running.remove(server)
        complaint = server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
        if complaint:
            raise BenchError(complaint)

    def stop_all(self):
        """For the finally clause: stops what is left and reports, but never raises."""
        for server in list(self.running):
            self.running.remove(server)
            try:
                complaint = server.stop()
            except OSError as e:
                complaint = f"{server.subject} (pid {server.pid}): {e}"
            if complaint:
                print(f"bench: {complaint}", file=sys.stderr)


# ============================== throughput ==============================


def run_redis_benchmark(subject, port, pipeline, requests, tests=TESTS,
                        deadline_s=BENCHMARK_DEADLINE_S):
    """One redis-benchmark invocation (CLIENTS connections, VALUE_BYTES values) of tests
    against 127.0.0.1:port; returns {metric: requests per second}. Also used by
    cluster.py."""
    argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", str(CLIENTS),
            "-n", str(requests), "-d", str(VALUE_BYTES), "-t", ",".join(tests),
            "-P", str(pipeline), "-q", "--csv"]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=deadline_s)
    except subprocess.TimeoutExpired:
        raise BenchError(f"redis-benchmark against {subject} -P {pipeline} took more "
                         f"than {deadline_s:.0f} s") from None
    if done.returncode != 0:
        raise BenchError(f"redis-benchmark against {subject} -P {pipeline} exited with "
                         f"status {done.returncode}: {done.stderr.strip()}")
    rps = {}
    for line in done.stdout.splitlines():
        fields = [f.strip('"') for f in line.split('","')]
        if len(fields) >= 2 and fields[0] in CSV_TEST_NAMES:
            rps[metric_name(CSV_TEST_NAMES[fields[0]], pipeline)] = float(fields[1])
    missing = [t for t in tests if metric_name(t, pipeline) not in rps]
    if missing or any(v <= 0 for v in rps.values()):
        raise BenchError(f"redis-benchmark against {subject} -P {pipeline}: no valid "
                         f"figure for {', '.join(missing) or 'some test'} in:\n{done.stdout}"
                         f"{done.stderr}")
    return rps


def measure_throughput(servers, subject, run, requests, aof_p1_requests):
    server = servers.start(subject, f"{subject}-run{run + 1}")
    try:
        rps = {}
        for pipeline in PIPELINES:
            n = aof_p1_requests if (subject, pipeline) == ("redis-aof", 1) else requests
            rps.update(run_redis_benchmark(server.subject, server.port, pipeline, n))
    finally:
        servers.stop(server)
    return rps


# ============================== memory ==============================


def write_load_file(path, nkeys):
    """A RESP stream of nkeys SETs of distinct keys ("key:" and 10 digits) to 64-byte values:
    16 digits of the key's number, then 48 bytes from a fixed pseudo-random pool at an offset
    that depends on the key, so that no two values are alike and none compresses well."""
    rng = random.Random(0x5EED0004)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    pool = "".join(rng.choices(alphabet, k=1 << 16))
    tail_bytes = VALUE_BYTES - 16
    span = len(pool) - tail_bytes
    with open(path, "wb") as f:
        for start in range(0, nkeys, 10000):
            chunk = []
            for i in range(start, min(start + 10000, nkeys)):
                offset = (i * 7919) % span
                value = f"{i:016d}{pool[offset:offset + tail_bytes]}"
                chunk.append(f"*3\r\n$3\r\nSET\r\n$14\r\nkey:{i:010d}\r\n"
                             f"${VALUE_BYTES}\r\n{value}\r\n")
            f.write("".join(chunk).encode())


def read_memory_kib(pid):
    """VmHWM, VmRSS, RssAnon and RssFile of a process, in KiB, from /proc/PID/status."""
    wanted = ("VmHWM", "VmRSS", "RssAnon", "RssFile")
    found = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in wanted:
                found[name] = int(rest.split()[0])
    if len(found) != len(wanted):
        raise BenchError(f"/proc/{pid}/status lacks some of {', '.join(wanted)}")
    return found


def measure_memory(servers, subject, load_path, nkeys):
    server = servers.start(subject, f"{subject}-memory")
    try:
        with open(load_path, "rb") as load:
            try:
                done = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(server.port),
                                       "--pipe"], stdin=load, capture_output=True, text=True,
                                      timeout=PIPE_DEADLINE_S)
            except subprocess.TimeoutExpired:
                raise BenchError(f"redis-cli --pipe into {subject} took more than "
                                 f"{PIPE_DEADLINE_S:.0f} s") from None
        summary = done.stdout.strip().splitlines()[-1:] or ["(no output)"]
        if done.returncode != 0 or summary[0] != f"errors: 0, replies: {nkeys}":
            raise BenchError(f"redis-cli --pipe into {subject} (status {done.returncode}): "
                             f"{summary[0]} {done.stderr.strip()}")
        dbsize = resp_command(server.port, "DBSIZE", timeout_s=30.0)
        if dbsize != f":{nkeys}":
            raise BenchError(f"{subject}: DBSIZE replied {dbsize!r} after loading {nkeys} keys")
        memory = read_memory_kib(server.pid)
    finally:
        servers.stop(server)
    return memory


# ============================== report ==============================


def print_report(results, memory, runs, keys_label):
    medians = {s: {m: statistics.median(v) for m, v in results[s].items()} for s in SUBJECTS}
    metrics = [metric_name(t, p) for p in PIPELINES for t in TESTS]
    for m in metrics:
        for s in SUBJECTS:
            print(f"bench: {s} {m} {medians[s][m]:.0f} rps")
    memory_metrics = [(f"rss_{keys_label}_keys", "VmRSS"),
                      (f"peak_rss_{keys_label}_keys", "VmHWM")]
    for m, field in memory_metrics:
        for s in MEMORY_SUBJECTS:
            print(f"bench: {s} {m} {memory[s][field] / 1024:.1f} MiB")
    for m in metrics:
        for ref in REFERENCES:
            print(f"ratio: {m} raftcask/{ref} {medians['raftcask'][m] / medians[ref][m]:.3f}")
    for m, field in memory_metrics:
        print(f"ratio: {m} raftcask/redis-mem "
              f"{memory['raftcask'][field] / memory['redis-mem'][field]:.3f}")
    print_targets(medians["raftcask"], medians, TARGETS, runs)


# ============================== main ==============================


def main():
    raftcask_path = binary_and_tools((("redis-server", "redis-server"),
                                      ("redis-benchmark", "redis-tools"),
                                      ("redis-cli", "redis-tools")))
    runs = env_int("BENCH_RUNS", 3, 1, 15)
    requests = env_int("BENCH_REQUESTS", 200000, 1000, 100000000)
    aof_p1_requests = env_int("BENCH_AOF_P1_REQUESTS", min(100000, requests), 1000, 100000000)
    nkeys = env_int("BENCH_KEYS", 1000000, 1, 100000000)
    keys_label = "1m" if nkeys == 1000000 else str(nkeys)

    print(f"# raftcask server benchmark: redis-benchmark -c {CLIENTS} -n {requests} "
          f"-d {VALUE_BYTES} -t {','.join(TESTS)} -q --csv, at -P "
          f"{' and -P '.join(map(str, PIPELINES))}; medians of {runs} runs; in each run "
          f"{', '.join(SUBJECTS)} in turn,")
    print("#   each a fresh server on a free 127.0.0.1 port in a fresh temporary directory.")
    print("# note: redis-benchmark runs on the same 2 shared cores as the server and competes "
          "with it for CPU,")
    print("#   so each figure is what client and server reach together, not the server alone.")
    print("# raftcask: the release binary, --loglevel warning.")
    print("# redis-mem: redis-server --save '' --appendonly no (memory only).")
    print("# redis-aof: redis-server --save '' --appendonly yes --appendfsync always (every "
          "write fsynced before its reply).")
    if aof_p1_requests != requests:
        print(f"# redis-aof at -P 1 only: -n {aof_p1_requests} (BENCH_AOF_P1_REQUESTS), as it "
              f"is fsync-bound and -n {requests} would take minutes; rps is a rate.")
    print("# Without -r every SET, GET and INCR uses one key (key:__rand_int__, "
          "counter:__rand_int__); MSET sets 10 keys.")
    print(f"# rss_{keys_label}_keys (VmRSS) and peak_rss_{keys_label}_keys (VmHWM): the server "
          f"process after redis-cli --pipe of {nkeys} SETs of distinct keys")
    print(f"#   with {VALUE_BYTES}-byte values into a fresh server, DBSIZE checked; once per "
          "subject, no median. Lower is better.")
    print("#   VmRSS counts the resident pages of files the server maps (RssFile) as well as its "
          "heap (RssAnon); both are in the '# memory' lines.")
    print("# Every ratio is raftcask's figure / the reference's.")
    sys.stdout.flush()

    started = time.monotonic()
    temp_root = tempfile.mkdtemp(prefix="raftcask-sbench-",
                                 dir=os.environ.get("TMPDIR") or "/tmp")
    servers = Servers(raftcask_path, temp_root)
    try:
        results = {s: {} for s in SUBJECTS}
        for run in range(runs):
            for subject in SUBJECTS:
                phase_start = time.monotonic()
                rps = measure_throughput(servers, subject, run, requests, aof_p1_requests)
                for m, value in rps.items():
                    results[subject].setdefault(m, []).append(value)
                figures = " ".join(f"{m}={v:.0f}" for m, v in rps.items())
                print(f"# run {run + 1}/{runs} {subject}: {figures} "
                      f"({time.monotonic() - phase_start:.1f} s)")
                sys.stdout.flush()

        phase_start = time.monotonic()
        load_path = os.path.join(temp_root, "load.resp")
        write_load_file(load_path, nkeys)
        print(f"# wrote {os.path.getsize(load_path)} bytes of SETs "
              f"({time.monotonic() - phase_start:.1f} s)")
        memory = {}
        for subject in MEMORY_SUBJECTS:
            phase_start = time.monotonic()
            memory[subject] = measure_memory(servers, subject, load_path, nkeys)
            kib = memory[subject]
            print(f"# memory {subject}: VmHWM={kib['VmHWM']} kB VmRSS={kib['VmRSS']} kB "
                  f"RssAnon={kib['RssAnon']} kB RssFile={kib['RssFile']} kB "
                  f"({time.monotonic() - phase_start:.1f} s)")
            sys.stdout.flush()
        os.remove(load_path)

        print_report(results, memory, runs, keys_label)
        print(f"# total time {time.monotonic() - started:.1f} s")
    finally:
        servers.stop_all()
        shutil.rmtree(temp_root, ignore_errors=True)


def on_sigterm(signum, frame):
    # Turned into an exception so that the finally clause stops the servers.
    raise BenchError("terminated by SIGTERM")


def run(main_fn):
    """Runs a benchmark's main: SIGTERM stops its servers (through its finally clauses); a
    BenchError or an interrupt ends the process with a one-line reason and a non-zero status."""
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        main_fn()
    except BenchError as e:
        sys.stdout.flush()
        print(f"bench: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run(main)
