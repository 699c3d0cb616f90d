"""Slack allocation: the SLA shared along the critical path in proportion to baselines, as
deadline offsets from the task's arrival."""

from __future__ import annotations

import math

import pytest

from cato_backend.graph import Node, NodeKind, TaskGraph, graph_for
from cato_backend.kinds import SlaMetric, TaskKind
from cato_backend.profiler import CONDITIONAL_RUN_PRIOR, LlmCall, OnlineProfile, Profiler
from cato_backend.profiles import DecodePoint, EngineProfile
from cato_backend.slack import allocate_slack

LLM, VALIDATE = NodeKind.LLM, NodeKind.VALIDATE


def chain(*names: str) -> TaskGraph:
    nodes, prev = [], ()
    for name in names:
        nodes.append(Node(name, LLM, deps=prev))
        prev = (name,)
    return TaskGraph(TaskKind.TRANSLATION, tuple(nodes))


def offsets(plan) -> dict[str, tuple[float, float]]:
    return {k: (pytest.approx(v.start_offset_s), pytest.approx(v.deadline_offset_s))
            for k, v in plan.nodes.items()}


def test_paper_example_5_15_5_seconds_under_50_get_10_30_10():
    plan = allocate_slack(chain("a", "b", "c"), {"a": 5.0, "b": 15.0, "c": 5.0}, sla_s=50.0)
    assert [plan.nodes[n].slack_s for n in "abc"] == pytest.approx([10.0, 30.0, 10.0])
    assert plan.critical_path == ("a", "b", "c")
    assert plan.critical_path_baseline_s == pytest.approx(25.0)


def test_deadlines_are_offsets_from_arrival_so_unused_slack_carries_over():
    plan = allocate_slack(chain("a", "b", "c"), {"a": 5.0, "b": 15.0, "c": 5.0}, sla_s=50.0)
    assert offsets(plan) == {"a": (0.0, 10.0), "b": (10.0, 40.0), "c": (40.0, 50.0)}


def test_last_node_of_the_critical_path_is_due_at_the_sla():
    g = graph_for(TaskKind.GENERATION)
    plan = allocate_slack(g, {"gather_context": 0.002, "generate": 0.198}, sla_s=1.5)
    assert plan.nodes["generate"].deadline_offset_s == pytest.approx(1.5)
    assert plan.nodes["gather_context"].slack_s == pytest.approx(0.015)


def test_critical_path_comes_from_the_graph_and_weights_not_a_fixed_list():
    g = TaskGraph(TaskKind.GENERATION, (
        Node("ctx", NodeKind.CONTEXT),
        Node("fast", LLM, deps=("ctx",)),
        Node("slow", LLM, deps=("ctx",)),
        Node("check", VALIDATE, deps=("fast", "slow")),
    ))
    base = {"ctx": 1.0, "fast": 2.0, "slow": 4.0, "check": 1.0}
    plan = allocate_slack(g, base, sla_s=12.0)  # path 1 + 4 + 1 = 6 s, so twice every baseline
    assert plan.critical_path == ("ctx", "slow", "check")
    assert offsets(plan) == {"ctx": (0.0, 2.0), "slow": (2.0, 10.0),
                             "fast": (2.0, 6.0),  # off the path: same scale, from its start
                             "check": (10.0, 12.0)}
    swapped = allocate_slack(g, {**base, "fast": 7.0}, sla_s=12.0)
    assert swapped.critical_path == ("ctx", "fast", "check")
    assert swapped.nodes["check"].deadline_offset_s == pytest.approx(12.0)


def test_conditional_repair_gets_slack_in_proportion_to_how_often_it_runs():
    profile = EngineProfile(
        model="m", hardware="test", engine="test", measured_at="2026-01-01", command="hand-made",
        max_model_len=4096, overhead_ms=0.0, prefill_ms_per_token=0.0,
        decode=[DecodePoint(batch=1, step_ms=10.0)])
    profiler = Profiler({"m": OnlineProfile(profile)})
    call = LlmCall("m", prompt_tokens=10, max_tokens=401)  # 4 s of decoding
    g = graph_for(TaskKind.TRANSLATION)
    profiler.observe_node("translation", "validate", 0.0)  # keep the arithmetic round
    base = profiler.baselines(g, SlaMetric.E2E, {"translate": call, "repair": call})
    assert base["repair"] == pytest.approx(4.0 * CONDITIONAL_RUN_PRIOR)  # 0.8 s
    plan = allocate_slack(g, base, sla_s=24.0)  # path 4 + 0 + 0.8 = 4.8 s
    assert plan.nodes["translate"].deadline_offset_s == pytest.approx(20.0)
    assert plan.nodes["repair"].slack_s == pytest.approx(4.0)


def test_zero_baselines_share_the_sla_equally_along_the_path():
    plan = allocate_slack(graph_for(TaskKind.TRANSLATION),
                          {"translate": 0.0, "validate": 0.0, "repair": 0.0}, sla_s=9.0)
    assert offsets(plan) == {"translate": (0.0, 3.0), "validate": (3.0, 6.0), "repair": (6.0, 9.0)}
    assert plan.critical_path == ("translate", "validate", "repair")


def test_a_zero_baseline_node_on_a_measured_path_gets_no_slack():
    plan = allocate_slack(graph_for(TaskKind.TRANSLATION),
                          {"translate": 2.0, "validate": 0.0, "repair": 2.0}, sla_s=8.0)
    assert plan.nodes["validate"].slack_s == 0.0
    assert plan.nodes["repair"].deadline_offset_s == pytest.approx(8.0)


@pytest.mark.parametrize("sla", [0.0, -1.0, math.nan, math.inf])
def test_invalid_sla_is_rejected(sla):
    with pytest.raises(ValueError, match="SLA"):
        allocate_slack(graph_for(TaskKind.COMPLETION), {"fim": 0.1}, sla_s=sla)


@pytest.mark.parametrize("baseline", [-0.1, math.nan, math.inf])
def test_invalid_baseline_is_rejected(baseline):
    with pytest.raises(ValueError, match="baselines"):
        allocate_slack(graph_for(TaskKind.COMPLETION), {"fim": baseline}, sla_s=1.0)
