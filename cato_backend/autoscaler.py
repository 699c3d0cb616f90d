"""Autoscaling policies: paper Algorithm 2 (slack violations) and Ray Serve's default baseline.

Like Ray Serve's autoscaling policies, a policy is a pure function of a context: the server, the
discrete-event simulator and the tests build a frozen `ScalingContext` (the time, the pool's
replicas, the recent SLA events and load samples, the free accelerators) and call

    decision, state = autoscaler.decide(ctx, state)

`decision` is plain data with a reason; `state` is handed back and passed in next time, so
replaying a trace of contexts replays the decisions exactly. Nothing here reads the clock,
sleeps, logs or does I/O, and `decide` may be called at any rate (every second, at every
simulator event): the CATO policy closes its own time windows and Ray's delays are measured
in the context's time.

Layers:
- a policy (`CatoScalingPolicy`, `RayQueueLengthPolicy`) proposes a replica count and the
  replicas it would remove;
- `Autoscaler` applies what both share: min/max replicas, the accelerators free, scaling up
  from zero on the first waiting request, the cooldown after any change, and which replicas
  to remove when the policy named none (Ray Serve's `_apply_autoscaling_config` and
  `apply_bounds` play this part there).

Counting: "active" replicas are those starting or ready; draining and stopped ones are on
their way out and count for nothing (their accelerators are not free until they stop, which
the server reflects in `free_slots`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .pool import ReplicaState

_EPS = 1e-9  # time comparisons on hand-ticked and simulated clocks (10 * 0.1 != 1.0)


# ---------------------------------------------------------------------------------------------
# Inputs: what the server (or the simulator) knows at one instant
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaInfo:
    """One replica of the pool, as the autoscaler may see it."""

    id: str
    state: ReplicaState  # starting / ready / draining (stopped ones may be left out)
    started_at: float  # when its start was requested: a cold start is measured from here
    ready_at: float | None = None  # when it became ready; None while starting
    ongoing: int = 0  # requests running on it plus queued for it; cancelled work excluded
    idle_since: float | None = None  # ready with nothing ongoing since then; None when busy
    slots: int = 0  # requests it runs at once (max_in_flight); 0: not known

    @property
    def active(self) -> bool:
        return self.state in (ReplicaState.STARTING, ReplicaState.READY)

    @property
    def starting(self) -> bool:
        return self.state == ReplicaState.STARTING

    @property
    def ready(self) -> bool:
        return self.state == ReplicaState.READY

    @property
    def idle(self) -> bool:
        return self.ready and self.ongoing == 0

    def idle_for(self, now: float) -> float:
        """Seconds it has been idle (0 when busy or not ready). Without `idle_since` an idle
        replica counts as idle since it became ready."""
        if not self.idle:
            return 0.0
        since = self.idle_since if self.idle_since is not None else self.ready_at
        return max(0.0, now - (since if since is not None else self.started_at))


class Outcome(StrEnum):
    MET = "met"  # finished within its slack
    VIOLATED = "violated"  # its slack ran out: finished late, or the deadline passed unfinished
    CANCELLED = "cancelled"  # the editor cancelled it: neither a violation nor load


@dataclass(frozen=True)
class SlackEvent:
    """What became known about one task / LLM node at time `t`. The server emits VIOLATED once
    per node, at the first moment its slack is known to be used up (the deadline passing while
    it waits or runs, or a late finish), and CANCELLED when it is cancelled."""

    t: float
    node_id: str
    outcome: Outcome


@dataclass(frozen=True)
class LoadSample:
    """The pool's ongoing requests at time `t`: running on replicas plus queued in the
    backend (per replica and waiting for any replica), cancelled work excluded. Ray Serve
    counts the same (running at replicas + queued at handles)."""

    t: float
    ongoing: float


@dataclass(frozen=True)
class ScalingContext:
    """Everything a policy may know at `now`. Events and samples may reach further back than a
    policy needs (keep at least `Autoscaler.retention_s`); each policy picks its own window
    and ignores anything later than `now`."""

    now: float
    replicas: tuple[ReplicaInfo, ...] = ()
    events: tuple[SlackEvent, ...] = ()
    load: tuple[LoadSample, ...] = ()  # sorted by time; for Ray's look-back average
    free_slots: int | None = None  # replicas that can still be placed; None: no limit
    cold_start_s: float | None = None  # measured start-up time; None: the configured default
    waiting: int = 0  # requests waiting with no replica to run on (cancelled excluded)

    def __post_init__(self) -> None:  # lists are accepted, tuples are kept (frozen, hashable)
        for name in ("replicas", "events", "load"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.free_slots is not None and self.free_slots < 0:
            raise ValueError("free_slots cannot be negative")

    @property
    def active(self) -> tuple[ReplicaInfo, ...]:
        return tuple(r for r in self.replicas if r.active)

    @property
    def n_active(self) -> int:
        return sum(1 for r in self.replicas if r.active)

    @property
    def n_ready(self) -> int:
        return sum(1 for r in self.replicas if r.ready)

    @property
    def n_starting(self) -> int:
        return sum(1 for r in self.replicas if r.starting)

    @property
    def n_idle(self) -> int:
        return sum(1 for r in self.replicas if r.idle)


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleDecision:
    """What to do now. `target` counts active (starting + ready) replicas; with `delta > 0` the
    server starts `delta` replicas, with `delta < 0` it drains the replicas in `remove`."""

    now: float
    policy: str
    current: int
    target: int
    remove: tuple[str, ...]  # len == -delta when scaling down, else empty
    reason: str
    signal: float = 0.0  # the policy's input: violations in the window / look-back ongoing

    @property
    def delta(self) -> int:
        return self.target - self.current

    @property
    def action(self) -> Literal["up", "down", "hold"]:
        return "up" if self.delta > 0 else "down" if self.delta < 0 else "hold"


@dataclass(frozen=True)
class Limits:
    """The bounds a policy proposes within; `hi` also counts the accelerators free."""

    min_replicas: int
    max_replicas: int
    hi: int
    hi_reason: str


@dataclass(frozen=True)
class Proposal:
    target: int
    reason: str
    remove: tuple[str, ...] = ()  # preferred replicas to remove, best first
    signal: float = 0.0


S = TypeVar("S")


class ScalingPolicy(Protocol[S]):
    """What `Autoscaler` runs: a pure proposal from the context and the policy's own state."""

    @property
    def name(self) -> str: ...

    @property
    def cooldown_s(self) -> float: ...  # no change for this long after any change

    @property
    def retention_s(self) -> float: ...  # how far back events / samples must reach

    def initial_state(self) -> S: ...

    def propose(self, ctx: ScalingContext, state: S, limits: Limits) -> tuple[Proposal, S]: ...


