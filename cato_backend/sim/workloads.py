"""Workloads: when requests arrive and what they ask, as time-ordered lists of `Request`.

Three sources, one shape (a list sorted by `t`, which the simulator and a real-run driver
both consume as `Iterable[Request]`):

- `poisson(rates, duration_s, seed, scale)`: independent Poisson arrivals per kind, each
  request a task sampled from the real-code corpus (`corpus.py`);
- `burst(low, high, duration_s, start_s=, length_s=)` and the general `piecewise(phases)`:
  piecewise-constant Poisson rates (low / high / low);
- `load_trace(path)`: replay of a recorded trace, JSONL, one request a line (and
  `write_trace` for the reverse).

Rates. The paper load-tests with Poisson arrivals at 0.67 to 3.33 req/s. We read these as
the five levels 40, 80, 120, 160 and 200 requests a minute (0.67 = 40/60, 3.33 = 200/60;
its summary also names 2.0 req/s), each kind at that rate when all kinds are served at once
(the paper's full text is not available to us). The paper's pool is 12 Ascend 910B4 NPUs
(6 replicas for each of 2 models); `pool_scale` scales the rates to a pool of another size
(and, optionally, another speed per replica), passed as `scale`.

Determinism: a seed gives the same list (on the same Python minor version, whose standard
library is part of the corpus). Each kind, and each phase of a piecewise schedule, draws
from its own seeded stream, so adding a kind does not move the others' arrivals.
"""

from __future__ import annotations

import argparse
import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from pydantic import ValidationError

from ..config import DEFAULT_MAX_TOKENS
from ..kinds import TaskKind
from ..schemas import TASK_REQUEST
from .corpus import Corpus, load_corpus
from .requests import Request

KINDS: tuple[str, ...] = tuple(k.value for k in TaskKind)
_KIND_INDEX = {k: i for i, k in enumerate(KINDS)}

# -- rates ------------------------------------------------------------------------------------

PAPER_RATE_LEVELS: tuple[float, ...] = (0.67, 1.33, 2.0, 2.67, 3.33)  # req/s per kind
PAPER_REPLICAS = 12  # the paper's pool: 12 NPUs, 6 replicas for each of two models


def paper_rates(level: float = 2.0, kinds: Iterable[str] = KINDS) -> dict[str, float]:
    """Every kind at one of the paper's rates (req/s each)."""
    return {str(k): float(level) for k in kinds}


PRESETS: dict[str, dict[str, float]] = {
    "paper-low": paper_rates(PAPER_RATE_LEVELS[0]),
    "paper-moderate": paper_rates(PAPER_RATE_LEVELS[2]),
    "paper-high": paper_rates(PAPER_RATE_LEVELS[-1]),
}


def pool_scale(replicas: int, speed: float = 1.0, paper_replicas: int = PAPER_REPLICAS) -> float:
    """`scale` that gives a pool of `replicas` the paper's load per replica. `speed` is one
    of our replicas' throughput relative to one of the paper's (a 7B model on a 910B4); the
    default 1 assumes equal, which a small model on CPU is not: measure it (`cato-backend
    profile`) and pass the ratio."""
    if replicas < 1 or speed <= 0:
        raise ValueError("replicas must be >= 1 and speed > 0")
    return replicas / paper_replicas * speed


# -- building requests from the corpus --------------------------------------------------------

@dataclass(frozen=True)
class _Shape:
    """What every generated request of one call shares."""
    corpus: Corpus
    max_tokens: Mapping[str, int]
    sla_ms: Mapping[str, float]
    tenants: tuple[str, ...]
    with_body: bool


def _shape(corpus: Corpus | None, max_tokens: Mapping[str, int] | None,
           sla_ms: Mapping[str, float] | None, tenants: Sequence[str],
           with_body: bool) -> _Shape:
    mt = {k.value: v for k, v in DEFAULT_MAX_TOKENS.items()}
    for kind, value in (max_tokens or {}).items():
        _check_kind(kind)
        if int(value) < 1:
            raise ValueError(f"max_tokens for {kind} must be >= 1, got {value}")
        mt[str(kind)] = int(value)
    for kind, value in (sla_ms or {}).items():
        _check_kind(kind)
        if not value > 0:
            raise ValueError(f"sla_ms for {kind} must be > 0, got {value}")
    return _Shape(corpus or load_corpus(), mt, {str(k): float(v) for k, v in (sla_ms or {}).items()},
                  tuple(tenants), with_body)


def _check_kind(kind: str) -> None:
    if kind not in _KIND_INDEX:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")


