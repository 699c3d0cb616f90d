"""The backend-owned priority queue of one replica.

Order: priority (0 violated, 1 at risk, 2 on time), then earliest deadline, then arrival.
Under a FIFO policy (the slack-blind baselines) arrival order alone.

Anti-starvation rule: strict priority would serve every violated request (priority 0) before
work that can still meet its SLA. Under overload that turns one late request into many: the
violated work takes the slots while on-time work waits until it too is violated. So violated
work gets one dispatch after every `live_per_violated` dispatches of live work (default 3: at
most a quarter of the slots while live work waits); it is never dropped, and it has the slots
to itself whenever no live work waits. Live work whose deadline passes while it waits is moved
to the violated class when it reaches the head.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

T = TypeVar("T")

PRIORITY_VIOLATED = 0
# `live_per_violated` that never lets late work run while live work waits (late work last).
LATE_WORK_LAST = 2**62


@dataclass(order=True)
class _Entry(Generic[T]):
    key: tuple
    item: T = field(compare=False)
    priority: int = field(compare=False)
    deadline: float = field(compare=False)
    work_s: float = field(compare=False)
    removed: bool = field(default=False, compare=False)


class ReplicaQueue(Generic[T]):
    def __init__(self, ordering: Literal["slack", "fifo"] = "slack", live_per_violated: int = 3):
        if live_per_violated < 1:
            raise ValueError("live_per_violated must be at least 1")
        self.ordering = ordering
        self.live_per_violated = live_per_violated
        self._violated: list[_Entry[T]] = []
        self._live: list[_Entry[T]] = []
        self._entries: dict[int, _Entry[T]] = {}  # id(item) -> entry, for O(1) removal
        self._seq = itertools.count()
        self._live_since_violated = 0
        self.count = [0, 0, 0]  # queued requests per priority
        self.work_s = [0.0, 0.0, 0.0]  # their predicted service seconds

    def __len__(self) -> int:
        return len(self._entries)

    def push(self, item: T, priority: int, deadline: float, work_s: float) -> None:
        if id(item) in self._entries:
            raise ValueError("item is already queued")
        seq = next(self._seq)
        key = (seq,) if self.ordering == "fifo" else (priority, deadline, seq)
        entry = _Entry(key, item, priority, deadline, work_s)
        self._entries[id(item)] = entry
        heapq.heappush(self._violated if priority == PRIORITY_VIOLATED else self._live, entry)
        self._account(entry, +1)

    def remove(self, item: T) -> bool:
        """Take an item out (its request was cancelled); False when it was not queued."""
        entry = self._entries.pop(id(item), None)
        if entry is None:
            return False
        entry.removed = True  # dropped lazily when it reaches a heap's head
        self._account(entry, -1)
        return True

    def pop(self, now: float) -> T | None:
        """The item to run next, or None when empty."""
        self._demote_expired(now)
        live, violated = self._head(self._live), self._head(self._violated)
        if live is None and violated is None:
            return None
        take_violated = violated is not None and (
            live is None
            or self.ordering == "fifo" and violated.key < live.key
            or self.ordering == "slack" and self._live_since_violated >= self.live_per_violated
        )
        if take_violated:
            entry = heapq.heappop(self._violated)
            self._live_since_violated = 0
        else:
            entry = heapq.heappop(self._live)
            self._live_since_violated += 1
        del self._entries[id(entry.item)]
        self._account(entry, -1)
        return entry.item

    def live_work_ahead(self, deadline: float) -> list[float]:
        """Predicted work (seconds) of the live entries a new on-time entry with `deadline`
        would queue behind, in the order they will run (at-risk ones first, then by
        deadline); late work is left out, as if it ran last."""
        ahead = sorted(e.key + (e.work_s,) for e in self._entries.values()
                       if e.priority != PRIORITY_VIOLATED
                       and (self.ordering == "fifo" or e.priority < 2 or e.deadline <= deadline))
        return [k[-1] for k in ahead]

    def items(self) -> list[T]:
        return [e.item for e in self._entries.values()]

    def _head(self, heap: list[_Entry[T]]) -> _Entry[T] | None:
        while heap and heap[0].removed:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def _demote_expired(self, now: float) -> None:
        if self.ordering == "fifo":
            return
        while (head := self._head(self._live)) is not None and head.deadline <= now:
            heapq.heappop(self._live)
            self._account(head, -1)
            head.priority = PRIORITY_VIOLATED
            head.key = (PRIORITY_VIOLATED,) + head.key[1:]
            heapq.heappush(self._violated, head)
            self._account(head, +1)

    def _account(self, entry: _Entry[T], sign: int) -> None:
        self.count[entry.priority] += sign
        self.work_s[entry.priority] += sign * entry.work_s
        if self.count[entry.priority] == 0:
            self.work_s[entry.priority] = 0.0  # no float drift on an empty class
