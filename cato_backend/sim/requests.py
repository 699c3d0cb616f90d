"""One request of a workload: what the simulator replays and what a real run sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Request:
    t: float  # seconds from the start of the run
    kind: str  # completion | generation | translation | summarization
    prompt_tokens: int
    max_tokens: int
    output_tokens: int  # what the engine will produce (<= max_tokens); the simulator's truth
    sla_ms: float | None = None  # None: the kind's configured SLA
    tenant: str | None = None
    # The POST /v1/tasks body for runs against a real backend (None: simulation only).
    body: dict[str, Any] | None = field(default=None, compare=False)
