"""Runs one task: its graph node by node, LLM nodes through the router and replica queues.

This is the I/O edge around the pure parts: it asks the profiler for baselines, allocates
slack, lets the pool's router place each LLM node, waits for the slot, streams from the
replica and reports events. Cancelling the asyncio task that runs `run` (client gone, or
DELETE /v1/tasks/{id}) drops a queued node or closes the engine stream, which aborts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from . import steps
from .clock import Clock
from .config import Config
from .graph import Node, NodeKind, TaskGraph, graph_for, passthrough_graph
from .kinds import METRIC_OF_KIND, SlaMetric, TaskKind
from .pool import Job, Pool, Replica
from .profiler import LlmCall, Profiler
from .replica_client import EngineRequest, ReplicaError
from .router import PRIORITY_VIOLATED, NodeRequest
from .schemas import DoneEvent, NodeTiming, SlaResult
from .slack import SlackPlan, allocate_slack
from .tokens import estimate_tokens

Emit = Callable[[dict[str, Any]], Awaitable[None]]
MAX_ATTEMPTS = 2  # a node whose replica fails before its first token is retried once elsewhere


def _request_tokens(req: EngineRequest) -> int:
    """Estimated prompt tokens of one engine request (prompt, or all message contents)."""
    if req.prompt is not None:
        return estimate_tokens(req.prompt)
    return estimate_tokens("".join(str(m.get("content", "")) for m in req.messages or ()))


class TaskError(Exception):
    """The task cannot be served; `status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 500) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Task:
    request_id: str
    kind: TaskKind
    model: str
    sla_s: float
    max_tokens: int
    inputs: dict[str, Any]  # the request's input fields
    passthrough: EngineRequest | None = None  # the OpenAI-compatible endpoints' own request
    arrival: float = 0.0
    prompt_tokens: int = 0  # estimated once, at admission
    tenant: str = "anonymous"  # who sent it (auth.py); set by the HTTP layer

    @property
    def metric(self) -> SlaMetric:
        return METRIC_OF_KIND[self.kind]


@dataclass
class _LlmResult:
    text: str
    tokens: int
    timing: NodeTiming
    replica: Replica


@dataclass
class _Run:
    """What one task has done so far."""

    task: Task
    plan: SlackPlan
    emit: Emit
    first_token_at: float | None = None
    replica: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    timings: list[NodeTiming] = field(default_factory=list)
    validation: str | None = None


class Orchestrator:
    def __init__(self, config: Config, pools: dict[str, Pool], profiler: Profiler,
                 clock: Clock) -> None:
        self.config = config
        self.pools = pools
        self.profiler = profiler
        self.clock = clock

    # -- admission -----------------------------------------------------------------------

    def new_task(self, kind: TaskKind, inputs: dict[str, Any], sla_ms: float | None,
                 max_tokens: int | None, request_id: str | None,
                 passthrough: EngineRequest | None = None) -> Task:
        """Resolve a validated request into a Task, or raise TaskError(4xx) for bad input."""
        kc = self.config.kinds[kind]
        limits = self.config.limits
        if sla_ms is not None and not (limits.min_sla_ms <= sla_ms <= limits.max_sla_ms):
            raise TaskError(f"sla_ms must be between {limits.min_sla_ms:g} and "
                            f"{limits.max_sla_ms:g}, got {sla_ms:g}", 400)
        max_tokens = max_tokens or kc.max_tokens
        if max_tokens > limits.max_tokens:
            raise TaskError(f"max_tokens must be at most {limits.max_tokens}", 400)
        task = Task(request_id or os.urandom(16).hex(), kind, kc.model,  # as uuid4().hex, faster
                    (sla_ms or kc.sla_ms) / 1000.0, max_tokens, inputs, passthrough,
                    arrival=self.clock.now())
        pool = self.pools[task.model]
        task.prompt_tokens = prompt_tokens = self._prompt_tokens(task)
        if prompt_tokens + max_tokens > pool.profile.max_model_len:
            raise TaskError(
                f"prompt too long: about {prompt_tokens} tokens + max_tokens {max_tokens} exceed "
                f"the model's context of {pool.profile.max_model_len} tokens", 400)
        return task

    @staticmethod
    def _prompt_tokens(task: Task) -> int:
        if task.passthrough is not None:
            return _request_tokens(task.passthrough)
        return estimate_tokens("".join(str(v) for v in task.inputs.values())) + 48  # + template

    # -- running -------------------------------------------------------------------------

    def plan(self, task: Task, graph: TaskGraph) -> SlackPlan:
        calls = {n.name: LlmCall(task.model, task.prompt_tokens, task.max_tokens)
                 for n in graph.nodes if n.kind is NodeKind.LLM}
        baselines = self.profiler.baselines(graph, task.metric, calls)
        return allocate_slack(graph, baselines, task.sla_s)

    async def run(self, task: Task, emit: Emit) -> DoneEvent:
        graph = passthrough_graph(task.kind) if task.passthrough else graph_for(task.kind)
        run = _Run(task, self.plan(task, graph), emit)
        await emit({"type": "accepted", "request_id": task.request_id, "kind": task.kind.value,
                    "model": task.model, "sla": {"metric": task.metric.value,
                                                 "target_ms": task.sla_s * 1000},
                    "critical_path": list(run.plan.critical_path)})
        skip: set[str] = set()
        for node in graph.nodes:  # listed in topological order; our graphs are chains
            if node.name in skip:
                continue
            if node.kind is NodeKind.LLM:
                await self._llm_node(run, node)
            elif node.kind is NodeKind.CONTEXT:
                self._context_node(run, node)
            elif node.kind is NodeKind.VALIDATE:
                if self._validate_node(run, node):
                    skip |= {n.name for n in graph.nodes if n.conditional and node.name in n.deps}
        for n in graph.nodes:
            if n.conditional:
                self.profiler.observe_run(task.kind, n.name, n.name not in skip)
        return self._done(run, graph)

    def _done(self, run: _Run, graph: TaskGraph) -> DoneEvent:
        task, now = run.task, self.clock.now()
        e2e_ms = (now - task.arrival) * 1000
        ttft_ms = (run.first_token_at - task.arrival) * 1000 if run.first_token_at else None
        measured = (ttft_ms if ttft_ms is not None else e2e_ms) if task.metric is SlaMetric.TTFT else e2e_ms
        target_ms = task.sla_s * 1000
        final = [n.name for n in graph.nodes if n.output and n.name in run.outputs][-1]
        text = run.outputs[final]
        if task.kind in (TaskKind.TRANSLATION, TaskKind.GENERATION):
            text = steps.extract_code(text)
        return DoneEvent(request_id=task.request_id, kind=task.kind.value, text=text,
                         ttft_ms=ttft_ms, e2e_ms=e2e_ms,
                         sla=SlaResult(metric=task.metric.value, target_ms=target_ms,
                                       met=measured <= target_ms),
                         replica=run.replica, nodes=run.timings, validation=run.validation)

    def _context_node(self, run: _Run, node: Node) -> None:
        t0 = self.clock.now()
        run.outputs[node.name] = steps.gather_context(run.task.inputs.get("context", ""))
        self._observe_step(run, node, t0)

    def _validate_node(self, run: _Run, node: Node) -> bool:
        """Validate the translation; True when it is fine (the repair is skipped)."""
        t0 = self.clock.now()
        code = steps.extract_code(run.outputs[node.deps[0]])
        result = steps.validate(code, run.task.inputs["target_language"])
        run.outputs[node.name] = result.message
        run.validation = result.message
        self._observe_step(run, node, t0)
        return result.ok

    def _observe_step(self, run: _Run, node: Node, t0: float) -> None:
        took = self.clock.now() - t0
        self.profiler.observe_node(run.task.kind, node.name, took)
        run.timings.append(NodeTiming(name=node.name, kind=node.kind.value, ms=took * 1000))

    def _engine_request(self, run: _Run, node: Node) -> EngineRequest:
        task, i = run.task, run.task.inputs
        model = self.config.models[task.model]
        if task.passthrough is not None:
            return task.passthrough
        if node.name == "fim":
            prompt = steps.completion_prompt(model.fim_template, i["prefix"], i.get("suffix", ""))
            return EngineRequest(model=model.served_name, prompt=prompt, max_tokens=task.max_tokens,
                                 stop=("\n\n",))
        if node.name == "generate":
            msgs = steps.generation_messages(i["instruction"], i["language"], run.outputs["gather_context"])
        elif node.name == "translate":
            msgs = steps.translation_messages(i["code"], i["source_language"], i["target_language"])
        elif node.name == "repair":
            msgs = steps.repair_messages(steps.extract_code(run.outputs["translate"]),
                                         i["target_language"], run.outputs["validate"])
        elif node.name == "summarize":
            msgs = steps.summarization_messages(i["code"], i["language"])
        else:
            raise ValueError(f"no prompt for node {node.name!r}")
        return EngineRequest(model=model.served_name, messages=msgs, max_tokens=task.max_tokens)

    async def _llm_node(self, run: _Run, node: Node) -> None:
        task = run.task
        req = self._engine_request(run, node)
        node_req = NodeRequest(
            deadline=task.arrival + run.plan.nodes[node.name].deadline_offset_s,
            prompt_tokens=_request_tokens(req),
            output_tokens=self.profiler.expected_output_tokens(task.kind, node.name, req.max_tokens),
            to_first_token=task.metric is SlaMetric.TTFT and node.output,
        )
        excluded: frozenset[str] = frozenset()
        for attempt in range(MAX_ATTEMPTS):
            try:
                result = await self._call_replica(run, node, req, node_req, excluded)
                break
            except ReplicaError as e:
                excluded = excluded | {getattr(e, "replica_id", "")}
                pool = self.pools[task.model]
                retry = (not e.started and attempt < MAX_ATTEMPTS - 1
                         and not (e.kind == "http" and (e.status or 500) < 500)  # our request's fault
                         and any(r.routable and r.id not in excluded for r in pool.replicas))
                if not retry:
                    raise TaskError(f"replica failed during {node.name}: {e}", e.status or 502) from e
        run.outputs[node.name] = result.text
        run.replica = result.replica.id
        run.timings.append(result.timing)
        self.profiler.observe_output(task.kind, node.name, req.max_tokens, result.tokens)
        await run.emit({"type": "node", **result.timing.model_dump(exclude_none=True)})

    async def _call_replica(self, run: _Run, node: Node, req: EngineRequest,
                            node_req: NodeRequest, excluded: frozenset[str]) -> _LlmResult:
        pool = self.pools[run.task.model]
        node_id = f"{run.task.request_id}/{node.name}"
        job = Job(node_req, excluded=excluded, node_id=node_id)
        decision = pool.submit(job, self.clock.now())
        if decision.priority == PRIORITY_VIOLATED:  # the autoscaler hears of it at once
            job.violation_reported = True
            pool.record_outcome(node_id, self.clock.now(), "violated")
        outcome: bool | None = None  # None: cancelled, not the replica's fault
        met = False
        try:
            try:
                if job.granted.done():  # a free slot at once: no timer, no trip round the loop
                    replica = job.granted.result()
                else:
                    replica = await asyncio.wait_for(asyncio.shield(job.granted),
                                                     self.config.limits.no_replica_timeout_s)
            except asyncio.TimeoutError:
                outcome = False
                raise TaskError(f"no replica of {run.task.model} became available in "
                                f"{self.config.limits.no_replica_timeout_s:g}s", 503) from None
            granted_at = self.clock.now()
            batch_at_start = len(replica.running)
            parts: list[str] = []
            first_at: float | None = None
            tokens = pieces = 0
            try:
                async with contextlib.aclosing(replica.client.stream(req)) as stream:
                    async for chunk in stream:
                        if chunk.completion_tokens is not None:
                            tokens = chunk.completion_tokens
                        if not chunk.text:
                            continue
                        if first_at is None:
                            first_at = self.clock.now()
                            if node.output and run.first_token_at is None:
                                run.first_token_at = first_at
                        parts.append(chunk.text)
                        pieces += chunk.pieces
                        await run.emit({"type": "token", "node": node.name, "text": chunk.text})
            except ReplicaError as e:
                outcome = False
                e.replica_id = replica.id  # type: ignore[attr-defined]
                if e.kind in ("unreachable", "timeout"):
                    pool.set_health(replica, False, self.clock.now())
                raise
            end = self.clock.now()
            outcome = True
            met = (first_at or end if node_req.to_first_token else end) <= node_req.deadline
            tokens = tokens or pieces
            if first_at is not None:
                pool.profile.observe_ttft(node_req.prompt_tokens, first_at - granted_at)
                pool.profile.observe_decode(tokens, end - first_at, (batch_at_start + len(replica.running)) / 2)
            timing = NodeTiming(
                name=node.name, kind=node.kind.value, ms=(end - job.enqueued_at) * 1000,
                replica=replica.id, priority=decision.priority,
                slack_ms=(node_req.deadline - job.enqueued_at) * 1000,
                queue_ms=(granted_at - job.enqueued_at) * 1000,
                ttft_ms=(first_at - job.enqueued_at) * 1000 if first_at else None,
                output_tokens=tokens, reason=decision.reason)
            return _LlmResult("".join(parts), tokens, timing, replica)
        finally:
            now = self.clock.now()
            pool.cancel(job, now, outcome)  # frees the slot or leaves the queue
            result = "cancelled" if outcome is None else "met" if met else "violated"
            if not (result == "violated" and job.violation_reported):  # once per node
                pool.record_outcome(node_id, now, result)
