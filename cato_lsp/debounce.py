"""Adaptive debounce for automatically triggered completions (pure; latencies passed in).

Why adapt: a completion request that a keystroke supersedes is wasted backend work. When
the backend answers in 50 ms, waiting 300 ms only delays the ghost text; when it needs a
second, firing at every keystroke floods the queue with requests that will be cancelled.
So the wait is a fraction of the recently measured completion latency (an EWMA of the
LSP-side request time, cache hits excluded), clamped to [min_ms, max_ms].
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AdaptiveDebounce:
    min_ms: float = 30.0
    max_ms: float = 300.0
    factor: float = 0.5  # wait = factor x typical latency
    alpha: float = 0.2  # EWMA weight of the newest sample
    enabled: bool = True
    latency_ms: float | None = None  # the EWMA; None until the first sample

    def observe(self, latency_ms: float) -> None:
        """Record one completion's latency (not a cache hit, not a failure)."""
        if not latency_ms >= 0:  # also rejects NaN
            return
        if self.latency_ms is None:
            self.latency_ms = float(latency_ms)
        else:
            self.latency_ms += self.alpha * (latency_ms - self.latency_ms)

    def delay_ms(self, explicit: bool = False) -> float:
        """How long to wait before sending. An explicit request (the user asked) never waits."""
        if explicit or not self.enabled:
            return 0.0
        lo, hi = min(self.min_ms, self.max_ms), self.max_ms
        if self.latency_ms is None:
            return lo
        return min(max(self.factor * self.latency_ms, lo), hi)
