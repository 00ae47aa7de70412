"""Fixtures for the integration tests: real server processes on 127.0.0.1, real clients.

A server under test is a child process (raftcask from $RAFTCASK_BIN, or Debian's
redis-server) bound to a free loopback port, with a fresh temporary directory and its log
kept in a file. Every wait has a deadline. Servers are stopped by PID at the end of the test
that started them (SIGTERM, then SIGKILL), and their log is attached to the report of a
failed test.

Environment:
  RAFTCASK_BIN         binary under test (default: build/san/raftcask in the repository).
                       When it does not exist, the raftcask tests are skipped.
  ITEST_AGAINST_REDIS  "1": run everything against redis-server instead of raftcask, with
                       the raftcask-only tests skipped (checks that the tests encode Redis's
                       behaviour). DIFF_AGAINST_REDIS=1 does the same for the differential
                       test, which then compares two redis-servers.
"""
import os
import random
import resource
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
import redis

REPO_ROOT = Path(__file__).resolve().parents[2]
RAFTCASK_BIN = Path(os.environ.get("RAFTCASK_BIN", REPO_ROOT / "build/san/raftcask"))
AGAINST_REDIS = "1" in (os.environ.get("ITEST_AGAINST_REDIS"), os.environ.get("DIFF_AGAINST_REDIS"))
REDIS_SERVER_BIN = "redis-server"

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

raftcask_only = pytest.mark.skipif(AGAINST_REDIS, reason="raftcask-only behaviour (running against redis-server)")


# ---------------------------------------------------------------- polling with a deadline

def wait_for(condition, timeout_s, what, interval_s=0.01):
    """Calls condition() until it returns a true value, which is returned; raises after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def ephemeral_low():
    """The lowest port the kernel hands out for outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A loopback port that is free, and whose successor is free too (raftcask's default
    --peer-bind is the client port + 1). Taken below the ephemeral range: a port there can be
    taken, while its server is down for a restart, by an outgoing connection, even one that
    dials that very port and connects to itself (TCP simultaneous open)."""
    high = min(ephemeral_low(), 65535) - 2
    for _ in range(200):
        port = random.randint(10000, high) if high > 10000 else 0
        with socket.socket() as first:
            try:
                first.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free pair of loopback ports")


def has_failpoints():
    """True when RAFTCASK_BIN is a debug build, which kills itself at the failpoint named by
    RAFTCASK_FAILPOINT (src/common/failpoint.h)."""
    out = subprocess.run([str(RAFTCASK_BIN), "--version"], capture_output=True, text=True)
    return "failpoints" in out.stdout


def raise_fd_limit():
    """Raises the soft limit of open files to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# ---------------------------------------------------------------- a raw RESP2 client

class Status(str):
    """A simple-string reply (+OK). Equal to the plain str, unequal to the bulk bytes."""

    def __repr__(self):
        return f"Status({str(self)!r})"


class RespError(Exception):
    """An error reply (-ERR ...); compares equal to another with the same full text."""

    def __eq__(self, other):
        return isinstance(other, RespError) and str(self) == str(other)

    def __hash__(self):
        return hash(str(self))

    def __repr__(self):
        return f"RespError({str(self)!r})"


class NilArray:
    def __repr__(self):
        return "NIL_ARRAY"


NIL_ARRAY = NilArray()


