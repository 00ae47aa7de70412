"""The raftcask binary's command line: generated docs, options, config file, bad input.

These run the binary directly (no fixtures needed beyond a temp dir) and stop every server
they start by PID.
"""
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import redis

from conftest import free_port, log_record_starts

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("RAFTCASK_BIN", str(ROOT / "build/san/raftcask"))

pytestmark = pytest.mark.skipif(not os.path.exists(BIN), reason=f"no binary at {BIN}")




def wait_ready(port, proc, deadline_s=15):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"raftcask exited with {proc.returncode}")
        try:
            if redis.Redis(port=port, socket_timeout=1).ping():
                return
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)  # polling interval while waiting for the listener
    raise AssertionError("raftcask did not answer PING in time")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_commands_markdown_is_generated_from_the_table():
    out = subprocess.run([BIN, "--commands-markdown"], capture_output=True, check=True, text=True)
    committed = (ROOT / "docs/COMMANDS.md").read_text()
    assert out.stdout == committed, "docs/COMMANDS.md is stale: run 'make docs'"
    assert "| `GET key` |" in committed


def test_version_and_help():
    out = subprocess.run([BIN, "--version"], capture_output=True, check=True, text=True)
    assert out.stdout.startswith("raftcask ")
    out = subprocess.run([BIN, "--help"], capture_output=True, check=True, text=True)
    for option in ("--dir", "--bind", "--requirepass", "--proto-max-bulk-len", "--config"):
        assert option in out.stdout