def _requests(kind: str, times: np.ndarray, rng: np.random.Generator,
              shape: _Shape) -> list[Request]:
    pool = shape.corpus.samples[kind]
    picks = rng.integers(0, len(pool), size=len(times)).tolist()
    who = (rng.integers(0, len(shape.tenants), size=len(times)).tolist()
           if shape.tenants else None)
    mt = shape.max_tokens[kind]
    sla = shape.sla_ms.get(kind)
    out: list[Request] = []
    append = out.append
    for i, t in enumerate(times.tolist()):
        s = pool[picks[i]]
        body = None
        if shape.with_body:
            body = {**s.body, "max_tokens": mt}
            if sla is not None:
                body["sla_ms"] = sla
        append(Request(t, kind, s.prompt_tokens, mt, min(s.output_tokens, mt), sla,
                       shape.tenants[who[i]] if who is not None else None, body))
    return out


def _arrivals(rate: float, start_s: float, duration_s: float,
              rng: np.random.Generator) -> np.ndarray:
    """A homogeneous Poisson process on [start_s, start_s + duration_s): a Poisson count,
    then that many uniform times, sorted (the same law as exponential gaps, vectorized)."""
    if rate <= 0 or duration_s <= 0:
        return np.empty(0)
    n = rng.poisson(rate * duration_s)
    return start_s + np.sort(rng.uniform(0.0, duration_s, size=n))


def _check_rates(rates: Mapping[str, float]) -> None:
    for kind, rate in rates.items():
        _check_kind(kind)
        if not (rate >= 0 and math.isfinite(rate)):
            raise ValueError(f"rate for {kind} must be a finite number >= 0, got {rate}")


def piecewise(phases: Sequence[tuple[float, Mapping[str, float]]], seed: int = 0,
              scale: float = 1.0, *, corpus: Corpus | None = None,
              max_tokens: Mapping[str, int] | None = None,
              sla_ms: Mapping[str, float] | None = None, tenants: Sequence[str] = (),
              with_body: bool = True, start_s: float = 0.0) -> list[Request]:
    """Poisson arrivals whose per-kind rates (req/s, times `scale`) are constant within each
    phase: `phases` is a sequence of (duration_s, rates). Requests sorted by time."""
    if scale < 0 or not math.isfinite(scale):
        raise ValueError(f"scale must be a finite number >= 0, got {scale}")
    for duration, rates in phases:
        if duration < 0 or not math.isfinite(duration):
            raise ValueError(f"phase duration must be a finite number >= 0, got {duration}")
        _check_rates(rates)
    shape = _shape(corpus, max_tokens, sla_ms, tenants, with_body)
    streams: list[list[Request]] = []
    t0 = start_s
    for p, (duration, rates) in enumerate(phases):
        for kind, rate in rates.items():
            rng = np.random.default_rng([seed, _KIND_INDEX[kind], p])
            streams.append(_requests(kind, _arrivals(rate * scale, t0, duration, rng), rng, shape))
        t0 += duration
    return merge(*streams)


def poisson(rates: Mapping[str, float], duration_s: float, seed: int = 0, scale: float = 1.0,
            **options: Any) -> list[Request]:
    """Independent Poisson arrivals for each kind at `rates[kind] * scale` req/s over
    `duration_s` seconds. Options as `piecewise` (corpus, max_tokens, sla_ms per kind,
    tenants, with_body, start_s)."""
    return piecewise([(duration_s, rates)], seed, scale, **options)


def burst(low: Mapping[str, float], high: Mapping[str, float], duration_s: float, *,
          start_s: float, length_s: float, seed: int = 0, scale: float = 1.0,
          **options: Any) -> list[Request]:
    """Rates `low` until `start_s`, `high` for `length_s`, then `low` again until
    `duration_s` (all req/s per kind, times `scale`)."""
    if not 0 <= start_s <= duration_s or length_s < 0:
        raise ValueError("need 0 <= start_s <= duration_s and length_s >= 0")
    end = min(duration_s, start_s + length_s)
    phases = [(start_s, low), (end - start_s, high), (duration_s - end, low)]
    return piecewise(phases, seed, scale, **options)


def merge(*streams: Iterable[Request]) -> list[Request]:
    """Time-ordered streams merged into one time-ordered list (ties keep stream order)."""
    return list(heapq.merge(*streams, key=lambda r: r.t))


# -- traces -----------------------------------------------------------------------------------

class TraceError(ValueError):
    """A bad trace line; the message starts with `file:line:`."""


REQUIRED_FIELDS = ("t", "kind", "prompt_tokens", "max_tokens")


def load_trace(path: str | Path, output_ratio: float = 1.0,
               validate_bodies: bool = True) -> list[Request]:
    """Requests of a JSONL trace, one JSON object a line: required `t` (seconds from the
    start, >= 0), `kind`, `prompt_tokens` (>= 1), `max_tokens` (>= 1); optional
    `output_tokens` (1..max_tokens; absent: `output_ratio` * max_tokens, by default the
    whole max_tokens, the pessimistic reading), `sla_ms` (> 0), `tenant`, `body` (a POST
    /v1/tasks body of the same kind, checked against the API schema). Other fields are
    ignored, blank lines skipped. Lines need not be in time order: the result is sorted by
    `t` (stably). A bad line raises TraceError naming file:line."""
    if not 0 < output_ratio <= 1:
        raise ValueError("output_ratio must be in (0, 1]")
    path = Path(path)
    out: list[Request] = []
    with path.open("rb") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(_trace_request(line, output_ratio, validate_bodies))
            except ValueError as e:
                raise TraceError(f"{path}:{lineno}: {e}") from None
    out.sort(key=lambda r: r.t)
    return out


