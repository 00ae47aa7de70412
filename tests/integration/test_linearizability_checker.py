"""Unit tests of the register linearizability checker (linearizability.py) on small
hand-made histories; no server involved."""
from linearizability import Op, check_history, check_register


def w(value, invoke, complete, client="a"):
    return Op("write", value, invoke, complete, client)


def r(value, invoke, complete, client="b"):
    return Op("read", value, invoke, complete, client)


def test_empty_history_passes():
    assert check_register([]).ok


def test_sequential_history_passes():
    history = [r(None, 0, 1), w("x", 2, 3), r("x", 4, 5), w("y", 6, 7), r("y", 8, 9)]
    assert check_register(history).ok


def test_concurrent_reads_may_see_either_side_of_a_write():
    # The write overlaps both reads: the first may see the new value, the second the old
    # one only if the write took effect between them -- which is impossible, so this one
    # must fail, while the mirror order passes.
    assert check_register([w("x", 0, 1), w("y", 2, 10), r("x", 3, 4), r("y", 5, 6)]).ok
    assert check_register([w("x", 0, 1), w("y", 2, 10), r("y", 3, 4, "b"), r("x", 5, 6, "c")]).ok is False


def test_overlapping_writes_either_order():
    history = [w("x", 0, 5, "a"), w("y", 1, 6, "b"), r("x", 7, 8)]
    assert check_register(history).ok
    history = [w("x", 0, 5, "a"), w("y", 1, 6, "b"), r("y", 7, 8)]
    assert check_register(history).ok


def test_stale_read_fails():
    # "y" was acknowledged before the read started, yet the read returned "x".
    history = [w("x", 0, 1), w("y", 2, 3), r("x", 4, 5)]
    result = check_register(history)
    assert not result.ok and not result.exhausted
    assert "not linearizable" in result.reason


def test_read_of_a_value_never_written_fails():
    result = check_register([w("x", 0, 1), r("ghost", 2, 3)])
    assert not result.ok
    assert "never written" in result.reason


def test_lost_acknowledged_write_fails():
    # The final read (after everything healed) does not see the acknowledged write.
    history = [w("x", 0, 1), w("y", 2, 3), r("x", 10, 11)]
    assert not check_register(history).ok
    history = [w("x", 0, 1), r(None, 10, 11)]
    assert not check_register(history).ok


def test_indeterminate_write_that_appears_later_passes():
    # The write's reply never came; a read long after shows that it took effect.
    history = [w("x", 0, 1), w("y", 2, None), r("x", 3, 4), r("y", 20, 21)]
    assert check_register(history).ok


def test_indeterminate_write_that_never_appears_passes():
    history = [w("x", 0, 1), w("y", 2, None), r("x", 30, 31)]
    assert check_register(history).ok


def test_indeterminate_write_cannot_take_effect_before_its_invocation():
    history = [w("x", 0, 1), r("y", 2, 3), w("y", 5, None)]
    result = check_register(history)
    assert not result.ok


def test_indeterminate_write_takes_effect_once():
    # Seen, then overwritten, then seen again: a write takes effect at one moment only.
    history = [w("x", 0, None), r("x", 1, 2), w("y", 3, 4), r("x", 5, 6)]
    assert not check_register(history).ok


def test_read_before_any_write_sees_absent():
    assert check_register([r(None, 0, 1), w("x", 0.5, 3), r("x", 4, 5)]).ok
    assert not check_register([w("x", 0, 1), r(None, 2, 3)]).ok


def test_written_values_must_be_unique():
    try:
        check_register([w("x", 0, 1), w("x", 2, 3)])
    except ValueError:
        return
    raise AssertionError("duplicate written values were accepted")


def test_check_history_reports_only_failing_keys():
    failures = check_history({
        "good": [w("a", 0, 1), r("a", 2, 3)],
        "bad": [w("b", 0, 1), w("c", 2, 3), r("b", 4, 5)],
    })
    assert list(failures) == ["bad"]


def test_many_concurrent_clients_stay_tractable():
    # Six clients, each with sequential ops overlapping the others'; a linearizable
    # history built by applying every write at its midpoint.
    import random
    rng = random.Random(7)
    events = []
    for client in range(6):
        t = rng.random()
        for n in range(60):
            start = t
            end = start + rng.uniform(0.01, 0.5)
            events.append((client, n, start, end))
            t = end + rng.uniform(0.0, 0.05)
    ops = []
    points = []
    for client, n, start, end in events:
        point = (start + end) / 2
        kind = "write" if rng.random() < 0.5 else "read"
        points.append((point, kind, client, n, start, end))
    points.sort()
    value = None
    for point, kind, client, n, start, end in points:
        if kind == "write":
            value = f"{client}-{n}"
            complete = None if rng.random() < 0.1 else end
            ops.append(Op("write", value, start, complete, client))
        else:
            ops.append(Op("read", value, start, end, client))
    result = check_register(ops)
    assert result.ok, result.reason


def test_long_history_is_checked_quickly():
    # Thousands of operations (a nemesis run on one key) in a few seconds at most:
    # the search only looks at the window of operations concurrent with the next one.
    import random
    import time
    rng = random.Random(11)
    ops = []
    value = None
    clock = 0.0
    for n in range(6000):
        clock += rng.uniform(0.0005, 0.002)
        client = n % 6
        start = clock - rng.uniform(0.0, 0.01)
        end = clock + rng.uniform(0.0, 0.01)
        if rng.random() < 0.5:
            value = f"v{n}"
            ops.append(Op("write", value, start, None if rng.random() < 0.01 else end, client))
        else:
            ops.append(Op("read", value, start, end, client))
    began = time.monotonic()
    result = check_register(ops)
    assert result.ok, result.reason
    assert time.monotonic() - began < 10.0