# ---------------------------------------------------------------------------------------------
# Configuration (pydantic: it is read from the config file)
# ---------------------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CatoScalingConfig(_Frozen):
    """Paper Algorithm 2. The paper's hyper-parameters are not available to us (only its
    abstract and a summary are), so every default below is our assumption, with its reason;
    tune them with the simulator."""

    window_s: float = Field(default=10.0, gt=0, description=(
        "length of a violation-counting window. At the paper's 0.67-3.33 requests/s a window "
        "holds 7-33 requests, enough to count; it is short next to a 20-70 s cold start, so "
        "scaling is decided in a fraction of the time a new replica takes to arrive"))
    violation_threshold: int = Field(default=2, ge=0, description=(
        "a window counts as exceeded only when its violations are MORE than this: one or two "
        "late nodes are noise (a long prompt, a GC pause), not missing capacity"))
    max_exceeded_times: int = Field(default=2, ge=1, description=(
        "consecutive exceeded windows before scaling up (the paper's `max_exceeded_times`): "
        "2 x 10 s = 20 s of evidence, faster than Ray's 30 s upscale delay yet not one burst"))
    violations_per_replica: float = Field(default=3.0, gt=0, description=(
        "one new replica per this many violations in the window: ceil(violations / this). "
        "3 with a 10 s window: a replica absorbs roughly the few extra requests per window "
        "that one replica more can serve on time; a guess, to be fitted with the simulator"))
    idle_windows_before_scale_down: int = Field(default=6, ge=1, description=(
        "a ready replica is removed only after being idle this many whole windows (60 s), "
        "longer than a cold start, so a replica is not stopped and restarted within the time "
        "it takes to start one"))
    max_scale_down_step: int = Field(default=1, ge=1, description=(
        "replicas removed per decision: one at a time (with the cooldown between), so the "
        "violation count can object before the next removal; removing is cheap to undo only "
        "at the price of a cold start"))
    cooldown_s: float = Field(default=30.0, ge=0, description=(
        "after any scaling action, no other (except restoring min_replicas or scaling up from "
        "zero): three windows, enough for the pool's response to show in the counts and to "
        "stop up-down flapping"))
    default_cold_start_s: float = Field(default=60.0, gt=0, description=(
        "cold-start estimate until the server measures one (`ScalingContext.cold_start_s`): "
        "vLLM-CPU starts in 50-70 s on our machines (20-25 s with --enforce-eager)"))
    starting_overdue_factor: float = Field(default=2.0, ge=1, description=(
        "a replica starting for longer than this many cold starts is presumed stuck and no "
        "longer counts as capacity on the way (the provisioner's start timeout removes it)"))
    consolidate_below: float | None = Field(default=None, gt=0, le=1, description=(
        "ours, beyond the paper (None: off, Algorithm 2 as published). Algorithm 2 removes "
        "only replicas idle for whole windows, which never happens while a router spreads a "
        "steady load over every replica. With this set, after idle_windows_before_scale_down "
        "windows without a single violation, one ready replica is removed when the peak of "
        "the pool's ongoing requests over those windows would fill at most this share of the "
        "slots of one replica fewer (0.5: half the slots stay free for bursts)"))
    settle_windows: int = Field(default=1, ge=0, le=100, description=(
        "a replica that became ready within this many windows still counts as capacity on "
        "the way: the backlog that built up during its cold start is still draining and its "
        "late nodes would otherwise trigger a second scale-up. 0 turns this off"))


