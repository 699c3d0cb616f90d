"""The profiler: baseline latency of every node of a task graph, kept up to date online.

LLM nodes start from the model's measured EngineProfile; while serving, the observed TTFT and
decode speed correct it (EWMA of observed / predicted), so the router and the slack
allocation follow the engine as it really behaves. Non-LLM nodes and how often conditional
nodes run are learned from observation, starting from documented priors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .graph import NodeKind, TaskGraph
from .kinds import SlaMetric
from .profiles import EngineProfile

# Priors until a node has been observed (assumptions, replaced by measurements online).
NON_LLM_PRIOR_S = {NodeKind.CONTEXT: 0.002, NodeKind.VALIDATE: 0.002}
CONDITIONAL_RUN_PRIOR = 0.2  # share of translations whose first answer fails validation
FACTOR_BOUNDS = (0.2, 5.0)  # an online correction never moves a profile further than this


def _ewma(old: float, new: float, alpha: float) -> float:
    return (1 - alpha) * old + alpha * new


class OnlineProfile:
    """An EngineProfile corrected by what the engine has shown while serving."""

    def __init__(self, base: EngineProfile, alpha: float = 0.05, max_batch: int = 256) -> None:
        self.base = base
        self.alpha = alpha
        self.ttft_factor = 1.0
        self.decode_factor = 1.0
        self._step_table_s = base.decode_step_ms_array(np.arange(max_batch + 1)) / 1000.0

    @property
    def max_model_len(self) -> int:
        return self.base.max_model_len

    def ttft_s(self, prompt_tokens: int) -> float:
        return self.base.ttft_s(prompt_tokens) * self.ttft_factor

    def step_s(self, batch: int) -> float:
        if batch < len(self._step_table_s):
            return float(self._step_table_s[max(batch, 1)]) * self.decode_factor
        return self.base.decode_step_ms(batch) / 1000.0 * self.decode_factor

    def step_s_array(self, batch: np.ndarray) -> np.ndarray:
        """Decode step time for many batch sizes at once (the router's hot path)."""
        batch = np.asarray(batch)
        # minimum/maximum: np.clip's dispatch costs ~5 us, a visible share of a decision
        idx = np.minimum(np.maximum(batch, 1), len(self._step_table_s) - 1)
        steps = self._step_table_s[idx]
        beyond = batch >= len(self._step_table_s)  # past the table: extrapolate, as step_s does
        if beyond.any():
            steps = np.where(beyond, self.base.decode_step_ms_array(batch) / 1000.0, steps)
        return steps * self.decode_factor

    def service_s(self, prompt_tokens: int, output_tokens: int, batch: int = 1) -> float:
        return self.ttft_s(prompt_tokens) + max(0, output_tokens - 1) * self.step_s(batch)

    def observe_ttft(self, prompt_tokens: int, observed_s: float) -> None:
        """Engine-side TTFT: from sending the request to its first token (no backend queue)."""
        predicted = self.base.ttft_s(prompt_tokens)
        if predicted > 0 and observed_s > 0:
            self.ttft_factor = self._bounded(_ewma(self.ttft_factor, observed_s / predicted, self.alpha))

    def observe_decode(self, tokens: int, observed_s: float, mean_batch: float) -> None:
        predicted = max(0, tokens - 1) * self.base.decode_step_ms(mean_batch) / 1000.0
        if predicted > 0 and observed_s > 0:
            self.decode_factor = self._bounded(
                _ewma(self.decode_factor, observed_s / predicted, self.alpha)
            )

    @staticmethod
    def _bounded(x: float) -> float:
        return min(max(x, FACTOR_BOUNDS[0]), FACTOR_BOUNDS[1])


@dataclass(frozen=True)
class LlmCall:
    """What the profiler must know of one LLM node to predict it."""

    model: str
    prompt_tokens: int
    max_tokens: int


class Profiler:
    def __init__(self, profiles: Mapping[str, OnlineProfile], alpha: float = 0.1) -> None:
        self.profiles = dict(profiles)
        self.alpha = alpha
        self._node_s: dict[tuple[str, str], float] = {}  # (kind, node) -> EWMA seconds
        self._run_rate: dict[tuple[str, str], float] = {}
        self._output_ratio: dict[tuple[str, str], float] = {}  # produced / max_tokens

    def expected_output_tokens(self, kind: str, node: str, max_tokens: int) -> int:
        ratio = self._output_ratio.get((kind, node), 1.0)
        return max(1, round(max_tokens * ratio))

    def llm_baseline_s(self, kind: str, node: str, call: LlmCall, to_first_token: bool) -> float:
        profile = self.profiles[call.model]
        if to_first_token:
            return profile.ttft_s(call.prompt_tokens)
        out = self.expected_output_tokens(kind, node, call.max_tokens)
        return profile.service_s(call.prompt_tokens, out)

    def baselines(
        self, graph: TaskGraph, metric: SlaMetric, calls: Mapping[str, LlmCall]
    ) -> dict[str, float]:
        """Baseline seconds of every node, in the terms the task's SLA is judged by."""
        out: dict[str, float] = {}
        for n in graph.nodes:
            if n.kind is NodeKind.LLM:
                first_token = metric is SlaMetric.TTFT and n.output
                b = self.llm_baseline_s(graph.kind, n.name, calls[n.name], first_token)
            else:
                b = self._node_s.get((graph.kind, n.name), NON_LLM_PRIOR_S[n.kind])
            if n.conditional:
                b *= self._run_rate.get((graph.kind, n.name), CONDITIONAL_RUN_PRIOR)
            out[n.name] = b
        return out

    def observe_node(self, kind: str, node: str, seconds: float) -> None:
        key = (kind, node)
        self._node_s[key] = _ewma(self._node_s.get(key, seconds), seconds, self.alpha)

    def observe_run(self, kind: str, node: str, ran: bool) -> None:
        key = (kind, node)
        self._run_rate[key] = _ewma(self._run_rate.get(key, CONDITIONAL_RUN_PRIOR), float(ran), self.alpha)

    def observe_output(self, kind: str, node: str, max_tokens: int, produced: int) -> None:
        if max_tokens > 0:
            key = (kind, node)
            ratio = min(1.0, produced / max_tokens)
            self._output_ratio[key] = _ewma(self._output_ratio.get(key, 1.0), ratio, self.alpha)
