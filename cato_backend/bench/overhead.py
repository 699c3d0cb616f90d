"""`cato-bench overhead`: what the backend adds to time-to-first-token.

One EMULATED engine runs as its own process (`cato-backend emulate`), and one backend as
another (`cato-backend serve` with a static engine pointing at it), so backend and engine do
not share an event loop. The client (this process) sends the same streaming
`/v1/completions` request (a) straight to the engine and (b) through the backend, with N
closed-loop clients per concurrency level, the two paths interleaved in blocks (D B | B D |
...) after a warm-up, and reports TTFT (client send -> first content token) percentiles of
both and their difference. Client, backend and engine share this machine's cores: the
difference includes the backend's CPU time competing with the engine's and the client's.
"""

from __future__ import annotations

import asyncio
import json
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
RAY_SERVE_CLAIM = ("Ray Serve adds about 7 ms on this machine: a claim quoted in the benchmark's "
                   "brief as coming from DESIGN.md (not found in the current DESIGN.md text); "
                   "not measured by this benchmark")


@dataclass
class OverheadConfig:
    concurrency: list[int] = field(default_factory=lambda: [1, 10, 50])
    requests: int = 200  # measured requests per concurrency level per path
    warmup: int = 20  # discarded requests per level per path (at least the concurrency)
    blocks: int = 2  # blocks per path per level, alternating D B | B D | ...
    max_tokens: int = 16
    max_in_flight: int = 64  # backend's per-replica limit: above the concurrency, no queueing
    profile: str | None = None  # None: measured SmolLM2 CPU profile, else a stand-in
    timeout_s: float = 600.0  # the whole run
    request_timeout_s: float = 60.0
    start_timeout_s: float = 60.0
    bootstrap: int = 2000  # resamples for the difference's confidence interval
    seed: int = 0
    progress: bool = True
    prompt: str = PROMPT


# -- processes --------------------------------------------------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def __init__(self, name: str, cmd: list[str], log_path: Path) -> None:
        self.name = name
        self.cmd = cmd
        self.log_path = log_path
        with open(log_path, "wb") as out:
            self.popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          cwd=REPO_ROOT)

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
class _Phase:
    ttft: list[float] = field(default_factory=list)
    e2e: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: dict[str, float | None] = field(default_factory=dict)


async def _run_phase(session: aiohttp.ClientSession, url: str, body: bytes, n: int,
                     concurrency: int, timeout: aiohttp.ClientTimeout, procs: dict[str, _Proc],
                     bar: Any) -> _Phase:
    """`concurrency` closed-loop clients share `n` requests."""
    phase = _Phase()
    remaining = n

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            try:
                ttft, e2e = await _one(session, url, body, timeout)
                phase.ttft.append(ttft)
                phase.e2e.append(e2e)
            except (TimeoutError, RequestFailed, aiohttp.ClientError) as e:
                phase.errors.append(f"{type(e).__name__}: {e}"[:300])
            if bar is not None:
                bar.update(1)

    cpu0 = {k: p.cpu_s() for k, p in procs.items()}
    cpu0["client"] = time.process_time()
    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(concurrency, n))))
    phase.wall_s = time.perf_counter() - t0
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
    """95% bootstrap interval of percentile_q(b) - percentile_q(a), in the samples' units."""
    if len(a) < 2 or len(b) < 2 or n_boot <= 0:
        return None
    ia = rng.integers(0, len(a), (n_boot, len(a)))
    ib = rng.integers(0, len(b), (n_boot, len(b)))
    d = np.percentile(b[ib], q, axis=1) - np.percentile(a[ia], q, axis=1)
    lo, hi = np.percentile(d, [2.5, 97.5])
    return [float(lo), float(hi)]


def _ms(s: dict[str, Any]) -> dict[str, Any]:
    return {k: (v * 1000 if isinstance(v, float) else v) for k, v in s.items()}


