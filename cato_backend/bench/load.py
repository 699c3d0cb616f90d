"""`cato-bench load`: a bounded open-loop load test of a REAL `cato-backend serve` process over
EMULATED replicas on loopback, with optional faults, measuring what a client sees.

- Load: Poisson arrivals at `rate` req/s for `duration_s`, mixed kinds over POST /v1/tasks
  (and a share of non-streamed OpenAI chat requests). Every request must end with `done`, an
  explicit `error` event, or an HTTP error answer; one that ends any other way (stream cut
  without a final event, or no end within `request_timeout_s`) is **lost**.
- Memory: the backend process's RSS is sampled every second; after the warm-up we report
  first/last/max, the least-squares slope and the growth (last / first after warm-up - 1).
  **Flat** means growth below `flat_growth` (default 10%).
- Faults (autoscaling on, min..max replicas): SIGKILL one replica's process (a ready one with
  work running, pid from /v1/status) and, later, SIGSTOP another one for `hang_s` seconds
  (then SIGCONT). Around each fault we record when the backend marked the replica stopped /
  unhealthy / healthy again and when the pool was back to its ready count.
- Goodput: per 1 s bin of *arrival* time, the share of requests that ended `done` with their
  SLA met (errors and lost requests count as misses). The **baseline** is the mean over the
  `baseline_s` seconds before a fault (after warm-up). **Time to recover goodput** is the
  smallest d >= 0 such that every bin in [fault + d, fault + d + `recovery_hold_s`) reaches
  `recovery_threshold` x baseline; 0 means the fault never pulled goodput below that.

The engine is emulated (a load-testing tool whose timing follows a profile), always labelled
so in the results; the default profile is a constructed fast one (NOT measured) so that two
replicas carry the load with room to spare and the numbers are about faults, not capacity.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import yaml

from . import (
    REPO_ROOT,
    environment,
    environment_note,
    finish_environment,
    fmt,
    md_table,
    write_results,
)

KINDS = ("completion", "generation", "translation", "summarization")
KIND_WEIGHTS = (0.4, 0.2, 0.2, 0.2)
MAX_TOKENS = {"completion": 16, "generation": 32, "translation": 32, "summarization": 32}


def fast_profile():
    """Constructed (NOT measured) fast engine: 4 ms a decode step alone, 8 ms at batch 8."""
    from ..profiles import DecodePoint, EngineProfile

    return EngineProfile(
        model="load-test-model", hardware="constructed (not measured)", engine="emulated",
        measured_at="1970-01-01", command="cato_backend/bench/load.py fast_profile()",
        notes="constructed for load/fault tests: ample capacity at 30 req/s on 2 replicas",
        max_model_len=4096, overhead_ms=5.0, prefill_ms_per_token=0.02,
        decode=[DecodePoint(batch=1, step_ms=4.0), DecodePoint(batch=8, step_ms=8.0),
                DecodePoint(batch=32, step_ms=20.0)])


@dataclass
class LoadConfig:
    rate: float = 30.0  # requests per second (Poisson)
    duration_s: float = 300.0
    warmup_s: float = 30.0  # excluded from the RSS trend and the baselines
    kill_at_s: float | None = 100.0  # SIGKILL a replica then (None: no kill)
    hang_at_s: float | None = 200.0  # SIGSTOP a replica then (None: no hang)
    hang_s: float = 20.0  # SIGCONT after this long
    min_replicas: int = 2
    max_replicas: int = 4
    max_in_flight: int = 8
    openai_share: float = 0.1  # share of non-streamed /v1/chat/completions requests
    first_token_s: float = 2.0  # backend timeouts (small, so a hang is noticed quickly)
    idle_s: float = 2.0
    health_interval_s: float = 0.5
    scaling_tick_s: float = 0.5
    request_timeout_s: float = 60.0  # a client-side cap: reaching it counts as lost (hung)
    drain_s: float = 30.0  # after the last arrival, longest wait for stragglers
    baseline_s: float = 30.0
    recovery_threshold: float = 0.9
    recovery_hold_s: float = 5.0
    flat_growth: float = 0.10
    seed: int = 0
    profile: str | None = None  # a profile file; None: fast_profile()
    progress: bool = True


@dataclass
class Record:
    i: int
    kind: str
    endpoint: str
    arrival_s: float
    end_s: float | None = None
    outcome: str = "pending"  # done | error | http_4xx | http_5xx | lost | hung
    detail: str = ""
    met: bool = False
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    replica: str | None = None
    tokens: int = 0


@dataclass
class Fault:
    kind: str  # kill | hang
    at_s: float
    replica: str
    pid: int
    running_at_fault: int
    resumed_at_s: float | None = None  # hang: SIGCONT
    marks: dict[str, float] = field(default_factory=dict)  # what the backend did, when
    ids_before: list[str] = field(default_factory=list)  # replicas known at the fault


# -- the backend under test ----------------------------------------------------------------

class BackendUnderTest:
    """`cato-backend serve` in its own session, replicas seen through its /v1/status only.
    `stop()` always runs: SIGCONT what we stopped, SIGTERM (it stops its replicas), then
    SIGKILL the backend's group and any replica of OURS still alive (same pid and start
    time as seen in our backend's /v1/status)."""

    def __init__(self, cfg: LoadConfig, work: Path) -> None:
        from ..provisioner import free_port

        self.cfg = cfg
        self.work = work
        self.port = free_port("127.0.0.1")
        self.url = f"http://127.0.0.1:{self.port}"
        if cfg.profile:
            self.profile_path = Path(cfg.profile).resolve()
        else:
            self.profile_path = work / "fast-profile.json"
            self.profile_path.write_text(fast_profile().model_dump_json())
        self.config_path = work / "backend.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config()))
        self.log_path = work / "backend.log"
        self.proc: subprocess.Popen | None = None
        self.replica_procs: dict[int, float] = {}  # pid -> create time (psutil)
        self.stopped_pids: set[int] = set()

    def config(self) -> dict[str, Any]:
        c = self.cfg
        autoscale = None
        if c.max_replicas > c.min_replicas or c.kill_at_s is not None:
            autoscale = {"policy": "cato", "min_replicas": c.min_replicas,
                         "max_replicas": max(c.max_replicas, c.min_replicas)}
        model: dict[str, Any] = {"served_name": "load-test-model", "engine": "emulated",
                                 "profile": str(self.profile_path), "replicas": c.min_replicas,
                                 "max_in_flight": c.max_in_flight}
        if autoscale:
            model["autoscale"] = autoscale
        return {
            "models": {"smollm2": model},
            "kinds": {k: {"max_tokens": MAX_TOKENS[k]} for k in KINDS},
            "limits": {"no_replica_timeout_s": 30},
            "timeouts": {"first_token_s": c.first_token_s, "idle_s": c.idle_s,
                         "connect_s": 1.0, "health_interval_s": c.health_interval_s,
                         "scaling_tick_s": c.scaling_tick_s, "replica_stop_s": 3.0,
                         "drain_timeout_s": 10.0, "replica_start_s": 60.0},
        }

    def start(self, timeout_s: float = 60.0) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cato_backend.cli", "serve", "--config",
                 str(self.config_path), "--port", str(self.port)],
                cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        import urllib.request

        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"backend exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/v1/status", timeout=1) as r:
                    status = json.loads(r.read())
                self.remember(status)
                if sum(x["state"] == "ready" for x in status["replicas"]) >= self.cfg.min_replicas:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"backend not ready in {timeout_s}s")

    def remember(self, status: dict) -> None:
        import psutil

        for r in status["replicas"]:
            pid = r.get("pid")
            if pid and pid not in self.replica_procs and r["state"] != "stopped":
                try:
                    self.replica_procs[pid] = psutil.Process(pid).create_time()
                except psutil.Error:
                    pass

    def rss(self) -> int | None:
        import psutil

        try:
            return psutil.Process(self.proc.pid).memory_info().rss if self.proc else None
        except psutil.Error:
            return None

    def stop(self) -> None:
        import psutil

        for pid in list(self.stopped_pids):
            self._signal_ours(pid, signal.SIGCONT)
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # its own session
            except ProcessLookupError:
                pass
            proc.wait(5)
        for pid in self.replica_procs:
            self._signal_ours(pid, signal.SIGKILL)
        del psutil

    def _signal_ours(self, pid: int, sig: int) -> bool:
        """Signal a replica process only if it is still the one our backend reported."""
        import psutil

        created = self.replica_procs.get(pid)
        try:
            p = psutil.Process(pid)
            if created is None or abs(p.create_time() - created) > 0.01 or not p.is_running():
                return False
            p.send_signal(sig)
            return True
        except psutil.Error:
            return False


