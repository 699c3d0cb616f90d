"""The backend's health as the editor sees it (pure: events and `now` are passed in).

- `unreachable`: the last attempt to reach the backend failed (connection refused, connect
  timeout). The server then stops sending tasks (no request per keystroke into a dead
  socket), probes `/healthz` periodically, and comes back by itself.
- `degraded`: reachable, but at least `miss_threshold` of the last `window` SLA results
  (younger than `max_age_s`) missed their SLA.
- `ok`: otherwise.

Entering and leaving `unreachable` each produce ONE announcement (a `window/showMessage`),
never one per keystroke.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

State = Literal["ok", "degraded", "unreachable"]


@dataclass(frozen=True)
class Change:
    before: State
    after: State
    announce: str | None  # for window/showMessage; only on entering/leaving unreachable


class Health:
    def __init__(self, backend: str, window: int = 10, miss_threshold: int = 3,
                 max_age_s: float = 120.0) -> None:
        self.backend = backend
        self.window = window
        self.miss_threshold = miss_threshold
        self.max_age_s = max_age_s
        self._results: deque[tuple[float, bool]] = deque(maxlen=window)
        self._reachable = True
        self.reason: str | None = None  # why unreachable

    @property
    def unreachable(self) -> bool:
        return not self._reachable

    def misses(self, now: float) -> int:
        return sum(1 for t, met in self._results if not met and now - t <= self.max_age_s)

    def state(self, now: float) -> State:
        if not self._reachable:
            return "unreachable"
        return "degraded" if self.misses(now) >= self.miss_threshold else "ok"

    def _change(self, before: State, now: float, announce: str | None = None) -> Change | None:
        after = self.state(now)
        return Change(before, after, announce) if after != before else None

    def record(self, met: bool, now: float) -> Change | None:
        """One SLA result of a task the backend served (never a cache hit). A served task
        also proves the backend reachable."""
        before = self.state(now)
        self._results.append((now, bool(met)))
        announce = self._back_message() if not self._reachable else None
        self._reachable = True
        self.reason = None
        return self._change(before, now, announce)

    def mark_unreachable(self, reason: str, now: float) -> Change | None:
        before = self.state(now)
        self.reason = reason
        if not self._reachable:
            return None
        self._reachable = False
        return self._change(before, now, f"CATO: backend {self.backend} is unreachable "
                            f"({reason}); AI completions are paused and the server retries "
                            "by itself.")

    def mark_reachable(self, now: float) -> Change | None:
        before = self.state(now)
        if self._reachable:
            return None
        self._reachable = True
        self.reason = None
        return self._change(before, now, self._back_message())

    def _back_message(self) -> str:
        return f"CATO: backend {self.backend} is reachable again."

    def refresh(self, now: float, last: State) -> Change | None:
        """A change due only to time passing (old misses forgotten) since state `last`."""
        return self._change(last, now)
