"""Engine profiles: measured prefill and decode costs of one model on one kind of hardware.

A profile is the single source of timing truth for the profiler (baselines), the router
(expected service time), the emulated engine and the simulator. Profiles are written by
`cato-backend profile` against a running engine; see profiles/*.json.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

PROFILES_DIR = Path(__file__).resolve().parent.parent / "profiles"


class DecodePoint(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    batch: int = Field(ge=1, description="sequences decoding together")
    step_ms: float = Field(gt=0, description="wall time of one decode step (one token each)")


class EngineProfile(BaseModel):
    """Timing model: TTFT = overhead + prefill * prompt_tokens (at batch 1, plus one step of
    the running batch); each further token costs one decode step at the current batch size."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    hardware: str
    engine: str
    measured_at: str = Field(description="ISO date of the measurement")
    command: str = Field(description="the command that produced this profile")
    notes: str = ""
    max_model_len: int = Field(gt=0)
    overhead_ms: float = Field(ge=0, description="fixed per-request cost before prefill")
    prefill_ms_per_token: float = Field(ge=0)
    decode: list[DecodePoint] = Field(min_length=1)
    cold_start_s: float | None = Field(default=None, ge=0)

    @field_validator("decode")
    @classmethod
    def _sorted_unique(cls, points: list[DecodePoint]) -> list[DecodePoint]:
        points = sorted(points, key=lambda p: p.batch)
        if len({p.batch for p in points}) != len(points):
            raise ValueError("decode points must have distinct batch sizes")
        return points

    @cached_property
    def _batches(self) -> np.ndarray:
        return np.array([p.batch for p in self.decode], dtype=float)

    @cached_property
    def _steps(self) -> np.ndarray:
        return np.array([p.step_ms for p in self.decode], dtype=float)

    @cached_property
    def _tail_slope(self) -> float:
        """ms per extra sequence beyond the largest measured batch (linear extrapolation)."""
        if len(self.decode) < 2:
            return 0.0
        a, b = self.decode[-2], self.decode[-1]
        return max(0.0, (b.step_ms - a.step_ms) / (b.batch - a.batch))

    def decode_step_ms(self, batch: float) -> float:
        batch = max(1.0, float(batch))
        last = self.decode[-1]
        if batch > last.batch:
            return last.step_ms + (batch - last.batch) * self._tail_slope
        return float(np.interp(batch, self._batches, self._steps))

    def decode_step_ms_array(self, batch: np.ndarray) -> np.ndarray:
        batch = np.maximum(np.asarray(batch, dtype=float), 1.0)
        last = self.decode[-1]
        inside = np.interp(batch, self._batches, self._steps)
        beyond = last.step_ms + (batch - last.batch) * self._tail_slope
        return np.where(batch > last.batch, beyond, inside)

    def ttft_s(self, prompt_tokens: int) -> float:
        return (self.overhead_ms + self.prefill_ms_per_token * prompt_tokens) / 1000.0

    def decode_s(self, output_tokens: int, batch: float = 1.0) -> float:
        return max(0, output_tokens - 1) * self.decode_step_ms(batch) / 1000.0

    def service_s(self, prompt_tokens: int, output_tokens: int, batch: float = 1.0) -> float:
        """Predicted end-to-end time of one request that starts now at this batch size."""
        return self.ttft_s(prompt_tokens) + self.decode_s(output_tokens, batch)


def load_profile(path: str | Path) -> EngineProfile:
    path = Path(path)
    if not path.is_absolute() and not path.exists():
        path = PROFILES_DIR / path
    return EngineProfile.model_validate_json(path.read_text())