class RayScalingConfig(_Frozen):
    """Ray Serve's default autoscaling policy (`replica_queue_length_autoscaling_policy`),
    defaults as in Ray 2.60.0 (`ray/serve/config.py` AutoscalingConfig,
    `ray/serve/_private/constants.py` DEFAULT_TARGET_ONGOING_REQUESTS)."""

    target_ongoing_requests: float = Field(default=2.0, gt=0, description=(
        "Ray: DEFAULT_TARGET_ONGOING_REQUESTS = 2; desired = ceil(ongoing / this)"))
    upscale_delay_s: float = Field(default=30.0, ge=0, description=(
        "Ray: the wish to scale up must hold this long before it is acted on"))
    downscale_delay_s: float = Field(default=600.0, ge=0, description=(
        "Ray: the wish to scale down must hold this long before it is acted on"))
    downscale_to_zero_delay_s: float | None = Field(default=None, ge=0, description=(
        "Ray: the delay for 1 -> 0 replicas (min_replicas 0); None uses downscale_delay_s"))
    look_back_period_s: float = Field(default=30.0, gt=0, description=(
        "Ray: ongoing requests are averaged (time-weighted mean) over this window"))
    upscaling_factor: float = Field(default=1.0, gt=0, description=(
        "Ray: multiplies the step up (None in Ray = smoothing_factor = 1.0)"))
    downscaling_factor: float = Field(default=1.0, gt=0, description=(
        "Ray: multiplies the step down (None in Ray = smoothing_factor = 1.0)"))
    cooldown_s: float = Field(default=0.0, ge=0, description=(
        "Ray has no cooldown (its delays are its hysteresis): 0 for a faithful baseline"))


class AutoscalerConfig(_Frozen):
    policy: Literal["cato", "ray"] = Field(default="cato", description=(
        "cato: paper Algorithm 2 (slack violations); ray: Ray Serve's default queue length"))
    min_replicas: int = Field(default=1, ge=0, description=(
        "never fewer active replicas. 0 allows scale to zero: no accelerator is held while "
        "nobody asks, but the first request then waits a whole cold start (about a minute "
        "for vLLM-CPU), far beyond every default SLA. 1 keeps one warm"))
    max_replicas: int = Field(default=4, ge=1, description=(
        "never more active replicas (the accelerators free bound it further): 4 vLLM-CPU "
        "replicas of ~4 GB fit a 24 GiB development machine"))
    cato: CatoScalingConfig = Field(default_factory=CatoScalingConfig)
    ray: RayScalingConfig = Field(default_factory=RayScalingConfig)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalerConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) must not exceed "
                             f"max_replicas ({self.max_replicas})")
        return self


