"""Slack allocation (paper section 4.2): the task's SLA is shared out along the critical path
in proportion to the nodes' baseline latencies.

Nodes of 5 s, 15 s, 5 s under a 50 s SLA get 10 s, 30 s, 10 s. Every node gets a deadline
offset from the task's arrival: SLA x (its baseline finish offset / the critical path's length),
so slack a node does not use carries over to the nodes after it, and nodes off the critical
path get deadlines on the same proportional scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from .graph import TaskGraph


@dataclass(frozen=True)
class NodeSlack:
    start_offset_s: float  # when the node is planned to start, from the task's arrival
    deadline_offset_s: float  # when it must be done (first token, for a TTFT output node)

    @property
    def slack_s(self) -> float:
        return self.deadline_offset_s - self.start_offset_s


@dataclass(frozen=True)
class SlackPlan:
    sla_s: float
    critical_path: tuple[str, ...]
    critical_path_baseline_s: float
    nodes: Mapping[str, NodeSlack]


def allocate_slack(graph: TaskGraph, baselines_s: Mapping[str, float], sla_s: float) -> SlackPlan:
    if not (0 < sla_s < math.inf):  # also rejects NaN, which every comparison lets through
        raise ValueError(f"the SLA must be positive and finite, got {sla_s}")
    if not all(0 <= b < math.inf for b in baselines_s.values()):
        raise ValueError("baselines must be finite and not negative")
    finish = graph.finish_offsets(baselines_s)
    path = graph.critical_path(baselines_s)
    length = finish[path[-1]]
    if length <= 0:  # nothing measured yet: share the SLA equally along the path
        weights = {n.name: 1.0 for n in graph.nodes}
        finish = graph.finish_offsets(weights)
        path = graph.critical_path(weights)
        length = finish[path[-1]]
    scale = sla_s / length
    nodes = {}
    for n in graph.nodes:
        start = max((finish[d] for d in n.deps), default=0.0)
        nodes[n.name] = NodeSlack(start * scale, finish[n.name] * scale)
    return SlackPlan(sla_s, tuple(path), length, nodes)