def _number(obj: dict, name: str) -> float:
    v = obj[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    return float(v)


def _int(obj: dict, name: str, minimum: int) -> int:
    v = obj[name]
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return v


def _trace_request(line: bytes, output_ratio: float, validate_bodies: bool) -> Request:
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"bad JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")  # noqa: TRY004
    missing = [f for f in REQUIRED_FIELDS if f not in obj]
    if missing:
        raise ValueError(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    t = _number(obj, "t")
    if t < 0:
        raise ValueError(f"t must be >= 0, got {t}")
    kind = obj["kind"]
    if kind not in _KIND_INDEX:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    prompt_tokens = _int(obj, "prompt_tokens", 1)
    max_tokens = _int(obj, "max_tokens", 1)
    if obj.get("output_tokens") is not None:
        output_tokens = _int(obj, "output_tokens", 1)
        if output_tokens > max_tokens:
            raise ValueError(f"output_tokens {output_tokens} exceeds max_tokens {max_tokens}")
    else:
        output_tokens = max(1, round(max_tokens * output_ratio))
    sla_ms = None
    if obj.get("sla_ms") is not None:
        sla_ms = _number(obj, "sla_ms")
        if sla_ms <= 0:
            raise ValueError(f"sla_ms must be > 0, got {sla_ms}")
    tenant = obj.get("tenant")
    if tenant is not None and not isinstance(tenant, str):
        raise ValueError(f"tenant must be a string, got {tenant!r}")
    body = obj.get("body")
    if body is not None:
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        if body.get("kind") != kind:
            raise ValueError(f"body kind {body.get('kind')!r} differs from kind {kind!r}")
        if validate_bodies:
            try:
                TASK_REQUEST.validate_python(body)
            except ValidationError as e:
                first = e.errors()[0]
                where = ".".join(str(x) for x in first["loc"])
                raise ValueError(f"invalid body: {where}: {first['msg']}") from None
    return Request(t, kind, prompt_tokens, max_tokens, output_tokens, sla_ms, tenant, body)


def write_trace(requests: Iterable[Request], path: str | Path, with_body: bool = True) -> int:
    """Write requests as a JSONL trace that `load_trace` reads back equal; returns the count.
    `sla_ms`, `tenant` and `body` are written only when set."""
    n = 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        for r in requests:
            obj: dict[str, Any] = {"t": r.t, "kind": r.kind, "prompt_tokens": r.prompt_tokens,
                                   "max_tokens": r.max_tokens, "output_tokens": r.output_tokens}
            if r.sla_ms is not None:
                obj["sla_ms"] = r.sla_ms
            if r.tenant is not None:
                obj["tenant"] = r.tenant
            if with_body and r.body is not None:
                obj["body"] = r.body
            f.write(orjson.dumps(obj) + b"\n")
            n += 1
    return n


# -- the example trace --------------------------------------------------------------------------

EXAMPLE_TRACE = Path("bench/traces/example.jsonl")
EXAMPLE_RATES = paper_rates(0.1)  # 5 minutes at 0.1 req/s per kind: about 120 requests


def example_trace(seed: int = 0) -> list[Request]:
    """The committed example: 5 minutes, all four kinds, with their task bodies; times
    rounded to the millisecond for a readable file."""
    return [replace(r, t=round(r.t, 3)) for r in poisson(EXAMPLE_RATES, 300.0, seed)]


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m cato_backend.sim.workloads OUT.jsonl`: write a Poisson workload as a trace."""
    p = argparse.ArgumentParser(prog="python -m cato_backend.sim.workloads", description=main.__doc__)
    p.add_argument("out", nargs="?", default=str(EXAMPLE_TRACE))
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="rates per kind (default: the example trace's 0.1 req/s per kind)")
    p.add_argument("--duration", type=float, default=300.0, help="seconds (default 300)")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-body", action="store_true", help="leave the task bodies out")
    a = p.parse_args(argv)
    if a.preset is None and (a.duration, a.scale, a.no_body) == (300.0, 1.0, False):
        reqs = example_trace(a.seed)
    else:
        rates = PRESETS[a.preset] if a.preset else EXAMPLE_RATES
        reqs = poisson(rates, a.duration, a.seed, a.scale, with_body=not a.no_body)
    n = write_trace(reqs, a.out)
    print(f"{a.out}: {n} requests, corpus {load_corpus().fingerprint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