# -- the client side ----------------------------------------------------------------------

def _body(kind: str, rng: random.Random) -> dict[str, Any]:
    from ..demo import SAMPLES

    body = dict(SAMPLES[kind])
    salt = f"# request {rng.randrange(10 ** 9)}\n"  # distinct prompts
    for f in ("prefix", "code", "instruction"):
        if f in body:
            body[f] = salt + body[f]
    return body


async def _one(session: aiohttp.ClientSession, url: str, rec: Record, body: dict,
               timeout_s: float, t0: float) -> None:
    """Send one request and record how it ended (never raises)."""
    try:
        async with asyncio.timeout(timeout_s):
            if rec.endpoint == "tasks":
                await _task(session, url, rec, body)
            else:
                await _openai(session, url, rec, body)
    except TimeoutError:
        rec.outcome, rec.detail = "hung", f"no end within {timeout_s:g}s"
    except (aiohttp.ClientError, OSError) as e:
        if rec.outcome == "pending":
            rec.outcome, rec.detail = "lost", f"{type(e).__name__}: {e}"[:200]
    rec.end_s = time.monotonic() - t0


async def _task(session: aiohttp.ClientSession, url: str, rec: Record, body: dict) -> None:
    async with session.post(url + "/v1/tasks", json=body) as resp:
        if resp.status != 200:
            rec.outcome = "http_5xx" if resp.status >= 500 else "http_4xx"
            rec.detail = f"{resp.status} {(await resp.text())[:200]}"
            return
        last = None
        async for raw in resp.content:
            line = raw.strip()
            if not line.startswith(b"data: "):
                continue
            ev = json.loads(line[6:])
            if ev.get("type") == "token":
                rec.tokens += 1
            last = ev
        if last is None or last.get("type") not in ("done", "error"):
            rec.outcome, rec.detail = "lost", f"stream ended after {str(last)[:120]}"
        elif last["type"] == "error":
            rec.outcome, rec.detail = "error", str(last.get("message"))[:300]
        else:
            rec.outcome, rec.met = "done", bool(last["sla"]["met"])
            rec.ttft_ms, rec.e2e_ms, rec.replica = last["ttft_ms"], last["e2e_ms"], last["replica"]


