"""`cato-bench side-by-side`: the pure parts (schedule, trace, the Ray request being the very
request CATO's orchestrator sends, SLA verdicts, per-phase goodput) without Ray, and one tiny
bounded end-to-end run of both systems over emulated replicas (marker `ray`)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from cato_backend import steps
from cato_backend.bench import side_by_side as sbs
from cato_backend.config import default_config
from cato_backend.orchestrator import Orchestrator

from .conftest import FAST_PROFILE, process_alive


def _small(**kw) -> sbs.SideBySideConfig:
    base = {"low_s": 20.0, "high_s": 20.0, "after_s": 20.0, "low_rps": 1.0, "high_rps": 4.0,
            "seed": 3, "progress": False,
            "max_tokens": {"completion": 8, "generation": 8, "translation": 8,
                           "summarization": 8}}
    return sbs.SideBySideConfig(**(base | kw))


def test_schedule_is_low_high_low_and_the_trace_is_seeded_with_all_kinds() -> None:
    cfg = _small()
    ph = sbs.phases(cfg)
    assert [(p["name"], p["start_s"], p["end_s"], p["rate_rps"]) for p in ph] == [
        ("low", 0.0, 20.0, 1.0), ("high", 20.0, 40.0, 4.0), ("low-after", 40.0, 60.0, 1.0)]
    trace = sbs.build_trace(cfg)
    assert trace == sbs.build_trace(cfg)  # seeded
    assert [r.t for r in trace] == sorted(r.t for r in trace) and 0 <= trace[0].t
    assert trace[-1].t < 60.0
    assert {r.kind for r in trace} == set(sbs.KINDS)
    n = {p["name"]: sum(p["start_s"] <= r.t < p["end_s"] for r in trace) for p in ph}
    assert n["high"] > n["low"] and n["high"] > n["low-after"]  # 80 expected vs 20
    for r in trace:
        assert r.body["kind"] == r.kind and r.body["max_tokens"] == 8
    assert sbs.build_trace(_small(seed=4)) != trace
    # Engine defaults fill what is not given; the vLLM run is small.
    v = sbs.SideBySideConfig(engine="vllm").resolved()
    assert (v.min_replicas, v.max_replicas, v.cores_per_replica) == (1, 2, 1)
    e = sbs.SideBySideConfig().resolved()
    assert e.low_s + e.high_s + e.after_s <= 300 and e.cold_start_s == 24.0
    with pytest.raises(ValueError):
        _small(min_replicas=3, max_replicas=2).validate()


def test_the_ray_request_is_the_request_cato_sends_for_the_task() -> None:
    """`engine_request` against the orchestrator's own `_engine_request` for each kind's
    first LLM node (generation's context gathered as the graph's first step does)."""
    config = default_config()
    mc = config.models["smollm2"]
    dmt = {k.value: v.max_tokens for k, v in config.kinds.items()}
    trace = sbs.build_trace(_small(max_tokens=None))
    first_node = {"completion": "fim", "generation": "generate", "translation": "translate",
                  "summarization": "summarize"}
    seen = set()
    for r in trace:
        if r.kind in seen:
            continue
        seen.add(r.kind)
        inputs = {k: v for k, v in r.body.items() if k not in ("kind", "max_tokens")}
        task = SimpleNamespace(inputs=inputs, model="smollm2", passthrough=None,
                               max_tokens=r.body["max_tokens"])
        run = SimpleNamespace(task=task, outputs={
            "gather_context": steps.gather_context(inputs.get("context", ""))})
        want = Orchestrator._engine_request(SimpleNamespace(config=config), run,
                                            SimpleNamespace(name=first_node[r.kind]))
        got = sbs.engine_request(r.body, mc.served_name, mc.fim_template, dmt)
        assert got == want and got.body() == want.body()
    assert seen == set(sbs.KINDS)


def test_sla_verdicts_follow_the_kind_metric() -> None:
    assert sbs.sla_verdict("completion", 400, 9000, 500) is True
    assert sbs.sla_verdict("completion", 600, 700, 500) is False
    assert sbs.sla_verdict("generation", None, 1200, 1500) is True  # no token: E2E counts
    assert sbs.sla_verdict("translation", 10, 21000, 20000) is False
    assert sbs.sla_verdict("summarization", 5000, 7999, 8000) is True
    assert sbs.sla_verdict("summarization", 5, None, 8000) is None  # no end: lost


def test_metrics_per_phase_per_kind_and_replica_seconds() -> None:
    ph = sbs.phases(_small(low_s=10.0, high_s=10.0, after_s=10.0))
    O = sbs.Outcome
    outcomes = [
        O(0, 1.0, "completion", "low", met=True, ttft_ms=100, e2e_ms=300),
        O(1, 2.0, "translation", "low", met=True, ttft_ms=50, e2e_ms=9000),
        O(2, 11.0, "completion", "high", met=False, ttft_ms=900, e2e_ms=1200),
        O(3, 12.0, "summarization", "high", met=None, error="timeout: no end within 5s"),
        O(4, 15.0, "generation", "high", met=True, ttft_ms=1000, e2e_ms=5000),
        O(5, 25.0, "completion", "low-after", met=True, ttft_ms=80, e2e_ms=200,
          backend_met=True),
    ]
    samples = [{"t": 0.0, "active": 1, "ready": 1}, {"t": 12.0, "active": 3, "ready": 1},
               {"t": 20.0, "active": 2, "ready": 2}]
    m = sbs.system_metrics(outcomes, samples, ph, bin_s=10.0)
    assert m["requests"] == 6 and m["lost"] == 1 and m["finished"] == 5
    assert m["errors"] == {"timeout": 1}
    assert m["goodput"] == pytest.approx(4 / 6)
    assert m["goodput_ttft_critical"] == pytest.approx(3 / 4)
    assert m["goodput_e2e_critical"] == pytest.approx(1 / 2)
    assert m["per_phase"]["low"]["goodput"] == 1.0
    assert m["per_phase"]["high"]["goodput"] == pytest.approx(1 / 3)
    assert m["per_phase"]["high"]["ttft_critical"] == pytest.approx(1 / 2)
    assert m["per_phase"]["high"]["e2e_critical"] == 0.0
    assert m["per_phase"]["low-after"]["goodput"] == 1.0
    assert m["per_kind"]["completion"]["goodput"] == pytest.approx(2 / 3)
    assert m["per_kind"]["summarization"]["lost"] == 1
    assert m["per_kind"]["completion"]["ttft_ms_p50"] == 100
    assert [b["n"] for b in m["goodput_series"]] == [2, 3, 1]
    assert m["replica_seconds"] == pytest.approx(1 * 12 + 3 * 8 + 2 * 10)
    assert m["ready_replica_seconds"] == pytest.approx(1 * 20 + 2 * 10)
    assert (m["peak_replicas"], m["replicas_at_end"]) == (3, 2)
    assert m["backend_verdict_agrees"] == 1.0


def test_cli_defaults_and_bad_arguments(capsys) -> None:
    from cato_backend.bench.cli import build_parser, main

    a = build_parser().parse_args(["side-by-side", "--engine", "vllm"])
    assert a.name is None and a.engine == "vllm" and a.systems == ["cato", "ray"]
    assert a.low_s is None  # the engine's default applies
    assert main(["side-by-side", "--min-replicas", "3", "--max-replicas", "2"]) == 2
    assert "min_replicas" in capsys.readouterr().err


@pytest.mark.ray
def test_tiny_run_of_both_systems_answers_everything_and_leaves_no_process(tmp_path) -> None:
    """Both systems over emulated replicas (a fast profile, no cold start), a 10-s schedule:
    every request gets a final answer from each, and teardown leaves no process behind."""
    if importlib.util.find_spec("ray") is None or \
            not Path(sys.executable).with_name("ray").exists():
        pytest.skip("ray[serve] is not installed (pip install -e .[ray])")
    profile = tmp_path / "fast.json"
    profile.write_text(FAST_PROFILE.model_dump_json())
    cfg = _small(low_s=2.0, high_s=5.0, after_s=3.0, low_rps=1.0, high_rps=3.0, seed=1,
                 min_replicas=1, max_replicas=2, cold_start_s=0.0, profile=str(profile),
                 drain_timeout_s=20.0, request_timeout_s=30.0, timeout_s=85.0)
    p = sbs.run_side_by_side(cfg, tmp_path / "out", "sbs", plot=True)
    assert p["complete"], p["failures"]
    n = p["workload"]["requests"]
    assert n >= 5
    for system in ("cato", "ray"):
        r = p["results"][system]
        assert r["requests"] == n and r["lost"] == 0, (system, r["lost_examples"])
        assert len(r["outcomes"]) == n
        assert all(o["e2e_ms"] is not None and o["met"] is not None for o in r["outcomes"])
        assert r["samples"] and r["peak_replicas"] >= 1
        assert p["setup"][system]["leftover_after"] == []
    ray_setup = p["setup"]["ray"]
    assert ray_setup["deployment"]["autoscaling_config"] == {"min_replicas": 1,
                                                             "max_replicas": 2}
    eff = ray_setup["deployment"]["effective"]  # Ray's own defaults, as the replicas ran
    assert eff["max_ongoing_requests"] == 5
    assert "PowerOfTwoChoices" in eff["request_router"]["class"]
    assert (eff["autoscaling_config"]["target_ongoing_requests"],
            eff["autoscaling_config"]["upscale_delay_s"]) == (2, 30.0)
    assert ray_setup["engines"] and ray_setup["ray_processes_seen"] > 3
    engine_pids = [e["pid"] for e in ray_setup["engines"].values()]
    for pid in engine_pids + p["setup"]["cato"]["replica_pids"]:
        assert not process_alive(pid), f"process {pid} outlived the run"
    saved = json.loads((tmp_path / "out" / "sbs.json").read_text())
    assert saved["workload"]["phases"] == sbs.phases(cfg)
    assert (tmp_path / "out" / "sbs.md").read_text().startswith("# cato-bench side-by-side")
    assert (tmp_path / "out" / "sbs.png").stat().st_size > 1000
