"""Wire types of the backend's HTTP API (DESIGN.md, "Contracts"): one schema per boundary."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

MAX_TEXT = 400_000  # characters per input field; the body limit usually bites first
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Language = Annotated[str, Field(min_length=1, max_length=64)]


class _TaskBase(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    sla_ms: float | None = Field(default=None, description="override of the kind's SLA")
    max_tokens: int | None = Field(default=None, gt=0)
    request_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")] | None = None


class CompletionTask(_TaskBase):
    kind: Literal["completion"]
    prefix: Text
    suffix: Text = ""
    language: Language


class GenerationTask(_TaskBase):
    kind: Literal["generation"]
    instruction: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    language: Language
    context: Text = ""


class TranslationTask(_TaskBase):
    kind: Literal["translation"]
    code: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    source_language: Language
    target_language: Language


class SummarizationTask(_TaskBase):
    kind: Literal["summarization"]
    code: Annotated[str, Field(min_length=1, max_length=MAX_TEXT)]
    language: Language


TaskRequest = Annotated[
    Union[CompletionTask, GenerationTask, TranslationTask, SummarizationTask],
    Field(discriminator="kind"),
]
TASK_REQUEST = TypeAdapter(TaskRequest)


class SlaResult(BaseModel):
    metric: Literal["ttft", "e2e"]
    target_ms: float
    met: bool


class NodeTiming(BaseModel):
    name: str
    kind: str
    ms: float
    replica: str | None = None
    priority: int | None = None
    slack_ms: float | None = None
    queue_ms: float | None = None
    ttft_ms: float | None = None
    output_tokens: int | None = None
    reason: str | None = None


class DoneEvent(BaseModel):
    type: Literal["done"] = "done"
    request_id: str
    kind: str
    text: str
    ttft_ms: float | None
    e2e_ms: float
    sla: SlaResult
    replica: str | None
    nodes: list[NodeTiming]
    validation: str | None = None


class ErrorEvent(BaseModel):
    type: Literal["error"] = "error"
    message: str
    request_id: str | None = None