def encode_command(*args):
    """The RESP2 multibulk encoding of a command; str arguments are UTF-8, ints decimal."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, int):
            arg = str(arg)
        if isinstance(arg, str):
            arg = arg.encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(parts)


class RespConnection:
    """A blocking RESP2 connection that returns replies exactly as typed on the wire:
    Status for +, RespError for - (returned, not raised), int, bytes for bulk, None for a
    nil bulk, NIL_ARRAY for a nil multibulk, list for a multibulk."""

    def __init__(self, port, host="127.0.0.1", timeout_s=30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.reader = self.sock.makefile("rb")

    def close(self):
        self.reader.close()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def send(self, *args):
        self.sock.sendall(encode_command(*args))

    def call(self, *args):
        self.send(*args)
        return self.read_reply()

    def read_line(self):
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError(f"connection closed mid-line (got {line!r})")
        return line[:-2]

    def read_reply(self):
        line = self.read_line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return Status(rest.decode("utf-8", "surrogateescape"))
        if kind == b"-":
            return RespError(rest.decode("utf-8", "surrogateescape"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            length = int(rest)
            if length < 0:
                return None
            data = self.reader.read(length + 2)
            if len(data) != length + 2 or not data.endswith(b"\r\n"):
                raise ConnectionError("connection closed inside a bulk reply")
            return data[:-2]
        if kind == b"*":
            count = int(rest)
            if count < 0:
                return NIL_ARRAY
            return [self.read_reply() for _ in range(count)]
        raise ConnectionError(f"unexpected reply line {line!r}")

    def is_closed_by_peer(self, timeout_s=5.0):
        """True when the server closes the connection (EOF) within timeout_s."""
        self.sock.settimeout(timeout_s)
        try:
            return self.reader.read(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


# ---------------------------------------------------------------- server processes

class ServerProcess:
    """One raftcask or redis-server child process on a loopback port and its own directory."""

    def __init__(self, kind, workdir, extra_args=(), name=None):
        self.kind = kind
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args)
        self.name = name or kind
        self.log_path = self.workdir / f"{self.name}.log"
        self.port = free_port()
        self.proc = None
        self.starts = 0
        self.env = None  # extra environment variables for the next starts

    def argv(self):
        if self.kind == "raftcask":
            return [str(RAFTCASK_BIN), "--bind", f"127.0.0.1:{self.port}", "--dir", str(self.data_dir),
                    "--loglevel", "info", *self.extra_args]
        return [REDIS_SERVER_BIN, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--dir", str(self.data_dir), *self.extra_args]

    def launch(self):
        """Starts the process without waiting for it to serve."""
        self.starts += 1
        env = dict(os.environ, **self.env) if self.env else None
        with open(self.log_path, "ab") as log:
            log.write(f"==== start #{self.starts}: {' '.join(self.argv())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.workdir, env=env)

    def start(self):
        """Starts the process and waits (with a deadline) until it answers PING."""
        self.launch()
        try:
            wait_for(self._answers_ping, START_TIMEOUT_S, f"{self.name} to answer PING on port {self.port}")
        except Exception:
            self.stop(check=False)
            raise
        return self

    def _answers_ping(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with status {self.proc.returncode} before serving:\n"
                               + self.log_tail())
        try:
            with RespConnection(self.port, timeout_s=1.0) as conn:
                reply = conn.call("PING")
        except (OSError, ConnectionError):
            return False
        # Any well-formed reply means it serves (-NOAUTH with --requirepass).
        return reply == "PONG" or isinstance(reply, RespError)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout_s=STOP_TIMEOUT_S):
        """Waits for the process to exit by itself; returns its status."""
        return self.proc.wait(timeout=timeout_s)

    def stop(self, check=True):
        """SIGTERM, wait with a deadline, then SIGKILL. With check, a non-zero exit status
        (or a SIGKILL needed) raises. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=STOP_TIMEOUT_S)
                if check:
                    raise AssertionError(f"{self.name} ignored SIGTERM for {STOP_TIMEOUT_S} s; killed")
        status = self.proc.returncode
        if check and status != 0:
            raise AssertionError(f"{self.name} exited with status {status}:\n{self.log_tail()}")
        return status

    def kill(self):
        """SIGKILL (a crash), then reap."""
        if self.alive():
            self.proc.kill()
        self.proc.wait(timeout=STOP_TIMEOUT_S)

    def restart(self):
        """Clean stop (checked), then a start on the same port and directory."""
        self.stop()
        return self.start()

    def log_text(self, offset=0):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_size(self):
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_tail(self, offset=0, max_lines=150):
        lines = self.log_text(offset).splitlines()
        return "\n".join(lines[-max_lines:])

    def sanitizer_report(self, offset=0):
        text = self.log_text(offset)
        return next((marker for marker in SANITIZER_MARKERS if marker in text), None)

    def rss_kb(self, field="VmRSS"):
        """Resident memory in KiB; field="VmHWM" for its peak."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise RuntimeError(f"no {field} line")

    def client(self, decode=True, **kwargs):
        """A redis-py client (connections are made lazily)."""
        kwargs.setdefault("socket_timeout", 30)
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=decode, **kwargs)

    def raw(self, timeout_s=30.0):
        return RespConnection(self.port, timeout_s=timeout_s)

    def answers(self, command=("PING",), timeout_s=10.0):
        """True when the server replies to command (no error reply) within timeout_s."""
        try:
            with self.raw(timeout_s=timeout_s) as conn:
                return not isinstance(conn.call(*command), RespError)
        except (OSError, ConnectionError):
            return False


def require_raftcask():
    if not RAFTCASK_BIN.exists():
        pytest.skip(f"raftcask binary {RAFTCASK_BIN} does not exist (set RAFTCASK_BIN or build it)")


def default_kind():
    """The kind of server the tests exercise: raftcask, or redis-server when AGAINST_REDIS."""
    if AGAINST_REDIS:
        return "redis"
    require_raftcask()
    return "raftcask"


def attach_log(item, server, offset=0):
    item.itest_logs = getattr(item, "itest_logs", []) + [(server, offset)]


def check_server_health(server, offset, stopped):
    """Fails the current test when the server died or its sanitizers reported something."""
    marker = server.sanitizer_report(offset)
    if marker:
        pytest.fail(f"{server.name} log reports '{marker}':\n{server.log_tail(offset)}")
    if not stopped and not server.alive():
        pytest.fail(f"{server.name} died during the test (status {server.proc.returncode}):\n"
                    f"{server.log_tail(offset)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for server, offset in getattr(item, "itest_logs", []):
            report.sections.append((f"{server.name} log (pid {server.proc.pid if server.proc else '-'}, "
                                    f"{server.log_path})", server.log_tail(offset)))


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def start_server(request, tmp_path):
    """Factory: start_server(extra_args=(), kind=None, name=None) -> a started ServerProcess.
    kind defaults to the server under test. Every server is stopped (and checked for a clean
    exit and sanitizer reports) when the test ends."""
    servers = []

    def start(extra_args=(), kind=None, name=None):
        kind = kind or default_kind()
        server = ServerProcess(kind, tmp_path / f"srv{len(servers)}", extra_args, name=name or kind)
        servers.append(server)
        attach_log(request.node, server)
        return server.start()

    yield start
    errors = []
    for server in servers:
        try:
            server.stop(check=server.kind == "raftcask")
        except AssertionError as exc:
            errors.append(str(exc))
        marker = server.sanitizer_report()
        if marker:
            errors.append(f"{server.name} log reports '{marker}':\n{server.log_tail()}")
    if errors:
        pytest.fail("\n".join(errors))


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory):
    """One server for the many short command tests (each starts with FLUSHALL)."""
    server = ServerProcess(default_kind(), tmp_path_factory.mktemp("shared"), name="shared-" + default_kind())
    server.start()
    yield server
    stop_and_check(server)


def stop_and_check(server):
    """Stops a long-lived server at the end of its scope; fails (as an error of the last test
    that used it) on an unclean exit of raftcask or a sanitizer report."""
    status = server.stop(check=False)
    marker = server.sanitizer_report()
    if marker or (server.kind == "raftcask" and status != 0):
        pytest.fail(f"{server.name} exited with status {status}{f', log reports {marker!r}' if marker else ''}:\n"
                    f"{server.log_tail()}")


@pytest.fixture
def server(request, shared_server):
    """The shared server, emptied, with its log attached to this test's report. A server
    that died or hangs is replaced by a fresh one (in a fresh directory). The test fails
    if the server dies or stops answering during it; a hung server is then killed so that
    the following tests do not all time out on it."""
    if not shared_server.alive() or not shared_server.answers(("FLUSHALL",)):
        replace_shared_server(shared_server)
        assert shared_server.answers(("FLUSHALL",)), "a fresh shared server does not answer FLUSHALL"
    offset = shared_server.log_size()
    attach_log(request.node, shared_server, offset)
    yield shared_server
    if shared_server.alive() and not shared_server.answers():
        shared_server.kill()
        pytest.fail(f"{shared_server.name} stopped answering PING during the test (killed):\n"
                    f"{shared_server.log_tail(offset)}")
    check_server_health(shared_server, offset, stopped=False)


def replace_shared_server(server):
    server.kill()
    shutil.rmtree(server.data_dir, ignore_errors=True)
    server.data_dir.mkdir()
    server.start()


@pytest.fixture
def r(server):
    """redis-py client (decoded str replies, redis-py's usual reply conversions)."""
    client = server.client()
    yield client
    client.close()


@pytest.fixture
def rb(server):
    """redis-py client with bytes replies."""
    client = server.client(decode=False)
    yield client
    client.close()


@pytest.fixture
def raw(server):
    """A RespConnection to the shared server: replies exactly as typed on the wire."""
    with server.raw() as conn:
        yield conn


def log_record_starts(segment):
    """Offsets at which the records of a Raft log segment start, up to its zero-filled tail
    (docs/RAFT.md §12: u32 crc | u32 len | u8 kind | u8 flags | 2 zero bytes | payload)."""
    raw = segment.read_bytes()
    starts, at = [], 0
    while at + 12 <= len(raw):
        crc, length = struct.unpack_from("<II", raw, at)
        if crc == 0 and length == 0:
            break
        starts.append(at)
        at += 12 + length
    return starts