# ---------------------------------------------------------------------------------------------
# Helpers shared by the policies
# ---------------------------------------------------------------------------------------------


def removal_order(replicas: Iterable[ReplicaInfo], now: float) -> list[ReplicaInfo]:
    """Which active replicas to remove first when nothing more specific is known:
    starting ones (they serve nothing yet and stopping them frees an accelerator at once),
    then ready ones with the fewest ongoing requests, longest idle first; ties go to the most
    recently started (older replicas keep their warm caches; Ray Serve also stops newer
    replicas first), then to the id, so the order is deterministic."""
    return sorted(
        (r for r in replicas if r.active),
        key=lambda r: (not r.starting, r.ongoing, -r.idle_for(now), -r.started_at, r.id),
    )


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def count_violations(events: Iterable[SlackEvent], start: float, end: float) -> tuple[int, int]:
    """Violations in [start, end): distinct nodes with a VIOLATED event there, not counting
    nodes also cancelled there. Returns (violations, cancelled nodes ignored)."""
    violated: set[str] = set()
    cancelled: set[str] = set()
    for e in events:
        if start - _EPS <= e.t < end - _EPS:
            if e.outcome == Outcome.VIOLATED:
                violated.add(e.node_id)
            elif e.outcome == Outcome.CANCELLED:
                cancelled.add(e.node_id)
    return len(violated - cancelled), len(violated & cancelled)


def lookback_mean(samples: Sequence[LoadSample], start: float, end: float) -> float:
    """Time-weighted mean of the step function the samples define, over [start, end].

    Each sample holds until the next; the last holds until `end` (Ray: "the last recorded
    metric is valid" until now). The value at `start` is the last sample at or before it;
    with none, the window begins at the first sample (Ray likewise skips the early part no
    sample covers, rather than counting it as 0). No sample: 0 (Ray returns 0.0)."""
    points: list[tuple[float, float]] = []
    before: float | None = None
    for s in sorted(samples, key=lambda s: s.t):
        if s.t <= start:
            before = s.ongoing
        elif s.t <= end:
            points.append((s.t, s.ongoing))
    if before is not None:
        points.insert(0, (start, before))
    if not points:
        return 0.0
    span = end - points[0][0]
    if span <= 0:
        return float(points[-1][1])
    area = 0.0
    for (t0, v0), (t1, _) in zip(points, points[1:] + [(end, 0.0)]):
        area += v0 * (t1 - t0)
    return area / span


# ---------------------------------------------------------------------------------------------
# CATO: paper Algorithm 2
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatoState:
    window_start: float | None = None  # start of the window now open; None before the first
    streak: int = 0  # consecutive exceeded windows up to the last closed one
    last_violations: int = 0  # in the last closed window
    calm: int = 0  # consecutive closed windows without a violation, up to the last


