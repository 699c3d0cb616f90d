"""Task graphs: the graph of each kind, their validation, and the critical path from weights."""

from __future__ import annotations

import pytest

from cato_backend.graph import Node, NodeKind, TaskGraph, graph_for, passthrough_graph
from cato_backend.kinds import TaskKind

LLM, CONTEXT, VALIDATE = NodeKind.LLM, NodeKind.CONTEXT, NodeKind.VALIDATE


def shape(kind: TaskKind) -> list[tuple]:
    return [(n.name, n.kind, n.deps, n.conditional, n.output) for n in graph_for(kind).nodes]


def test_completion_is_one_llm_node_whose_tokens_are_the_answer():
    assert shape(TaskKind.COMPLETION) == [("fim", LLM, (), False, True)]


def test_generation_gathers_context_then_calls_the_llm():
    assert shape(TaskKind.GENERATION) == [
        ("gather_context", CONTEXT, (), False, False),
        ("generate", LLM, ("gather_context",), False, True),
    ]


def test_translation_is_llm_then_validate_then_conditional_repair():
    assert shape(TaskKind.TRANSLATION) == [
        ("translate", LLM, (), False, True),
        ("validate", VALIDATE, ("translate",), False, False),
        ("repair", LLM, ("validate",), True, True),
    ]


def test_summarization_is_one_llm_node():
    assert shape(TaskKind.SUMMARIZATION) == [("summarize", LLM, (), False, True)]


def test_every_kind_has_a_graph_of_its_own_kind():
    for kind in TaskKind:
        assert graph_for(kind).kind is kind


def test_passthrough_graph_is_one_llm_output_node():
    g = passthrough_graph(TaskKind.GENERATION)
    assert g.kind is TaskKind.GENERATION
    assert [(n.name, n.kind, n.output) for n in g.nodes] == [("llm", LLM, True)]


def test_graph_rejects_a_cycle():
    with pytest.raises(ValueError, match="'a' depends on"):
        TaskGraph(TaskKind.GENERATION, (Node("a", LLM, deps=("b",)), Node("b", LLM, deps=("a",))))


def test_graph_rejects_a_node_depending_on_itself():
    with pytest.raises(ValueError, match="'a' depends on"):
        TaskGraph(TaskKind.GENERATION, (Node("a", LLM, deps=("a",)),))


def test_graph_rejects_an_unknown_dependency():
    with pytest.raises(ValueError, match=r"\['nowhere'\]"):
        TaskGraph(TaskKind.GENERATION, (Node("a", LLM), Node("b", LLM, deps=("a", "nowhere"))))


def test_graph_rejects_duplicate_node_names():
    with pytest.raises(ValueError, match="duplicate"):
        TaskGraph(TaskKind.GENERATION, (Node("a", LLM), Node("a", VALIDATE)))


def test_node_looks_up_by_name():
    g = graph_for(TaskKind.TRANSLATION)
    assert g.node("validate").kind is VALIDATE
    with pytest.raises(KeyError):
        g.node("compile")


def diamond() -> TaskGraph:
    """start -> (left | right) -> join, plus a side node hanging off start."""
    return TaskGraph(TaskKind.GENERATION, (
        Node("start", CONTEXT),
        Node("left", LLM, deps=("start",)),
        Node("right", LLM, deps=("start",)),
        Node("side", VALIDATE, deps=("start",)),
        Node("join", VALIDATE, deps=("left", "right")),
    ))


def test_finish_offsets_are_longest_paths_to_each_node():
    w = {"start": 1.0, "left": 4.0, "right": 2.0, "side": 1.0, "join": 1.0}
    assert diamond().finish_offsets(w) == {"start": 1.0, "left": 5.0, "right": 3.0,
                                           "side": 2.0, "join": 6.0}


def test_critical_path_follows_the_heavier_branch():
    g = diamond()
    w = {"start": 1.0, "left": 4.0, "right": 2.0, "side": 1.0, "join": 1.0}
    assert g.critical_path(w) == ["start", "left", "join"]
    assert g.critical_path({**w, "right": 9.0}) == ["start", "right", "join"]
    assert g.critical_path({**w, "side": 20.0}) == ["start", "side"]


def test_critical_path_ends_at_a_sink_when_the_last_nodes_weigh_nothing():
    g = graph_for(TaskKind.TRANSLATION)
    assert g.critical_path({"translate": 1.0, "validate": 0.0, "repair": 0.0}) == [
        "translate", "validate", "repair"]


def test_critical_path_of_a_single_node():
    assert graph_for(TaskKind.COMPLETION).critical_path({"fim": 0.3}) == ["fim"]