def _level_result(c: int, phases: dict[str, list[_Phase]], cfg: OverheadConfig,
                  rng: np.random.Generator) -> dict[str, Any]:
    out: dict[str, Any] = {"concurrency": c}
    arrays = {}
    for path, ps in phases.items():
        ttft = np.array([x for p in ps for x in p.ttft])
        e2e = np.array([x for p in ps for x in p.e2e])
        arrays[path] = ttft * 1000
        n_ok = len(ttft)
        cpu: dict[str, float | None] = {}
        for proc in ("engine", "backend", "client"):
            vals = [p.cpu_s.get(proc) for p in ps]
            cpu[proc] = (None if any(v is None for v in vals) or n_ok == 0
                         else 1000 * sum(vals) / n_ok)  # type: ignore[arg-type]
        wall = sum(p.wall_s for p in ps)
        out[path] = {
            "ttft_ms": _ms(summary(ttft)),
            "e2e_ms": _ms(summary(e2e)),
            "errors": sum(len(p.errors) for p in ps),
            "error_examples": [e for p in ps for e in p.errors][:3],
            "wall_s": wall,
            "throughput_rps": n_ok / wall if wall > 0 else None,
            "cpu_ms_per_request": cpu,
            "blocks": [{"n": len(p.ttft), "ttft_p50_ms": _ms(summary(p.ttft))["p50"],
                        "wall_s": p.wall_s} for p in ps],
        }
    d, b = out["direct"]["ttft_ms"], out["backend"]["ttft_ms"]
    if d["n"] and b["n"]:
        out["diff_ms"] = {
            "p50": b["p50"] - d["p50"], "p99": b["p99"] - d["p99"], "mean": b["mean"] - d["mean"],
            "p50_ci95": _diff_ci(arrays["direct"], arrays["backend"], 50, cfg.bootstrap, rng),
            "p99_ci95": _diff_ci(arrays["direct"], arrays["backend"], 99, cfg.bootstrap, rng),
        }
        out["target"] = {"p50_max_ms": TARGET_P50_MS, "p99_max_ms": TARGET_P99_MS,
                         "p50_met": out["diff_ms"]["p50"] <= TARGET_P50_MS,
                         "p99_met": out["diff_ms"]["p99"] <= TARGET_P99_MS}
    else:
        out["diff_ms"] = None
        out["target"] = None
    return out


# -- the benchmark ----------------------------------------------------------------------

async def _measure(cfg: OverheadConfig, profile_path: Path, tmp: Path,
                   info: dict[str, Any]) -> None:
    engine_port, backend_port = _free_port(), _free_port()
    engine_url = f"http://127.0.0.1:{engine_port}"
    backend_url = f"http://127.0.0.1:{backend_port}"
    cfg_path = tmp / "backend.yaml"
    cfg_path.write_text(yaml.safe_dump(_backend_config(engine_url, backend_port, profile_path,
                                                       cfg.max_in_flight)))
    py = sys.executable
    procs: dict[str, _Proc] = {}
    try:
        procs["engine"] = _Proc("emulated engine", [
            py, "-m", "cato_backend.cli", "emulate", "--host", "127.0.0.1",
            "--port", str(engine_port), "--profile", str(profile_path), "--model", MODEL_NAME,
        ], tmp / "engine.log")
        procs["backend"] = _Proc("backend", [
            py, "-m", "cato_backend.cli", "serve", "--config", str(cfg_path),
            "--port", str(backend_port),
        ], tmp / "backend.log")
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
            await _levels(cfg, session, engine_url, backend_url, procs, info["results"])
    finally:
        for p in reversed(list(procs.values())):
            p.stop()
        info["logs_tail"] = {k: p.tail(10) for k, p in procs.items()}


async def _levels(cfg: OverheadConfig, session: aiohttp.ClientSession, engine_url: str,
                  backend_url: str, procs: dict[str, _Proc],
                  results: list[dict[str, Any]]) -> None:
    base = {"model": MODEL_NAME, "prompt": cfg.prompt, "max_tokens": cfg.max_tokens,
            "temperature": 0.0, "stream": True}
    # The backend always asks its engine for usage; the direct request asks the same, so the
    # engine does the same work on both paths.
    bodies = {"direct": json.dumps({**base, "stream_options": {"include_usage": True}}).encode(),
              "backend": json.dumps(base).encode()}
    urls = {"direct": engine_url + "/v1/completions",
            "backend": backend_url + "/v1/completions"}
    timeout = aiohttp.ClientTimeout(total=cfg.request_timeout_s)
    rng = np.random.default_rng(cfg.seed)
    total = sum(2 * (max(cfg.warmup, c) if cfg.warmup > 0 else 0) + 2 * cfg.requests
                for c in cfg.concurrency)
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="overhead", unit="req", file=sys.stderr, leave=False)
    try:
        for c in cfg.concurrency:
            if bar is not None:
                bar.set_postfix_str(f"concurrency {c}")
            if cfg.warmup > 0:
                for path in ("direct", "backend"):
                    await _run_phase(session, urls[path], bodies[path], max(cfg.warmup, c), c,
                                     timeout, procs, bar)
            phases: dict[str, list[_Phase]] = {"direct": [], "backend": []}
            for i, n in enumerate(_block_sizes(cfg.requests, cfg.blocks)):
                order = ("direct", "backend") if i % 2 == 0 else ("backend", "direct")
                for path in order:
                    phases[path].append(await _run_phase(session, urls[path], bodies[path], n,
                                                         c, timeout, procs, bar))
            results.append(_level_result(c, phases, cfg, rng))
    finally:
        if bar is not None:
            bar.close()