@dataclass(frozen=True)
class CatoScalingPolicy:
    """Paper Algorithm 2: count slack violations per window; when a window's violations pass
    the threshold AND exceed the idle replicas for `max_exceeded_times` windows in a row, add
    ceil(violations / violations_per_replica) replicas, less the capacity already on the way
    (replicas starting, and those that just became ready). Remove replicas idle for
    `idle_windows_before_scale_down` whole windows, `max_scale_down_step` at a time, never in
    a window whose violations passed the threshold.

    Windows are aligned to the first call: [t0, t0 + w), [t0 + w, t0 + 2w), ... An event at a
    window's end belongs to the next. A call inside an open window holds; a call after several
    windows closes them all (only the last `max_exceeded_times` can matter to the streak). The
    idle replica count is the one at the call."""

    config: CatoScalingConfig = field(default_factory=CatoScalingConfig)
    name: str = "cato"

    @property
    def cooldown_s(self) -> float:
        return self.config.cooldown_s

    @property
    def retention_s(self) -> float:
        windows = self.config.max_exceeded_times + 1
        if self.config.consolidate_below is not None:
            windows = max(windows, self.config.idle_windows_before_scale_down + 1)
        return self.config.window_s * windows

    def initial_state(self) -> CatoState:
        return CatoState()

    def cold_start_s(self, ctx: ScalingContext) -> float:
        if ctx.cold_start_s is not None:
            return ctx.cold_start_s
        return self.config.default_cold_start_s

    def on_the_way(self, ctx: ScalingContext) -> tuple[int, str]:
        """Replicas that count as capacity arriving: starting (unless overdue) and ready for
        at most `settle_windows` windows. Returns the count and a description."""
        cfg, now = self.config, ctx.now
        cold = self.cold_start_s(ctx)
        starting = [r for r in ctx.replicas if r.starting]
        overdue_s = cfg.starting_overdue_factor * cold
        live = [r for r in starting if now - r.started_at <= overdue_s + _EPS]
        settling = [r for r in ctx.replicas if r.ready and r.ready_at is not None
                    and now - r.ready_at <= cfg.settle_windows * cfg.window_s + _EPS]
        parts = []
        if live:
            left = max(0.0, min(r.started_at + cold - now for r in live))
            parts.append(f"{len(live)} starting, first ready in ~{_fmt(round(left, 1))}s")
        if len(starting) > len(live):
            parts.append(f"{len(starting) - len(live)} starting overdue, not counted")
        if settling:
            parts.append(f"{len(settling)} just ready")
        return len(live) + len(settling), ", ".join(parts) or "none"

    def consolidate(self, ctx: ScalingContext, calm: int,
                    need_s: float) -> tuple[str, str] | None:
        """The replica to remove when the pool has been calm (no violation) for the last
        idle_windows_before_scale_down windows and one replica fewer would still keep its
        slots at most `consolidate_below` full at the peak load of that time; None if not."""
        cfg, now = self.config, ctx.now
        ready = [r for r in ctx.replicas if r.ready]
        if (calm < cfg.idle_windows_before_scale_down or len(ready) < 2 or ctx.n_starting
                or any(r.slots <= 0 for r in ready)):
            return None
        peak = max((s.ongoing for s in ctx.load if now - need_s - _EPS <= s.t <= now),
                   default=None)
        if peak is None:
            return None
        fewer = sum(r.slots for r in ready) - max(r.slots for r in ready)
        if peak > cfg.consolidate_below * fewer:
            return None
        victim = min(ready, key=lambda r: (r.ongoing, -r.started_at, r.id))
        return victim.id, (f"calm for {calm} windows and peak {_fmt(peak)} ongoing <= "
                           f"{_fmt(cfg.consolidate_below)} x {fewer} slots of one replica "
                           f"fewer: consolidate, {victim.id} ({victim.ongoing} ongoing) goes")

    def propose(self, ctx: ScalingContext, state: CatoState,
                limits: Limits) -> tuple[Proposal, CatoState]:
        cfg, now = self.config, ctx.now
        current = ctx.n_active
        if state.window_start is None:
            return (Proposal(current, f"hold: first window opens at t={_fmt(now)}"),
                    replace(state, window_start=now))
        w = cfg.window_s
        closed = math.floor((now - state.window_start) / w + _EPS)
        if closed <= 0:
            end = state.window_start + w
            return (Proposal(current, f"hold: window [{_fmt(state.window_start)}, {_fmt(end)}) "
                             f"is open", signal=state.last_violations), state)

        # Close every window that ended; only the last max_exceeded_times can affect the
        # streak (an earlier one would have been followed by max_exceeded_times others).
        m = cfg.max_exceeded_times
        first = max(0, closed - m)
        streak = state.streak if first == 0 else 0
        calm = state.calm if first == 0 else 0
        idle = ctx.n_idle
        v = ignored = 0
        start = end = state.window_start
        for j in range(first, closed):
            start = state.window_start + j * w
            end = start + w
            v, ignored = count_violations(ctx.events, start, end)
            streak = streak + 1 if v > cfg.violation_threshold and v > idle else 0
            calm = calm + 1 if v == 0 else 0
        new_state = CatoState(window_start=state.window_start + closed * w, streak=streak,
                              last_violations=v, calm=calm)
        what = f"{v} violations in [{_fmt(start)}, {_fmt(end)})"
        if ignored:
            what += f" ({ignored} cancelled, ignored)"

        def hold(why: str) -> tuple[Proposal, CatoState]:
            return Proposal(current, f"hold: {what}; {why}", signal=v), new_state

        if v > cfg.violation_threshold:
            if v <= idle:
                return hold(f"not more than the {idle} idle replicas: not a capacity shortage")
            if streak < m:
                return hold(f"> threshold {cfg.violation_threshold} and > {idle} idle for "
                            f"{streak} of {m} windows")
            wanted = math.ceil(v / cfg.violations_per_replica)
            coming, note = self.on_the_way(ctx)
            add = wanted - coming
            base = (f"{what} > threshold {cfg.violation_threshold} and > {idle} idle for {streak} "
                    f"windows; ceil({v}/{_fmt(cfg.violations_per_replica)}) = {wanted} wanted, "
                    f"{coming} on the way ({note})")
            if add <= 0:
                return Proposal(current, f"hold: {base}: no second scale-up", signal=v), new_state
            return Proposal(current + add, f"scale up +{add}: {base}", signal=v), new_state

        # No pressure: remove replicas idle for long enough.
        need = cfg.idle_windows_before_scale_down * w
        long_idle = sorted(
            (r for r in ctx.replicas if r.idle and r.idle_for(now) >= need - _EPS),
            key=lambda r: (-r.idle_for(now), -r.started_at, r.id),
        )
        room = current - limits.min_replicas
        n = min(len(long_idle), cfg.max_scale_down_step, max(0, room))
        if n == 0 and not long_idle and room > 0 and cfg.consolidate_below is not None:
            spare = self.consolidate(ctx, calm, need)
            if spare is not None:
                return (Proposal(current - 1, f"scale down -1: {what}; {spare[1]}",
                                 remove=(spare[0],), signal=v), new_state)
        if n == 0:
            if not long_idle:
                return hold(f"no replica idle for {cfg.idle_windows_before_scale_down} windows "
                            f"({_fmt(need)}s)")
            return hold(f"{len(long_idle)} idle for {_fmt(need)}s but at min_replicas "
                        f"{limits.min_replicas}")
        gone = tuple(r.id for r in long_idle[:n])
        return (Proposal(current - n, f"scale down -{n}: {what}; {', '.join(gone)} idle for "
                         f"{_fmt(round(long_idle[0].idle_for(now), 3))}s >= "
                         f"{cfg.idle_windows_before_scale_down} windows ({_fmt(need)}s)",
                         remove=gone, signal=v), new_state)