async def _openai(session: aiohttp.ClientSession, url: str, rec: Record, body: dict) -> None:
    msgs = [{"role": "user", "content": json.dumps(body)}]
    async with session.post(url + "/v1/chat/completions",
                            json={"messages": msgs, "max_tokens": MAX_TOKENS[rec.kind]},
                            headers={"X-Cato-Task": rec.kind}) as resp:
        text = await resp.text()
        if resp.status != 200:
            rec.outcome = "http_5xx" if resp.status >= 500 else "http_4xx"
            rec.detail = f"{resp.status} {text[:300]}"
            return
        cato = json.loads(text)["cato"]
        rec.outcome, rec.met = "done", bool(cato["sla"]["met"])
        rec.ttft_ms, rec.e2e_ms, rec.replica = cato["ttft_ms"], cato["e2e_ms"], cato["replica"]


def error_class(rec: Record) -> str:
    """A short class for an explicit error: the engine error kind when the backend names it."""
    if rec.outcome not in ("error", "http_4xx", "http_5xx"):
        return rec.outcome
    m = re.search(r"replica failed during \w+: (\w+)", rec.detail)
    if m:
        return f"{rec.outcome}:{m.group(1)}"
    if "no replica" in rec.detail:
        return f"{rec.outcome}:no_replica"
    return f"{rec.outcome}:other"


# -- the run ------------------------------------------------------------------------------

async def _get_status(session: aiohttp.ClientSession, url: str) -> dict | None:
    try:
        async with session.get(url + "/v1/status", timeout=aiohttp.ClientTimeout(total=2)) as r:
            return await r.json()
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return None