@pytest.mark.parametrize("args,message", [
    (["--no-such-flag"], "unknown option '--no-such-flag'"),
    (["--bind"], "needs a value"),
    (["--bind", "nonsense"], "invalid --bind"),
    (["--maxclients", "lots"], "invalid value 'lots'"),
    (["--read-consistency", "eventual"], "invalid --read-consistency"),
    (["--tls-cert", "node.pem"], "TLS between nodes needs all of --tls-cert, --tls-key and --tls-ca"),
    (["--tls-port", "6380"], "--tls-port needs a port (1-65535) and --tls-cert, --tls-key and --tls-ca"),
    (["--tls-port", "4921", "--tls-cert", "a", "--tls-key", "b", "--tls-ca", "c"],
     "--tls-port 4921 is the client or the peer port"),
    (["--tls-client-ca", "c"], "--tls-client-ca needs --tls-port"),
    (["--tls-port", "6380", "--tls-cert", "a", "--tls-key", "b", "--tls-ca", "c", "--tls-client-ca", "c"],
     "--tls-client-ca must not be --tls-ca"),
    (["--metrics", "nonsense"], "invalid --metrics 'nonsense' (expected HOST:PORT)"),
])
def test_bad_flags_exit_nonzero_with_one_clear_line(args, message):
    out = subprocess.run([BIN] + args, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr


def test_unreadable_tls_certificate_exits_nonzero_before_writing_state(tmp_path):
    data = tmp_path / "data"
    out = subprocess.run([BIN, "--dir", str(data), "--bind", f"127.0.0.1:{free_port()}",
                          "--tls-cert", str(tmp_path / "none.crt"), "--tls-key",
                          str(tmp_path / "none.key"), "--tls-ca", str(tmp_path / "none.ca")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "TLS: loading the certificate (--tls-cert)" in lines[0], out.stderr
    assert not any(data.iterdir())  # no node.conf, no log, no store


def test_an_address_other_machines_cannot_dial_is_refused_for_a_joiner(tmp_path):
    """Addresses are told to the cluster and stored for good: a joiner that would advertise
    0.0.0.0 (no machine's address) is refused before it asks anyone, with one line; a node
    that bootstraps with one starts, with a warning that nodes elsewhere could not join it."""
    port = free_port()
    out = subprocess.run([BIN, "--dir", str(tmp_path / "joiner"), "--bind", f"127.0.0.1:{port}",
                          "--advertise", f"0.0.0.0:{port}", "--join", "127.0.0.1:9"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert (f"would tell the cluster to reach it at 0.0.0.0:{port} (clients) and "
            f"127.0.0.1:{port + 1} (peers), which other machines cannot dial: give --advertise "
            "HOST:PORT") in lines[0]
    assert not (tmp_path / "joiner" / "node.conf").exists()
    proc = subprocess.Popen([BIN, "--dir", str(tmp_path / "alone"), "--bind", f"127.0.0.1:{port}",
                             "--advertise", f"0.0.0.0:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(port, proc)
        assert redis.Redis(port=port).set("k", "v") is True
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "a node on another machine could not join it. Give --advertise HOST:PORT" in err


def test_an_unreadable_restore_file_exits_before_writing_state(tmp_path):
    data = tmp_path / "data"
    out = subprocess.run([BIN, "--dir", str(data), "--bind", f"127.0.0.1:{free_port()}",
                          "--restore", str(tmp_path / "none.bin")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and f"cannot read --restore {tmp_path / 'none.bin'}" in lines[0], out.stderr
    assert not data.exists() or not any(data.iterdir())  # no store, no log


def test_unusable_dir_exits_nonzero(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    out = subprocess.run([BIN, "--dir", str(blocker / "data"), "--bind",
                          f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "dir" in out.stderr


def test_config_file_and_flags_win(tmp_path):
    port = free_port()
    conf = tmp_path / "raftcask.conf"
    conf.write_text(f"# a comment\nbind 127.0.0.1:{free_port()}\nmaxclients 77\n"
                    f"requirepass \"s3cret\"\ndir {tmp_path / 'data'}\n")
    proc = subprocess.Popen([BIN, "--config", str(conf), "--bind", f"127.0.0.1:{port}"],
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        client = redis.Redis(port=port, password="s3cret", socket_timeout=5)
        while True:  # the flag's port wins over the file's
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        assert client.config_get("maxclients") == {"maxclients": "77"}
        assert client.config_get("dir")["dir"] == str(tmp_path / "data")
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=port, socket_timeout=5).get("x")
    finally:
        stop(proc)
    assert proc.returncode == 0


def test_logfile_and_sigint_shutdown(tmp_path):
    port = free_port()
    log = tmp_path / "node.log"
    proc = subprocess.Popen([BIN, "--bind", f"127.0.0.1:{port}", "--dir", str(tmp_path / "d"),
                             "--logfile", str(log), "--loglevel", "debug"])
    try:
        wait_ready(port, proc)
        redis.Redis(port=port).set("k", "v")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
    finally:
        stop(proc)
    assert proc.returncode == 0
    text = log.read_text()
    assert "ready" in text and "SIGINT" in text and "stopped" in text
    # Every line: time, level, node, message.
    for line in text.splitlines():
        stamp, level, node = line.split(" ")[:3]
        assert stamp.endswith("Z") and level in ("debug", "info", "warning", "error")


def start_and_stop(args):
    port = int(args[args.index("--bind") + 1].rsplit(":", 1)[1])
    proc = subprocess.Popen([BIN] + args, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
    finally:
        stop(proc)
    assert proc.returncode == 0


def test_restart_with_other_addresses_is_refused(tmp_path):
    """A node's addresses are fixed in node.conf at its first start (the other nodes know it
    by them). A restart whose flags give others is refused with one clear line; it used to
    listen on the new ones and advertise the old, unreachable for good."""
    data = str(tmp_path / "data")
    first = f"127.0.0.1:{free_port()}"
    start_and_stop(["--dir", data, "--bind", first])
    out = subprocess.run([BIN, "--dir", data, "--bind", f"127.0.0.1:{free_port()}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert f"this node's addresses are {first}" in out.stderr, out.stderr
    start_and_stop(["--dir", data, "--bind", first])  # the stored ones still start it


def test_raft_log_without_node_conf_is_refused(tmp_path):
    """node.conf missing beside a Raft log (a first start interrupted between the two, or a
    lost file): a restart used to pick a new id, which the log's configuration did not name,
    and never led. It is refused with one clear line."""
    data = tmp_path / "data"
    bind = f"127.0.0.1:{free_port()}"
    start_and_stop(["--dir", str(data), "--bind", bind])
    (data / "node.conf").unlink()
    out = subprocess.run([BIN, "--dir", str(data), "--bind", bind], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode != 0
    assert "node.conf is missing" in out.stderr, out.stderr


def start_write_and_stop(data, port, count, kill=False):
    """Starts a single node on data, SETs w:0..count-1 one by one, then stops it (SIGKILL
    when kill)."""
    proc = subprocess.Popen([BIN, "--dir", str(data), "--bind", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        client = redis.Redis(port=port, socket_timeout=10)
        for i in range(count):
            assert client.set(f"w:{i}", str(i)) is True
        client.close()
        if kill:
            proc.kill()
            proc.wait()
    finally:
        stop(proc)


def test_a_backup_cut_short_is_removed_at_start(tmp_path):
    """A node killed while it wrote a backup left DIR/snapshots/ID with only state.bin.tmp,
    which looks like a backup in a listing. The next start removes it (meta.json is written
    last), and leaves finished backups, directories holding other files and directories not
    named like a backup alone."""
    data, port = tmp_path / "data", free_port()
    start_write_and_stop(data, port, 3)
    cut = data / "snapshots" / "1-7-1795651060824"
    cut.mkdir(parents=True)
    (cut / "state.bin.tmp").write_bytes(b"partial")
    done = data / "snapshots" / "1-5-1795651060000"
    done.mkdir()
    (done / "state.bin").write_bytes(b"x")
    (done / "meta.json").write_text("{}")
    other = data / "snapshots" / "2-9-1795651061111"
    other.mkdir()
    (other / "state.bin").write_bytes(b"x")
    (other / "mine.txt").write_text("kept")
    notes = data / "snapshots" / "notes"
    notes.mkdir()
    (notes / "state.bin").write_bytes(b"not a backup of ours")
    proc = subprocess.Popen([BIN, "--dir", str(data), "--bind", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_ready(port, proc)
    finally:
        stop(proc)
    log = proc.stderr.read()
    assert not cut.exists()
    assert f"removed {cut}: a backup cut short" in log, log
    assert (done / "meta.json").exists() and (notes / "state.bin").exists()
    assert (other / "mine.txt").exists() and (other / "state.bin").exists()
    assert f"{other} has no meta.json" in log and "notes" not in log, log


def test_a_store_without_node_conf_or_log_is_refused(tmp_path):
    """A --restore killed after it rebuilt the store, before it wrote the log and node.conf:
    started again without --restore, the node used to bootstrap a log from index 1 over that
    store and skip every new write as already held (they hung unanswered). It is refused,
    saying how to finish the restore."""
    data, port = tmp_path / "data", free_port()
    start_write_and_stop(data, port, 20)
    (data / "node.conf").unlink()
    shutil.rmtree(data / "raft")
    out = subprocess.run([BIN, "--dir", str(data), "--bind", f"127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "holds data (up to revision" in out.stderr and "--restore FILE" in out.stderr, out.stderr


@pytest.mark.parametrize("cut", [1, 20])
def test_a_single_node_whose_log_lost_entries_is_refused_until_recovered(tmp_path, cut):
    """A single node killed, then its log cut by its last entries (a damaged disk): its store
    holds entries its log no longer has. It used to start and propose new writes at those
    indexes, skip them as already held, and answer none of them (with one entry cut, its
    election's no-op took the index of a write, which a joiner replaying the log never
    applied). It refuses to start (saying to use --recover, or that the log lost entries its
    commit covers), and --recover brings it back with every key and new writes served."""
    data, port = tmp_path / "data", free_port()
    start_write_and_stop(data, port, 300, kill=True)
    segment = sorted((data / "raft").glob("log-*.seg"))[-1]
    starts = log_record_starts(segment)
    assert len(starts) > 30
    with open(segment, "r+b") as f:
        f.truncate(starts[-cut])
    out = subprocess.run([BIN, "--dir", str(data), "--bind", f"127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    if "beyond the last entry" in out.stderr:
        # raft-state's commit (written at most once a second) fell among the entries cut:
        # the log store itself refuses the start, which --recover cannot mend either.
        return
    assert "the log lost durable entries" in out.stderr, out.stderr
    proc = subprocess.Popen([BIN, "--dir", str(data), "--bind", f"127.0.0.1:{port}", "--recover"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        client = redis.Redis(port=port, socket_timeout=10)
        assert client.get("w:299") == b"299"
        for i in range(5):
            assert client.set(f"after:{i}", "x") is True
        assert client.mget([f"after:{i}" for i in range(5)]) == [b"x"] * 5
        assert client.dbsize() == 305
    finally:
        stop(proc)


def http_get(port, path, method="GET"):
    """(status, content type, body) of one HTTP request to 127.0.0.1:port."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.headers["Content-Type"], reply.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_metrics_endpoint_serves_metrics_and_health(tmp_path):
    """--metrics: GET /metrics is Prometheus text with the node's figures, GET /health says
    whether it can serve; other paths, methods and malformed requests are refused, and a
    bad address stops the start with one line."""
    port, metrics_port = free_port(), free_port()
    proc = subprocess.Popen([BIN, "--dir", str(tmp_path / "data"), "--bind", f"127.0.0.1:{port}",
                             "--metrics", f"127.0.0.1:{metrics_port}"], stderr=subprocess.PIPE)
    try:
        wait_ready(port, proc)
        client = redis.Redis(port=port, socket_timeout=10)
        for i in range(25):
            client.set(f"m:{i}", "v", ex=1000 if i < 5 else None)
        status, ctype, body = http_get(metrics_port, "/health")
        assert (status, ctype) == (200, "application/json") and json.loads(body) == {"health": "true"}
        status, ctype, body = http_get(metrics_port, "/metrics?x=1")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        samples = {}
        for line in body.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        assert samples["raftcask_keys"] == 25 and samples["raftcask_keys_with_expiry"] == 5
        assert samples["raftcask_raft_is_leader"] == 1 and samples["raftcask_raft_voters"] == 1
        assert samples["raftcask_raft_applied_index"] >= 25
        assert samples["raftcask_commands_processed_total"] >= 26
        assert any(name.startswith("raftcask_info{version=") for name in samples)
        for name in samples:  # every sample has its TYPE line
            base = name.split("{")[0]
            assert f"# TYPE {base} " in body, base
        # 70 idle connections (the cap is 64): the oldest go, and a probe still gets in.
        idle = [socket.create_connection(("127.0.0.1", metrics_port), timeout=10) for _ in range(70)]
        assert http_get(metrics_port, "/health")[0] == 200
        for sock in idle:
            sock.close()
        assert http_get(metrics_port, "/nope")[0] == 404
        assert http_get(metrics_port, "/metrics", method="POST")[0] == 405
        assert http_get(metrics_port, "/health", method="HEAD") == (200, "application/json", "")
        for raw in (b"garbage\r\n\r\n", b"GET /metrics HTTP/1.1\r\nX: " + b"y" * 9000):
            with socket.create_connection(("127.0.0.1", metrics_port), timeout=10) as sock:
                sock.sendall(raw)
                assert sock.recv(4096).startswith(b"HTTP/1.1 400 ")
        client.shutdown(nosave=True)
    except redis.ConnectionError:
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    # A port that cannot be listened on (the client port, taken) stops the start.
    taken = free_port()
    out = subprocess.run([BIN, "--dir", str(tmp_path / "d2"), "--bind", f"127.0.0.1:{taken}",
                          "--metrics", f"127.0.0.1:{taken}"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode != 0 and "cannot listen on --metrics" in out.stderr, out.stderr
