"""The wire contract of `cato-lsp` with editors (VS Code, Neovim, ...): ONE module.

Everything an editor extension may rely on is defined here and nowhere else: the settings
schema, the command names and their argument shapes, and the `cato/status` notification.

Settings
    Read, in this order (later wins): built-in defaults, command-line flags (`--backend`,
    `--token`), `initializationOptions` of the `initialize` request, and the `cato` section
    of `workspace/configuration` (asked after `initialized` and again on
    `workspace/didChangeConfiguration`). Keys are camelCase; see `Settings`. Settings that
    fail validation are rejected as a whole with one warning naming the field; the previous
    settings stay.

Completion
    `textDocument/inlineCompletion` (LSP 3.18) answers one item: the whole completion at the
    cursor. `textDocument/completion` answers the same text as one item (`textEdit` at the
    cursor, `detail` "CATO ..." or "CATO (cached)", `data` {"cato": true, "cached"}) only to
    clients WITHOUT inline completion, so that nobody sees it twice. A newer request for the
    same document makes the older one answer empty (its backend task is aborted).

Code actions
    Kinds `refactor.cato.generate`, `refactor.cato.translate`, `refactor.cato.summarize`
    (`CODE_ACTION_KINDS`), each carrying its command with `[uri, range]`. On a selection all
    three; on an empty range whose line is a comment, generate.

Commands (`workspace/executeCommand`; also offered as code actions on a selection)
    `cato.generate`   arguments `[uri, range]`: generate code from the selection, or from the
                      comment/instruction on the range's start line when the range is empty;
                      inserted below it.
    `cato.translate`  arguments `[uri, range, targetLanguage?]`: translate the selection;
                      without `targetLanguage` the server asks with
                      `window/showMessageRequest` (choices `COMMON_TARGET_LANGUAGES`). The
                      translation is inserted BELOW the selection, after a one-line comment
                      naming the target language (one undoable edit; no new document, which
                      not every client can create).
    `cato.summarize`  arguments `[uri, range]`: summarize the selection; the summary is
                      inserted ABOVE the selection as line comments of the document's language.
    `uri` is a document the client has opened; `range` an LSP Range (positions in the
    negotiated encoding, UTF-16 by default; positions past the end are clamped).
    Long tasks report `$/progress` (work-done progress created with
    `window/workDoneProgress/create`, cancellable) while tokens stream, and end with
    `workspace/applyEdit` (a versioned edit; if the document changed meanwhile nothing is
    inserted, `applied` is false and a warning says so).
    The command's result is a `CommandResult` (or null when cancelled). Cancel with
    `$/cancelRequest` or `window/workDoneProgress/cancel`: the backend task is aborted.

Notification `cato/status` (server -> client), a `StatusParams`
    Sent when the state changes and after every task. `state`: `ok`; `degraded` (recent
    tasks missed their SLA); `unreachable` (the backend does not answer; the server probes
    `/healthz` and comes back by itself). Cache hits have `lastTask.cached: true` and are
    not SLA results (`met` is null).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

SERVER_NAME = "cato-lsp"
STATUS_NOTIFICATION = "cato/status"

CMD_GENERATE = "cato.generate"
CMD_TRANSLATE = "cato.translate"
CMD_SUMMARIZE = "cato.summarize"
COMMANDS = (CMD_GENERATE, CMD_TRANSLATE, CMD_SUMMARIZE)

KIND_GENERATE = "refactor.cato.generate"
KIND_TRANSLATE = "refactor.cato.translate"
KIND_SUMMARIZE = "refactor.cato.summarize"
CODE_ACTION_KINDS = [KIND_GENERATE, KIND_TRANSLATE, KIND_SUMMARIZE]

# Offered by `window/showMessageRequest` when `cato.translate` has no target language.
COMMON_TARGET_LANGUAGES = ("python", "typescript", "java", "go", "rust", "cpp")

Kind = Literal["completion", "generation", "translation", "summarization"]
KINDS: tuple[Kind, ...] = ("completion", "generation", "translation", "summarization")

# The backend's own bounds on `sla_ms` (limits.min_sla_ms / max_sla_ms defaults).
SlaMs = Annotated[float, Field(ge=10, le=600_000)]


class _Wire(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown keys are an error (typos)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# -- settings ----------------------------------------------------------------------------

class SlaSettings(_Wire):
    """Per-kind SLA in ms, sent with EVERY task as `sla_ms`. Defaults equal the backend's
    (completion/generation judged by TTFT, translation/summarization end to end)."""

    completion: SlaMs = 500.0
    generation: SlaMs = 1500.0
    translation: SlaMs = 20_000.0
    summarization: SlaMs = 8000.0


class MaxTokensSettings(_Wire):
    """Per-kind `max_tokens`; null = the backend's default for the kind."""

    completion: Annotated[int, Field(gt=0, le=4096)] | None = None
    generation: Annotated[int, Field(gt=0, le=4096)] | None = None
    translation: Annotated[int, Field(gt=0, le=4096)] | None = None
    summarization: Annotated[int, Field(gt=0, le=4096)] | None = None


class DebounceSettings(_Wire):
    """Wait before an automatically triggered completion: `factor` x the recent completion
    latency, clamped to [minMs, maxMs] (see debounce.py). Explicit triggers never wait."""

    enabled: bool = True
    min_ms: Annotated[float, Field(ge=0, le=5000)] = 30.0
    max_ms: Annotated[float, Field(ge=0, le=5000)] = 300.0
    factor: Annotated[float, Field(ge=0, le=10)] = 0.5


