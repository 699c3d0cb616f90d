"""Which backend task an editor action is, and how its latency is judged (pure).

The paper's split: completion and generation are TTFT-critical (the developer watches the
cursor for the first token), translation and summarization are E2E-critical (the answer is
applied as one edit, so only the whole of it counts). The SLA comes from the settings and is
sent with every task as `sla_ms`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from .protocol import CMD_GENERATE, CMD_SUMMARIZE, CMD_TRANSLATE, Kind, SlaSettings


class Action(StrEnum):
    INLINE_COMPLETION = "textDocument/inlineCompletion"
    COMPLETION_ITEM = "textDocument/completion"
    GENERATE = CMD_GENERATE
    TRANSLATE = CMD_TRANSLATE
    SUMMARIZE = CMD_SUMMARIZE


Metric = Literal["ttft", "e2e"]

_KIND: dict[Action, Kind] = {
    Action.INLINE_COMPLETION: "completion",
    Action.COMPLETION_ITEM: "completion",
    Action.GENERATE: "generation",
    Action.TRANSLATE: "translation",
    Action.SUMMARIZE: "summarization",
}
METRIC: dict[Kind, Metric] = {
    "completion": "ttft", "generation": "ttft", "translation": "e2e", "summarization": "e2e",
}


@dataclass(frozen=True)
class TaskClass:
    kind: Kind
    metric: Metric
    sla_ms: float
    # Streamed to the editor as it comes ($/progress): everything but completion, which is
    # shown only once whole (a ghost text that grows would jump under the cursor).
    streamed: bool


def classify(action: Action | str, sla: SlaSettings) -> TaskClass:
    """The task kind, SLA metric and SLA of an action. Raises ValueError for unknown ones."""
    try:
        kind = _KIND[Action(action)]
    except ValueError:
        raise ValueError(f"not a CATO action: {action!r}") from None
    return TaskClass(kind=kind, metric=METRIC[kind], sla_ms=float(getattr(sla, kind)),
                     streamed=kind != "completion")