# ---------------------------------------------------------------------------------------------
# Baseline: Ray Serve's default queue-length policy (as in Ray 2.60.0)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RayState:
    """Ray 2.60's delay state: the direction wished for (+1 up, -1 down, 0 none) and since
    when (Ray keeps the same in policy_state: a decision counter and a timestamp)."""

    direction: int = 0
    since: float | None = None


def apply_scaling_factors(desired: float, current: int, up: float, down: float) -> int:
    """Ray's `_apply_scaling_factors`: scale the step from `current` towards `desired`; a
    step down stuck at `current` by rounding still goes down by one; from 0 no factor."""
    desired = round(desired, 9)  # ours: no ceil() jump from float noise in the average
    if current == 0:
        return math.ceil(desired)
    delta = desired - current
    scaled = math.ceil(current + (up if delta > 0 else down) * delta)
    if math.ceil(desired) < current and scaled == current:
        scaled -= 1
    return scaled


@dataclass(frozen=True)
class RayQueueLengthPolicy:
    """Ray Serve's default autoscaling policy (`replica_queue_length_autoscaling_policy` with
    the delay logic of `_apply_autoscaling_config`, Ray 2.60.0):

        avg     = time-weighted mean of ongoing requests over the last look_back_period_s
        desired = ceil(ready + factor * (avg / target_ongoing_requests - ready))
        bounded by min/max replicas, then acted on only when the wish (up or down, compared
        with the current target: starting + ready) has held for upscale_delay_s /
        downscale_delay_s of context time; a change of direction restarts the clock.

    With no replica running it holds the target (scale-up from zero is the wrapper's, as in
    Ray's cold-start fast path). Removal follows Ray's order on one node: starting replicas
    first, then the newest running ones."""

    config: RayScalingConfig = field(default_factory=RayScalingConfig)
    name: str = "ray"

    @property
    def cooldown_s(self) -> float:
        return self.config.cooldown_s

    @property
    def retention_s(self) -> float:
        return self.config.look_back_period_s

    def initial_state(self) -> RayState:
        return RayState()

    def propose(self, ctx: ScalingContext, state: RayState,
                limits: Limits) -> tuple[Proposal, RayState]:
        cfg, now = self.config, ctx.now
        target = ctx.n_active  # Ray's target_num_replicas: what is running or on its way
        ready = ctx.n_ready  # Ray's current_num_replicas: running replicas
        avg = lookback_mean(ctx.load, now - cfg.look_back_period_s, now)
        if ready == 0:
            return Proposal(target, f"hold: no replica running ({target} starting)",
                            signal=avg), state
        raw = avg / cfg.target_ongoing_requests
        scaled = max(0, apply_scaling_factors(raw, ready, cfg.upscaling_factor,
                                              cfg.downscaling_factor))
        # Bounds before the delay (as Ray did until its delays became timestamps; 2.60 bounds
        # after, which differs only while a bound changes during a running delay). The
        # accelerators free are left to the wrapper: Ray too sets a target it cannot place yet.
        desired = min(max(scaled, limits.min_replicas), limits.max_replicas)
        what = (f"avg {_fmt(round(avg, 3))} ongoing over {_fmt(cfg.look_back_period_s)}s / "
                f"target {_fmt(cfg.target_ongoing_requests)} -> {desired} replica"
                f"{'' if desired == 1 else 's'}")
        if desired > target:
            since = state.since if state.direction > 0 and state.since is not None else now
            held = now - since
            if held + 1e-6 >= cfg.upscale_delay_s:  # Ray's _DELAY_ELAPSED_EPS_S
                return Proposal(desired, f"scale up: {what}, wanted for {_fmt(round(held, 3))}s "
                                f">= upscale_delay_s {_fmt(cfg.upscale_delay_s)}",
                                signal=avg), RayState()
            return Proposal(target, f"hold: {what}; upscale delay {_fmt(round(held, 3))}/"
                            f"{_fmt(cfg.upscale_delay_s)}s", signal=avg), RayState(1, since)
        if desired < target:
            since = state.since if state.direction < 0 and state.since is not None else now
            held = now - since
            if target == 1 and cfg.downscale_to_zero_delay_s is not None:
                delay, label = cfg.downscale_to_zero_delay_s, "downscale_to_zero_delay_s"
            else:
                delay, label = cfg.downscale_delay_s, "downscale_delay_s"
            if target > 1:
                desired = max(1, desired)  # Ray: only 1 -> 0 may reach zero
            if held + 1e-6 >= delay:
                return Proposal(desired, f"scale down: {what}, wanted for "
                                f"{_fmt(round(held, 3))}s >= {label} {_fmt(delay)}",
                                remove=self._ray_removal_order(ctx), signal=avg), RayState()
            return Proposal(target, f"hold: {what}; downscale delay {_fmt(round(held, 3))}/"
                            f"{_fmt(delay)}s", signal=avg), RayState(-1, since)
        return Proposal(target, f"hold: {what}", signal=avg), RayState()

    @staticmethod
    def _ray_removal_order(ctx: ScalingContext) -> tuple[str, ...]:
        """Ray's `_get_replicas_to_stop` on one node: not-running first, then newest first."""
        order = sorted(ctx.active, key=lambda r: (not r.starting, -r.started_at, r.id))
        return tuple(r.id for r in order)


