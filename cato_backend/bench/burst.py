"""`cato-bench burst`: a burst from idle against an autoscaled pool, CATO's policy vs Ray's.

Issue #3's measurement: the pool starts at one replica; a seeded open-loop Poisson load runs
low, steps up to a rate that needs about `burst_replicas` replicas, and steps back down. The
same schedule runs once per autoscaling policy, one after the other (never together: the
machine has two cores), each against a fresh backend (`cato-backend serve`, a subprocess)
whose replicas are EMULATED engines started by the backend as local processes, with an
emulated cold start (`cato-backend emulate --cold-start-s`). Everything else (router,
queue, SLAs, engine profile, schedule) is the same for both: only `autoscale.policy`
differs, each policy with its documented defaults (`AutoscalerConfig`).

Load: one task kind (default inline `completion`, TTFT-critical, its default SLA), all
requests alike (a fixed-length code prefix, fixed `max_tokens`), sent to `POST /v1/tasks`
over loopback and read to the end; nothing is cancelled. One replica's capacity comes from
the engine profile (see `replica_capacity_rps`); the low and burst rates are multiples of it.

Metrics (definitions also in the Markdown):
- goodput: share of requests meeting their SLA (the backend's `done.sla.met`; a request
  that ended in an error or not at all counts as not met), by ISSUE time, in `bin_s` bins
  aligned to the burst's start;
- recovery time: from the burst's start to the start of the first bin from which every bin
  for `recovery_hold_s` (inside the burst) has goodput >= `recovery_threshold`; 0 when it
  never dipped; None when it did not recover within the burst;
- goodput during the burst: met / issued among requests issued during the burst;
- replica-seconds: the integral over the schedule of replicas provisioned (starting, ready or
  draining: a cold start is replica time spent), from the backend's `/v1/status` polled every
  `poll_s`; the backend's own counter (`replica_seconds`) over the same span as a check;
- lost requests (errors + never finished), p95 TTFT / E2E (backend-measured, `done` event),
  scale decisions (up / down) as the backend logged them.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import yaml

from . import (
    environment,
    environment_note,
    finish_environment,
    fmt,
    md_table,
    profile_record,
    resolve_profile,
    write_results,
)
from ..profile_measure import cpu_times
from ..provisioner import free_port
from .overhead import _Proc, _proc_cpu_s, _wait_ready

MODEL = "smollm2"
SERVED_NAME = "SmolLM2-135M-Instruct"
POLICIES = ("cato", "ray")
POLICY_LABEL = {"cato": "CATO (paper Alg. 2)", "ray": "Ray Serve-like (queue length)"}

# A Python prefix for inline completion; repeated and cut to `prompt_chars`.
_CODE = ("import math\n\n\ndef is_prime(n: int) -> bool:\n"
         "    \"\"\"True when n is a prime number.\"\"\"\n    if n < 2:\n        return False\n"
         "    for d in range(2, int(math.sqrt(n)) + 1):\n        if n % d == 0:\n"
         "            return False\n    return True\n\n\n")


@dataclass
class BurstConfig:
    policies: list[str] = field(default_factory=lambda: list(POLICIES))
    # The schedule (seconds): low load, the burst, low load again.
    before_s: float = 10.0
    burst_s: float = 150.0
    # Long enough after the burst for scale-down to show: CATO's policy removes a replica
    # after 6 idle 10-s windows (+ cooldown); Ray's waits 600 s, which is the difference.
    after_s: float = 180.0
    # Offered load as multiples of one replica's capacity (replica_capacity_rps).
    low_replicas: float = 0.3
    burst_replicas: float = 3.5
    # Emulated cold start of every replica (the first one included), seconds.
    cold_start_s: float = 24.0
    min_replicas: int = 1
    max_replicas: int = 6
    max_in_flight: int = 8  # the backend's per-replica limit (the config's default)
    kind: str = "completion"
    sla_ms: float | None = None  # None: the kind's default SLA
    max_tokens: int = 16
    prompt_chars: int = 400
    router: str = "cato"  # the same for both policies
    # Metrics.
    bin_s: float = 5.0
    recovery_threshold: float = 0.9
    recovery_hold_s: float = 20.0
    # Mechanics.
    poll_s: float = 1.0
    scaling_tick_s: float = 1.0
    drain_timeout_s: float = 120.0  # after the schedule, the longest wait for open requests
    request_timeout_s: float = 400.0
    start_timeout_s: float = 120.0  # for the first replica (beyond its cold start)
    timeout_s: float = 900.0  # the whole command
    profile: str | None = None
    seed: int = 0
    # Knob overrides, recorded (empty: each policy's documented defaults).
    cato: dict[str, Any] = field(default_factory=dict)
    ray: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    @property
    def duration_s(self) -> float:
        return self.before_s + self.burst_s + self.after_s

    def validate(self) -> None:
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown or not self.policies or len(set(self.policies)) != len(self.policies):
            raise ValueError(f"policies must be distinct names among {POLICIES}")
        if min(self.before_s, self.after_s, self.cold_start_s) < 0 or self.burst_s <= 0:
            raise ValueError("durations must be >= 0 (the burst > 0)")
        if self.low_replicas < 0 or self.burst_replicas <= 0:
            raise ValueError("rates must be >= 0 (the burst's > 0)")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError("need 1 <= min_replicas <= max_replicas")
        if self.bin_s <= 0 or self.recovery_hold_s < 0 or not 0 < self.recovery_threshold <= 1:
            raise ValueError("need bin_s > 0, recovery_hold_s >= 0, 0 < threshold <= 1")


# -- the load -------------------------------------------------------------------------------

def replica_capacity_rps(profile: Any, prompt_tokens: int, max_tokens: int,
                         max_in_flight: int) -> float:
    """Requests per second one saturated replica completes (the emulator's timing model).

    With `max_in_flight` sequences always running, every request costs its prefill once
    (overhead + per-token prefill, charged serially within a scheduler step) and
    `max_tokens` tokens, one per step shared by the whole batch, each step lasting
    `decode_step_ms(max_in_flight)` (one token of every running sequence). Per second:
    X * prefill + (X * max_tokens / max_in_flight) * step = 1, so
    X = 1 / (prefill + max_tokens * step / max_in_flight). An approximation: a step in which a
    request is prefilled decodes the others too, and the batch dips while slots refill."""
    prefill_s = profile.ttft_s(prompt_tokens)
    step_s = profile.decode_step_ms(max_in_flight) / 1000.0
    return 1.0 / (prefill_s + max_tokens * step_s / max_in_flight)


def phases(cfg: BurstConfig, capacity_rps: float) -> list[dict[str, Any]]:
    low, burst = cfg.low_replicas * capacity_rps, cfg.burst_replicas * capacity_rps
    out, t = [], 0.0
    for name, dur, rate in (("before", cfg.before_s, low), ("burst", cfg.burst_s, burst),
                            ("after", cfg.after_s, low)):
        if dur > 0:
            out.append({"name": name, "start_s": t, "end_s": t + dur, "rate_rps": rate})
        t += dur
    return out


def arrival_times(phase_list: Sequence[dict[str, Any]], seed: int) -> list[tuple[float, str]]:
    """Poisson arrivals, piecewise-constant rate per phase; seeded, so every policy gets the
    same schedule. (Memoryless: restarting the gaps at a phase boundary is exact.)"""
    rng = np.random.default_rng(seed)
    out: list[tuple[float, str]] = []
    for ph in phase_list:
        rate, t = ph["rate_rps"], ph["start_s"]
        if rate <= 0:
            continue
        while True:
            t += float(rng.exponential(1.0 / rate))
            if t >= ph["end_s"]:
                break
            out.append((t, ph["name"]))
    return out


def prefix_text(i: int, chars: int) -> str:
    """Request i's code prefix: `chars` characters, distinct per request (no cache hits)."""
    head = f"# request {i}\n"
    body = (_CODE * (chars // len(_CODE) + 2))[: max(0, chars - len(head))]
    return head + body


# -- pure metric computation ----------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    """One request as the client saw it. `t` is its scheduled issue time (seconds from the
    schedule's start); `met` is the backend's SLA verdict, None when it did not finish."""

    t: float
    phase: str
    met: bool | None
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    client_ttft_ms: float | None = None
    replica: str | None = None
    error: str | None = None


def goodput_series(records: Sequence[Record], start: float, end: float,
                   bin_s: float) -> list[dict[str, Any]]:
    """Bins [start + k*bin_s, start + (k+1)*bin_s) up to `end` (the last may be shorter), by
    issue time: n issued, met, goodput (None for an empty bin). Not finished = not met."""
    nbins = max(0, math.ceil((end - start) / bin_s - 1e-9))
    n = [0] * nbins
    met = [0] * nbins
    for r in records:
        if start <= r.t < end:
            k = min(nbins - 1, int((r.t - start) // bin_s))
            n[k] += 1
            met[k] += bool(r.met)
    return [{"t": start + k * bin_s, "n": n[k], "met": met[k],
             "goodput": met[k] / n[k] if n[k] else None} for k in range(nbins)]


def recovery_time(series: Sequence[dict[str, Any]], burst_start: float, burst_end: float,
                  bin_s: float, threshold: float, hold_s: float) -> float | None:
    """Seconds from the burst's start to the start of the first bin b (at or after the start)
    such that b and every bin starting before b + hold_s have goodput >= threshold, all of
    them inside the burst (an empty bin passes: nothing was late). 0: it never dipped below
    the threshold for long; None: no such bin within the burst."""
    bins = [b for b in series if b["t"] >= burst_start - 1e-9 and b["t"] + bin_s <= burst_end + 1e-9]
    need = max(1, math.ceil(hold_s / bin_s - 1e-9))
    ok = [b["goodput"] is None or b["goodput"] >= threshold for b in bins]
    for i in range(len(bins) - need + 1):
        if all(ok[i:i + need]):
            return bins[i]["t"] - burst_start
    return None


def goodput_between(records: Sequence[Record], start: float, end: float) -> dict[str, Any]:
    sel = [r for r in records if start <= r.t < end]
    met = sum(bool(r.met) for r in sel)
    return {"issued": len(sel), "met": met, "goodput": met / len(sel) if sel else None}


def integrate_steps(samples: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """Integral over [start, end] of the step function the samples define (each value holds
    until the next sample; the last until `end`; before the first sample, the first value)."""
    pts = sorted(samples)
    total = 0.0
    for i, (t, v) in enumerate(pts):
        a = start if i == 0 else max(start, t)
        b = min(end, pts[i + 1][0]) if i + 1 < len(pts) else end
        if b > a:
            total += v * (b - a)
    return total


def percentile(values: Sequence[float], q: float) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.percentile(vals, q)) if vals else None


def policy_metrics(records: Sequence[Record], samples: Sequence[dict[str, Any]],
                   decisions: Sequence[dict[str, Any]], phase_list: Sequence[dict[str, Any]],
                   cfg: BurstConfig) -> dict[str, Any]:
    """Everything reported for one policy, from plain data (what the run collected)."""
    burst = next(p for p in phase_list if p["name"] == "burst")
    b0, b1 = burst["start_s"], burst["end_s"]
    end = phase_list[-1]["end_s"]
    # Bins aligned to the burst's start, reaching back over the phase before it.
    first = b0 - math.ceil(b0 / cfg.bin_s - 1e-9) * cfg.bin_s
    series = goodput_series(records, first, end, cfg.bin_s)
    active = [(s["t"], s["active"]) for s in samples]
    ready = [(s["t"], s["ready"]) for s in samples]
    in_window = [s for s in samples if 0 <= s["t"] <= end]
    counter = None
    if len(in_window) >= 2 and in_window[0].get("replica_seconds") is not None \
            and in_window[-1].get("replica_seconds") is not None:
        # rescaled to the whole schedule, the span the polls cover being slightly shorter
        span = in_window[-1]["t"] - in_window[0]["t"]
        if span > 0:
            counter = ((in_window[-1]["replica_seconds"] - in_window[0]["replica_seconds"])
                       * end / span)
    lost = [r for r in records if r.met is None]
    ups = [d for d in decisions if d["action"] == "up"]
    downs = [d for d in decisions if d["action"] == "down"]
    by_phase = {p["name"]: goodput_between(records, p["start_s"], p["end_s"]) for p in phase_list}
    rec = recovery_time(series, b0, b1, cfg.bin_s, cfg.recovery_threshold, cfg.recovery_hold_s)
    burst_bins = [b["goodput"] for b in series if b0 <= b["t"] < b1 and b["goodput"] is not None]
    need = math.ceil(cfg.burst_replicas - 1e-9)
    enough = next((s["t"] for s in samples if s["t"] >= b0 and s["ready"] >= need), None)
    in_burst = [s for s in samples if b0 <= s["t"] <= end]
    peak = max(in_burst, key=lambda s: s.get("queued", 0), default=None)
    cleared = None
    if peak is not None and peak.get("queued", 0) > 0:
        cleared = next((s["t"] for s in in_burst if s["t"] > peak["t"] and s["queued"] == 0), None)
    return {
        "requests": len(records),
        "lost": len(lost),
        "lost_examples": [r.error for r in lost[:3]],
        "goodput_overall": goodput_between(records, 0.0, end)["goodput"],
        "goodput_by_phase": by_phase,
        "goodput_burst": by_phase["burst"]["goodput"],
        "recovery_s": rec,
        "recovered": rec is not None,
        "min_bin_goodput_in_burst": min(burst_bins) if burst_bins else None,
        "replica_seconds": integrate_steps(active, 0.0, end),
        "replica_seconds_backend_counter": counter,
        "ready_replica_seconds": integrate_steps(ready, 0.0, end),
        "replica_seconds_burst": integrate_steps(active, b0, b1),
        "peak_replicas": max((s["active"] for s in in_window), default=None),
        "replicas_at_end": in_window[-1]["active"] if in_window else None,
        "ttft_ms_p50": percentile([r.ttft_ms for r in records], 50),
        "ttft_ms_p95": percentile([r.ttft_ms for r in records], 95),
        "ttft_ms_p95_burst": percentile([r.ttft_ms for r in records if b0 <= r.t < b1], 95),
        "e2e_ms_p95": percentile([r.e2e_ms for r in records], 95),
        "client_ttft_ms_p95": percentile([r.client_ttft_ms for r in records], 95),
        "scale_ups": len(ups),
        "scale_downs": len(downs),
        # Timeline, seconds from the burst's start (None: did not happen in the run).
        "first_scale_up_s": (ups[0]["t"] - b0) if ups else None,
        "enough_ready_s": None if enough is None else enough - b0,  # ready >= ceil(needed)
        "peak_backlog": None if peak is None else peak.get("queued", 0),
        "backlog_cleared_s": None if cleared is None else cleared - b0,
        "first_scale_down_s": (downs[0]["t"] - b0) if downs else None,
        "decisions": list(decisions),
        "goodput_series": series,
    }


# -- one policy's run -----------------------------------------------------------------------

def backend_config(cfg: BurstConfig, policy: str, profile_path: Path, port: int) -> dict:
    autoscale: dict[str, Any] = {"policy": policy, "min_replicas": cfg.min_replicas,
                                 "max_replicas": cfg.max_replicas}
    if cfg.cato:
        autoscale["cato"] = dict(cfg.cato)
    if cfg.ray:
        autoscale["ray"] = dict(cfg.ray)
    data: dict[str, Any] = {
        "host": "127.0.0.1", "port": port,
        "models": {MODEL: {"served_name": SERVED_NAME, "engine": "emulated",
                           "profile": str(profile_path), "replicas": cfg.min_replicas,
                           "max_in_flight": cfg.max_in_flight,
                           "engine_args": ["--cold-start-s", f"{cfg.cold_start_s:g}"],
                           "autoscale": autoscale}},
        "router": {"policy": cfg.router},
        "timeouts": {"scaling_tick_s": cfg.scaling_tick_s},
        # One client (this benchmark) holds the whole backlog open: a per-address stream cap
        # would turn the backlog into 429s instead of measuring how fast it drains.
        "limits": {"max_streams_per_client": None},
    }
    if cfg.sla_ms is not None:
        data["kinds"] = {cfg.kind: {"sla_ms": cfg.sla_ms}}
    return data


def _pid_is_emulator(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except OSError:
        return False
    return b"cato_backend.cli" in cmd and b"emulate" in cmd


def _stop_leftover(pids: set[int]) -> list[int]:
    """Stop replica processes the backend left running (only our emulators, by PID)."""
    stopped = []
    for pid in sorted(pids):
        if _pid_is_emulator(pid):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(pid, sig)
                except (ProcessLookupError, PermissionError):
                    break
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and _pid_is_emulator(pid):
                    time.sleep(0.05)
                if not _pid_is_emulator(pid):
                    break
            stopped.append(pid)
    return stopped


async def _one_request(session: aiohttp.ClientSession, url: str, body: bytes, t: float,
                       phase: str, timeout: aiohttp.ClientTimeout) -> Record:
    t0 = time.monotonic()
    first: float | None = None
    last = b""
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"},
                                timeout=timeout) as resp:
            if resp.status != 200:
                return Record(t, phase, None, error=f"HTTP {resp.status}: "
                              f"{(await resp.read())[:200]!r}")
            async for line in resp.content:
                if not line.startswith(b"data: "):
                    continue
                if first is None and line.startswith(b'data: {"type":"token"'):
                    first = time.monotonic()
                last = line
    except (TimeoutError, aiohttp.ClientError) as e:
        return Record(t, phase, None, error=f"{type(e).__name__}: {e}"[:300])
    try:
        ev = json.loads(last[6:])
    except ValueError:
        return Record(t, phase, None, error=f"stream ended without a final event: {last[:200]!r}")
    if ev.get("type") != "done":
        return Record(t, phase, None, error=f"error event: {ev.get('message')}"[:300])
    return Record(t, phase, bool(ev["sla"]["met"]), ttft_ms=ev.get("ttft_ms"),
                  e2e_ms=ev.get("e2e_ms"),
                  client_ttft_ms=None if first is None else (first - t0) * 1000,
                  replica=ev.get("replica"))


async def _poll(session: aiohttp.ClientSession, url: str, t0: float, period: float,
                samples: list[dict[str, Any]], decisions: dict[tuple, dict[str, Any]],
                pids: set[int], backend_pid: int) -> None:
    """Every `period`: the pool's replicas by state, queue, replica-seconds, the autoscaler's
    new decisions, the machine's CPU busy and this benchmark's own (client, backend and
    replica processes) CPU seconds so far."""
    cpu_prev = cpu_times()
    cpu_seen: dict[int, float] = {}  # last CPU seconds read per process (kept after exit)
    while True:
        t_req = time.monotonic()
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
                st = await r.json()
        except (TimeoutError, aiohttp.ClientError, ValueError):
            await asyncio.sleep(period)
            continue
        now = time.monotonic()
        t = (t_req + now) / 2 - t0
        reps = [x for x in st["replicas"] if x["model"] == MODEL]
        for x in reps:
            if x.get("pid"):
                pids.add(int(x["pid"]))
        states = [x["state"] for x in reps]
        m = st["models"][MODEL]
        cpu = cpu_times()
        busy = None
        if cpu and cpu_prev and cpu[1] > cpu_prev[1]:
            busy = (cpu[0] - cpu_prev[0]) / (cpu[1] - cpu_prev[1]) * (os.cpu_count() or 1)
        cpu_prev = cpu
        for pid in (backend_pid, *pids):
            v = _proc_cpu_s(pid)
            if v is not None:
                cpu_seen[pid] = v
        samples.append({
            "t": round(t, 3),
            "active": sum(s in ("starting", "ready", "draining") for s in states),
            "ready": states.count("ready"), "starting": states.count("starting"),
            "draining": states.count("draining"),
            "queued": sum(x["queue_length"] for x in reps) + m.get("pending", 0),
            "running": sum(x["running"] for x in reps),
            "replica_seconds": m.get("replica_seconds"),
            "utilization": m.get("utilization"),
            "cpu_busy_cores": None if busy is None else round(busy, 2),
            "own_cpu_s": round(sum(cpu_seen.values()) + time.process_time(), 2),
        })
        for d in (m.get("autoscaler") or {}).get("last_decisions", []):
            key = (d["action"], d["from"], d["to"], d["reason"])
            if key not in decisions:
                decisions[key] = {"t": round(t - d["age_s"], 1), "action": d["action"],
                                  "from": d["from"], "to": d["to"], "remove": d["remove"],
                                  "reason": d["reason"]}
        await asyncio.sleep(max(0.0, period - (time.monotonic() - t_req)))


async def run_policy(cfg: BurstConfig, policy: str, profile_path: Path,
                     schedule: Sequence[tuple[float, str]], phase_list: Sequence[dict[str, Any]],
                     tmp: Path, info: dict[str, Any], bar: Any = None) -> dict[str, Any]:
    """Start a backend with this autoscaling policy, run the schedule, stop everything."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cfg_path = tmp / f"backend-{policy}.yaml"
    config = backend_config(cfg, policy, profile_path, port)
    cfg_path.write_text(yaml.safe_dump(config))
    info["backend_config"] = config
    proc: _Proc | None = None
    pids: set[int] = set()
    records: list[Record] = []
    samples: list[dict[str, Any]] = []
    decisions: dict[tuple, dict[str, Any]] = {}
    try:
        proc = _Proc(f"backend ({policy})", [
            sys.executable, "-m", "cato_backend.cli", "serve", "--config", str(cfg_path),
        ], tmp / f"backend-{policy}.log")
        info["command"] = proc.cmd
        info["backend_pid"] = proc.pid
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            t_start = time.monotonic()
            await _wait_ready(session, proc, url + "/healthz",
                              lambda b: json.loads(b).get("ready_replicas", 0) >= cfg.min_replicas,
                              cfg.cold_start_s + cfg.start_timeout_s)
            info["first_ready_after_s"] = round(time.monotonic() - t_start, 2)
            async with session.get(url + "/v1/status") as r:
                st = await r.json()
            info["autoscaler_at_start"] = st["models"][MODEL]["autoscaler"]
            t0 = time.monotonic()
            poller = asyncio.create_task(_poll(session, url + "/v1/status", t0, cfg.poll_s,
                                               samples, decisions, pids, proc.pid))
            timeout = aiohttp.ClientTimeout(total=cfg.request_timeout_s)
            tasks: list[asyncio.Task[Record]] = []
            late = []
            for i, (t, ph) in enumerate(schedule):
                delay = t0 + t - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    late.append(-delay)
                body = json.dumps({"kind": cfg.kind, "language": "python",
                                   "prefix": prefix_text(i, cfg.prompt_chars), "suffix": "",
                                   "max_tokens": cfg.max_tokens}).encode()
                task = asyncio.create_task(_one_request(session, url + "/v1/tasks", body, t, ph,
                                                        timeout))
                if bar is not None:
                    task.add_done_callback(lambda _: bar.update(1))
                tasks.append(task)
            # The schedule's span ends at its last phase, not its last arrival.
            rest = t0 + phase_list[-1]["end_s"] - time.monotonic()
            if rest > 0:
                await asyncio.sleep(rest)
            info["send_lag_ms"] = {"late_sends": len(late),
                                   "max": 1000 * max(late) if late else 0.0,
                                   "p99": 1000 * float(np.percentile(late, 99)) if late else 0.0}
            _, pending = await asyncio.wait(tasks, timeout=cfg.drain_timeout_s)
            info["drain_s"] = round(time.monotonic() - t0 - phase_list[-1]["end_s"], 2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
            for task, (t, ph) in zip(tasks, schedule):
                if task.cancelled():
                    records.append(Record(t, ph, None, error="not finished within the drain "
                                          f"timeout ({cfg.drain_timeout_s:g}s)"))
                else:
                    records.append(task.result())
            async with session.get(url + "/v1/status") as r:
                final = await r.json()
            info["final_status_models"] = final["models"]
            # Where the requests went: a router that fills the first replicas leaves the last
            # ones idle (and so removable by an idle-based scale-down).
            info["final_replicas"] = [
                {k: x.get(k) for k in ("id", "state", "served", "failed", "busy_s",
                                       "provisioned_s", "start_s")}
                for x in final["replicas"] if x["model"] == MODEL]
    finally:
        if proc is not None:
            proc.stop(timeout_s=30.0)
            info["backend_log_tail"] = proc.tail(15)
        info["replica_pids"] = sorted(pids)
        info["leftover_replicas_stopped"] = _stop_leftover(pids)
    return policy_metrics(records, samples, sorted(decisions.values(), key=lambda d: d["t"]),
                          phase_list, cfg) | {"samples": samples}


# -- the benchmark ----------------------------------------------------------------------------

def _knobs(cfg: BurstConfig) -> dict[str, Any]:
    """Every knob of both policies as they ran (defaults + overrides)."""
    from ..autoscaler import AutoscalerConfig

    a = AutoscalerConfig(min_replicas=cfg.min_replicas, max_replicas=cfg.max_replicas,
                         cato=cfg.cato, ray=cfg.ray)
    return {"min_replicas": a.min_replicas, "max_replicas": a.max_replicas,
            "cato": a.cato.model_dump(), "ray": a.ray.model_dump(),
            "overridden": {"cato": sorted(cfg.cato), "ray": sorted(cfg.ray)}}


def run_burst(cfg: BurstConfig, out: str | Path, name: str = "burst",
              plot: bool = True) -> dict[str, Any]:
    from ..config import default_config
    from ..kinds import TaskKind
    from ..tokens import estimate_tokens

    cfg.validate()
    env = environment()
    t_run = time.monotonic()
    kind_cfg = default_config().kinds[TaskKind(cfg.kind)]
    sla_ms = cfg.sla_ms if cfg.sla_ms is not None else kind_cfg.sla_ms
    prompt_tokens = estimate_tokens(prefix_text(0, cfg.prompt_chars))
    runs: dict[str, dict[str, Any]] = {}
    setups: dict[str, dict[str, Any]] = {}
    complete = True
    with tempfile.TemporaryDirectory(prefix="cato-bench-burst-") as tmpdir:
        tmp = Path(tmpdir)
        profile_path, profile, source = resolve_profile(cfg.profile, tmp)
        cap = replica_capacity_rps(profile, prompt_tokens, cfg.max_tokens, cfg.max_in_flight)
        phase_list = phases(cfg, cap)
        schedule = arrival_times(phase_list, cfg.seed)
        bar = None
        if cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(schedule) * len(cfg.policies), desc="burst", unit="req",
                       file=sys.stderr, leave=False)

        async def run_all() -> None:
            for policy in cfg.policies:
                setups[policy] = {}
                if bar is not None:
                    bar.set_postfix_str(policy)
                runs[policy] = await run_policy(cfg, policy, profile_path, schedule, phase_list,
                                                tmp, setups[policy], bar)

        try:
            asyncio.run(asyncio.wait_for(run_all(), cfg.timeout_s))
        except TimeoutError:
            complete = False
        finally:
            if bar is not None:
                bar.close()
    finish_environment(env)
    sla_metric = "ttft" if TaskKind(cfg.kind) in (TaskKind.COMPLETION,
                                                  TaskKind.GENERATION) else "e2e"
    payload = {
        "benchmark": "burst",
        "description": "a burst from one replica to a load needing several, open-loop seeded "
                       "Poisson arrivals; the same schedule for each autoscaling policy, "
                       "sequentially, each against a fresh backend",
        "engine": "EMULATED (cato-backend emulate as local replica processes started by the "
                  "backend, timing from the profile, emulated cold start; not a real model)",
        "config": asdict(cfg),
        "knobs": _knobs(cfg),
        "environment": env,
        "load": {
            "kind": cfg.kind, "sla": {"metric": sla_metric, "target_ms": sla_ms},
            "prompt_tokens": prompt_tokens, "max_tokens": cfg.max_tokens,
            "profile": profile_record(profile_path, profile, source),
            "replica_capacity_rps": cap,
            "capacity_formula": "1 / (prefill_s(prompt) + max_tokens * decode_step_s("
                                "max_in_flight) / max_in_flight)",
            "prefill_ms": 1000 * profile.ttft_s(prompt_tokens),
            "decode_step_ms_at_max_in_flight": profile.decode_step_ms(cfg.max_in_flight),
            "phases": phase_list,
            "requests_per_policy": len(schedule),
            "replicas_needed_in_burst": cfg.burst_replicas,
        },
        "setup": setups,
        "results": runs,
        "complete": complete and set(runs) == set(cfg.policies),
        "elapsed_s": time.monotonic() - t_run,
    }
    payload["plot"] = f"{name}.png" if plot and runs else None
    write_results(out, name, payload, burst_markdown(payload))
    if payload["plot"]:
        plot_burst(payload, Path(out) / payload["plot"])
    return payload


# -- the report ------------------------------------------------------------------------------

def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def _s(x: float | None) -> str:
    return "none in the run" if x is None else f"{x:.0f} s"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def burst_markdown(p: dict[str, Any]) -> str:
    cfg, load, runs = p["config"], p["load"], p["results"]
    pols = [x for x in cfg["policies"] if x in runs]
    burst = next(ph for ph in load["phases"] if ph["name"] == "burst")
    low = next((ph for ph in load["phases"] if ph["name"] != "burst"), None)
    cap = load["replica_capacity_rps"]

    def rec(r: dict[str, Any]) -> str:
        if r["recovery_s"] is None:
            return f"not within the burst (> {burst['end_s'] - burst['start_s']:g} s)"
        return f"{r['recovery_s']:.0f} s"

    rows = [
        ("time until goodput recovers", [rec(runs[x]) for x in pols],
         _ratio(*(runs[x]["recovery_s"] for x in pols)) if len(pols) == 2 else "n/a"),
        ("goodput during the burst", [_pct(runs[x]["goodput_burst"]) for x in pols],
         _ratio(*(runs[x]["goodput_burst"] for x in pols)) if len(pols) == 2 else "n/a"),
        ("goodput, whole run", [_pct(runs[x]["goodput_overall"]) for x in pols],
         _ratio(*(runs[x]["goodput_overall"] for x in pols)) if len(pols) == 2 else "n/a"),
        ("worst 5-s bin in the burst" if cfg["bin_s"] == 5 else f"worst {cfg['bin_s']:g}-s bin",
         [_pct(runs[x]["min_bin_goodput_in_burst"]) for x in pols], ""),
        ("replica-seconds (whole schedule)", [fmt(runs[x]["replica_seconds"], 0) for x in pols],
         _ratio(*(runs[x]["replica_seconds"] for x in pols)) if len(pols) == 2 else "n/a"),
        ("replica-seconds (backend counter)",
         [fmt(runs[x]["replica_seconds_backend_counter"], 0) for x in pols], ""),
        ("replica-seconds during the burst", [fmt(runs[x]["replica_seconds_burst"], 0)
                                              for x in pols], ""),
        ("peak / final replicas", [f"{runs[x]['peak_replicas']} / {runs[x]['replicas_at_end']}"
                                   for x in pols], ""),
        ("first scale-up, after the burst began", [_s(runs[x]["first_scale_up_s"]) for x in pols],
         ""),
        (f"≥ {math.ceil(cfg['burst_replicas'] - 1e-9)} replicas ready, after the burst began",
         [_s(runs[x]["enough_ready_s"]) for x in pols], ""),
        ("peak backlog (requests queued in the backend)",
         [str(runs[x]["peak_backlog"]) for x in pols], ""),
        ("backlog cleared, after the burst began", [_s(runs[x]["backlog_cleared_s"])
                                                    for x in pols], ""),
        ("first scale-down, after the burst began", [_s(runs[x]["first_scale_down_s"])
                                                     for x in pols], ""),
        ("scale decisions (up / down)", [f"{runs[x]['scale_ups']} / {runs[x]['scale_downs']}"
                                         for x in pols], ""),
        ("requests / lost", [f"{runs[x]['requests']} / {runs[x]['lost']}" for x in pols], ""),
        ("p95 TTFT, whole run (ms)", [fmt(runs[x]["ttft_ms_p95"], 0) for x in pols],
         _ratio(*(runs[x]["ttft_ms_p95"] for x in pols)) if len(pols) == 2 else "n/a"),
        ("p95 TTFT, burst (ms)", [fmt(runs[x]["ttft_ms_p95_burst"], 0) for x in pols], ""),
        ("p95 E2E, whole run (ms)", [fmt(runs[x]["e2e_ms_p95"], 0) for x in pols], ""),
        ("p95 TTFT at the client (ms)", [fmt(runs[x]["client_ttft_ms_p95"], 0) for x in pols], ""),
        ("CPU busy in the burst, machine mean / max; own mean (cores)", [
            _cpu(runs[x], burst) for x in pols], ""),
    ]
    headers = ["metric"] + [POLICY_LABEL[x] for x in pols] + (
        [f"ratio {pols[0]}/{pols[1]}"] if len(pols) == 2 else [])
    table = md_table(headers, [[name, *vals] + ([ratio] if len(pols) == 2 else [])
                               for name, vals, ratio in rows])
    knobs = p["knobs"]
    prof = load["profile"]
    lines = [
        "# cato-bench burst: autoscaling under a burst from idle (CATO vs Ray Serve-like)",
        "",
        ("Engines: **EMULATED** (`cato-backend emulate`, timing from the profile "
         f"{prof['model']} @ {prof['hardware']} ({prof['source']}); not a real model), started "
         "by the backend as local processes, each with an emulated cold start of "
         f"**{cfg['cold_start_s']:g} s** (`--cold-start-s`; `/health` answers 503 until then). "
         "One backend per policy (`cato-backend serve`, fresh), the policies run one after the "
         f"other ({', '.join(pols)}), the same seeded schedule for each; router "
         f"`{cfg['router']}` for both; only `autoscale.policy` differs."),
        "",
        ("Load: open-loop Poisson arrivals (seed "
         f"{cfg['seed']}) of `{load['kind']}` tasks only ({load['prompt_tokens']} prompt tokens, "
         f"{load['max_tokens']} output tokens, SLA {load['sla']['metric'].upper()} ≤ "
         f"{load['sla']['target_ms']:g} ms), nothing cancelled. One replica (max_in_flight "
         f"{cfg['max_in_flight']}) completes about **{cap:.2f} requests/s** at saturation: "
         f"1 / (prefill {load['prefill_ms']:.1f} ms + {load['max_tokens']} tokens × "
         f"{load['decode_step_ms_at_max_in_flight']:.1f} ms step at batch "
         f"{cfg['max_in_flight']} / {cfg['max_in_flight']}). Schedule: "
         + ", ".join(f"{ph['name']} {ph['end_s'] - ph['start_s']:g} s at "
                     f"{ph['rate_rps']:.2f} req/s" for ph in load["phases"])
         + f" ({cfg['burst_replicas']:g}× one replica's capacity in the burst"
         + (f", {cfg['low_replicas']:g}× outside it" if low else "")
         + f"); {load['requests_per_policy']} requests per policy. Replicas between "
         f"{cfg['min_replicas']} and {cfg['max_replicas']}. No request is dropped: what "
         "queues up until enough replicas are ready is served late, so goodput recovers only "
         "once that backlog has drained (the backend's queue gives violated requests one "
         "dispatch in four while on-time ones wait)."),
        "",
        table,
        "",
        "Definitions:",
        "",
        (f"- **goodput**: share of requests that met their SLA (the backend's `done.sla.met`; "
         "a request that ended in an error or did not finish counts as not met), by the time "
         f"the request was issued, in {cfg['bin_s']:g}-s bins aligned to the burst's start."),
        (f"- **time until goodput recovers**: from the burst's start to the start of the first "
         f"bin from which every {cfg['bin_s']:g}-s bin for {cfg['recovery_hold_s']:g} s, "
         f"inside the burst, has goodput ≥ {100 * cfg['recovery_threshold']:g}%; 0 when it "
         "never dipped below that for long; 'not within the burst' when no such stretch "
         "exists before the burst ends."),
        ("- **goodput during the burst**: met / issued among the requests issued during the "
         "burst."),
        ("- **replica-seconds**: integral over the whole schedule of the replicas provisioned "
         "(starting, ready or draining: a cold start is replica time spent), from "
         f"`/v1/status` polled every {cfg['poll_s']:g} s; the backend counter row is its own "
         "`replica_seconds` over the polled span, scaled to the schedule (a cross-check). "
         "Neither policy removes replicas quickly after the burst: CATO only once a replica "
         "has been idle (nothing running or queued) for "
         f"{knobs['cato']['idle_windows_before_scale_down']} × {knobs['cato']['window_s']:g} "
         f"s, one per {knobs['cato']['cooldown_s']:g}-s cooldown; Ray only after wanting "
         f"fewer for {knobs['ray']['downscale_delay_s']:g} s. Replicas still up at the end "
         "of the schedule are not counted beyond it."),
        ("- **lost**: requests that got no `done` event (error, or not finished within "
         f"{cfg['drain_timeout_s']:g} s after the schedule); must be 0. **p95 TTFT / E2E**: "
         "the backend's `done.ttft_ms` / `e2e_ms` over every request; 'at the client' is "
         "send → first token event as this client saw it. **Scale decisions**: non-hold "
         "decisions the backend's autoscaler made during the run."),
        "",
        ("Policy knobs (documented defaults unless listed as overridden: "
         f"{knobs['overridden']}):"),
        "",
        f"- CATO: `{json.dumps(knobs['cato'])}`",
        f"- Ray: `{json.dumps(knobs['ray'])}`",
        "",
        f"![goodput and replicas over time]({p['plot']})" if p.get("plot") else "",
        "",
    ]
    if not p.get("complete", True):
        lines += [f"**Incomplete**: stopped by the time limit ({cfg['timeout_s']:g} s).", ""]
    lines.append("Client, backend and emulated replicas all run on this machine and share its "
                 "cores. " + environment_note(p["environment"], p["elapsed_s"]))
    return "\n".join(lines)


def _cpu(r: dict[str, Any], burst: dict[str, Any]) -> str:
    """Machine CPU busy (mean / max over the polls in the burst) and this benchmark's own
    share (client + backend + replicas: CPU seconds over the burst per second)."""
    sel = [s for s in r.get("samples", []) if burst["start_s"] <= s["t"] < burst["end_s"]]
    v = [s["cpu_busy_cores"] for s in sel if s.get("cpu_busy_cores") is not None]
    if not v:
        return "n/a"
    own = ""
    if len(sel) >= 2 and sel[-1]["t"] > sel[0]["t"]:
        own = (f"; own {(sel[-1]['own_cpu_s'] - sel[0]['own_cpu_s']) / (sel[-1]['t'] - sel[0]['t']):.2f}")
    return f"{np.mean(v):.2f} / {max(v):.2f}{own}"


def plot_burst(p: dict[str, Any], path: Path) -> Path:
    """Offered load, goodput per bin and replicas over time, both policies (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg, load, runs = p["config"], p["load"], p["results"]
    burst = next(ph for ph in load["phases"] if ph["name"] == "burst")
    colors = {"cato": "tab:blue", "ray": "tab:orange"}
    fig, axes = plt.subplots(4, 1, figsize=(10, 10.5), sharex=True,
                             gridspec_kw={"height_ratios": [1, 1.4, 1.4, 1]})
    end = load["phases"][-1]["end_s"]
    for ax in axes:
        ax.axvspan(burst["start_s"], burst["end_s"], color="0.92", zorder=0)
        ax.grid(alpha=0.3)
    ax = axes[0]
    first = next(iter(runs.values()))
    xs = [b["t"] for b in first["goodput_series"]]
    ax.step(xs, [b["n"] / cfg["bin_s"] for b in first["goodput_series"]], where="post",
            color="0.3", label="offered (issued per bin)")
    cap = load["replica_capacity_rps"]
    for k in (1, 4):
        ax.axhline(k * cap, ls=":", color="0.5")
        ax.text(end, k * cap, f" {k}× replica capacity", va="center", fontsize=8, color="0.4")
    ax.set_ylabel("requests/s")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("cato-bench burst (EMULATED replicas, "
                 f"{cfg['cold_start_s']:g} s cold start): {load['kind']}, "
                 f"{load['sla']['metric'].upper()} SLA {load['sla']['target_ms']:g} ms")
    for policy, r in runs.items():
        c = colors.get(policy)
        s = r["goodput_series"]
        axes[1].step([b["t"] for b in s], [np.nan if b["goodput"] is None else 100 * b["goodput"]
                                           for b in s], where="post", color=c,
                     label=f"{POLICY_LABEL[policy]}: burst goodput "
                           f"{_pct(r['goodput_burst'])}")
        if r["recovery_s"] is not None:
            axes[1].axvline(burst["start_s"] + r["recovery_s"], color=c, ls="--", lw=1)
        samples = r["samples"]
        axes[2].step([x["t"] for x in samples], [x["active"] for x in samples], where="post",
                     color=c, label=f"{POLICY_LABEL[policy]}: provisioned "
                                    f"({r['replica_seconds']:.0f} replica-s)")
        axes[2].step([x["t"] for x in samples], [x["ready"] for x in samples], where="post",
                     color=c, ls=":", label=f"{POLICY_LABEL[policy]}: ready")
        axes[3].step([x["t"] for x in samples], [x["queued"] for x in samples], where="post",
                     color=c, label=POLICY_LABEL[policy])
    axes[1].axhline(100 * cfg["recovery_threshold"], color="0.5", ls=":", lw=1)
    axes[1].set_ylabel(f"goodput per {cfg['bin_s']:g}-s bin (%)")
    axes[1].set_ylim(-3, 103)
    axes[1].legend(loc="lower right", fontsize=8)
    axes[2].set_ylabel("replicas")
    axes[2].set_ylim(0, cfg["max_replicas"] + 0.5)
    axes[2].legend(loc="upper right", fontsize=8)
    axes[3].set_ylabel("queued in backend")
    axes[3].legend(loc="upper right", fontsize=8)
    axes[3].set_xlabel("seconds from the schedule's start (grey: the burst; dashed: goodput "
                       "recovered)")
    axes[3].set_xlim(0, end)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- command line -----------------------------------------------------------------------------

def _policies(text: str) -> list[str]:
    import argparse

    values = [x.strip() for x in text.split(",") if x.strip()]
    if not values or any(v not in POLICIES for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"expected cato and/or ray, got {text!r}")
    return values


def _knob_overrides(text: str) -> dict[str, Any]:
    import argparse

    try:
        value = json.loads(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a JSON object: {e}")
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return value


def add_parser(sub, common) -> None:
    """Register `burst` on cato-bench's subparsers (`common` adds --out/--name/...)."""
    d = BurstConfig()
    p = sub.add_parser("burst", help="autoscaling under a burst from idle: CATO vs Ray "
                       "Serve-like policy, side by side (EMULATED replicas, loopback)")
    common(p, "burst")
    p.add_argument("--policies", type=_policies, default=d.policies,
                   help="autoscaling policies to run, in order (default cato,ray)")
    p.add_argument("--before", type=float, default=d.before_s,
                   help=f"seconds of low load before the burst (default {d.before_s:g})")
    p.add_argument("--burst", type=float, default=d.burst_s,
                   help=f"seconds of burst (default {d.burst_s:g})")
    p.add_argument("--after", type=float, default=d.after_s,
                   help=f"seconds of low load after the burst (default {d.after_s:g})")
    p.add_argument("--low-replicas", type=float, default=d.low_replicas,
                   help="low rate as a multiple of one replica's capacity "
                        f"(default {d.low_replicas:g})")
    p.add_argument("--burst-replicas", type=float, default=d.burst_replicas,
                   help="burst rate as a multiple of one replica's capacity "
                        f"(default {d.burst_replicas:g})")
    p.add_argument("--cold-start", type=float, default=d.cold_start_s,
                   help="emulated cold start of every replica, seconds (default "
                        f"{d.cold_start_s:g}: the measured vLLM-CPU start-up)")
    p.add_argument("--min-replicas", type=int, default=d.min_replicas)
    p.add_argument("--max-replicas", type=int, default=d.max_replicas)
    p.add_argument("--max-in-flight", type=int, default=d.max_in_flight)
    p.add_argument("--max-tokens", type=int, default=d.max_tokens)
    p.add_argument("--prompt-chars", type=int, default=d.prompt_chars)
    p.add_argument("--kind", choices=["completion", "generation", "translation",
                                      "summarization"], default=d.kind)
    p.add_argument("--sla-ms", type=float, default=None, help="default: the kind's SLA")
    p.add_argument("--router", choices=["cato", "round_robin", "p2c", "least_loaded"],
                   default=d.router, help="router for both policies (default cato)")
    p.add_argument("--bin", type=float, default=d.bin_s, help="goodput bin, seconds")
    p.add_argument("--recovery-threshold", type=float, default=d.recovery_threshold)
    p.add_argument("--recovery-hold", type=float, default=d.recovery_hold_s)
    p.add_argument("--cato-knobs", type=_knob_overrides, default={},
                   help="JSON object overriding CATO policy knobs (default: none)")
    p.add_argument("--ray-knobs", type=_knob_overrides, default={},
                   help="JSON object overriding Ray policy knobs (default: none)")
    p.add_argument("--drain-timeout", type=float, default=d.drain_timeout_s)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--timeout", type=float, default=d.timeout_s,
                   help=f"stop the whole run after this many seconds (default {d.timeout_s:g})")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")


def main_from_args(args) -> int:
    cfg = BurstConfig(
        policies=args.policies, before_s=args.before, burst_s=args.burst, after_s=args.after,
        low_replicas=args.low_replicas, burst_replicas=args.burst_replicas,
        cold_start_s=args.cold_start, min_replicas=args.min_replicas,
        max_replicas=args.max_replicas, max_in_flight=args.max_in_flight,
        kind=args.kind, sla_ms=args.sla_ms, max_tokens=args.max_tokens,
        prompt_chars=args.prompt_chars, router=args.router, bin_s=args.bin,
        recovery_threshold=args.recovery_threshold, recovery_hold_s=args.recovery_hold,
        drain_timeout_s=args.drain_timeout, timeout_s=args.timeout, profile=args.profile,
        seed=args.seed, cato=args.cato_knobs, ray=args.ray_knobs,
        progress=not args.no_progress)
    if args.max_in_flight < 1 or args.max_tokens < 1 or args.prompt_chars < 1:
        print("cato-bench: --max-in-flight, --max-tokens, --prompt-chars must be >= 1",
              file=sys.stderr)
        return 2
    try:
        cfg.validate()
        _knobs(cfg)  # unknown or invalid knobs fail here, before anything starts
    except ValueError as e:
        print(f"cato-bench: {e}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    payload = run_burst(cfg, args.out, args.name, plot=not args.no_plot)
    print(burst_markdown(payload))
    print(f"\nwrote {args.out}/{args.name}.json, .md"
          f"{', .png' if payload.get('plot') else ''} in {time.monotonic() - t0:.1f} s",
          file=sys.stderr)
    if not payload["complete"]:
        print(f"cato-bench: stopped by --timeout {args.timeout:g}s; results are incomplete",
              file=sys.stderr)
        return 1
    return 0
