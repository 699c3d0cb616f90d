"""The discrete-event simulator: virtual time, simulated replicas, the server's own policies.

What is the server's, used as is: the `Pool` (replica queues, slots, router columns,
outcome log, utilization), the router from `make_router`, slack planning through
`Orchestrator.plan` (graph_for, Profiler.baselines, allocate_slack), the `Profiler` and
`OnlineProfile` fed the same observations the orchestrator feeds them, and the `Autoscaler`
from `make_autoscaler`, called every scaling tick with a context built like the backend's.
What is the simulator's: the event heap and clock, the engines (`engine.SimEngine`), the
non-LLM steps (a fixed duration each) and the validation outcome (seeded: a translation
needs its repair with probability `repair_rate`).

Each task runs its kind's graph node by node, as `Orchestrator.run` does: an LLM node is a
pool `Job` submitted at the node's start; when the pool grants it a slot the replica's engine
admits it; its first token and its end come from the engine. The task's TTFT, E2E and SLA
verdict are computed as the server's `Orchestrator._done` computes them.

Determinism: one seed gives the same run. Ties in time are broken by scheduling order, the
validation outcomes and p2c's choices come from seeded RNGs, and nothing iterates a set.
"""

from __future__ import annotations

import gc
import heapq
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..autoscaler import (
    AutoscalerConfig,
    CatoScalingConfig,
    ScaleDecision,
    make_autoscaler,
)
from ..clock import ManualClock
from ..config import Config, default_config
from ..graph import Node, NodeKind, TaskGraph, graph_for
from ..kinds import SlaMetric, TaskKind
from ..orchestrator import Orchestrator, Task
from ..pool import Job, Pool, Replica, ReplicaState
from ..profiler import CONDITIONAL_RUN_PRIOR, NON_LLM_PRIOR_S, OnlineProfile, Profiler
from ..profiles import EngineProfile
from ..router import PRIORITY_VIOLATED, NodeRequest, Router, make_router
from ..scaling_context import scaling_context
from .engine import EngineOutcome, EngineRequest, SimEngine
from .metrics import SimRecorder
from .oracle import ORACLE, OracleRouter
from .requests import Request

DEFAULT_COLD_START_S = 60.0  # when neither the config nor the profile gives one
REPAIR_PROMPT_EXTRA = 64  # tokens of the repair prompt besides the translated code
SCALING = ("none", "cato", "cato_plus", "ray")
# cato_plus: Algorithm 2 plus our consolidation (CatoScalingConfig.consolidate_below)
CONSOLIDATE_BELOW = 0.5

# Event kinds, in a tuple (t, seq, kind, a, b) on the heap.
_ARRIVAL, _ENGINE, _STEP, _TICK, _READY = range(5)


@dataclass
class SimConfig:
    """One simulated deployment: one model's replica pool, its policies, and the engine."""

    router: str = "cato"  # a server router (router.ROUTERS) or "oracle" (sim only)
    scaling: str = "none"  # none | cato | ray
    replicas: int | None = None  # initial replicas, ready at t=0; None: 4, or min_replicas
    min_replicas: int = 1
    max_replicas: int = 4
    autoscaler: AutoscalerConfig | None = None  # overrides scaling/min/max when given
    max_in_flight: int | None = None  # per replica; None: the server config's model's
    cold_start_s: float | None = None  # None: the profile's cold_start_s, else 60 s
    duration_s: float | None = None  # no arrivals at or after this time; None: all
    drain_s: float = 3600.0  # after the last arrival, stop at the latest this much later
    seed: int = 0  # router (p2c) and validation outcomes
    repair_rate: float = CONDITIONAL_RUN_PRIOR  # translations whose validation fails
    context_s: float = NON_LLM_PRIOR_S[NodeKind.CONTEXT]  # gather_context's duration
    validate_s: float = NON_LLM_PRIOR_S[NodeKind.VALIDATE]  # validate's duration
    # The scaling context carries every slack outcome in its window, as the backend's does;
    # False leaves out the "met" ones, which no shipped policy reads (count_violations counts
    # violated and cancelled, Ray reads load samples): same decisions, much less work.
    context_met_events: bool = False
    server: Config = field(default_factory=default_config)  # kinds' SLAs, queue, tick
    model: str | None = None  # the server config's model to simulate; None: completion's

    def __post_init__(self) -> None:
        if self.scaling not in SCALING:
            raise ValueError(f"unknown scaling policy {self.scaling!r}; choose one of "
                             f"{', '.join(SCALING)}")
        if self.autoscaler is None and self.scaling != "none":
            plus = self.scaling == "cato_plus"
            self.autoscaler = AutoscalerConfig(
                policy="cato" if plus else self.scaling, min_replicas=self.min_replicas,
                max_replicas=self.max_replicas,
                cato=CatoScalingConfig(consolidate_below=CONSOLIDATE_BELOW if plus else None))
        elif self.autoscaler is not None:
            self.scaling = self.autoscaler.policy
        if self.replicas is None:
            self.replicas = self.autoscaler.min_replicas if self.autoscaler else 4
        if self.replicas < 0 or not 0 <= self.repair_rate <= 1 or self.drain_s < 0:
            raise ValueError("replicas and drain_s must be >= 0, repair_rate in [0, 1]")
        if self.model is None:
            self.model = self.server.kinds[TaskKind.COMPLETION].model
        if self.max_in_flight is None:
            self.max_in_flight = self.server.models[self.model].max_in_flight


