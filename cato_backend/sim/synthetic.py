"""A tiny seeded Poisson workload of `Request`s, for the simulator's tests and its speed
benchmark. It is a stand-in with made-up token counts, not a real-code workload (those, with
bursts and trace replay, live in `cato_backend/sim/workloads.py`)."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ..config import DEFAULT_MAX_TOKENS
from ..kinds import TaskKind
from .requests import Request


@dataclass(frozen=True)
class KindShape:
    """Token counts of one kind: prompt uniform in [lo, hi], output uniform in
    [out_lo_share * max_tokens, max_tokens] (at least 1)."""

    prompt_lo: int
    prompt_hi: int
    max_tokens: int
    out_lo_share: float = 0.25


# Made-up shapes: a completion prefix of a few hundred tokens, an instruction, a function to
# translate or summarize; the kinds' default max_tokens (config.DEFAULT_MAX_TOKENS).
SHAPES: dict[str, KindShape] = {
    TaskKind.COMPLETION.value: KindShape(100, 600, DEFAULT_MAX_TOKENS[TaskKind.COMPLETION]),
    TaskKind.GENERATION.value: KindShape(50, 300, DEFAULT_MAX_TOKENS[TaskKind.GENERATION]),
    TaskKind.TRANSLATION.value: KindShape(100, 500, DEFAULT_MAX_TOKENS[TaskKind.TRANSLATION]),
    TaskKind.SUMMARIZATION.value: KindShape(100, 600, DEFAULT_MAX_TOKENS[TaskKind.SUMMARIZATION]),
}


def poisson(rates: Mapping[str, float], duration_s: float, seed: int = 0,
            shapes: Mapping[str, KindShape] | None = None) -> Iterator[Request]:
    """Open-loop Poisson arrivals in [0, duration_s): `rates` is requests/s per kind (the
    superposition of independent per-kind Poisson processes). Same seed, same requests."""
    shapes = {**SHAPES, **(shapes or {})}
    kinds = [k for k, r in rates.items() if r > 0]
    for k in kinds:
        if k not in shapes:
            raise ValueError(f"unknown kind {k!r}; choose from {', '.join(SHAPES)}")
    total = sum(rates[k] for k in kinds)
    if total <= 0 or duration_s <= 0:
        return
    weights = [rates[k] / total for k in kinds]
    rng = random.Random(seed)
    t = 0.0
    while True:
        t += rng.expovariate(total)
        if t >= duration_s:
            return
        kind = kinds[0] if len(kinds) == 1 else rng.choices(kinds, weights)[0]
        s = shapes[kind]
        lo = max(1, int(s.max_tokens * s.out_lo_share))
        yield Request(t=t, kind=kind, prompt_tokens=rng.randint(s.prompt_lo, s.prompt_hi),
                      max_tokens=s.max_tokens, output_tokens=rng.randint(lo, s.max_tokens))


def even_rates(total: float, kinds: tuple[str, ...] = tuple(SHAPES)) -> dict[str, float]:
    """`total` requests/s shared equally among `kinds`."""
    return {k: total / len(kinds) for k in kinds}
