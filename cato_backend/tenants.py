"""Per-tenant admission: rate limit, in-flight cap, and concurrent streams per client.

Fair sharing, the simple way: a tenant may have at most its in-flight cap of tasks admitted
(queued or running) at once, by default half of the pools' configured capacity (the sum of
max_in_flight x max replicas). So one tenant flooding the backend holds at most that share
of the replica slots and never fills the backend's queues: another tenant's task finds a
free slot (or a short queue ordered by its own deadline) instead of waiting behind the
flood. The flood gets 429 with Retry-After, not an ever-longer queue. Caps apply only with
auth on (named tenants); with auth off everything is one tenant and a cap would only idle
the pool.

A token bucket per tenant (refill `rate_per_s`, room for `burst`) limits how fast it may
send task requests. And a cap on concurrent task streams per remote address bounds what one
client can hold open, with or without auth.

Time is passed in (`now`); nothing here sleeps or does I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from .auth import ANONYMOUS, TokenStore
from .config import Config, TenantLimits


@dataclass
class Rejection:
    """Why a request was refused: HTTP 429 with `Retry-After: retry_after_s`."""

    reason: str  # "rate_limited" | "tenant_in_flight" | "client_streams" (a metrics label)
    message: str
    retry_after_s: int


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take one token; 0.0 when there was one, else the seconds until there will be."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s


@dataclass
class Ticket:
    """An admitted task stream; `release` it exactly once when the stream ends."""

    admission: Admission
    tenant: str
    client: str | None
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.admission._release(self)


@dataclass
class Admission:
    config: Config
    store: TokenStore | None  # None: auth off
    in_flight: Counter[str] = field(default_factory=Counter)  # tenant -> admitted tasks
    streams: Counter[str] = field(default_factory=Counter)  # remote address -> open streams
    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def capacity(self) -> int:
        """Replica slots the pools may have: max_in_flight x (max) replicas, summed."""
        total = 0
        for mc in self.config.models.values():
            if mc.engine == "static":
                n = len(mc.urls)
            else:
                n = mc.autoscale.max_replicas if mc.autoscale is not None else mc.replicas
            total += n * mc.max_in_flight
        return total

    def limits(self, tenant: str) -> TenantLimits | None:
        """The tenant's effective limits (its own over the config's defaults); None when
        no limit applies (auth off)."""
        if self.store is None or tenant == ANONYMOUS:
            return None
        own = self.store.limits_of(tenant)
        merged = self.config.tenants.model_dump()
        if own is not None:
            merged.update(own.model_dump(exclude_none=True))
        return TenantLimits.model_validate(merged)

    def in_flight_cap(self, tenant: str) -> int | None:
        lim = self.limits(tenant)
        if lim is None:
            return None
        if lim.max_in_flight is not None:
            return lim.max_in_flight
        if lim.in_flight_share is None:
            return None
        return max(1, math.floor(lim.in_flight_share * self.capacity()))

    def check_rate(self, tenant: str, now: float) -> Rejection | None:
        """One task request of `tenant` arrives: within its rate?"""
        lim = self.limits(tenant)
        if lim is None or lim.rate_per_s is None:
            self.buckets.pop(tenant, None)
            return None
        burst = float(lim.burst or max(1, math.ceil(lim.rate_per_s)))
        bucket = self.buckets.get(tenant)
        if bucket is None or (bucket.rate_per_s, bucket.burst) != (lim.rate_per_s, burst):
            bucket = self.buckets[tenant] = TokenBucket(lim.rate_per_s, burst, burst, now)
        wait = bucket.take(now)
        if wait <= 0:
            return None
        return Rejection("rate_limited",
                         f"rate limit of tenant {tenant!r} exceeded ({lim.rate_per_s:g} tasks/s, "
                         f"burst {burst:g}); retry after {math.ceil(wait)} s",
                         max(1, math.ceil(wait)))

    def acquire(self, tenant: str, client: str | None) -> Ticket | Rejection:
        """Admit one task stream, or say why not."""
        limit = self.config.limits.max_streams_per_client
        if client is not None and limit is not None and self.streams[client] >= limit:
            return Rejection("client_streams",
                             f"too many concurrent task streams from this client (limit "
                             f"{limit}); retry when one has finished", 1)
        cap = self.in_flight_cap(tenant)
        if cap is not None and self.in_flight[tenant] >= cap:
            return Rejection("tenant_in_flight",
                             f"tenant {tenant!r} already has {self.in_flight[tenant]} tasks in "
                             f"flight (limit {cap}); retry when one has finished", 1)
        self.in_flight[tenant] += 1
        if client is not None:
            self.streams[client] += 1
        return Ticket(self, tenant, client)

    def _release(self, ticket: Ticket) -> None:
        self.in_flight[ticket.tenant] -= 1
        if self.in_flight[ticket.tenant] <= 0:
            del self.in_flight[ticket.tenant]
        if ticket.client is not None:
            self.streams[ticket.client] -= 1
            if self.streams[ticket.client] <= 0:
                del self.streams[ticket.client]  # bounded by the open connections
