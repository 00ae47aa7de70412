"""A linearizability checker for histories of one register (one key).

An operation is a write of a value or a read that returned a value (None: the key was
absent), with the time it was invoked and the time its reply arrived. A write whose reply
never came, or came as an error that does not say "not applied", is indeterminate
(complete=None): it may take effect at any moment after its invocation, or never. A read
without a reply tells nothing and is left out by the caller.

The search is Wing & Gong's, with Lowe's memoisation (as in Knossos and Porcupine): build
the linearization one operation at a time; an operation may come next when no operation
still outside the linearization completed before it was invoked; a state (set of
linearized operations, register value) already explored is not explored again. Two cuts
keep it small:
  - a read that may come next and returns the current value is taken at once: it changes
    no state and only removes a constraint, so no other order can do better;
  - an indeterminate write whose value no read returned is dropped: taking it effect can
    only make the register hold a value nobody saw, which no later read can accept.
The search succeeds when every determinate operation is linearized (indeterminate writes
left out never happened). A budget of explored states bounds the work; running out of it
is reported as such, never as a pass.

Written values must be unique per key (the caller makes them so); the initial value is
None.
"""
from dataclasses import dataclass, field
import math

DEFAULT_MAX_STATES = 2_000_000


@dataclass
class Op:
    kind: str                 # "write" or "read"
    value: object             # the value written, or the value read (None: absent)
    invoke: float             # time.monotonic() before sending
    complete: float = None    # time.monotonic() after the reply; None: indeterminate
    client: object = None     # who did it (for reports)
    note: str = ""            # e.g. the error reply of an indeterminate write

    def describe(self, t0=0.0):
        end = "      ?" if self.complete is None else f"{self.complete - t0:7.3f}"
        what = f"write {self.value!r}" if self.kind == "write" else f"read -> {self.value!r}"
        extra = f"  ({self.note})" if self.note else ""
        return f"[{self.invoke - t0:7.3f} .. {end}] client {self.client}: {what}{extra}"


@dataclass
class Result:
    ok: bool
    reason: str = ""
    states: int = 0
    exhausted: bool = False   # the budget ran out (neither proven nor refuted)
    stuck: list = field(default_factory=list)  # ops that could not be placed (on failure)


def check_register(ops, initial=None, max_states=DEFAULT_MAX_STATES, t0=0.0):
    """Checks one key's history; returns a Result. Times in its reason are relative to t0."""
    writes = {}
    for op in ops:
        if op.kind == "write":
            if op.value in writes:
                raise ValueError(f"value {op.value!r} written twice; written values must be unique")
            writes[op.value] = op
    read_values = {op.value for op in ops if op.kind == "read"}

    # Cheap refutations with a clear reason first.
    for op in ops:
        if op.kind == "read" and op.value != initial and op.value not in writes:
            return Result(False, f"read of a value never written: {op.describe(t0)}", stuck=[op])
        if op.kind == "read" and op.value in writes and op.complete is not None \
                and op.complete < writes[op.value].invoke:
            return Result(False, f"read returned {op.value!r} before its write was invoked: "
                                 f"{op.describe(t0)}", stuck=[op, writes[op.value]])

    history = [op for op in ops
               if not (op.kind == "write" and op.complete is None and op.value not in read_values)]
    history.sort(key=lambda op: op.invoke)
    n = len(history)
    invoke = [op.invoke for op in history]
    complete = [math.inf if op.complete is None else op.complete for op in history]
    # Every operation left must be placed: determinate ones by definition, indeterminate
    # writes because a read returned their value.

    def frontier(low, placed):
        """The earliest completion among the operations not placed. Operations are sorted
        by invocation and complete after they are invoked, so the scan stops early."""
        earliest = math.inf
        for i in range(low, n):
            if invoke[i] > earliest:
                break
            if i not in placed and complete[i] < earliest:
                earliest = complete[i]
        return earliest

    def place(low, placed, i):
        """The state with operation i placed too: everything below low is placed, and
        placed holds the placed operations at or above low."""
        if i == low:
            low += 1
            while low in placed:
                placed = placed - {low}
                low += 1
            return low, placed
        return low, placed | {i}

    def agreeing_read(low, placed, value):
        """A read that may come next and returns value, or None."""
        earliest = frontier(low, placed)
        for i in range(low, n):
            if invoke[i] > earliest:
                return None
            if i not in placed and history[i].kind == "read" and history[i].value == value:
                return i
        return None

    seen = set()
    best = (0, 0, frozenset(), initial)  # (count placed, low, placed, value): deepest state
    # Depth-first search with an explicit stack of states (low, placed, value).
    stack = [(0, frozenset(), initial)]
    while stack:
        low, placed, value = stack.pop()
        # Take every read that may come next and agrees with the value (see the top comment).
        while (i := agreeing_read(low, placed, value)) is not None:
            low, placed = place(low, placed, i)
        if low == n:
            return Result(True, states=len(seen))
        key = (low, placed, value)
        if key in seen:
            continue
        seen.add(key)
        count = low + len(placed)
        if count > best[0]:
            best = (count, low, placed, value)
        if len(seen) > max_states:
            return Result(False, f"gave up after {max_states} states (history too concurrent)",
                          states=len(seen), exhausted=True)
        earliest = frontier(low, placed)
        for i in range(low, n):
            if invoke[i] > earliest:
                break
            if i in placed or history[i].kind != "write":
                continue
            next_low, next_placed = place(low, placed, i)
            stack.append((next_low, next_placed, history[i].value))

    count, low, placed, value = best
    earliest = frontier(low, placed)
    open_ops = [i for i in range(low, n) if i not in placed]
    stuck = [history[i] for i in open_ops if invoke[i] <= earliest]
    blocking = [history[i] for i in open_ops if complete[i] == earliest]
    lines = [f"not linearizable: at best {count} of {n} operations placed, the register "
             f"holding {value!r}; none of the operations that may come next fits:"]
    lines += ["  " + op.describe(t0) for op in stuck]
    if blocking:
        lines.append("the earliest-completing operation not placed:")
        lines += ["  " + op.describe(t0) for op in blocking]
    held = writes.get(value)
    if held:
        lines.append(f"the write of {value!r}: {held.describe(t0)}")
    for op in stuck:
        if op.kind == "read" and op.value in writes:
            lines.append(f"the write of {op.value!r}: {writes[op.value].describe(t0)}")
    return Result(False, "\n".join(lines), states=len(seen), stuck=stuck)


def check_history(ops_by_key, initial=None, max_states=DEFAULT_MAX_STATES):
    """Checks every key; returns {key: Result} for the keys that fail (empty: all pass)."""
    failures = {}
    for key, ops in ops_by_key.items():
        result = check_register(ops, initial=initial, max_states=max_states)
        if not result.ok:
            failures[key] = result
    return failures
