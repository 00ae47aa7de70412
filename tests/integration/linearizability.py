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


def check_register(ops, initial=None, max_states=DEFAULT_MAX_STATES):
    """Checks one key's history; returns a Result."""
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
            return Result(False, f"read of a value never written: {op.describe()}", stuck=[op])
        if op.kind == "read" and op.value in writes and op.complete is not None \
                and op.complete < writes[op.value].invoke:
            return Result(False, f"read returned {op.value!r} before its write was invoked: "
                                 f"{op.describe()}", stuck=[op, writes[op.value]])

    history = [op for op in ops
               if not (op.kind == "write" and op.complete is None and op.value not in read_values)]
    history.sort(key=lambda op: op.invoke)
    n = len(history)
    invoke = [op.invoke for op in history]
    complete = [math.inf if op.complete is None else op.complete for op in history]
    required = 0
    for i, op in enumerate(history):
        if op.complete is not None:
            required |= 1 << i

    seen = set()
    best = (0, 0, initial)  # (count placed, mask, value) of the deepest state, for reports
    # Depth-first search with an explicit stack of (mask, value).
    stack = [(0, initial)]
    while stack:
        mask, value = stack.pop()
        # Take every read that may come next and agrees with the value (see the top comment).
        while True:
            frontier = _min_complete(mask, complete, n)
            taken = False
            for i in range(n):
                if invoke[i] > frontier:
                    break
                if not mask >> i & 1 and history[i].kind == "read" and history[i].value == value:
                    mask |= 1 << i
                    taken = True
            if not taken:
                break
        if mask & required == required:
            return Result(True, states=len(seen))
        key = (mask, value)
        if key in seen:
            continue
        seen.add(key)
        placed = bin(mask).count("1")
        if placed > best[0]:
            best = (placed, mask, value)
        if len(seen) > max_states:
            return Result(False, f"gave up after {max_states} states (history too concurrent)",
                          states=len(seen), exhausted=True)
        frontier = _min_complete(mask, complete, n)
        for i in range(n):
            if invoke[i] > frontier:
                break
            if mask >> i & 1 or history[i].kind != "write":
                continue
            stack.append((mask | 1 << i, history[i].value))

    _, mask, value = best
    frontier = _min_complete(mask, complete, n)
    stuck = [history[i] for i in range(n) if not mask >> i & 1 and invoke[i] <= frontier]
    blocking = [history[i] for i in range(n) if not mask >> i & 1 and complete[i] == frontier]
    lines = [f"not linearizable: at best {best[0]} of {n} operations placed, the register "
             f"holding {value!r}; none of the operations that may come next fits:"]
    lines += ["  " + op.describe() for op in stuck]
    if blocking:
        lines.append("the earliest-completing operation not placed:")
        lines += ["  " + op.describe() for op in blocking]
    return Result(False, "\n".join(lines), states=len(seen), stuck=stuck)


def _min_complete(mask, complete, n):
    """The earliest completion among operations not in mask (inf when none)."""
    frontier = math.inf
    for i in range(n):
        if not mask >> i & 1 and complete[i] < frontier:
            frontier = complete[i]
    return frontier


def check_history(ops_by_key, initial=None, max_states=DEFAULT_MAX_STATES):
    """Checks every key; returns {key: Result} for the keys that fail (empty: all pass)."""
    failures = {}
    for key, ops in ops_by_key.items():
        result = check_register(ops, initial=initial, max_states=max_states)
        if not result.ok:
            failures[key] = result
    return failures
