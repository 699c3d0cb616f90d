"""Task graphs: each kind of task is a small DAG of LLM calls and non-LLM steps.

The critical path is computed from the graph and per-node weights (baseline latencies), never
hard-coded, so adding a node to a kind changes slack allocation by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Mapping

from .kinds import TaskKind


class NodeKind(StrEnum):
    LLM = "llm"
    CONTEXT = "context"  # gather context for the prompt (non-LLM)
    VALIDATE = "validate"  # check an LLM result (non-LLM)


@dataclass(frozen=True)
class Node:
    name: str
    kind: NodeKind
    deps: tuple[str, ...] = ()
    # Runs only when the node before it asks for it (the translation repair); its baseline is
    # weighted by how often it runs, as the profiler observes.
    conditional: bool = False
    # Its tokens are the task's answer; for a TTFT-critical task the SLA ends at its first token.
    output: bool = False


@dataclass(frozen=True)
class TaskGraph:
    kind: TaskKind
    nodes: tuple[Node, ...]

    def __post_init__(self) -> None:
        names = [n.name for n in self.nodes]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate node names in {names}")
        seen: set[str] = set()
        for node in self.nodes:  # nodes must be listed in a topological order
            missing = [d for d in node.deps if d not in seen]
            if missing:
                raise ValueError(f"node {node.name!r} depends on {missing} not listed before it")
            seen.add(node.name)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def finish_offsets(self, weights: Mapping[str, float]) -> dict[str, float]:
        """Earliest finish of each node when every node takes its weight (longest path to it)."""
        finish: dict[str, float] = {}
        for n in self.nodes:
            start = max((finish[d] for d in n.deps), default=0.0)
            finish[n.name] = start + weights[n.name]
        return finish

    def critical_path(self, weights: Mapping[str, float]) -> list[str]:
        """The longest weighted path from a source to a sink, in execution order."""
        finish = self.finish_offsets(weights)
        # On a tie the node listed last: a zero-weight successor of the longest path's end
        # ties with it and comes later, so the path always ends at a sink.
        path = [max(self.nodes, key=lambda n: (finish[n.name], self.nodes.index(n))).name]
        while deps := self.node(path[-1]).deps:
            path.append(max(deps, key=lambda d: finish[d]))
        return path[::-1]


def graph_for(kind: TaskKind) -> TaskGraph:
    """The graph each kind is served with."""
    if kind is TaskKind.COMPLETION:
        return TaskGraph(kind, (Node("fim", NodeKind.LLM, output=True),))
    if kind is TaskKind.GENERATION:
        return TaskGraph(
            kind,
            (
                Node("gather_context", NodeKind.CONTEXT),
                Node("generate", NodeKind.LLM, deps=("gather_context",), output=True),
            ),
        )
    if kind is TaskKind.TRANSLATION:
        return TaskGraph(
            kind,
            (
                Node("translate", NodeKind.LLM, output=True),
                Node("validate", NodeKind.VALIDATE, deps=("translate",)),
                Node("repair", NodeKind.LLM, deps=("validate",), conditional=True, output=True),
            ),
        )
    if kind is TaskKind.SUMMARIZATION:
        return TaskGraph(kind, (Node("summarize", NodeKind.LLM, output=True),))
    raise ValueError(f"no graph for kind {kind!r}")


def passthrough_graph(kind: TaskKind) -> TaskGraph:
    """One LLM call with the caller's own prompt (the OpenAI-compatible endpoints)."""
    return TaskGraph(kind, (Node("llm", NodeKind.LLM, output=True),))
