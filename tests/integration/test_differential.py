"""Differential test: the same command sequences sent to redis-server 7.0 (the reference)
and to raftcask (the subject); every reply must match.

Replies are compared raw (redis-py with decode_responses=False and no reply callbacks):
same type, same bytes, errors by class and full message. TTL-like replies match within a
tolerance; KEYS and SCAN results compare as sets; RANDOMKEY must name a key that exists.

  DIFF_SEED=N          replay one seed of the randomised part (printed with every mismatch)
  DIFF_SEEDS=a,b,...   seeds to run (default 1 to 6 and one fresh seed)
  DIFF_COMMANDS=N      commands per seed (default 10000)
  DIFF_BATCH=N         commands per pipeline (default: 1 to 60, drawn per batch from the seed)
  DIFF_AGAINST_REDIS=1 the subject is a second redis-server (checks the harness itself)
"""
import os
import random
import time

import pytest
import redis

from conftest import AGAINST_REDIS, ServerProcess, default_kind, stop_and_check

FAR_S = 4102444800               # 2100-01-01T00:00:00Z
TTL_TOLERANCE = {b"TTL": 2, b"PTTL": 2000, b"EXPIRETIME": 2, b"PEXPIRETIME": 2000}
SET_LIKE = {b"KEYS"}
BATCH_SIZE = os.environ.get("DIFF_BATCH")    # commands per pipeline; default: random 1..60 per batch
TIME_BUDGET_PER_SEED_S = 40
MAX_REPORTED_MISMATCHES = int(os.environ.get("DIFF_MAX_MISMATCHES", "15"))


# ---------------------------------------------------------------- servers and raw clients