async def run_load_async(cfg: LoadConfig, work: Path) -> dict[str, Any]:
    but = BackendUnderTest(cfg, work)
    records: list[Record] = []
    faults: list[Fault] = []
    rss: list[tuple[float, int]] = []
    timeline: list[dict] = []  # /v1/status summaries
    try:
        await asyncio.to_thread(but.start)
        t0 = time.monotonic()
        rng = random.Random(cfg.seed)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=None)) as session:
            stop_watch = asyncio.Event()

            async def watch() -> None:
                next_rss = 0.0
                while not stop_watch.is_set():
                    now = time.monotonic() - t0
                    if now >= next_rss:
                        value = but.rss()
                        if value:
                            rss.append((round(now, 2), value))
                        next_rss = now + 1.0
                    status = await _get_status(session, but.url)
                    if status is not None:
                        but.remember(status)
                        reps = [{k: r.get(k) for k in ("id", "state", "healthy", "pid",
                                                       "running", "queue_length")}
                                for r in status["replicas"]]
                        timeline.append({"t": round(time.monotonic() - t0, 3), "replicas": reps})
                        _mark_faults(faults, reps, timeline[-1]["t"])
                    await asyncio.sleep(0.25)

            watcher = asyncio.create_task(watch())
            injector = asyncio.create_task(_inject(cfg, but, session, faults, t0))
            tasks: list[asyncio.Task] = []
            t_next = 0.0
            i = 0
            last_report = 0.0
            while t_next < cfg.duration_s:
                delay = t0 + t_next - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
                endpoint = "openai" if rng.random() < cfg.openai_share else "tasks"
                rec = Record(i, kind, endpoint, round(time.monotonic() - t0, 4))
                body = {**_body(kind, rng), "max_tokens": MAX_TOKENS[kind]}
                records.append(rec)
                tasks.append(asyncio.create_task(
                    _one(session, but.url, rec, body, cfg.request_timeout_s, t0)))
                i += 1
                t_next += rng.expovariate(cfg.rate)
                if cfg.progress and t_next - last_report >= 10:
                    last_report = t_next
                    done = sum(r.outcome != "pending" for r in records)
                    print(f"  t={t_next:5.0f}s sent {i} finished {done} "
                          f"rss {rss[-1][1] / 2**20 if rss else 0:.1f} MiB", file=sys.stderr)
            pending = [t for t in tasks if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=cfg.drain_s + cfg.request_timeout_s)
            for t in tasks:
                if not t.done():
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(1.0)
            stop_watch.set()
            injector.cancel()
            await asyncio.gather(watcher, injector, return_exceptions=True)
            final_status = await _get_status(session, but.url)
            wall_s = time.monotonic() - t0
    finally:
        await asyncio.to_thread(but.stop)
    log = but.log_path.read_text(errors="replace")
    return {"records": records, "faults": faults, "rss": rss, "timeline": timeline,
            "final_status": final_status, "wall_s": wall_s,
            "backend_log_tracebacks": log.count("Traceback"),
            "backend_log_tail": log[-3000:]}


def _mark_faults(faults: list[Fault], reps: list[dict], t: float) -> None:
    """Record when the backend reacted to each fault (first time each mark is seen)."""
    by_id = {r["id"]: r for r in reps}
    ready = sum(r["state"] == "ready" and r["healthy"] for r in reps)
    for f in faults:
        r = by_id.get(f.replica)
        if r is None:
            continue
        m = f.marks
        new = [x for x in reps if x["id"] not in f.ids_before]
        if new:
            m.setdefault("replica_added", t)
            if any(x["state"] == "ready" for x in new):
                m.setdefault("added_replica_ready", t)
        if f.kind == "kill":
            if r["state"] == "stopped":
                m.setdefault("marked_stopped", t)
            if "marked_stopped" in m and ready >= m.get("_ready_before", 0):
                m.setdefault("pool_restored", t)  # a replacement is ready
        else:
            if not r["healthy"]:
                m.setdefault("marked_unhealthy", t)
            if "marked_unhealthy" in m and r["healthy"] and f.resumed_at_s is not None:
                m.setdefault("healthy_again", t)


async def _inject(cfg: LoadConfig, but: BackendUnderTest, session: aiohttp.ClientSession,
                  faults: list[Fault], t0: float) -> None:
    plan = sorted([(t, k) for t, k in ((cfg.kill_at_s, "kill"), (cfg.hang_at_s, "hang"))
                   if t is not None])
    for at, kind in plan:
        await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
        # Mid-load: wait (up to 3 s) for a ready replica with requests running on it.
        status, ready, give_up = None, [], time.monotonic() + 3.0
        while time.monotonic() < give_up:
            status = await _get_status(session, but.url)
            if status is not None:
                but.remember(status)
                ready = [r for r in status["replicas"] if r["state"] == "ready"
                         and r["healthy"] and r.get("pid") and r["pid"] not in but.stopped_pids]
                if any(r["running"] for r in ready):
                    break
            await asyncio.sleep(0.02)
        if status is None or not ready:
            continue
        victim = max(ready, key=lambda r: (r["running"], r["id"]))
        f = Fault(kind, round(time.monotonic() - t0, 3), victim["id"], victim["pid"],
                  victim["running"])
        f.marks["_ready_before"] = len(ready)
        f.ids_before = [r["id"] for r in status["replicas"]]
        if kind == "kill":
            if not but._signal_ours(victim["pid"], signal.SIGKILL):
                continue
            faults.append(f)
        else:
            if not but._signal_ours(victim["pid"], signal.SIGSTOP):
                continue
            but.stopped_pids.add(victim["pid"])
            faults.append(f)
            await asyncio.sleep(cfg.hang_s)
            but._signal_ours(victim["pid"], signal.SIGCONT)
            but.stopped_pids.discard(victim["pid"])
            f.resumed_at_s = round(time.monotonic() - t0, 3)