# ---------------------------------------------------------------------------------------------
# The wrapper both policies run under
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutoscalerState(Generic[S]):
    policy: S
    last_scaled_at: float | None = None  # when the count last changed (for the cooldown)


@dataclass(frozen=True)
class Autoscaler:
    """Runs a policy and applies, the same for every policy: the bounds (min/max replicas and
    the accelerators free), scaling up from zero when requests wait (at once: the first
    request waits a cold start anyway), restoring min_replicas at once, the cooldown after
    any change, and the choice of replicas to remove."""

    config: AutoscalerConfig = field(default_factory=AutoscalerConfig)

    @property
    def policy(self) -> ScalingPolicy[Any]:
        if self.config.policy == "cato":
            return CatoScalingPolicy(self.config.cato)
        return RayQueueLengthPolicy(self.config.ray)

    @property
    def retention_s(self) -> float:
        """How far back the context's events and load samples must reach."""
        return self.policy.retention_s

    def initial_state(self) -> AutoscalerState[Any]:
        return AutoscalerState(self.policy.initial_state())

    def decide(
        self, ctx: ScalingContext, state: AutoscalerState[Any] | None = None
    ) -> tuple[ScaleDecision, AutoscalerState[Any]]:
        """The decision at `ctx.now` and the state to pass next time (None: a fresh start)."""
        policy = self.policy
        if state is None:
            state = self.initial_state()
        cfg, now = self.config, ctx.now
        current = ctx.n_active
        hi, hi_reason = cfg.max_replicas, f"max_replicas {cfg.max_replicas}"
        if ctx.free_slots is not None and current + ctx.free_slots < hi:
            hi = current + ctx.free_slots
            hi_reason = f"{ctx.free_slots} accelerator{'s' if ctx.free_slots != 1 else ''} free"
        hi = min(hi, cfg.max_replicas)
        lo = min(cfg.min_replicas, hi)
        limits = Limits(cfg.min_replicas, cfg.max_replicas, hi, hi_reason)

        proposal, policy_state = policy.propose(ctx, state.policy, limits)
        target, reason, forced = proposal.target, proposal.reason, False

        if current == 0 and ctx.waiting > 0:  # no delay, streak or cooldown: scale now
            forced = True
            if target < max(1, lo):
                target = max(1, lo)
                reason = (f"scale from zero: {ctx.waiting} requests wait; the first waits a "
                          f"cold start (~{_fmt(self._cold_start_s(ctx))}s)")
        if target > hi:
            reason += f"; capped at {hi} by {hi_reason}"
            target = hi
        if target < lo:
            reason += f"; raised to min_replicas {lo}"
            target = lo
        if current < lo or current > cfg.max_replicas:
            forced = True
            reason += f" (restoring bounds: {current} active, min {lo}, max {cfg.max_replicas})"

        last = state.last_scaled_at
        if (target != current and not forced and last is not None
                and now - last < policy.cooldown_s - _EPS):
            left = policy.cooldown_s - (now - last)
            reason = (f"hold: cooldown, {_fmt(round(left, 3))}s left after scaling at "
                      f"t={_fmt(last)}; policy wanted {target}: {reason}")
            target = current
        elif target == current and not reason.startswith("hold"):
            reason = f"hold: {reason}"  # the policy wanted a change the bounds do not allow

        remove: tuple[str, ...] = ()
        if target < current:
            remove = self._pick_removals(ctx, current - target, proposal.remove)
        decision = ScaleDecision(now=now, policy=policy.name, current=current, target=target,
                                 remove=remove, reason=reason, signal=proposal.signal)
        new_state = AutoscalerState(policy_state, now if target != current else last)
        return decision, new_state

    def replay(self, contexts: Iterable[ScalingContext],
               state: AutoscalerState[Any] | None = None) -> list[ScaleDecision]:
        """Decide for each context in turn, threading the state: the same trace gives the
        same decisions."""
        out = []
        for ctx in contexts:
            decision, state = self.decide(ctx, state)
            out.append(decision)
        return out

    def _cold_start_s(self, ctx: ScalingContext) -> float:
        if ctx.cold_start_s is not None:
            return ctx.cold_start_s
        return self.config.cato.default_cold_start_s

    @staticmethod
    def _pick_removals(ctx: ScalingContext, n: int, preferred: Sequence[str]) -> tuple[str, ...]:
        active = {r.id: r for r in ctx.active}
        chosen: list[str] = []
        for rid in preferred:
            if rid in active and rid not in chosen:
                chosen.append(rid)
        for r in removal_order(ctx.replicas, ctx.now):
            if r.id not in chosen:
                chosen.append(r.id)
        return tuple(chosen[:n])


def make_autoscaler(config: AutoscalerConfig | dict[str, Any] | None = None) -> Autoscaler:
    if config is None:
        config = AutoscalerConfig()
    elif isinstance(config, dict):
        config = AutoscalerConfig.model_validate(config)
    return Autoscaler(config)