def run_overhead(cfg: OverheadConfig, out: str | Path, name: str = "overhead") -> dict[str, Any]:
    env = environment()
    t0 = time.monotonic()
    info: dict[str, Any] = {"results": []}
    complete = True
    with tempfile.TemporaryDirectory(prefix="cato-bench-") as tmpdir:
        tmp = Path(tmpdir)
        profile_path, profile, source = resolve_profile(cfg.profile, tmp)
        info["profile"] = profile_record(profile_path, profile, source)
        try:
            asyncio.run(asyncio.wait_for(_measure(cfg, profile_path, tmp, info), cfg.timeout_s))
        except TimeoutError:
            complete = False  # what finished is still written, marked incomplete
    levels = info.pop("results")
    finish_environment(env)
    payload = {
        "benchmark": "overhead",
        "description": "TTFT of streaming /v1/completions: direct to the engine vs through "
                       "the backend (same request), closed-loop clients per concurrency",
        "engine": "EMULATED (cato-backend emulate, timing from the profile; not a real model)",
        "config": asdict(cfg),
        "environment": env,
        "setup": info,
        "targets": {"diff_p50_ms_max": TARGET_P50_MS, "diff_p99_ms_max": TARGET_P99_MS,
                    "reference": RAY_SERVE_CLAIM},
        "results": levels,
        "complete": complete,
        "elapsed_s": time.monotonic() - t0,
    }
    md = overhead_markdown(payload)
    write_results(out, name, payload, md)
    return payload


def overhead_markdown(p: dict[str, Any]) -> str:
    rows = []
    for r in p["results"]:
        d, b, diff, t = r["direct"]["ttft_ms"], r["backend"]["ttft_ms"], r["diff_ms"], r["target"]

        def ci(key: str, diff: dict | None = diff) -> str:
            v = diff and diff.get(key)
            return f" [{v[0]:+.1f}, {v[1]:+.1f}]" if v else ""

        verdict = "n/a" if t is None else (
            f"p50 {'met' if t['p50_met'] else 'NOT met'}, p99 {'met' if t['p99_met'] else 'NOT met'}")
        cpu = r["backend"]["cpu_ms_per_request"].get("backend")
        errors = r["direct"]["errors"] + r["backend"]["errors"]
        rows.append([
            r["concurrency"], f"{d['n']}/{b['n']}",
            fmt(d["p50"]), fmt(b["p50"]), "n/a" if not diff else f"{diff['p50']:+.2f}{ci('p50_ci95')}",
            fmt(d["p99"]), fmt(b["p99"]), "n/a" if not diff else f"{diff['p99']:+.2f}{ci('p99_ci95')}",
            verdict, fmt(cpu), errors,
        ])
    cfg, env, prof = p["config"], p["environment"], p["setup"].get("profile", {})
    table = md_table(
        ["concurrency", "n (direct/backend)", "direct p50", "backend p50", "Δ p50 [95% CI]",
         "direct p99", "backend p99", "Δ p99 [95% CI]", "target ≤ +2 / +5 ms",
         "backend CPU ms/req", "errors"], rows)
    return "\n".join([
        "# cato-bench overhead: backend overhead on TTFT (ms)",
        "",
        (f"Engine: **EMULATED** (`cato-backend emulate`, profile {prof.get('model')} @ "
        f"{prof.get('hardware')}, {prof.get('source')}). Streaming `/v1/completions`, "
        f"max_tokens {cfg['max_tokens']}, same prompt; {cfg['requests']} measured requests per "
        f"path per level after {cfg['warmup']} warm-up, paths interleaved in {cfg['blocks']} "
        f"blocks each. TTFT = client send -> first content token."),
        "",
        table,
        "",
        *([] if p.get("complete", True) else [
            (f"**Incomplete**: stopped by the time limit ({cfg['timeout_s']:g} s); only the "
             "levels above finished."), ""]),
        ("Reading it: identical closed-loop requests finish together, so at concurrency > 1 "
         "the clients arrive in waves, and the emulated engine charges every arrival's prefill "
         "(overhead + per-token) within one step: TTFT there is mostly the engine's "
         "(about N x one prefill), and a difference of a few ms, either sign, is within the "
         "engine's step structure. The c=1 row isolates the backend best; the CPU column is "
         "the backend process's CPU time per request (whole request, all tokens)."),
        "",
        (f"Target: backend − direct at most +{TARGET_P50_MS:g} ms p50 and +{TARGET_P99_MS:g} "
         f"ms p99. Reference: {RAY_SERVE_CLAIM}."),
        "Client, backend and engine all run on this machine and share its cores. "
        + environment_note(env, p["elapsed_s"]),
    ])