class _Grant:
    """A Job's `granted` future for the simulator: what the pool calls on it (`done`,
    `set_result`, `cancel`) and nothing it awaits. Granting hands the job to the simulator
    at once, instead of waking a coroutine."""

    __slots__ = (
        "batch_at_start",
        "first_at",
        "granted_at",
        "job",
        "node",
        "output_tokens",
        "prompt_tokens",
        "replica",
        "run",
        "sim",
        "state",
    )

    def __init__(self, sim: Simulation, run: _TaskRun, node: Node, prompt_tokens: int,
                 output_tokens: int) -> None:
        self.sim, self.run, self.node = sim, run, node
        self.prompt_tokens, self.output_tokens = prompt_tokens, output_tokens
        self.job: Job | None = None
        self.replica: Replica | None = None
        self.state = 0  # 0 pending, 1 granted, 2 cancelled
        self.granted_at = 0.0
        self.batch_at_start = 0
        self.first_at: float | None = None

    def done(self) -> bool:
        return self.state != 0

    def cancelled(self) -> bool:
        return self.state == 2

    def cancel(self) -> bool:
        if self.state:
            return False
        self.state = 2
        return True

    def set_result(self, replica: Replica) -> None:
        if self.state:
            raise RuntimeError("granted twice")
        self.state = 1
        self.replica = replica
        self.sim._granted.append(self)

    def result(self) -> Replica:
        assert self.replica is not None
        return self.replica


class _TaskRun:
    __slots__ = (
        "first_token_at",
        "graph",
        "index",
        "kind_i",
        "node_tokens",
        "plan",
        "req",
        "skip",
        "task",
    )

    def __init__(self, req: Request, task: Task, graph: TaskGraph, plan: Any, kind_i: int):
        self.req, self.task, self.graph, self.plan, self.kind_i = req, task, graph, plan, kind_i
        self.index = 0  # next node to run
        self.skip: set[str] = set()
        self.first_token_at: float | None = None
        self.node_tokens: dict[str, int] = {}  # output tokens of the LLM nodes done


