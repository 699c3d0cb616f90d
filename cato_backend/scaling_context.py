"""What the autoscaler may know about a pool at one moment, as pure data (the server's
scaling loop and the simulator build it the same way)."""

from __future__ import annotations

from .autoscaler import LoadSample, Outcome, ReplicaInfo, ScalingContext, SlackEvent
from .pool import Pool, ReplicaState


def scaling_context(pool: Pool, now: float, retention_s: float, tick_s: float,
                    cold_start_s: float | None, free_slots: int | None = None,
                    met_events: bool = True) -> ScalingContext:
    """The pool's replicas, recent slack events and load samples, and what the caller knows
    (cold start, free accelerator slots). Outcomes and load samples are read from the newest
    back (they are appended in time order), so a tick costs its window, not the whole log."""
    since = now - retention_s - tick_s
    events: list[SlackEvent] = []
    for t, node, o in reversed(pool.outcomes):
        if t < since:
            break
        if met_events or o != "met":
            events.append(SlackEvent(t, node, Outcome(o)))
    load: list[LoadSample] = []
    for t, n in reversed(pool.load_samples):
        if t < since:
            break
        load.append(LoadSample(t, n))
    return ScalingContext(
        now=now,
        replicas=tuple(ReplicaInfo(r.id, r.state, r.started_at, r.ready_at,
                                   len(r.running) + len(r.queue), r.idle_since,
                                   r.max_in_flight)
                       for r in pool.replicas if r.state is not ReplicaState.STOPPED),
        events=tuple(reversed(events)),
        load=tuple(reversed(load)),
        cold_start_s=cold_start_s,
        free_slots=free_slots,
        waiting=sum(not j.granted.done() for j in pool.pending),
    )
