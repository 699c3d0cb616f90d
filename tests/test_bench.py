"""`cato-bench`: each subcommand runs end to end at a tiny size and writes valid results.

These check that the benchmarks work, not how fast anything is (numbers come from full
runs written to bench/results/, never from timed unit tests)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cato_backend.bench import md_table, resolve_profile, summary, write_results
from cato_backend.bench.cli import build_parser, main
from cato_backend.bench.overhead import _block_sizes, _diff_ci

ENV_KEYS = {"date_utc", "python", "cpu_count", "load_average_before", "load_average_after",
            "git", "platform"}


def _load(out: Path, name: str) -> dict:
    path = out / f"{name}.json"
    data = json.loads(path.read_text())  # strict JSON: no NaN
    md = (out / f"{name}.md").read_text()
    assert md.startswith("# cato-bench")
    assert "|---|" in md
    return data


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_overhead_end_to_end(tmp_path: Path, fast_profile_path: Path, capsys) -> None:
    out = tmp_path / "results"
    rc = main(["overhead", "--requests", "3", "--concurrency", "1,2", "--warmup", "1",
               "--max-tokens", "4", "--profile", str(fast_profile_path), "--out", str(out),
               "--name", "ov", "--no-progress", "--timeout", "60"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "backend overhead on TTFT" in printed
    assert "quoted from issue #2, not measured by this benchmark" in printed
    data = _load(out, "ov")
    assert data["benchmark"] == "overhead"
    assert "EMULATED" in data["engine"]
    assert ENV_KEYS <= data["environment"].keys()
    assert data["config"]["concurrency"] == [1, 2]
    assert data["config"]["requests"] == [3]
    engines = data["setup"]["engines"]
    assert set(engines) == {"thin", "realistic"}
    assert engines["realistic"]["profile"]["path"] == str(fast_profile_path.resolve())
    thin = engines["thin"]["profile"]
    assert thin["overhead_ms"] < 1 and thin["profile_json"]["decode"]  # recorded in full
    for e in engines.values():
        assert e["backend_config"]["models"]["smollm2"]["engine"] == "static"
        assert e["requests_per_level"] == [3, 3]
    assert data["targets"]["diff_p50_ms_max"] == 2.0
    assert "thin" in data["targets"]["applies_to"]
    assert [(r["engine"], r["concurrency"]) for r in data["results"]] == [
        ("thin", 1), ("thin", 2), ("realistic", 1), ("realistic", 2)]
    for r in data["results"]:
        sched = r["schedule"]
        assert sched["think_mean_ms"] == (0 if r["concurrency"] == 1
                                          else pytest.approx(0.5 * sched["unloaded_service_ms"]))
        for path in ("direct", "backend"):
            assert r[path]["errors"] == 0, r[path]["error_examples"]
            assert r[path]["discarded"] >= sched["blocks"]  # ramp-up, at least one per block
            ttft = r[path]["ttft_ms"]
            assert ttft["n"] == 3
            assert 0 < ttft["p50"] <= ttft["p99"] <= r[path]["e2e_ms"]["max"]
        assert {"p50", "p99", "mean", "p50_ci95", "p99_ci95", "p50_by_block"} <= r["diff_ms"].keys()
        assert _finite(r["diff_ms"]["p50"]) and _finite(r["diff_ms"]["p99"])
        if r["engine"] == "thin":
            assert set(r["target"]) == {"p50_max_ms", "p99_max_ms", "p50_met", "p99_met"}
        else:
            assert r["target"] is None  # context rows


def test_phase_schedule_measures_only_the_middle() -> None:
    """A phase discards its ramp-up, measures n requests, keeps every client sending until
    the last measured one ends, and the same seeds give the same think times."""
    import asyncio

    from aiohttp import web

    from cato_backend.bench.overhead import Schedule, _run_phase

    sends: list[float] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        sends.append(asyncio.get_running_loop().time())
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices":[{"text":"x"}]}\n\n')
        await asyncio.sleep(0.002)
        await resp.write(b"data: [DONE]\n\n")
        return resp

    async def go():
        app = web.Application()
        app.router.add_post("/v1/completions", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with aiohttp.ClientSession() as session:
                sched = Schedule(0.001, 0.002, [[0, 0, 3, 0, j] for j in range(3)])
                return await _run_phase(session, f"http://127.0.0.1:{port}/v1/completions",
                                        b"{}", 5, 3, sched, aiohttp.ClientTimeout(total=5),
                                        {}, None)
        finally:
            await runner.cleanup()

    import aiohttp

    phase = asyncio.run(go())
    assert len(phase.ttft) == 5 and not phase.errors
    assert phase.discarded >= 3 and len(sends) == 5 + phase.discarded
    assert phase.window_s > 0 and phase.cpu_s["client"] is not None
    a, b = (np.random.default_rng([0, 0, 3, 0, 1]) for _ in range(2))
    assert a.uniform(0, 1) == b.uniform(0, 1)


def test_router_end_to_end(tmp_path: Path, fast_profile_path: Path, capsys) -> None:
    out = tmp_path / "results"
    rc = main(["router", "--replicas", "10,20", "--decisions", "100", "--snapshots", "20",
               "--warmup", "10", "--profile", str(fast_profile_path), "--out", str(out),
               "--no-progress"])
    assert rc == 0
    assert "decision time" in capsys.readouterr().out
    data = _load(out, "router")
    assert data["benchmark"] == "router"
    assert ENV_KEYS <= data["environment"].keys()
    assert [r["replicas"] for r in data["results"]] == [10, 20]
    for r in data["results"]:
        assert set(r["decide_us"]) == {"cato", "cato_plus", "round_robin", "p2c", "least_loaded",
                                       "slo_tier"}
        for stats in r["decide_us"].values():
            assert stats["n"] == 100 and _finite(stats["p50"]) and _finite(stats["p99"])
        assert r["snapshot_us"]["n"] == 20
        assert r["snapshot_plus_decide_us"]["total"]["n"] == 20
        assert _finite(r["snapshot_plus_decide_us"]["sum_of_means"])
        assert sum(r["priorities"]["cato"].values()) == 100
        assert {"decide_mean_met", "decide_p99_met", "snapshot_plus_decide_mean_met",
                "snapshot_plus_decide_p99_met"} <= r["target"].keys()
        assert r["pool_state"]["ready"] <= r["replicas"]


def test_router_pool_has_every_priority_class(fast_profile_path: Path) -> None:
    """The built pool carries queued work in all three classes, and the request mix makes the
    slack-aware router decide in all three priorities."""
    import asyncio
    import random

    from cato_backend.bench.router_time import RouterConfig, build_pool, make_requests
    from cato_backend.profiler import OnlineProfile
    from cato_backend.profiles import load_profile
    from cato_backend.router import SlackAwareRouter

    cfg = RouterConfig()
    profile = OnlineProfile(load_profile(fast_profile_path))

    async def go():
        rng = random.Random(1)
        pool, stats = build_pool(200, cfg, profile, 100.0, rng)
        reqs = make_requests(cfg, profile, 100.0, rng)
        snap = pool.snapshot(100.0)
        router = SlackAwareRouter(profile)
        return stats, {router.decide(q, snap, 100.0).priority for q in reqs}

    stats, priorities = asyncio.run(go())
    assert all(n > 0 for n in stats["queued"])
    assert stats["starting"] > 0
    assert priorities == {0, 1, 2}


def test_cli_rejects_bad_sizes(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["overhead", "--concurrency", "1,x"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["overhead", "--engines", "thin,fat"])
    assert main(["overhead", "--requests", "1,2", "--concurrency", "1,2,3",
                 "--out", str(tmp_path)]) == 2
    assert main(["overhead", "--think", "-1", "--out", str(tmp_path)]) == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args(["router", "--replicas", "0"])
    assert main(["router", "--decisions", "0", "--out", str(tmp_path)]) == 2


def test_helpers(tmp_path: Path) -> None:
    assert _block_sizes(5, 2) == [3, 2]
    assert _block_sizes(1, 4) == [1]
    assert summary([])["n"] == 0
    s = summary([1.0, 2.0, 3.0])
    assert s["p50"] == 2.0 and s["min"] == 1.0 and s["max"] == 3.0
    rng = np.random.default_rng(0)
    lo, hi = _diff_ci(np.ones(50), np.full(50, 3.0), 50, 100, rng)
    assert lo == hi == 2.0
    assert md_table(["a", "b"], [[1, "x|y"]]).splitlines()[2] == "| 1 | x\\|y |"
    path = write_results(tmp_path / "r", "t", {"x": np.float64(1.5)}, "# t")
    assert json.loads(path.read_text()) == {"x": 1.5}
    # No profile argument: the measured profile when present, else a labelled stand-in.
    p, prof, source = resolve_profile(None, tmp_path)
    assert p.exists() and prof.decode and source


def test_overhead_stops_at_its_time_limit(tmp_path: Path, fast_profile_path: Path) -> None:
    """A run that cannot finish in --timeout stops, cleans up and writes what it has."""
    rc = main(["overhead", "--requests", "1000", "--concurrency", "1", "--warmup", "0",
               "--engines", "realistic", "--profile", str(fast_profile_path),
               "--out", str(tmp_path), "--no-progress", "--timeout", "1.0"])
    assert rc == 1
    data = _load(tmp_path, "overhead")
    assert data["complete"] is False
    assert "Incomplete" in (tmp_path / "overhead.md").read_text()


def test_overhead_can_pin_the_backend_apart_from_engine_and_client() -> None:
    import os

    from cato_backend.bench.overhead import core_split

    assert core_split(None) == (None, None)
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        pytest.skip("needs two cores")
    backend, others = core_split(cores[0])
    assert backend == {cores[0]} and others == set(cores[1:])
    with pytest.raises(ValueError, match="needs two or more usable cores"):
        core_split(max(cores) + 1000)