@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(reference redis-server client, subject client, subject ServerProcess)."""
    reference = ServerProcess("redis", tmp_path_factory.mktemp("reference"), name="reference-redis")
    subject_kind = "redis" if AGAINST_REDIS else default_kind()
    subject = ServerProcess(subject_kind, tmp_path_factory.mktemp("subject"), name="subject-" + subject_kind)
    reference.start()
    try:
        subject.start()
        yield raw_client(reference), raw_client(subject), subject
    finally:
        reference.stop(check=False)
        stop_and_check(subject)


def raw_client(server):
    client = server.client(decode=False)
    client.response_callbacks = {}
    return client


def execute_batch(client, commands):
    """Replies (or exception objects) of the commands, sent as one pipeline."""
    pipe = client.pipeline(transaction=False)
    for args in commands:
        pipe.execute_command(*args)
    return pipe.execute(raise_on_error=False)


# ---------------------------------------------------------------- comparing replies

def normalise(command, reply):
    """The part of a reply that must be equal on both sides."""
    if type(reply) in (redis.ConnectionError, redis.TimeoutError):
        raise reply                                  # no reply at all: the server is gone
    if isinstance(reply, Exception):
        return ("error", type(reply).__name__, str(reply))
    name = command[0].upper()
    if name in SET_LIKE and isinstance(reply, list):
        return ("set", frozenset(reply))
    if name == b"SCAN" and isinstance(reply, list) and len(reply) == 2 and isinstance(reply[1], list):
        return ("scan", reply[0], frozenset(reply[1]))
    if name == b"RANDOMKEY":
        return ("randomkey", reply is None)
    return ("reply", reply)


def replies_match(command, expected, got):
    name = command[0].upper()
    if name in TTL_TOLERANCE and isinstance(expected, int) and isinstance(got, int) \
            and not isinstance(expected, bool):
        if expected < 0 or got < 0:
            return expected == got
        return abs(expected - got) <= TTL_TOLERANCE[name]
    return normalise(command, expected) == normalise(command, got)


def show(command):
    return " ".join(repr(arg)[2:-1] if isinstance(arg, bytes) else str(arg) for arg in command)


def compare_batches(commands, expected, got, history):
    """The first mismatch of a batch as a report string, or None."""
    for index, (command, want, have) in enumerate(zip(commands, expected, got)):
        history.append(command)
        if not replies_match(command, want, have):
            context = "\n".join("      " + show(c) for c in history[-8:-1])
            return (f"command: {show(command)}\n  redis:    {want!r}\n  raftcask: {have!r}\n"
                    f"  preceding commands:\n{context}")
    return None


def keyspace_mismatch(reference, subject):
    """Compares the whole key space (keys, values, TTLs) of both sides."""
    keys = sorted(set(reference.execute_command("KEYS", "*")) | set(subject.execute_command("KEYS", "*")))
    commands = [(cmd, key) for key in keys for cmd in (b"GET", b"PTTL")]
    if not commands:
        return None
    return compare_batches(commands, execute_batch(reference, commands), execute_batch(subject, commands), [])


def batches(commands, rng):
    start = 0
    while start < len(commands):
        size = int(BATCH_SIZE) if BATCH_SIZE else rng.randint(1, 60)
        yield start, commands[start:start + size]
        start += size


def run_sequence(reference, subject, commands, label, rng=None):
    """Runs commands on both sides in pipelined batches; returns the mismatch reports.
    After a mismatch both sides are flushed so that later commands start from equal states."""
    mismatches, history = [], []
    deadline = time.monotonic() + TIME_BUDGET_PER_SEED_S
    for start, batch in batches(commands, rng or random.Random(0)):
        if time.monotonic() > deadline:
            print(f"{label}: time budget spent after {start} commands")
            break
        report = compare_batches(batch, execute_batch(reference, batch), execute_batch(subject, batch), history)
        if report:
            mismatches.append(f"[{label}] {report}")
            for client in (reference, subject):
                client.execute_command("FLUSHALL")
            history.clear()
        if len(mismatches) >= MAX_REPORTED_MISMATCHES:
            break
    report = keyspace_mismatch(reference, subject)
    if report:
        mismatches.append(f"[{label}, final key space] {report}")
    return mismatches


# ---------------------------------------------------------------- (a) a scripted sequence

SCRIPT = """
SET k v|GET k|SET k w NX|SET k w XX|SET k x XX GET|SET n v NX GET|SET k v NX XX|SET k v EX 0|SET k v EX -1
SET k v EX abc|SET k v PX 100000|PTTL k|SET k v EX 1000 PX 5|SET k v EXAT 4102444800|EXPIRETIME k
SET k v KEEPTTL|EXPIRETIME k|SET k v PXAT 4102444800123|PEXPIRETIME k|SET k v KEEPTTL EX 5|SET k|SET
SET k v FOO|SET k v EX|SET k v EX 9223372036854775807|SETNX k a|SETNX k2 a|SETEX k 1000 v|TTL k|SETEX k 0 v
SETEX k x v|PSETEX k 100000 v|PSETEX k -1 v|GETSET k new|GETSET nokey v|GETDEL k|GETDEL k|GETDEL
SET k v|GETEX k|GETEX k EX 1000|TTL k|GETEX k PERSIST|TTL k|GETEX k PX 100000|GETEX k EXAT 4102444800
GETEX k PXAT 4102444800999|PEXPIRETIME k|GETEX k EX 0|GETEX k EX 1 PX 1|GETEX k BAR|GETEX nokey EX 10
GETEX k EXAT 1|EXISTS k|MSET a 1 b 2 c 3|MGET a b c d|MSET a|MSET a 1 b|MSETNX a 1 z 2|MSETNX y 1 z 2
MGET y z|DEL a b nokey|UNLINK c y|EXISTS a b c y z z|DEL|INCR i|INCR i|DECR i|INCRBY i 100|DECRBY i 50
INCRBY i abc|INCRBY i 1.5|INCRBY i 9223372036854775807|SET big 9223372036854775807|INCR big|DECRBY big -1
SET small -9223372036854775808|DECR small|DECRBY i -9223372036854775808|SET s abc|INCR s|DECR s|INCRBY s 1
SET sp " 1"|INCR sp|SET z0 007|INCR z0|INCRBYFLOAT f 1.5|INCRBYFLOAT f 0.1|INCRBYFLOAT f -1.6
INCRBYFLOAT f 1e10|INCRBYFLOAT f 3.0e-3|INCRBYFLOAT f abc|INCRBYFLOAT s 1|INCRBYFLOAT f inf|GET f
SET f 5.5000|INCRBYFLOAT f 0|SET f 1e3|INCRBYFLOAT f 1|APPEND ap hello|APPEND ap " world"|GET ap
STRLEN ap|STRLEN nokey|GETRANGE ap 0 4|GETRANGE ap -5 -1|GETRANGE ap 3 1|GETRANGE ap 0 100|GETRANGE ap -100 -50
GETRANGE nokey 0 -1|GETRANGE ap x 1|SETRANGE ap 6 WORLD|GET ap|SETRANGE ap 20 !|GET ap|SETRANGE sr 2 x
GET sr|SETRANGE sr2 5 ""|EXISTS sr2|SETRANGE ap -1 x|SETRANGE ap 536870912 x|SET e v|EXPIRE e 1000
TTL e|EXPIRE e 500 NX|EXPIRE e 2000 GT|EXPIRE e 100 GT|EXPIRE e 100 LT|TTL e|EXPIRE e 100 XX|PERSIST e
EXPIRE e 100 XX|EXPIRE e 100 GT|EXPIRE e 100 LT|EXPIRE e 100 NX XX|EXPIRE e 100 GT LT|EXPIRE e 100 FOO
EXPIRE e x|EXPIRE nokey 100|PEXPIRE e 100000|PTTL e|EXPIREAT e 4102444800|EXPIRETIME e|PEXPIREAT e 4102444800555
PEXPIRETIME e|EXPIRE e 9223372036854775807|PEXPIRE e 9223372036854775807|EXPIREAT e 1|EXISTS e|SET e v
EXPIRE e -5|EXISTS e|TTL nokey|PTTL nokey|EXPIRETIME nokey|PERSIST nokey|SET t v|TYPE t|TYPE nokey
RENAME t t2|GET t2|RENAME t t3|RENAME t2 t2|RENAMENX t2 ap|RENAMENX t2 t4|RENAMENX nokey x|COPY t4 t5
COPY t4 t5|COPY t4 t5 REPLACE|COPY t4 t4|COPY nokey q|COPY t4 t6 DB 0|COPY t4 t7 FOO|SET ttlsrc v EXAT 4102444800
COPY ttlsrc ttldst|EXPIRETIME ttldst|RENAME ttlsrc ttlmoved|EXPIRETIME ttlmoved|DBSIZE|RANDOMKEY
KEYS *|KEYS t*|KEYS ?|KEYS t[45]|KEYS t[^4]*|KEYS *x*|SCAN 0 COUNT 1000|SCAN 0 MATCH t* COUNT 1000
SCAN abc|SCAN 0 COUNT 0|SCAN 0 BAR|PING|PING hi|ECHO hi|ECHO|NOSUCHCMD a b|SELECT 0|SELECT x|FLUSHDB
DBSIZE|RANDOMKEY|KEYS *|SET x 1|FLUSHALL|DBSIZE|GET x
"""


def parse_script(script):
    """Commands separated by '|' or newlines; "..." groups one argument."""
    commands = []
    for text in script.replace("\n", "|").split("|"):
        text = text.strip()
        if not text:
            continue
        parts = text.split('"')
        args = []
        for index, part in enumerate(parts):
            args += [part] if index % 2 else part.split()
        commands.append([arg.encode() for arg in args])
    return commands


def test_scripted_sequence(pair):
    reference, subject, server = pair
    for client in (reference, subject):
        client.execute_command("FLUSHALL")
    mismatches = run_sequence(reference, subject, parse_script(SCRIPT), "scripted")
    assert not mismatches, f"{len(mismatches)} mismatches:\n" + "\n".join(mismatches)


# ---------------------------------------------------------------- (b) randomised sequences

KEYS = [b"k0", b"k1", b"k2", b"k3", b"n0", b"n1", b"f0", b"a:b", b"\x00bin\xff", b"x y", b"a*", b"[", b"\\"]
VALUES = [b"", b"0", b"1", b"-7", b"42", b"9223372036854775806", b"-9223372036854775807", b"3.5", b"1e3",
          b"abc", b"hello world", b"\x00\xff\r\n", b" 1", b"010", b"-0", b"0.1", b"1.5e300", b"x" * 300]
INTEGERS = [b"0", b"1", b"-1", b"5", b"-100", b"9223372036854775807", b"-9223372036854775808",
            b"9223372036854775808", b"abc", b"1.5", b"", b" 3"]
FLOATS = [b"1", b"-1.5", b"0.1", b"1e3", b"3.0e-2", b"abc", b"inf", b"-inf", b"nan", b"1e400", b"", b"5.",
          b"1.1", b"2.2", b"-0.0", b"1e-5", b"123456789.123456789", b"1e17", b"1e-20", b"0x10", b" 1", b"1e"]
BAD_SECONDS = [b"0", b"-1", b"abc", b"9223372036854775807", b"1.5"]
BAD_MILLIS = [b"0", b"-5", b"x", b"9223372036854775807"]
PATTERNS = [b"*", b"k*", b"?", b"k[0-2]", b"[^k]*", b"*\xff", b"a\\:b", b"n?", b"nothing", b"[", b"\\", b"a\\*",
            b"[]a]", b"k[2-0]", b"[\\[]", b"**", b"?*?", b"[a-]*", b"*\\"]


class SequenceRandom(random.Random):
    """A PRNG that also hands out relative times that were never handed out before, at
    least 5 s from each other, so that GT/LT comparisons between two relative times cannot
    depend on how long the servers took between the commands."""

    def __init__(self, seed):
        super().__init__(seed)
        self.used_steps = set()

    def unique_step(self):
        while True:
            step = self.randrange(10, 10 ** 5)
            if step not in self.used_steps:
                self.used_steps.add(step)
                return step

    def seconds(self):
        return self.choice(BAD_SECONDS) if self.random() < 0.25 else str(10 * self.unique_step()).encode()

    def millis(self):
        return self.choice(BAD_MILLIS) if self.random() < 0.25 else str(10000 * self.unique_step() + 5000).encode()


def absolute_seconds(rng, allow_past=True):
    choices = [str(FAR_S + rng.randrange(1000)).encode(), b"x"] + ([b"1", b"0"] if allow_past else [])
    return rng.choice(choices)


def absolute_millis(rng, allow_past=True):
    choices = [str(FAR_S * 1000 + rng.randrange(10 ** 6)).encode()] + ([b"1"] if allow_past else [])
    return rng.choice(choices)


def set_options(rng):
    """Random SET options; conflicting ones now and then. No past absolute times: Redis 7.0
    keeps such a key in DBSIZE until reclaimed, which raftcask need not copy."""
    pool = [[b"NX"], [b"XX"], [b"GET"], [b"KEEPTTL"], [b"EX", rng.seconds()],
            [b"PX", rng.millis()], [b"EXAT", absolute_seconds(rng, False)],
            [b"PXAT", absolute_millis(rng, False)]]
    options = []
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        options += rng.choice(pool)
    return options


def expire_options(rng):
    return [rng.choice([b"NX", b"XX", b"GT", b"LT", b"nx", b"gt"]) for _ in range(rng.choice([0, 0, 1, 1, 2]))]


def getex_options(rng):
    return rng.choice([[], [b"PERSIST"], [b"EX", rng.seconds()], [b"PX", rng.millis()],
                       [b"EXAT", absolute_seconds(rng)], [b"PXAT", absolute_millis(rng)], [b"EX"], [b"EX", b"10", b"PX", b"5"]])


def keys(rng, low=1, high=4):
    return [rng.choice(KEYS) for _ in range(rng.randint(low, high))]


def pairs(rng):
    return [x for key in keys(rng) for x in (key, rng.choice(VALUES))]


GENERATORS = {
    b"GET": lambda rng: [rng.choice(KEYS)],
    b"SET": lambda rng: [rng.choice(KEYS), rng.choice(VALUES)] + set_options(rng),
    b"SETNX": lambda rng: [rng.choice(KEYS), rng.choice(VALUES)],
    b"SETEX": lambda rng: [rng.choice(KEYS), rng.seconds(), rng.choice(VALUES)],
    b"PSETEX": lambda rng: [rng.choice(KEYS), rng.millis(), rng.choice(VALUES)],
    b"GETSET": lambda rng: [rng.choice(KEYS), rng.choice(VALUES)],
    b"GETDEL": lambda rng: [rng.choice(KEYS)],
    b"GETEX": lambda rng: [rng.choice(KEYS)] + getex_options(rng),
    b"MGET": keys,
    b"MSET": pairs,
    b"MSETNX": pairs,
    b"DEL": keys,
    b"UNLINK": keys,
    b"EXISTS": keys,
    b"INCR": lambda rng: [rng.choice(KEYS)],
    b"DECR": lambda rng: [rng.choice(KEYS)],
    b"INCRBY": lambda rng: [rng.choice(KEYS), rng.choice(INTEGERS)],
    b"DECRBY": lambda rng: [rng.choice(KEYS), rng.choice(INTEGERS)],
    b"INCRBYFLOAT": lambda rng: [rng.choice(KEYS), rng.choice(FLOATS)],
    b"APPEND": lambda rng: [rng.choice(KEYS), rng.choice(VALUES)],
    b"STRLEN": lambda rng: [rng.choice(KEYS)],
    b"GETRANGE": lambda rng: [rng.choice(KEYS), rng.choice(INTEGERS[:7]), rng.choice(INTEGERS[:7] + [b"100"])],
    b"SETRANGE": lambda rng: [rng.choice(KEYS), rng.choice([b"0", b"3", b"20", b"-1", b"x", b"1000"]),
                              rng.choice(VALUES)],
    b"EXPIRE": lambda rng: [rng.choice(KEYS), rng.seconds()] + expire_options(rng),
    b"PEXPIRE": lambda rng: [rng.choice(KEYS), rng.millis()] + expire_options(rng),
    b"EXPIREAT": lambda rng: [rng.choice(KEYS), absolute_seconds(rng)] + expire_options(rng),
    b"PEXPIREAT": lambda rng: [rng.choice(KEYS), absolute_millis(rng)] + expire_options(rng),
    b"TTL": lambda rng: [rng.choice(KEYS)],
    b"PTTL": lambda rng: [rng.choice(KEYS)],
    b"EXPIRETIME": lambda rng: [rng.choice(KEYS)],
    b"PEXPIRETIME": lambda rng: [rng.choice(KEYS)],
    b"PERSIST": lambda rng: [rng.choice(KEYS)],
    b"TYPE": lambda rng: [rng.choice(KEYS)],
    b"RENAME": lambda rng: keys(rng, 2, 2),
    b"RENAMENX": lambda rng: keys(rng, 2, 2),
    b"COPY": lambda rng: keys(rng, 2, 2) + rng.choice([[], [], [b"REPLACE"], [b"DB", b"0"], [b"FOO"]]),
    b"DBSIZE": lambda rng: [],
    b"RANDOMKEY": lambda rng: [],
    b"KEYS": lambda rng: [rng.choice(PATTERNS)],
    b"SCAN": lambda rng: [b"0", b"COUNT", b"1000"] + rng.choice([[], [b"MATCH", rng.choice(PATTERNS)]]),
    b"PING": lambda rng: rng.choice([[], [rng.choice(VALUES)]]),
    b"ECHO": lambda rng: [rng.choice(VALUES)],
    b"FLUSHDB": lambda rng: [],
    b"NOSUCHCMD": lambda rng: keys(rng, 0, 2),
}
RARE = {b"FLUSHDB": 0.05, b"NOSUCHCMD": 0.2, b"DBSIZE": 0.5, b"ECHO": 0.3}


def random_command(rng):
    names = list(GENERATORS)
    weights = [RARE.get(name, 1.0) for name in names]
    name = rng.choices(names, weights)[0]
    args = [name] + GENERATORS[name](rng)
    mutation = rng.random()
    if name == b"KEYS":
        pass                                         # raftcask's KEYS takes options: no mutations
    elif mutation < 0.02 and len(args) > 1:
        args.pop()                                   # usually an arity error
    elif mutation < 0.04:
        args.append(rng.choice(VALUES + [b"EX", b"NX"]))  # extra argument
    elif mutation < 0.06:
        args[0] = args[0].lower()
    return args


def seeds():
    if "DIFF_SEED" in os.environ:
        return [int(os.environ["DIFF_SEED"])]
    text = os.environ.get("DIFF_SEEDS", f"1,2,3,4,5,6,{random.SystemRandom().randrange(10 ** 9)}")
    return [int(seed) for seed in text.split(",")]


@pytest.mark.parametrize("seed", seeds())
def test_random_sequences(pair, seed):
    reference, subject, server = pair
    rng = SequenceRandom(seed)
    count = int(os.environ.get("DIFF_COMMANDS", "10000"))
    commands = [random_command(rng) for _ in range(count)]
    for client in (reference, subject):
        client.execute_command("FLUSHALL")
    print(f"seed {seed}: {count} commands (replay with DIFF_SEED={seed})")
    mismatches = run_sequence(reference, subject, commands, f"seed {seed}", rng)
    assert not mismatches, (f"{len(mismatches)} mismatches with seed {seed} (replay: DIFF_SEED={seed}):\n"
                            + "\n".join(mismatches))
    assert server.alive()


# ---------------------------------------------------------------- the comparator itself

@pytest.mark.parametrize("command,expected,got,match", [
    ([b"GET", b"k"], b"1", b"1", True),
    ([b"GET", b"k"], b"1", b"2", False),
    ([b"GET", b"k"], None, b"", False),
    ([b"INCR", b"k"], 1, b"1", False),
    ([b"GET"], redis.ResponseError("wrong number of arguments for 'get' command"),
     redis.ResponseError("wrong number of arguments for 'GET' command"), False),
    ([b"GET"], redis.ResponseError("x"), redis.exceptions.AuthenticationError("x"), False),
    ([b"PTTL", b"k"], 100000, 99000, True),
    ([b"PTTL", b"k"], 100000, 90000, False),
    ([b"TTL", b"k"], -1, -2, False),
    ([b"KEYS", b"*"], [b"a", b"b"], [b"b", b"a"], True),
    ([b"KEYS", b"*"], [b"a", b"b"], [b"a"], False),
    ([b"MGET", b"a", b"b"], [b"1", b"2"], [b"2", b"1"], False),
    ([b"SCAN", b"0"], [b"0", [b"a", b"b"]], [b"0", [b"b", b"a"]], True),
    ([b"SCAN", b"0"], [b"0", [b"a"]], [b"5", [b"a"]], False),
    ([b"RANDOMKEY"], b"a", b"b", True),
    ([b"RANDOMKEY"], b"a", None, False),
])
def test_comparator(command, expected, got, match):
    assert replies_match(command, expected, got) == match
