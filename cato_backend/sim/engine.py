"""A simulated engine replica: continuous batching that follows an `EngineProfile`, advanced
only at events (no per-token work).

Timing model (the emulated engine's, `cato_backend/emulator.py`, in fluid form):
- a request first prefills: `overhead_ms + prefill_ms_per_token * prompt_tokens`; its first
  token comes when its prefill ends. Prefills run one at a time, in arrival order, and the
  decoding batch makes no progress meanwhile (in the emulator a step that prefills lasts the
  prefill plus one decode step: the decoders lose the prefill time, as here);
- then every decoding sequence gets one token per decode step, and a step lasts
  `profile.decode_step_ms(b)` for the `b` sequences decoding (interpolated, extrapolated past
  the table), so a request of `n` output tokens needs `n - 1` steps after its first token.

Between two events the batch is constant, so progress is one number: `v`, the decode steps
every decoding sequence has made since the replica started. A sequence joining at `v0` with
`n - 1` steps to go finishes when `v` reaches `v0 + n - 1`; the next finish is the smallest
such target (a heap), at `now + (target - v) * step(b)`. An event is O(log batch) whatever the
number of tokens. A single request alone on a replica gets exactly TTFT = overhead + prefill
and E2E = TTFT + (n - 1) * step(1).

The engine queues nothing beyond what the backend grants it (the pool never grants more than
`max_in_flight`), so every granted request is in prefill or decoding.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..profiles import EngineProfile

_EPS_STEPS = 1e-7  # decode steps: float slack when a finish target is reached
_STEP_TABLES: dict[tuple[int, int], tuple[EngineProfile, list[float]]] = {}


@dataclass(eq=False)
class EngineRequest:
    """One LLM call as the simulated engine sees it; `tag` is the caller's (a pool Job)."""

    tag: Any
    prompt_tokens: int
    output_tokens: int  # >= 1
    admitted_at: float = 0.0
    first_token_at: float | None = None
    finished_at: float | None = None
    batch_at_admit: int = 0  # requests on the engine when it arrived, itself included


class EngineOutcome:
    """What happened at one engine event, for the driver to act on (in this order)."""

    __slots__ = ("finished", "first_tokens")

    def __init__(self) -> None:
        self.first_tokens: list[EngineRequest] = []
        self.finished: list[EngineRequest] = []


class SimEngine:
    """One replica's engine. The driver calls `admit` when the pool grants a request and
    `advance(now)` when `next_event_at` comes; both return what happened."""

    __slots__ = (
        "_decoding",
        "_prefill",
        "_prefill_end",
        "_seq",
        "_steps",
        "busy_s",
        "completed",
        "dirty",
        "overhead_s",
        "prefill_s_per_token",
        "profile",
        "t",
        "tokens",
        "v",
        "version",
    )

    def __init__(self, profile: EngineProfile, max_batch: int = 256) -> None:
        self.profile = profile
        self.overhead_s = profile.overhead_ms / 1000.0
        self.prefill_s_per_token = profile.prefill_ms_per_token / 1000.0
        key = (id(profile), max_batch)
        if key not in _STEP_TABLES or _STEP_TABLES[key][0] is not profile:
            _STEP_TABLES[key] = (profile, [profile.decode_step_ms(max(b, 1)) / 1000.0
                                           for b in range(max_batch + 1)])
        self._steps = _STEP_TABLES[key][1]  # step seconds by batch, shared by the replicas
        self.t = 0.0  # the time the state below describes
        self.v = 0.0  # decode steps made by every decoding sequence so far
        self._decoding: list[tuple[float, int, EngineRequest]] = []  # (target v, seq, req)
        self._prefill: deque[EngineRequest] = deque()  # head is prefilling while _prefill_end
        self._prefill_end: float | None = None
        self._seq = 0
        self.version = 0  # bumped whenever next_event_at may have changed
        self.busy_s = 0.0
        self.tokens = 0
        self.completed = 0
        self.dirty = False  # the driver's: its next event must be scheduled again

    # -- queries ---------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self._decoding) + len(self._prefill)

    def step_s(self, batch: int) -> float:
        if batch < len(self._steps):
            return self._steps[batch]
        return self.profile.decode_step_ms(batch) / 1000.0

    def prefill_s(self, prompt_tokens: int) -> float:
        return self.overhead_s + self.prefill_s_per_token * prompt_tokens

    def next_event_at(self) -> float | None:
        if self._prefill_end is not None:
            return self._prefill_end
        if self._decoding:
            b = len(self._decoding)
            return self.t + max(0.0, self._decoding[0][0] - self.v) * self.step_s(b)
        return None

    # -- transitions -----------------------------------------------------------------------

    def admit(self, tag: Any, prompt_tokens: int, output_tokens: int,
              now: float) -> tuple[EngineRequest, EngineOutcome]:
        out = EngineOutcome()
        self._progress(now, out)
        self._settle(now, out)
        req = EngineRequest(tag, max(0, prompt_tokens), max(1, output_tokens), admitted_at=now,
                            batch_at_admit=self.running + 1)
        self._prefill.append(req)
        if self._prefill_end is None:
            self._start_prefill(now)
        self._settle(now, out)
        self.version += 1
        return req, out

    def advance(self, now: float) -> EngineOutcome:
        """Bring the state to `now`, handling every prefill end and finish up to it."""
        out = EngineOutcome()
        self._progress(now, out)
        self._settle(now, out)
        self.version += 1
        return out

    def _progress(self, now: float, out: EngineOutcome) -> None:
        """Move the clock to `now`, handling events before it in order."""
        while True:
            nxt = self.next_event_at()
            if nxt is None or nxt >= now:
                break
            # An event strictly before `now` that the driver has not called us for (it calls
            # at every next_event_at, so this is float noise or an admit at a later time).
            self._move(nxt)
            self._settle(nxt, out)
        self._move(now)

    def _move(self, now: float) -> None:
        dt = now - self.t
        if dt <= 0:
            return
        if self._prefill_end is None and self._decoding:
            self.v += dt / self.step_s(len(self._decoding))
        if self._prefill or self._decoding:
            self.busy_s += dt
        self.t = now

    def _settle(self, now: float, out: EngineOutcome) -> None:
        """Handle the prefill end and the finishes that are due at `now` (state is at now)."""
        while True:
            if self._prefill_end is not None:
                if self._prefill_end > now:
                    return
                req = self._prefill.popleft()
                req.first_token_at = self._prefill_end
                self.tokens += 1
                out.first_tokens.append(req)
                if req.output_tokens <= 1:
                    self._finish(req, self._prefill_end, out)
                else:
                    self._seq += 1
                    heapq.heappush(self._decoding, (self.v + req.output_tokens - 1, self._seq, req))
                self._prefill_end = None
                if self._prefill:
                    self._start_prefill(req.first_token_at)
                continue
            if self._decoding and self._decoding[0][0] <= self.v + _EPS_STEPS:
                _target, _, req = heapq.heappop(self._decoding)
                self.tokens += req.output_tokens - 1
                self._finish(req, now, out)
                continue
            if self._prefill:  # nothing prefilling but requests wait: start the next
                self._start_prefill(now)
                continue
            return

    def _start_prefill(self, now: float) -> None:
        self._prefill_end = now + self.prefill_s(self._prefill[0].prompt_tokens)

    def _finish(self, req: EngineRequest, now: float, out: EngineOutcome) -> None:
        req.finished_at = now
        self.completed += 1
        out.finished.append(req)