class ContextSettings(_Wire):
    """Fill-in-the-middle budget around the cursor, in tokens (4 characters per token, the
    backend's estimate); the window is cut at line boundaries."""

    prefix_tokens: Annotated[int, Field(ge=16, le=32_768)] = 1024
    suffix_tokens: Annotated[int, Field(ge=0, le=32_768)] = 256
    # Documents above this many characters get no completions (and a log line), so a huge
    # generated file cannot stall the server.
    max_document_chars: Annotated[int, Field(ge=1000)] = 5_000_000


class CacheSettings(_Wire):
    enabled: bool = True
    max_size_mb: Annotated[float, Field(gt=0, le=100_000)] = 64.0
    max_age_s: Annotated[float, Field(gt=0)] = 7 * 24 * 3600.0


class TimeoutSettings(_Wire):
    connect_ms: Annotated[float, Field(gt=0, le=60_000)] = 2000.0
    # Whole completion request (backend wait included): the editor never waits longer.
    completion_ms: Annotated[float, Field(gt=0, le=600_000)] = 10_000.0
    command_ms: Annotated[float, Field(gt=0, le=3_600_000)] = 120_000.0


class HealthSettings(_Wire):
    probe_interval_ms: Annotated[float, Field(ge=50, le=600_000)] = 2000.0
    window: Annotated[int, Field(ge=1, le=1000)] = 10  # recent SLA results considered
    miss_threshold: Annotated[int, Field(ge=1, le=1000)] = 3  # misses among them -> degraded
    max_age_s: Annotated[float, Field(gt=0)] = 120.0  # older results are forgotten


class Settings(_Wire):
    """The `cato` settings section (and `initializationOptions`)."""

    backend_url: str = "http://127.0.0.1:8000"
    token: str | None = None
    # Model name used in cache keys; null = the model the backend reports for the kind.
    model: str | None = None
    # window/logMessage verbosity: "debug" adds one line per task (timings, SLA, replica).
    log_level: Literal["error", "info", "debug"] = "info"
    sla: SlaSettings = Field(default_factory=SlaSettings)
    max_tokens: MaxTokensSettings = Field(default_factory=MaxTokensSettings)
    debounce: DebounceSettings = Field(default_factory=DebounceSettings)
    context: ContextSettings = Field(default_factory=ContextSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    health: HealthSettings = Field(default_factory=HealthSettings)

    @field_validator("backend_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("backendUrl must start with http:// or https://")
        return url.rstrip("/")


def merge_settings(base: Settings, *updates: dict | None) -> Settings:
    """`base` with each update merged over it key by key (nested sections merge, so
    `{"sla": {"completion": 300}}` changes one SLA). Raises pydantic.ValidationError."""
    data = base.model_dump(by_alias=True)
    for update in updates:
        if not update:
            continue
        if not isinstance(update, dict):
            raise TypeError(f"settings must be an object, got {type(update).__name__}")
        for key, value in update.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
    return Settings.model_validate(data)


# -- commands ----------------------------------------------------------------------------

class WirePosition(BaseModel):
    model_config = ConfigDict(extra="ignore")
    line: Annotated[int, Field(ge=0)]
    character: Annotated[int, Field(ge=0)]


class WireRange(BaseModel):
    model_config = ConfigDict(extra="ignore")
    start: WirePosition
    end: WirePosition


class CommandArgs(BaseModel):
    """`[uri, range]` (+ `targetLanguage` for `cato.translate`) as a model."""

    uri: Annotated[str, Field(min_length=1)]
    range: WireRange
    target_language: Annotated[str, Field(min_length=1, max_length=64)] | None = None

    @classmethod
    def from_arguments(cls, command: str, arguments: list | tuple) -> CommandArgs:
        n_max = 3 if command == CMD_TRANSLATE else 2
        if not 2 <= len(arguments) <= n_max:
            shape = "[uri, range, targetLanguage?]" if command == CMD_TRANSLATE else "[uri, range]"
            raise ValueError(f"{command} takes {shape}, got {len(arguments)} arguments")
        return cls(uri=arguments[0], range=arguments[1],
                   target_language=arguments[2] if len(arguments) > 2 else None)


class CommandResult(BaseModel):
    """What `workspace/executeCommand` answers for a finished command (snake_case, like
    `lastTask`)."""

    applied: bool  # the client applied the edit
    kind: Kind
    text: str  # what was inserted
    e2e_ms: float | None = None
    sla_met: bool | None = None
    cached: bool = False


# -- status notification -----------------------------------------------------------------

class LastTask(BaseModel):
    """The last task's outcome; field names as the backend's `done` event (snake_case)."""

    kind: Kind
    ttft_ms: float | None = None
    e2e_ms: float | None = None
    sla_ms: float | None = None
    met: bool | None = None  # null for cache hits and failures: not an SLA result
    cached: bool = False
    error: str | None = None


class StatusParams(BaseModel):
    """Params of the `cato/status` notification."""

    state: Literal["ok", "degraded", "unreachable"]
    backend: str  # the backend URL
    emulated: bool | None = None  # the backend serves an EMULATED engine (load testing)
    message: str | None = None
    last_task: LastTask | None = Field(default=None, serialization_alias="lastTask")

    def wire(self) -> dict:
        return self.model_dump(by_alias=True, mode="json")
