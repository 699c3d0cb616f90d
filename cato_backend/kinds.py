"""The four coding-task kinds and which latency each one is judged by."""

from __future__ import annotations

from enum import StrEnum


class TaskKind(StrEnum):
    COMPLETION = "completion"
    GENERATION = "generation"
    TRANSLATION = "translation"
    SUMMARIZATION = "summarization"


class SlaMetric(StrEnum):
    TTFT = "ttft"  # the first token must come fast (the developer is watching the cursor)
    E2E = "e2e"  # the whole answer must come in time (it is applied as one edit)


METRIC_OF_KIND: dict[TaskKind, SlaMetric] = {
    TaskKind.COMPLETION: SlaMetric.TTFT,
    TaskKind.GENERATION: SlaMetric.TTFT,
    TaskKind.TRANSLATION: SlaMetric.E2E,
    TaskKind.SUMMARIZATION: SlaMetric.E2E,
}