class Simulation:
    """One run. `run(requests)` drives it to the end and returns the result dict."""

    def __init__(self, config: SimConfig, profile: EngineProfile,
                 engine_profile: EngineProfile | None = None) -> None:
        """`profile` is what the router and the planner believe (the server's profile);
        `engine_profile` how the simulated replicas behave (default: the same)."""
        self.config = cfg = config
        self.profile = profile
        self.engine_profile = engine_profile or profile
        self.clock = ManualClock(0.0)
        self.online = OnlineProfile(profile)
        self.knows_outputs = cfg.router == ORACLE  # the oracle plans with true output lengths
        self.router: Router = (OracleRouter(self.online) if self.knows_outputs
                               else make_router(cfg.router, self.online, seed=cfg.seed))
        self.model = cfg.model
        self.pool = Pool(self.model, self.online, self.router,
                         live_per_violated=cfg.server.queue.live_per_violated)
        self.profiler = Profiler({self.model: self.online})
        self.orchestrator = Orchestrator(cfg.server, {self.model: self.pool}, self.profiler,
                                         self.clock)
        self.autoscaler = make_autoscaler(cfg.autoscaler) if cfg.autoscaler else None
        self.cold_start_s = (cfg.cold_start_s if cfg.cold_start_s is not None
                             else self.engine_profile.cold_start_s
                             if self.engine_profile.cold_start_s is not None
                             else DEFAULT_COLD_START_S)
        self.measured_cold_start_s: float | None = None  # as the backend measures it
        self.tick_s = cfg.server.timeouts.scaling_tick_s
        self.rng = random.Random(cfg.seed)
        self.graphs = {k: graph_for(k) for k in TaskKind}
        self.kinds = [k.value for k in TaskKind]
        self.recorder = SimRecorder(self.kinds)
        self._kinds = {k.value: (k, cfg.server.kinds[k], self.graphs[k],
                                 self.recorder.kind_index[k.value]) for k in TaskKind}
        self._conditional = {k: [n.name for n in g.nodes if n.conditional]
                             for k, g in self.graphs.items()}
        self._heap: list[tuple] = []
        self._seq = 0
        self._granted: deque[_Grant] = deque()
        self._dirty: list[SimEngine] = []
        self._next_index = 0
        self._active_tasks = 0
        self._drain_at: dict[str, float] = {}
        self.decisions: list[ScaleDecision] = []
        self.events = 0
        for _ in range(cfg.replicas):
            self._add_replica(0.0, warm=True)

    # -- the event loop --------------------------------------------------------------------

    def _push(self, t: float, kind: int, a: Any = None, b: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, a, b))

    def run(self, requests: Iterable[Request],
            progress: Callable[[float], None] | None = None) -> dict[str, Any]:
        """Simulate `requests` (sorted by `t`) to the end; `progress(now)` is called now and
        then. Returns the summary (see metrics.SimRecorder.summary)."""
        if self.events:
            raise RuntimeError("a Simulation runs once; make a new one")
        gc_was_on = gc.isenabled()
        gc.disable()  # the run leaves no reference cycles; collecting costs a third of it
        try:
            return self._run(requests, progress)
        finally:
            if gc_was_on:
                gc.enable()

    def _run(self, requests: Iterable[Request],
             progress: Callable[[float], None] | None) -> dict[str, Any]:
        cfg = self.config
        arrivals = iter(requests)
        wall0 = time.perf_counter()
        last_arrival = 0.0
        more = self._next_arrival(arrivals, 0.0)
        if self.autoscaler is not None:
            self._scaler_state = self.autoscaler.initial_state()
            self._push(self.tick_s, _TICK)
        stop_at = math.inf
        heap = self._heap
        pop = heapq.heappop
        while heap:
            t, _, kind, a, b = pop(heap)
            if t > stop_at:
                break
            self.clock.set(t)
            self.events += 1
            if kind == _ENGINE:
                if a.version != b:
                    continue
                self._engine_outcome(a.advance(t), t, a)
            elif kind == _ARRIVAL:
                last_arrival = t
                self._start_task(a, t)
                more = self._next_arrival(arrivals, t)
                if not more:
                    stop_at = t + cfg.drain_s
            elif kind == _STEP:
                self._step_done(a, b, t)
            elif kind == _TICK:
                self._tick(t)
                if more or self._active_tasks:
                    self._push(t + self.tick_s, _TICK)
            elif kind == _READY:
                self._ready(a, t)
            if self._granted:
                self._admit_granted(t)
            if self._dirty:
                for e in self._dirty:
                    e_next = e.next_event_at()
                    if e_next is not None:
                        self._push(e_next, _ENGINE, e, e.version)
                    e.dirty = False
                self._dirty.clear()
            if progress is not None and not self.events & 0x3FFF:
                progress(t)
            if not more and not self._active_tasks:
                break
        end = self.clock.now()
        if progress is not None:
            progress(end)
        return self.recorder.summary(self, end=end, last_arrival=last_arrival,
                                     wall_s=time.perf_counter() - wall0)

    def _next_arrival(self, arrivals: Any, now: float) -> bool:
        for req in arrivals:
            if self.config.duration_s is not None and req.t >= self.config.duration_s:
                return False
            if req.t < now:
                raise ValueError(f"requests must be sorted by time: {req.t} after {now}")
            self._push(req.t, _ARRIVAL, req)
            return True
        return False

    # -- tasks -----------------------------------------------------------------------------

    def _start_task(self, req: Request, now: float) -> None:
        try:
            kind, kc, graph, kind_i = self._kinds[req.kind]
        except KeyError:
            raise ValueError(f"unknown task kind {req.kind!r} at t={req.t}") from None
        sla_ms = req.sla_ms if req.sla_ms is not None else kc.sla_ms
        task = Task(request_id=self.recorder.start(kind_i), kind=kind, model=self.model,
                    sla_s=sla_ms / 1000.0, max_tokens=req.max_tokens or kc.max_tokens,
                    inputs={}, arrival=now, prompt_tokens=req.prompt_tokens)
        run = _TaskRun(req, task, graph, self.orchestrator.plan(task, graph), kind_i)
        self._active_tasks += 1
        self._next_node(run, now)

    def _next_node(self, run: _TaskRun, now: float) -> None:
        nodes = run.graph.nodes
        while run.index < len(nodes):
            node = nodes[run.index]
            run.index += 1
            if node.name in run.skip:
                continue
            if node.kind is NodeKind.LLM:
                self._submit(run, node, now)
            else:
                d = self.config.context_s if node.kind is NodeKind.CONTEXT else self.config.validate_s
                self._push(now + d, _STEP, run, node)
            return
        self._task_done(run, now)

    def _step_done(self, run: _TaskRun, node: Node, now: float) -> None:
        """A non-LLM node ended (its duration is fixed); a validation decides the repair."""
        kind = run.task.kind
        d = self.config.context_s if node.kind is NodeKind.CONTEXT else self.config.validate_s
        self.profiler.observe_node(kind, node.name, d)
        if node.kind is NodeKind.VALIDATE and not self.rng.random() < self.config.repair_rate:
            run.skip |= {n.name for n in run.graph.nodes if n.conditional and node.name in n.deps}
        self._next_node(run, now)

    def _submit(self, run: _TaskRun, node: Node, now: float) -> None:
        task, req = run.task, run.req
        prompt = req.prompt_tokens
        if node.conditional:  # the repair: the translated code and the problem
            prompt = sum(run.node_tokens.values()) + REPAIR_PROMPT_EXTRA
        output_tokens = max(1, min(req.output_tokens, task.max_tokens))
        node_req = NodeRequest(
            deadline=task.arrival + run.plan.nodes[node.name].deadline_offset_s,
            prompt_tokens=prompt,
            output_tokens=(output_tokens if self.knows_outputs else
                           self.profiler.expected_output_tokens(task.kind, node.name,
                                                                task.max_tokens)),
            to_first_token=task.metric is SlaMetric.TTFT and node.output,
        )
        grant = _Grant(self, run, node, prompt, output_tokens)
        job = Job(node_req, node_id=f"{task.request_id}/{node.name}",
                  granted=grant)  # type: ignore[arg-type]
        grant.job = job
        decision = self.pool.submit(job, now)
        if decision.priority == PRIORITY_VIOLATED:  # as the orchestrator: reported at once
            job.violation_reported = True
            self.pool.record_outcome(job.node_id, now, "violated")

    def _admit_granted(self, now: float) -> None:
        while self._granted:
            grant = self._granted.popleft()
            replica = grant.replica
            engine: SimEngine = replica.client
            grant.granted_at = now
            grant.batch_at_start = len(replica.running)
            _, out = engine.admit(grant, grant.prompt_tokens, grant.output_tokens, now)
            if not engine.dirty:
                engine.dirty = True
                self._dirty.append(engine)
            if out.first_tokens or out.finished:
                self._engine_outcome(out, now, engine)

    def _engine_outcome(self, out: EngineOutcome, now: float, engine: SimEngine) -> None:
        for ereq in out.first_tokens:
            grant: _Grant = ereq.tag
            grant.first_at = ereq.first_token_at
            run = grant.run
            if grant.node.output and run.first_token_at is None:
                run.first_token_at = ereq.first_token_at
        for ereq in out.finished:
            self._node_done(ereq, now)
        if not engine.dirty:
            engine.dirty = True
            self._dirty.append(engine)

    def _node_done(self, ereq: EngineRequest, now: float) -> None:
        """An LLM node's stream ended: what `Orchestrator._call_replica` does after it."""
        grant: _Grant = ereq.tag
        job, run, node, replica = grant.job, grant.run, grant.node, grant.replica
        pool, task = self.pool, run.task
        end = ereq.finished_at
        first_at = grant.first_at
        node_req = job.node
        met = ((first_at or end) if node_req.to_first_token else end) <= node_req.deadline
        tokens = ereq.output_tokens
        profile = pool.profile
        profile.observe_ttft(node_req.prompt_tokens, first_at - grant.granted_at)
        profile.observe_decode(tokens, end - first_at,
                               (grant.batch_at_start + len(replica.running)) / 2)
        pool.finish(job, now, True)  # Pool.cancel's work for a running job, in O(1)
        if not (not met and job.violation_reported):
            pool.record_outcome(job.node_id, now, "met" if met else "violated")
        self.profiler.observe_output(task.kind, node.name, task.max_tokens, tokens)
        run.node_tokens[node.name] = tokens
        self.recorder.node(job, replica, grant, met)
        grant.job = None  # no job <-> grant cycle left for the garbage collector
        if replica.state is ReplicaState.DRAINING and not replica.running:
            pool.mark_stopped(replica, now, "scaled down")
        self._next_node(run, now)

    def _task_done(self, run: _TaskRun, now: float) -> None:
        """The task's verdict, as `Orchestrator._done` gives it."""
        task = run.task
        for name in self._conditional[task.kind]:
            self.profiler.observe_run(task.kind, name, name not in run.skip)
        e2e_ms = (now - task.arrival) * 1000
        ttft_ms = (run.first_token_at - task.arrival) * 1000 if run.first_token_at else None
        if task.metric is SlaMetric.TTFT:
            measured = ttft_ms if ttft_ms is not None else e2e_ms
        else:
            measured = e2e_ms
        self._active_tasks -= 1
        self.recorder.task(run.kind_i, task.arrival, ttft_ms, e2e_ms,
                           measured <= task.sla_s * 1000)

    # -- replicas and scaling --------------------------------------------------------------

    def _add_replica(self, now: float, warm: bool = False) -> Replica:
        rid = f"{self.model}-{self._next_index}"
        self._next_index += 1
        replica = self.pool.add_replica(rid, f"sim://{rid}", self.config.max_in_flight, now)
        engine = SimEngine(self.engine_profile, max_batch=self.config.max_in_flight)
        replica.client = engine
        if warm:  # ready from the start: mark_ready without its (empty) reroute and rebalance
            replica.state = ReplicaState.READY
            replica.ready_at = now
            self.pool.sync(replica, now)
        else:
            self._push(now + self.cold_start_s, _READY, replica)
        return replica

    def _ready(self, replica: Replica, now: float) -> None:
        if replica.state is not ReplicaState.STARTING:  # removed while starting
            return
        self.pool.mark_ready(replica, replica.client, now)
        took = now - replica.started_at
        old = self.measured_cold_start_s
        self.measured_cold_start_s = took if old is None else 0.7 * old + 0.3 * took

    def _tick(self, now: float) -> None:
        """`Backend._scaling_loop`'s body."""
        pool, scaler = self.pool, self.autoscaler
        pool.sample_load(now)
        pool.report_overdue(now)
        ctx = scaling_context(pool, now, scaler.retention_s, self.tick_s,
                              self.measured_cold_start_s,
                              met_events=self.config.context_met_events)
        decision, self._scaler_state = scaler.decide(ctx, self._scaler_state)
        if decision.action == "hold":
            return
        pool.scale_log.append(decision)
        self.decisions.append(decision)
        for _ in range(decision.delta):
            self._add_replica(now)
        for rid in decision.remove:
            self._remove_replica(rid, now)

    def _remove_replica(self, replica_id: str, now: float) -> None:
        """`Backend.remove_replica`: a starting replica stops at once; a ready one drains
        (its queue moves to the others) and stops when its running requests end."""
        pool = self.pool
        replica = pool.replica(replica_id)
        if replica.state is ReplicaState.STARTING:
            pool.mark_stopped(replica, now, "removed while starting")
            return
        self._drain_at[replica_id] = now
        pool.drain(replica, now)
        if not replica.running:
            pool.mark_stopped(replica, now, "scaled down")


def simulate(requests: Iterable[Request], config: SimConfig | None = None,
             profile: EngineProfile | None = None, *, engine_profile: EngineProfile | None = None,
             progress: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Run one simulation and return its summary (plain data, JSON-ready)."""
    if profile is None:
        from ..profiles import load_profile

        profile = load_profile((config or SimConfig()).server.models[
            (config or SimConfig()).model].profile)
    return Simulation(config or SimConfig(), profile, engine_profile).run(requests, progress)