# -- analysis -----------------------------------------------------------------------------

def goodput_bins(records: list[Record], duration_s: float, bin_s: float = 1.0
                 ) -> list[dict[str, Any]]:
    n = int(np.ceil(duration_s / bin_s))
    bins = [{"t": i * bin_s, "n": 0, "met": 0, "errors": 0, "lost": 0} for i in range(n)]
    for r in records:
        b = bins[min(n - 1, int(r.arrival_s // bin_s))]
        b["n"] += 1
        b["met"] += int(r.outcome == "done" and r.met)
        b["errors"] += int(r.outcome in ("error", "http_4xx", "http_5xx"))
        b["lost"] += int(r.outcome in ("lost", "hung", "pending"))
    for b in bins:
        b["goodput"] = b["met"] / b["n"] if b["n"] else None
    return bins


def recovery(bins: list[dict], fault_s: float, cfg: LoadConfig, bin_s: float = 1.0
             ) -> dict[str, Any]:
    """Baseline before the fault and the time to recover goodput (module docstring)."""
    lo = max(cfg.warmup_s, fault_s - cfg.baseline_s)
    before = [b["goodput"] for b in bins if lo <= b["t"] < fault_s - bin_s
              and b["goodput"] is not None]
    if not before:
        return {"baseline": None, "recovery_s": None, "min_goodput_after": None}
    baseline = float(np.mean(before))
    target = cfg.recovery_threshold * baseline
    start = int(fault_s // bin_s)
    hold = max(1, round(cfg.recovery_hold_s / bin_s))
    after = bins[start:]
    rec_s = None
    for j in range(len(after) - hold + 1):
        window = [b["goodput"] for b in after[j:j + hold]]
        if all(g is None or g >= target for g in window):
            rec_s = max(0.0, after[j]["t"] - fault_s)
            break
    impact = [b for b in after[:60] if b["goodput"] is not None]
    return {"baseline": round(baseline, 4), "target": round(target, 4),
            "recovery_s": None if rec_s is None else round(rec_s, 2),
            "min_goodput_next_60s": min((b["goodput"] for b in impact), default=None),
            "misses_next_60s": sum(b["n"] - b["met"] for b in impact)}


def rss_summary(rss: list[tuple[float, int]], warmup_s: float, flat_growth: float
                ) -> dict[str, Any]:
    after = [(t, v) for t, v in rss if t >= warmup_s] or rss
    if not after:
        return {"samples": 0}
    t = np.array([a for a, _ in after])
    v = np.array([b for _, b in after], float) / 2 ** 20
    slope = float(np.polyfit(t, v, 1)[0]) * 60 if len(t) > 1 else 0.0
    growth = float(v[-1] / v[0] - 1)
    span_min = (t[-1] - t[0]) / 60
    return {"samples": len(rss), "first_mib_all": round(rss[0][1] / 2 ** 20, 1),
            "first_mib": round(float(v[0]), 1), "last_mib": round(float(v[-1]), 1),
            "max_mib": round(float(v.max()), 1), "slope_mib_per_min": round(slope, 3),
            "trend_growth": round(slope * span_min / float(v[0]), 4) if v[0] else None,
            "growth": round(growth, 4), "flat": bool(growth < flat_growth
                                                     and slope * span_min / v[0] < flat_growth),
            "definition": f"after the {warmup_s:g} s warm-up: growth = last/first - 1 and "
                          f"slope x span / first both below {flat_growth:.0%}"}


def analyse(cfg: LoadConfig, raw: dict[str, Any]) -> dict[str, Any]:
    records: list[Record] = raw["records"]
    outcomes: dict[str, int] = {}
    classes: dict[str, int] = {}
    for r in records:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
        if r.outcome != "done":
            c = error_class(r)
            classes[c] = classes.get(c, 0) + 1
    bins = goodput_bins(records, cfg.duration_s)
    lost = [r for r in records if r.outcome in ("lost", "hung", "pending")]
    steady = [r for r in records if r.arrival_s >= cfg.warmup_s]
    faults = []
    for f in raw["faults"]:
        d = asdict(f)
        marks = {k: round(v - f.at_s, 2) for k, v in f.marks.items() if not k.startswith("_")}
        in_flight = [r for r in records if r.arrival_s <= f.at_s and (r.end_s or 1e9) > f.at_s]
        window_end = (f.resumed_at_s or f.at_s) + 10
        near = [r for r in records if f.at_s - 5 <= r.arrival_s <= window_end]
        # Affected: arrived after the fault and not done, SLA missed, or first token > 1 s
        # (waited out the first-token timeout and was retried, or queued behind more urgent
        # work on the replicas left).
        until = min([f.at_s + 60] + [g.at_s - 5 for g in raw["faults"] if g.at_s > f.at_s])
        hit = [r for r in records if f.at_s <= r.arrival_s < until
               and (r.outcome != "done" or not r.met or (r.ttft_ms or 0) > 1000)]
        slow = [r for r in near if (r.ttft_ms or 0) > 1000]
        d.update(affected_after_fault={
            "n": len(hit), "not_done": sum(r.outcome != "done" for r in hit),
            "sla_missed": sum(not r.met for r in hit),
            "ttft_over_1s": sum((r.ttft_ms or 0) > 1000 for r in hit),
            "last_arrival_after_fault_s": round(max(r.arrival_s for r in hit) - f.at_s, 2)
            if hit else None},
                 slow_first_token_near_fault={
                     "n": len(slow), "max_ttft_ms": max((r.ttft_ms for r in slow), default=None),
                     "by_kind": _kinds(slow)})
        d.update(marks_after_fault_s=marks, recovery=recovery(bins, f.at_s, cfg),
                 in_flight_at_fault={"n": len(in_flight), "outcomes": _count(in_flight)},
                 requests_fault_minus_5s_to_10s_after={"n": len(near), "outcomes": _count(near),
                                                       "errors": _classes(near)})
        d.pop("marks")
        d.pop("ids_before")
        faults.append(d)
    e2e = [r.e2e_ms for r in steady if r.e2e_ms is not None]
    ttft = [r.ttft_ms for r in steady if r.ttft_ms is not None]
    per_kind = {}
    for k in KINDS:
        rs = [r for r in steady if r.kind == k]
        per_kind[k] = {"n": len(rs), "done": sum(r.outcome == "done" for r in rs),
                       "goodput": round(sum(r.met for r in rs) / len(rs), 4) if rs else None}
    return {
        "config": asdict(cfg),
        "engine": "EMULATED replicas (load-testing tool), profile: "
                  + (cfg.profile or "constructed fast profile (NOT measured)"),
        "requests": len(records), "outcomes": outcomes, "not_done_by_class": classes,
        "lost": len(lost), "lost_examples": [asdict(r) for r in lost[:10]],
        "error_examples": [asdict(r) for r in records if r.outcome != "done"][:10],
        "goodput_steady": round(sum(r.met for r in steady) / len(steady), 4) if steady else None,
        "per_kind_steady": per_kind,
        "ttft_ms_p50_p99": [_pct(ttft, 50), _pct(ttft, 99)],
        "e2e_ms_p50_p99": [_pct(e2e, 50), _pct(e2e, 99)],
        "achieved_rate": round(len(records) / cfg.duration_s, 2),
        "rss": rss_summary(raw["rss"], cfg.warmup_s, cfg.flat_growth),
        "rss_samples": raw["rss"],
        "faults": faults,
        "replicas_final": [{k: r.get(k) for k in ("id", "state", "healthy", "served", "failed",
                                                  "detail")}
                           for r in (raw["final_status"] or {}).get("replicas", [])],
        "autoscaler_decisions": ((raw["final_status"] or {}).get("models", {})
                                 .get("smollm2", {}).get("autoscaler") or {})
        .get("last_decisions"),
        "goodput_bins": [{k: b[k] for k in ("t", "n", "met", "errors", "lost")} for b in bins],
        "backend_log_tracebacks": raw["backend_log_tracebacks"],
        "wall_s": round(raw["wall_s"], 1),
    }


def _count(rs: list[Record]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rs:
        out[r.outcome] = out.get(r.outcome, 0) + 1
    return out


def _kinds(rs: list[Record]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rs:
        out[r.kind] = out.get(r.kind, 0) + 1
    return out


def _classes(rs: list[Record]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rs:
        if r.outcome != "done":
            out[error_class(r)] = out.get(error_class(r), 0) + 1
    return out


def _pct(xs: list[float], q: float) -> float | None:
    return round(float(np.percentile(xs, q)), 1) if xs else None


def run_load(cfg: LoadConfig, work: Path | None = None) -> dict[str, Any]:
    """Run one load test (synchronously); the analysed payload."""
    with tempfile.TemporaryDirectory(prefix="cato-load-") as tmp:
        raw = asyncio.run(run_load_async(cfg, Path(work or tmp)))
    return analyse(cfg, raw)


# -- reporting ----------------------------------------------------------------------------

def load_markdown(p: dict[str, Any]) -> str:
    c = p["config"]
    rss = p["rss"]
    lines = [
        (f"# {'Load and faults' if p['faults'] else 'Load'}: {c['rate']:g} req/s for "
        f"{c['duration_s']:g} s"),
        "",
        (f"{p['engine']}; backend `cato-backend serve` as a subprocess on loopback; autoscaling "
        f"min {c['min_replicas']} max {c['max_replicas']}; timeouts first-token "
        f"{c['first_token_s']:g} s, idle {c['idle_s']:g} s, health every "
        f"{c['health_interval_s']:g} s. Kinds mixed "
        f"{dict(zip(KINDS, KIND_WEIGHTS))}, {c['openai_share']:.0%} of requests through "
        "non-streamed /v1/chat/completions."),
        "",
        md_table(["requests", "done", "explicit errors", "lost (no final event / hung)",
                  "goodput after warm-up", "TTFT p50/p99 ms", "E2E p50/p99 ms"],
                 [[p["requests"], p["outcomes"].get("done", 0),
                   sum(v for k, v in p["outcomes"].items() if k in ("error", "http_4xx",
                                                                       "http_5xx")),
                   p["lost"], fmt(p["goodput_steady"], 4),
                   "/".join(fmt(x, 1) for x in p["ttft_ms_p50_p99"]),
                   "/".join(fmt(x, 1) for x in p["e2e_ms_p50_p99"])]]),
        "",
        f"Not `done`, by class: {p['not_done_by_class'] or 'none'}.",
        "",
        (f"**Backend RSS** ({rss.get('definition')}): first {rss.get('first_mib_all')} MiB at "
        f"start, {rss.get('first_mib')} MiB after warm-up, last {rss.get('last_mib')} MiB, "
        f"max {rss.get('max_mib')} MiB; slope {rss.get('slope_mib_per_min')} MiB/min; growth "
        f"{fmt(100 * rss['growth'], 2) if 'growth' in rss else '?'}% -> "
        f"**{'flat' if rss.get('flat') else 'NOT flat'}**."),
        "",
    ]
    if p["faults"]:
        rows = []
        for f in p["faults"]:
            r = f["recovery"]
            rows.append([f["kind"], f"{f['at_s']:.1f}", f"{f['replica']} (pid {f['pid']})",
                         f["running_at_fault"],
                         ", ".join(f"{k} +{v:g}s" for k, v in f["marks_after_fault_s"].items())
                         or "-",
                         f"{f['in_flight_at_fault']['n']}: {f['in_flight_at_fault']['outcomes']}",
                         f["requests_fault_minus_5s_to_10s_after"]["errors"] or "none",
                         _affected(f),
                         fmt(r.get("baseline"), 3), fmt(r.get("min_goodput_next_60s"), 3),
                         "never" if r.get("recovery_s") is None and r.get("baseline") is not None
                         else fmt(r.get("recovery_s"), 1)])
        lines += [
            "## Faults",
            "",
            md_table(["fault", "at s", "replica", "running on it", "backend reaction",
                      "in flight at fault: outcomes", "errors (fault-5s..end+10s)",
                      "affected after fault (60 s, or to 5 s before the next)",
                      "baseline goodput", "min goodput (1 s bins, next 60 s)",
                      "time to recover goodput s"], rows),
            "",
            (f"Time to recover goodput: smallest d >= 0 such that every 1 s arrival bin in "
            f"[fault + d, fault + d + {c['recovery_hold_s']:g} s) has goodput >= "
            f"{c['recovery_threshold']:g} x the mean of the {c['baseline_s']:g} s before the "
            "fault (errors and lost requests count as misses). For the hang, the fault lasts "
            f"{c['hang_s']:g} s (SIGSTOP, then SIGCONT). Affected: arrived in the 60 s after "
            "the fault (or until 5 s before the next fault) and ended in an error, missed "
            "its SLA, or got its first token after more than 1 s (waited out the first-token "
            "timeout and was retried, or queued behind more urgent work on the replicas "
            "left)."),
            "",
        ]
    decisions = p.get("autoscaler_decisions") or []
    if decisions:
        lines += ["Autoscaler decisions (last 10): " + "; ".join(
            f"{d['action']} {d['from']}->{d['to']} ({d['reason'][:90]})" for d in decisions), ""]
    lines += ["Replicas at the end: " + ", ".join(
        f"{r['id']} {r['state']}{'' if r['healthy'] else ' unhealthy'} served {r['served']}"
        f"{' (' + r['detail'] + ')' if r.get('detail') else ''}" for r in p["replicas_final"]),
              "", f"Tracebacks in the backend log: {p['backend_log_tracebacks']}.", ""]
    for note in p.get("notes", []):  # analysis written after the run (see the JSON)
        lines += [f"Note: {note}", ""]
    if "environment" in p:
        lines += [environment_note(p["environment"], p["wall_s"]), ""]
    return "\n".join(lines)


def _affected(f: dict[str, Any]) -> str:
    a = f["affected_after_fault"]
    if not a["n"]:
        return "none"
    return (f"{a['n']} ({a['not_done']} not done, {a['sla_missed']} SLA missed, "
            f"{a['ttft_over_1s']} first token > 1 s); last arrived "
            f"+{a['last_arrival_after_fault_s']:g}s")


def plot(p: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = p["goodput_bins"]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    t = [b["t"] for b in bins]
    a1.plot(t, [b["met"] / b["n"] if b["n"] else np.nan for b in bins], lw=0.8,
            label="goodput (1 s arrival bins)")
    a1.plot(t, [b["errors"] / b["n"] if b["n"] else np.nan for b in bins], lw=0.8,
            label="explicit errors share")
    for f in p["faults"]:
        a1.axvline(f["at_s"], color="red", ls="--", lw=0.8)
        a1.text(f["at_s"], 0.5, f" {f['kind']} {f['replica']}", color="red", fontsize=8)
        if f.get("resumed_at_s"):
            a1.axvline(f["resumed_at_s"], color="green", ls=":", lw=0.8)
    a1.set_ylim(-0.05, 1.05)
    a1.legend(loc="lower left", fontsize=8)
    a1.set_title(f"cato-bench load: {p['config']['rate']:g} req/s, EMULATED replicas")
    rs = p["rss_samples"]
    a2.plot([x for x, _ in rs], [v / 2 ** 20 for _, v in rs], lw=0.8)
    a2.set_ylabel("backend RSS MiB")
    a2.set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_parser(sub, common) -> None:
    """Register `load` on cato-bench's subparsers."""
    d = LoadConfig()
    p = sub.add_parser("load", help="bounded load test with replica faults (SIGKILL, SIGSTOP): "
                       "lost requests, recovery, backend RSS (EMULATED replicas, loopback)")
    common(p, "load")
    p.add_argument("--rate", type=float, default=d.rate, help=f"req/s (default {d.rate:g})")
    p.add_argument("--duration", type=float, default=d.duration_s,
                   help=f"seconds of arrivals (default {d.duration_s:g})")
    p.add_argument("--warmup", type=float, default=d.warmup_s)
    p.add_argument("--kill-at", type=float, default=d.kill_at_s,
                   help="SIGKILL a replica at this second (negative: none)")
    p.add_argument("--hang-at", type=float, default=d.hang_at_s,
                   help="SIGSTOP a replica at this second (negative: none)")
    p.add_argument("--hang-for", type=float, default=d.hang_s)
    p.add_argument("--min-replicas", type=int, default=d.min_replicas)
    p.add_argument("--max-replicas", type=int, default=d.max_replicas)
    p.add_argument("--first-token-s", type=float, default=d.first_token_s)
    p.add_argument("--idle-s", type=float, default=d.idle_s)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--no-plot", action="store_true")


def main_from_args(args) -> int:
    cfg = LoadConfig(rate=args.rate, duration_s=args.duration, warmup_s=args.warmup,
                     kill_at_s=None if args.kill_at is None or args.kill_at < 0 else args.kill_at,
                     hang_at_s=None if args.hang_at is None or args.hang_at < 0 else args.hang_at,
                     hang_s=args.hang_for, min_replicas=args.min_replicas,
                     max_replicas=args.max_replicas, first_token_s=args.first_token_s,
                     idle_s=args.idle_s, seed=args.seed, profile=args.profile,
                     progress=not args.no_progress)
    if cfg.rate <= 0 or cfg.duration_s <= 0 or cfg.min_replicas < 1 \
            or cfg.max_replicas < cfg.min_replicas:
        print("cato-bench: --rate, --duration > 0; 1 <= --min-replicas <= --max-replicas",
              file=sys.stderr)
        return 2
    env = environment()
    payload = run_load(cfg)
    finish_environment(env)
    payload["environment"] = env
    out = Path(args.out)
    write_results(out, args.name, payload, load_markdown(payload))
    if not args.no_plot:
        plot(payload, out / f"{args.name}.png")
    print(load_markdown(payload))
    print(f"\nwrote {out}/{args.name}.json, .md" + ("" if args.no_plot else ", .png"),
          file=sys.stderr)
    return 0 if payload["lost"] == 0 else 1
