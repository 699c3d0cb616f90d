"""`cato-bench overhead`: what the backend adds to time-to-first-token.

One EMULATED engine runs as its own process (`cato-backend emulate`), and one backend as
another (`cato-backend serve` with a static engine pointing at it), so backend and engine do
not share an event loop. The client (this process) sends the same streaming
`/v1/completions` request (a) straight to the engine and (b) through the backend, with N
closed-loop clients per concurrency level, the two paths interleaved in blocks (D B | B D |
...), and reports TTFT (client send -> first content token) percentiles of both and their
difference.

Two engine configurations, each with its own engine and backend processes:
- `thin`: a constructed profile with tiny prefill and decode costs (written to a temporary
  file and recorded in the results), so the engine's own queueing does not swamp the
  backend's milliseconds. The targets apply to these rows: they measure the backend.
- `realistic`: the measured SmolLM2-135M CPU profile (or `--profile`): what a user of this
  machine would see; context, no target.

Arrivals are desynchronized: identical closed-loop requests would otherwise finish together
and arrive in waves, and the emulated engine charges every arrival's prefill within one step.
Each client waits a random think time (exponential, mean `think` x the engine's unloaded
service time) before each request, and starts after a random stagger within one cycle. The
think times come from seeded generators per (engine, level, block, client), the same for the
direct and the backend phase of a block, so both paths see the same arrival pattern.
Every block discards its first requests (the ramp-up, at least one per client) and keeps all
clients busy until its last measured request finishes (requests issued after the measured
ones are load only), so every measured request sees the full concurrency.

Client, backend and engine share this machine's cores: the difference includes the
backend's CPU time competing with the engine's and the client's.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
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

from ..provisioner import free_port
from . import (
    REPO_ROOT,
    environment,
    environment_note,
    finish_environment,
    fmt,
    md_table,
    profile_record,
    resolve_profile,
    summary,
    write_results,
)

MODEL_NAME = "SmolLM2-135M-Instruct"
# A short code prefix (~35 tokens by the 4-chars-per-token estimate), as an inline completion.
PROMPT = ("import math\n\n\ndef is_prime(n: int) -> bool:\n"
          "    \"\"\"True when n is a prime number.\"\"\"\n    if n < 2:\n        return False\n"
          "    for d in range(2, int(math.sqrt(n)) + 1):\n")
TARGET_P50_MS = 2.0
TARGET_P99_MS = 5.0
RAY_SERVE_CLAIM = ("Ray Serve adds about 7 ms on this machine (quoted from issue #2, not "
                   "measured by this benchmark)")
ENGINES = ("thin", "realistic")  # the order fixes the seeds, not the order of the run
TARGET_ENGINE = "thin"


def thin_profile():
    """The thin engine: a constructed profile (NOT measured) whose prefill and decode cost
    almost nothing, so TTFT differences are the backend's, not the engine's queueing."""
    from ..profiles import DecodePoint, EngineProfile

    return EngineProfile(
        model=MODEL_NAME, hardware="thin emulated engine (constructed, not measured)",
        engine="emulated", measured_at="1970-01-01",
        command="cato_backend/bench/overhead.py thin_profile() (constructed, not measured)",
        notes="isolates the backend in cato-bench overhead: 0.2 ms per request, 0.001 ms per "
              "prompt token, decode step 2 ms at batch 1 rising slowly with the batch. The "
              "per-request cost is kept well under a millisecond because the emulator charges "
              "it serially within a step: at 1 ms, the ~450 requests/s that 50 clients send "
              "queue in the engine (direct TTFT p50 ~25 ms instead of ~4 ms)",
        max_model_len=8192, overhead_ms=0.2, prefill_ms_per_token=0.001,
        decode=[DecodePoint(batch=1, step_ms=2.0), DecodePoint(batch=16, step_ms=2.5),
                DecodePoint(batch=64, step_ms=3.5)],
    )


@dataclass
class OverheadConfig:
    concurrency: list[int] = field(default_factory=lambda: [1, 10, 50])
    # Measured requests per path, for both engines: one value for every level, or one per
    # level; None = each engine's default (ENGINE_DEFAULTS).
    requests: list[int] | None = None
    warmup: int = 20  # discarded requests at the start of every block (at least the concurrency)
    # Blocks per path per level, alternating D B | B D | ...; None = each engine's default.
    blocks: int | None = None
    engines: list[str] = field(default_factory=lambda: list(ENGINES))
    # Mean think time before each request at concurrency > 1, as a fraction of the engine's
    # unloaded service time (one request alone, prefill + all decode steps); exponential;
    # 0 = none. One client has nothing to desynchronize: concurrency 1 runs back to back.
    think: float = 0.5
    max_tokens: int = 16
    max_in_flight: int = 64  # backend's per-replica limit: above the concurrency, no queueing
    profile: str | None = None  # realistic engine: None = measured SmolLM2 CPU profile
    timeout_s: float = 600.0  # the whole run
    # Cores as deployed: the backend alone on this core, the engine and the client on the
    # others (a backend never shares its host with the engines or the editors). None: all
    # three share every core.
    backend_core: int | None = None
    request_timeout_s: float = 60.0
    start_timeout_s: float = 60.0
    bootstrap: int = 2000  # resamples for the difference's confidence interval
    seed: int = 0
    progress: bool = True
    prompt: str = PROMPT


# Per engine: measured requests per path at concurrency 1 and above, and blocks per level.
# The thin engine is cheap to run, so its rows (the ones the targets apply to) get more
# samples and more interleaved blocks; the realistic rows are bounded by the engine's speed.
ENGINE_DEFAULTS = {"thin": {"requests": (200, 1000), "blocks": 4},
                   "realistic": {"requests": (200, 300), "blocks": 2}}


def blocks_for(cfg: OverheadConfig, engine: str) -> int:
    return cfg.blocks if cfg.blocks is not None else ENGINE_DEFAULTS[engine]["blocks"]


def requests_per_level(cfg: OverheadConfig, engine: str) -> list[int]:
    if cfg.requests is None:
        one, more = ENGINE_DEFAULTS[engine]["requests"]
        return [one if c == 1 else more for c in cfg.concurrency]
    if len(cfg.requests) == 1:
        return list(cfg.requests) * len(cfg.concurrency)
    if len(cfg.requests) != len(cfg.concurrency):
        raise ValueError("requests: give one value, or one per concurrency level")
    return list(cfg.requests)


def discarded_per_block(cfg: OverheadConfig, c: int) -> int:
    return max(cfg.warmup, c) if cfg.warmup > 0 else 0


# -- processes --------------------------------------------------------------------------

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


class _Proc:
    """A child process in its own session, logging to a file, stopped by SIGTERM then KILL."""

    def __init__(self, name: str, cmd: list[str], log_path: Path,
                 cpus: set[int] | None = None) -> None:
        self.name = name
        self.cmd = cmd
        self.log_path = log_path
        pin = None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))
        with open(log_path, "wb") as out:
            self.popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          cwd=REPO_ROOT, preexec_fn=pin)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_s(self) -> float | None:
        return _proc_cpu_s(self.pid)

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.popen.wait(5)


async def _wait_ready(session: aiohttp.ClientSession, proc: _Proc, url: str, ready,
                      timeout_s: float) -> None:
    t0 = time.monotonic()
    while True:
        code = proc.popen.poll()
        if code is not None:
            raise RuntimeError(f"{proc.name} exited with code {code} while starting:\n{proc.tail()}")
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                if r.status == 200 and ready(await r.read()):
                    return
        except (TimeoutError, aiohttp.ClientError):
            pass
        if time.monotonic() - t0 > timeout_s:
            raise RuntimeError(f"{proc.name} not ready after {timeout_s:g}s:\n{proc.tail()}")
        await asyncio.sleep(0.1)


def _backend_config(engine_url: str, port: int, profile_path: Path, max_in_flight: int) -> dict:
    return {
        "host": "127.0.0.1",
        "port": port,
        "models": {"smollm2": {"served_name": MODEL_NAME, "engine": "static",
                               "urls": [engine_url], "profile": str(profile_path),
                               "max_in_flight": max_in_flight}},
    }


# -- client -----------------------------------------------------------------------------

_EMPTY_TEXT = (b'"text":""', b'"text": ""')


class RequestFailed(Exception):
    pass


async def _one(session: aiohttp.ClientSession, url: str, body: bytes,
               timeout: aiohttp.ClientTimeout) -> tuple[float, float]:
    """One streaming request -> (TTFT s, E2E s). The first content token is the first
    `data:` event with a non-empty `text` (completions chunks); the rest is drained unparsed."""
    t0 = time.perf_counter()
    async with session.post(url, data=body, headers={"Content-Type": "application/json"},
                            timeout=timeout) as resp:
        if resp.status != 200:
            raise RequestFailed(f"HTTP {resp.status}: {(await resp.read())[:200]!r}")
        first = None
        async for line in resp.content:
            if (line.startswith(b"data: {") and b'"text"' in line
                    and not any(e in line for e in _EMPTY_TEXT)):
                first = time.perf_counter()
                break
        rest = await resp.content.read()
        end = time.perf_counter()
    if first is None:
        raise RequestFailed("stream ended without a content token")
    if not rest.rstrip().endswith(b"data: [DONE]"):
        raise RequestFailed(f"stream did not end with [DONE]: {rest[-200:]!r}")
    return first - t0, end - t0


@dataclass
class Schedule:
    """When each closed-loop client sends: a start stagger, then a think time before every
    further request. Seeded per client, and the same for both paths of a block."""

    think_mean_s: float  # exponential think time before each request after the first
    stagger_s: float  # each client starts after a uniform delay in [0, stagger_s)
    seeds: list[list[int]]  # one per client


@dataclass
class _Phase:
    ttft: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    discarded: int = 0  # ramp-up and trailing load requests, not measured
    discarded_errors: int = 0
    wall_s: float = 0.0
    window_s: float = 0.0  # first measured send -> last measured end
    cpu_s: dict[str, float | None] = field(default_factory=dict)


async def _run_phase(session: aiohttp.ClientSession, url: str, body: bytes, n: int, skip: int,
                     schedule: Schedule, timeout: aiohttp.ClientTimeout,
                     procs: dict[str, _Proc], bar: Any) -> _Phase:
    """Closed-loop clients (one per schedule seed) send requests numbered in issue order:
    the first `skip` are discarded (ramp-up), the next `n` are measured, and the clients keep
    sending (discarded load) until every measured request has finished."""
    phase = _Phase()
    issued = measured_done = 0
    first_send, last_end = math.inf, -math.inf

    async def client(seed: list[int]) -> None:
        nonlocal issued, measured_done, first_send, last_end
        rng = np.random.default_rng(seed)
        delay = float(rng.uniform(0.0, schedule.stagger_s)) if schedule.stagger_s > 0 else 0.0
        while True:
            if delay > 0:
                await asyncio.sleep(delay)
            if measured_done >= n:
                return
            k = issued
            issued += 1
            measured = skip <= k < skip + n
            t_send = time.perf_counter()
            try:
                ttft, e2e = await _one(session, url, body, timeout)
                if measured:
                    phase.ttft.append(ttft)
                    phase.e2e.append(e2e)
            except (TimeoutError, RequestFailed, aiohttp.ClientError) as e:
                if measured:
                    phase.errors.append(f"{type(e).__name__}: {e}"[:300])
                else:
                    phase.discarded_errors += 1
            if measured:
                measured_done += 1
                first_send = min(first_send, t_send)
                last_end = max(last_end, time.perf_counter())
                if bar is not None:
                    bar.update(1)
            else:
                phase.discarded += 1
            delay = (float(rng.exponential(schedule.think_mean_s))
                     if schedule.think_mean_s > 0 else 0.0)

    cpu0 = {k: p.cpu_s() for k, p in procs.items()}
    cpu0["client"] = time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(client(s) for s in schedule.seeds))
    phase.wall_s = time.perf_counter() - t0
    phase.window_s = max(0.0, last_end - first_send) if measured_done else 0.0
    cpu1 = {k: p.cpu_s() for k, p in procs.items()}
    cpu1["client"] = time.process_time()
    phase.cpu_s = {k: (None if cpu0[k] is None or cpu1[k] is None else cpu1[k] - cpu0[k])
                   for k in cpu0}
    return phase


def _block_sizes(total: int, blocks: int) -> list[int]:
    blocks = max(1, min(blocks, total))
    return [total // blocks + (1 if i < total % blocks else 0) for i in range(blocks)]


def _diff_ci(a: np.ndarray, b: np.ndarray, q: float, n_boot: int,
             rng: np.random.Generator) -> list[float] | None:
    """95% bootstrap interval of percentile_q(b) - percentile_q(a), in the samples' units.
    Resamples requests as if independent, so it understates run-to-run variation."""
    if len(a) < 2 or len(b) < 2 or n_boot <= 0:
        return None
    ia = rng.integers(0, len(a), (n_boot, len(a)))
    ib = rng.integers(0, len(b), (n_boot, len(b)))
    d = np.percentile(b[ib], q, axis=1) - np.percentile(a[ia], q, axis=1)
    lo, hi = np.percentile(d, [2.5, 97.5])
    return [float(lo), float(hi)]


def _ms(s: dict[str, Any]) -> dict[str, Any]:
    return {k: (v * 1000 if isinstance(v, float) else v) for k, v in s.items()}


def _level_result(engine: str, c: int, phases: dict[str, list[_Phase]], cfg: OverheadConfig,
                  schedule: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    out: dict[str, Any] = {"engine": engine, "concurrency": c, "schedule": schedule}
    arrays = {}
    for path, ps in phases.items():
        ttft = np.array([x for p in ps for x in p.ttft])
        e2e = np.array([x for p in ps for x in p.e2e])
        arrays[path] = ttft * 1000
        n_ok = len(ttft)
        # CPU over whole phases (ramp-up and trailing load included), per request sent.
        sent = sum(len(p.ttft) + len(p.errors) + p.discarded for p in ps)
        wall = sum(p.wall_s for p in ps)
        window = sum(p.window_s for p in ps)
        cpu: dict[str, float | None] = {}
        for proc in ("engine", "backend", "client"):
            vals = [p.cpu_s.get(proc) for p in ps]
            cpu[proc] = (None if any(v is None for v in vals) or sent == 0
                         else 1000 * sum(vals) / sent)  # type: ignore[arg-type]
        all_cpu = [v for p in ps for v in p.cpu_s.values()]
        out[path] = {
            "ttft_ms": _ms(summary(ttft)),
            "e2e_ms": _ms(summary(e2e)),
            "errors": sum(len(p.errors) for p in ps),
            "error_examples": [e for p in ps for e in p.errors][:3],
            "discarded": sum(p.discarded for p in ps),
            "discarded_errors": sum(p.discarded_errors for p in ps),
            "wall_s": wall,
            "throughput_rps": n_ok / window if window > 0 else None,
            "cpu_ms_per_request": cpu,
            # engine + backend + client CPU seconds per second of wall time
            "cpu_busy_cores": (None if wall <= 0 or any(v is None for v in all_cpu)
                               else sum(all_cpu) / wall),  # type: ignore[arg-type]
            "blocks": [{"n": len(p.ttft), "ttft_p50_ms": _ms(summary(p.ttft))["p50"],
                        "ttft_p99_ms": _ms(summary(p.ttft))["p99"], "wall_s": p.wall_s}
                       for p in ps],
        }
    d, b = out["direct"]["ttft_ms"], out["backend"]["ttft_ms"]
    if d["n"] and b["n"]:
        out["diff_ms"] = {
            "p50": b["p50"] - d["p50"], "p99": b["p99"] - d["p99"], "mean": b["mean"] - d["mean"],
            "p50_ci95": _diff_ci(arrays["direct"], arrays["backend"], 50, cfg.bootstrap, rng),
            "p99_ci95": _diff_ci(arrays["direct"], arrays["backend"], 99, cfg.bootstrap, rng),
            "p50_by_block": [
                (None if bd["ttft_p50_ms"] is None or bb["ttft_p50_ms"] is None
                 else bb["ttft_p50_ms"] - bd["ttft_p50_ms"])
                for bd, bb in zip(out["direct"]["blocks"], out["backend"]["blocks"])],
        }
    else:
        out["diff_ms"] = None
    if engine == TARGET_ENGINE and out["diff_ms"] is not None:
        out["target"] = {"p50_max_ms": TARGET_P50_MS, "p99_max_ms": TARGET_P99_MS,
                         "p50_met": out["diff_ms"]["p50"] <= TARGET_P50_MS,
                         "p99_met": out["diff_ms"]["p99"] <= TARGET_P99_MS}
    else:
        out["target"] = None  # realistic rows are context: the targets apply to the thin engine
    return out


# -- the benchmark ----------------------------------------------------------------------

def _prompt_tokens(cfg: OverheadConfig) -> int:
    from ..tokens import estimate_tokens

    return estimate_tokens(cfg.prompt)


def unloaded_service_s(profile: Any, cfg: OverheadConfig) -> float:
    """One request alone on the engine: prefill, then max_tokens - 1 decode steps at batch 1."""
    return profile.service_s(_prompt_tokens(cfg), cfg.max_tokens, 1.0)


async def _measure(cfg: OverheadConfig, engine: str, profile_path: Path, profile: Any,
                   tmp: Path, info: dict[str, Any], results: list[dict[str, Any]],
                   bar: Any, cores: tuple[set[int] | None, set[int] | None] = (None, None),
                   ) -> None:
    engine_port, backend_port = free_port(), free_port()
    engine_url = f"http://127.0.0.1:{engine_port}"
    backend_url = f"http://127.0.0.1:{backend_port}"
    cfg_path = tmp / f"backend-{engine}.yaml"
    cfg_path.write_text(yaml.safe_dump(_backend_config(engine_url, backend_port, profile_path,
                                                       cfg.max_in_flight)))
    py = sys.executable
    procs: dict[str, _Proc] = {}
    backend_cpus, others = cores
    info["cores"] = {"backend": sorted(backend_cpus) if backend_cpus else "all",
                     "engine_and_client": sorted(others) if others else "all"}
    try:
        procs["engine"] = _Proc(f"emulated engine ({engine})", [
            py, "-m", "cato_backend.cli", "emulate", "--host", "127.0.0.1",
            "--port", str(engine_port), "--profile", str(profile_path), "--model", MODEL_NAME,
        ], tmp / f"engine-{engine}.log", cpus=others)
        procs["backend"] = _Proc(f"backend ({engine})", [
            py, "-m", "cato_backend.cli", "serve", "--config", str(cfg_path),
            "--port", str(backend_port),
        ], tmp / f"backend-{engine}.log", cpus=backend_cpus)
        info["commands"] = {k: p.cmd for k, p in procs.items()}
        info["backend_config"] = yaml.safe_load(cfg_path.read_text())
        info["pids"] = {k: p.pid for k, p in procs.items()}

        connector = aiohttp.TCPConnector(limit=0, force_close=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            await _wait_ready(session, procs["engine"], engine_url + "/health",
                              lambda b: True, cfg.start_timeout_s)
            await _wait_ready(session, procs["backend"], backend_url + "/healthz",
                              lambda b: json.loads(b).get("ready_replicas", 0) >= 1,
                              cfg.start_timeout_s)
            async with session.get(engine_url + "/v1/models") as r:
                info["engine_models"] = await r.json()
            await _levels(cfg, engine, unloaded_service_s(profile, cfg), session, engine_url,
                          backend_url, procs, results, bar)
    finally:
        for p in reversed(list(procs.values())):
            p.stop()
        info["logs_tail"] = {k: p.tail(10) for k, p in procs.items()}


async def _levels(cfg: OverheadConfig, engine: str, service_s: float,
                  session: aiohttp.ClientSession, engine_url: str, backend_url: str,
                  procs: dict[str, _Proc], results: list[dict[str, Any]], bar: Any) -> None:
    base = {"model": MODEL_NAME, "prompt": cfg.prompt, "max_tokens": cfg.max_tokens,
            "temperature": 0.0, "stream": True}
    # The backend always asks its engine for usage; the direct request asks the same, so the
    # engine does the same work on both paths.
    bodies = {"direct": json.dumps({**base, "stream_options": {"include_usage": True}}).encode(),
              "backend": json.dumps(base).encode()}
    urls = {"direct": engine_url + "/v1/completions",
            "backend": backend_url + "/v1/completions"}
    timeout = aiohttp.ClientTimeout(total=cfg.request_timeout_s)
    rng = np.random.default_rng([cfg.seed, ENGINES.index(engine)])
    for c, n_level in zip(cfg.concurrency, requests_per_level(cfg, engine)):
        if bar is not None:
            bar.set_postfix_str(f"{engine} engine, concurrency {c}")
        skip = discarded_per_block(cfg, c)
        think_mean_s = cfg.think * service_s if c > 1 else 0.0
        stagger_s = service_s + think_mean_s if c > 1 else 0.0
        phases: dict[str, list[_Phase]] = {"direct": [], "backend": []}
        for i, n in enumerate(_block_sizes(n_level, blocks_for(cfg, engine))):
            schedule = Schedule(think_mean_s, stagger_s,
                                [[cfg.seed, ENGINES.index(engine), c, i, j] for j in range(c)])
            order = ("direct", "backend") if i % 2 == 0 else ("backend", "direct")
            for path in order:
                phases[path].append(await _run_phase(session, urls[path], bodies[path], n, skip,
                                                     schedule, timeout, procs, bar))
        results.append(_level_result(engine, c, phases, cfg, {
            "unloaded_service_ms": 1000 * service_s, "think_mean_ms": 1000 * think_mean_s,
            "think_distribution": "exponential", "stagger_ms": 1000 * stagger_s,
            "discarded_per_block": skip, "blocks": len(phases["direct"]),
        }, rng))


def _engine_profile(name: str, cfg: OverheadConfig, tmp: Path) -> tuple[Path, Any, dict]:
    if name == "thin":
        prof = thin_profile()
        path = (tmp / "thin-profile.json").resolve()
        path.write_text(prof.model_dump_json())
        record = profile_record(path, prof, "constructed thin engine (not measured), temp file")
        record["profile_json"] = json.loads(prof.model_dump_json())
        return path, prof, record
    path, prof, source = resolve_profile(cfg.profile, tmp)
    return path, prof, profile_record(path, prof, source)


def core_split(backend_core: int | None) -> tuple[set[int] | None, set[int] | None]:
    """(the backend's cores, the engine's and the client's) for `backend_core`; (None,
    None) when it is None: everything shares every core."""
    if backend_core is None:
        return None, None
    cores = os.sched_getaffinity(0)
    if backend_core not in cores or len(cores) < 2:
        raise ValueError(f"--backend-core {backend_core}: needs two or more usable cores "
                         f"including it (usable: {sorted(cores)})")
    return {backend_core}, cores - {backend_core}


def run_overhead(cfg: OverheadConfig, out: str | Path, name: str = "overhead") -> dict[str, Any]:
    unknown = [e for e in cfg.engines if e not in ENGINES]
    if unknown or not cfg.engines:
        raise ValueError(f"engines must be among {ENGINES}, got {cfg.engines}")
    cores = core_split(cfg.backend_core)
    if cores[1] is not None:  # this process is the client
        os.sched_setaffinity(0, cores[1])
    per_level = {e: requests_per_level(cfg, e) for e in cfg.engines}
    env = environment()
    t0 = time.monotonic()
    engines: dict[str, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    complete = True
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=2 * sum(sum(v) for v in per_level.values()), desc="overhead", unit="req",
                   file=sys.stderr, leave=False)
    with tempfile.TemporaryDirectory(prefix="cato-bench-") as tmpdir:
        tmp = Path(tmpdir)
        plans = []
        for e in cfg.engines:
            path, prof, record = _engine_profile(e, cfg, tmp)
            engines[e] = {"role": ("target: isolates the backend" if e == TARGET_ENGINE
                                   else "context: what a user sees"),
                          "profile": record,
                          "unloaded_service_ms": 1000 * unloaded_service_s(prof, cfg),
                          "prefill_ms": 1000 * prof.ttft_s(_prompt_tokens(cfg)),
                          "requests_per_level": per_level[e], "blocks": blocks_for(cfg, e)}
            plans.append((e, path, prof))

        async def run_all() -> None:
            for e, path, prof in plans:
                await _measure(cfg, e, path, prof, tmp, engines[e], results, bar, cores)

        try:
            asyncio.run(asyncio.wait_for(run_all(), cfg.timeout_s))
        except TimeoutError:
            complete = False  # what finished is still written, marked incomplete
        finally:
            if bar is not None:
                bar.close()
    finish_environment(env)
    payload = {
        "benchmark": "overhead",
        "description": "TTFT of streaming /v1/completions: direct to the engine vs through "
                       "the backend (same request), closed-loop clients with seeded think "
                       "times per concurrency, on a thin and a realistic emulated engine",
        "engine": "EMULATED (cato-backend emulate, timing from the profile; not a real model)",
        "config": asdict(cfg),
        "environment": env,
        "setup": {"engines": engines},
        "targets": {"diff_p50_ms_max": TARGET_P50_MS, "diff_p99_ms_max": TARGET_P99_MS,
                    "applies_to": f"{TARGET_ENGINE} engine rows", "reference": RAY_SERVE_CLAIM},
        "results": results,
        "complete": complete,
        "elapsed_s": time.monotonic() - t0,
    }
    md = overhead_markdown(payload)
    write_results(out, name, payload, md)
    return payload


# -- the report -------------------------------------------------------------------------

def _pair(a: float | None, b: float | None, digits: int = 0) -> str:
    return f"{fmt(a, digits)}/{fmt(b, digits)}"


def _table(rows_in: list[dict[str, Any]], with_target: bool) -> str:
    rows = []
    for r in rows_in:
        d, b, diff, t = r["direct"]["ttft_ms"], r["backend"]["ttft_ms"], r["diff_ms"], r["target"]

        def ci(key: str, diff: dict | None = diff) -> str:
            v = diff and diff.get(key)
            return f" [{v[0]:+.1f}, {v[1]:+.1f}]" if v else ""

        blocks = ("n/a" if not diff else
                  ", ".join("n/a" if x is None else f"{x:+.1f}" for x in diff["p50_by_block"]))
        row = [
            r["concurrency"], f"{d['n']}/{b['n']}",
            fmt(d["p50"]), fmt(b["p50"]),
            "n/a" if not diff else f"{diff['p50']:+.2f}{ci('p50_ci95')}", blocks,
            fmt(d["p99"]), fmt(b["p99"]),
            "n/a" if not diff else f"{diff['p99']:+.2f}{ci('p99_ci95')}",
        ]
        if with_target:
            row.append("n/a" if t is None else
                       f"p50 {'met' if t['p50_met'] else 'NOT met'}, "
                       f"p99 {'met' if t['p99_met'] else 'NOT met'}")
        row += [
            _pair(r["direct"]["throughput_rps"], r["backend"]["throughput_rps"]),
            _pair(r["direct"]["cpu_busy_cores"], r["backend"]["cpu_busy_cores"], 2),
            fmt(r["backend"]["cpu_ms_per_request"].get("backend")),
            r["direct"]["errors"] + r["backend"]["errors"],
        ]
        rows.append(row)
    headers = ["concurrency", "n (direct/backend)", "direct p50", "backend p50",
               "Δ p50 [95% CI]", "Δ p50 by block", "direct p99", "backend p99",
               "Δ p99 [95% CI]"]
    if with_target:
        headers.append(f"target ≤ +{TARGET_P50_MS:g} / +{TARGET_P99_MS:g} ms")
    headers += ["req/s (D/B)", "CPU busy, cores (D/B)", "backend CPU ms/req", "errors"]
    return md_table(headers, rows)


def _profile_text(prof: dict[str, Any]) -> str:
    decode = ", ".join(f"{p['step_ms']:g} ms at {p['batch']}" for p in prof.get("decode", []))
    return (f"{prof.get('model')} @ {prof.get('hardware')} ({prof.get('source')}): "
            f"overhead {prof.get('overhead_ms'):g} ms + {prof.get('prefill_ms_per_token'):g} "
            f"ms/prompt token, decode step {decode}")


def overhead_markdown(p: dict[str, Any]) -> str:
    cfg, env = p["config"], p["environment"]
    engines = p["setup"].get("engines", {})
    lines = [
        "# cato-bench overhead: backend overhead on TTFT (ms)",
        "",
        ("Engines: **EMULATED** (`cato-backend emulate`, timing from a profile; not a real "
         "model), each behind its own `cato-backend serve` (static engine). Streaming "
         f"`/v1/completions`, max_tokens {cfg['max_tokens']}, same prompt. TTFT = client send "
         "-> first content token. The direct and backend paths alternate in blocks (D B | B D "
         f"| ...); each block first discards max({cfg['warmup']}, concurrency) requests "
         "(ramp-up) and keeps every client busy until its last measured request ends."),
        "",
        ("Arrivals (concurrency > 1): each closed-loop client waits an exponential think time "
         f"(mean {cfg['think']:g} x the engine's unloaded service time) before each request "
         "and starts after a uniform random stagger within one cycle; the think times are "
         "seeded per (engine, level, block, client) and identical for the direct and the "
         "backend phase of a block, so both paths see the same arrival pattern. Concurrency "
         "1 runs back to back."),
        "",
    ]
    sections = [
        ("thin", "Thin engine: the backend's own overhead (targets apply here)"),
        ("realistic", "Realistic SmolLM2 profile: what a user sees (context, no target)"),
    ]
    for key, title in sections:
        rows = [r for r in p["results"] if r.get("engine") == key]
        if key not in engines:
            continue
        e = engines[key]
        per_level = ", ".join(f"{n} at c={c}" for c, n in
                              zip(cfg["concurrency"], e.get("requests_per_level", [])))
        lines += [
            f"## {title}",
            "",
            (f"EMULATED engine, profile {_profile_text(e.get('profile', {}))}. Unloaded "
             f"service time {e.get('unloaded_service_ms', 0):.1f} ms, so think time mean "
             f"{cfg['think'] * e.get('unloaded_service_ms', 0):.1f} ms at c > 1. Measured "
             f"requests per path: {per_level}, in {e.get('blocks')} blocks per path."),
            "",
            _table(rows, with_target=key == TARGET_ENGINE),
            "",
        ]
    real = engines.get("realistic", {}).get("prefill_ms")
    prefill = "n/a" if real is None else f"{real:.0f} ms here"
    if not p.get("complete", True):
        lines += [(f"**Incomplete**: stopped by the time limit ({cfg['timeout_s']:g} s); only "
                   "the levels above finished."), ""]
    lines += [
        ("Reading it: the targets (backend − direct at most "
         f"+{TARGET_P50_MS:g} ms p50 and +{TARGET_P99_MS:g} ms p99) are judged on the thin-"
         "engine rows, where the engine's prefill and decode cost almost nothing and TTFT "
         "differences are the backend's (its proxying, and its CPU time competing for the "
         "same cores). On the realistic profile the emulated engine charges every arrival's "
         f"prefill ({prefill}) within one step, so at concurrency > 1 TTFT is mostly the "
         "engine's queueing and the difference is noisy; those rows are context. 'Δ p50 by "
         "block' is the difference within each interleaved block pair: its spread shows "
         "drift that the CI (requests resampled as if independent) does not. 'CPU busy' is "
         "engine + backend + client CPU per second of wall time (2 cores means saturated); "
         "'backend CPU ms/req' is the backend process's CPU per request sent (whole request, "
         "all tokens)."),
        "",
        f"Reference: {RAY_SERVE_CLAIM}.",
        "",
        (f"Cores: the backend alone on core {cfg['backend_core']}, the engine and the client "
         "on the others, as deployed (a backend never shares its host with the engines or "
         "the editors). " if cfg.get("backend_core") is not None else
         "Client, backend and engine all run on this machine and share its cores. ")
        + environment_note(env, p["elapsed_s"]),
    ]
    return "\n".join(lines)
