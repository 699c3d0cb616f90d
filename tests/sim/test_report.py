"""`cato-bench report`: the paper's experiments in the simulator, written as one report."""

from __future__ import annotations

import json

from cato_backend.bench.cli import main
from cato_backend.bench.report import TARGET_ORACLE, TARGET_TTFT, TARGET_UTIL, targets
from cato_backend.sim.experiments import (
    CATO_LABEL,
    FIXED_POLICIES,
    PLUS_LABEL,
    RAY_LABEL,
    SCALED_POLICIES,
)


def test_quick_report_writes_every_section_and_the_targets(tmp_path):
    rc = main(["report", "--quick", "--duration", "20", "--phase", "20", "--out",
               str(tmp_path), "--no-progress"])
    assert rc == 0
    payload = json.loads((tmp_path / "report.json").read_text())
    assert payload["config"]["seed"] == 0 and payload["config"]["duration_s"] == 20
    assert payload["environment"]["load_average_before"] is not None
    ex = payload["experiments"]
    for key in ("long", "short"):
        levels = ex[key]["levels"]
        assert [lv["paper_level"] for lv in levels] == [0.67, 2.0, 3.33]
        for lv in levels:
            assert [r["label"] for r in lv["runs"]] == [p[0] for p in FIXED_POLICIES]
            for r in lv["runs"]:
                assert r["summary"]["tasks"] == lv["requests"] > 0
                assert 0 < r["summary"]["utilization"] <= 1
    for key, cap in (("mixed", 16), ("mixed_over", 12)):
        mixed = ex[key]
        assert mixed["max_replicas"] == cap
        assert [r["label"] for r in mixed["runs"]] == [p[0] for p in SCALED_POLICIES]
        for r in mixed["runs"]:
            assert r["summary"]["replicas_over_time"]["points"]
            assert len(r["extra"]["phases"]) == len(mixed["phases"])
            assert r["extra"]["cdf"]["completion"]["ttft_ms"]
            assert r["summary"]["peak_replicas"] <= cap
        oracle = mixed["runs"][-1]
        assert oracle["router"] == "oracle" and oracle["summary"]["mean_replicas"] == cap
    md = (tmp_path / "report.md").read_text()
    for heading in ("## Targets", "## Findings", "## (a) long-output", "## (b) short tasks",
                    "## (c) all four kinds, autoscaled", "## (c) over the cap", "## Plots",
                    "## Limitations"):
        assert heading in md
    for target in (TARGET_TTFT, TARGET_UTIL, TARGET_ORACLE):
        line = next(ln for ln in md.splitlines() if ln.startswith(f"- {target}: **"))
        assert f"**{CATO_LABEL}: " in line and f"; {PLUS_LABEL}: " in line
    assert "load average" in md and "SIMULATED" in md
    for name in ("report_goodput_vs_load.png", "report_latency_cdf.png", "report_replicas.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _payload(cato: dict, ray: dict, plus: dict | None = None) -> dict:
    def run(label: str, v: dict, router: str = "x") -> dict:
        return {"label": label, "router": router,
                "summary": {"utilization": v["util"], "goodput": v["goodput"],
                            "replica_seconds": 100.0},
                "extra": {"phases": [{"ttft_critical_goodput": 1.0},
                                     {"ttft_critical_goodput": v["top"]}]}}

    runs = [run(CATO_LABEL, cato), run(RAY_LABEL, ray)]
    if plus is not None:
        runs.append(run(PLUS_LABEL, plus))
    runs.append(run("oracle", {"top": 1.0, "util": 0.9, "goodput": 0.92}, router="oracle"))
    phases = [{"paper_level": 0.67, "rate_per_kind": 2.0},
              {"paper_level": 3.33, "rate_per_kind": 10.0}]
    return {"experiments": {"mixed": {"phases": phases, "runs": runs},
                            "mixed_over": {"phases": phases, "runs": runs, "max_replicas": 12}}}


def test_targets_judge_the_highest_phase_relative_to_ray_serve_and_the_oracle():
    t = targets(_payload({"top": 0.66, "util": 0.8, "goodput": 0.9},
                         {"top": 0.60, "util": 0.5, "goodput": 0.9}))
    assert [x["met"] for x in t] == [True, True, True]  # 0.9 is 97.8% of the oracle's 0.92
    assert t[0]["verdict"] == f"{CATO_LABEL}: met"
    t = targets(_payload({"top": 0.62, "util": 0.8, "goodput": 0.8},
                         {"top": 0.60, "util": 0.5, "goodput": 0.9},
                         plus={"top": 0.70, "util": 0.8, "goodput": 0.9}))
    # CATO: +3%, utilization at worse goodput, 87% of the oracle; CATO+ meets all three
    assert [x["met"] for x in t] == [False, False, False]
    assert [x["met_plus"] for x in t] == [True, True, True]
    assert t[0]["verdict"] == f"{CATO_LABEL}: not met; {PLUS_LABEL}: met (and the +15% aim)"
