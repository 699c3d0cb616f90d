"""`cato-backend profile`: measure a running OpenAI-compatible engine, write an EngineProfile.

Method (one engine, nothing else sent to it while measuring):
1. Prefill. Streaming completions with `max_tokens=1` at several prompt lengths (default
   16..1024 tokens), a few repetitions each, interleaved so that drift in the machine's load
   spreads over all lengths. TTFT = request sent -> first token received. The prompt's token
   count is the engine's own (`stream_options.include_usage`). Every prompt starts with a
   unique nonce, so the engine's prefix cache never shortens a prefill. A least-squares line
   through the per-length medians, weighted to minimise the relative error, gives
   `overhead_ms` (intercept) and `prefill_ms_per_token` (slope).
2. Decode. For each batch size B (1, 2, 4, 8, 16 up to `--max-batch`), B concurrent streams
   with a short prompt and a fixed output length (`ignore_eos`, `min_tokens`: vLLM extras).
   In the window where all B streams are decoding (trimmed at both ends), the median gap
   between a stream's consecutive tokens is one decode step at batch B. Token counts per
   chunk come from `return_token_ids` where the engine supports it, so chunks that carry
   several tokens are not mistaken for slow steps.
3. `max_model_len` from `/v1/models`, the engine's version from `/version` (vLLM).

The load average of the machine is sampled during the measurement and written to `notes`:
on a shared machine it is the first thing to check when a profile looks slow.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shlex
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

from .profiles import DecodePoint, EngineProfile

DEFAULT_PROMPT_LENGTHS = (16, 64, 128, 256, 512, 1024)
DEFAULT_BATCHES = (1, 2, 4, 8, 16)


def default_hardware() -> str:
    """A label for this machine's compute: `cpu-<N>core` (the cores this process may use)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return f"cpu-{cores}core"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default="http://127.0.0.1:8000",
        help="base URL of the running engine (default: %(default)s)",
    )
    parser.add_argument(
        "--model", default=None, help="model name to request (default: the first of /v1/models)"
    )
    parser.add_argument("--out", required=True, help="where to write the profile JSON")
    parser.add_argument(
        "--hardware",
        default=None,
        help=f"hardware label (default: derived from this CPU, e.g. {default_hardware()!r})",
    )
    parser.add_argument(
        "--engine", default=None, help="engine label (default: 'vllm <version>' from /version)"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("CATO_ENGINE_API_KEY"),
        help="bearer token for the engine, if it needs one",
    )
    parser.add_argument(
        "--prompt-lengths",
        default=",".join(map(str, DEFAULT_PROMPT_LENGTHS)),
        help="target prompt lengths in tokens (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=5,
        help="TTFT repetitions per prompt length (default: %(default)s)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=16,
        help="largest decode batch measured, of 1,2,4,8,16 (default: %(default)s)",
    )
    parser.add_argument(
        "--decode-tokens",
        type=int,
        default=128,
        help="output tokens per stream in decode runs (default: %(default)s)",
    )
    parser.add_argument(
        "--decode-repeats",
        type=int,
        default=3,
        help="runs per decode batch size (default: %(default)s)",
    )
    parser.add_argument(
        "--cold-start-s",
        type=float,
        default=None,
        help="measured start-up time of the engine, recorded as cold_start_s",
    )
    parser.add_argument(
        "--engine-command",
        default=None,
        help="the command that started the engine (recorded in notes)",
    )
    parser.add_argument("--notes", default="", help="free text prepended to the notes")
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="per-request timeout in seconds (default: %(default)s)",
    )


# --- HTTP -------------------------------------------------------------------------------------


@dataclass
class StreamResult:
    sent: float
    token_times: list[float] = field(default_factory=list)  # arrival of each chunk with tokens
    token_counts: list[int] = field(default_factory=list)  # tokens in that chunk
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    @property
    def ttft_ms(self) -> float:
        return (self.token_times[0] - self.sent) * 1000.0


class Engine:
    def __init__(self, session: aiohttp.ClientSession, url: str, api_key: str | None):
        self.session = session
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.model = ""
        self.token_ids_supported = True

    async def get_json(self, path: str) -> dict | None:
        try:
            async with self.session.get(self.url + path, headers=self.headers) as response:
                if response.status != 200:
                    return None
                return await response.json(content_type=None)
        except aiohttp.ClientError:
            return None

    async def models(self) -> list[dict]:
        data = await self.get_json("/v1/models")
        if data is None:
            raise RuntimeError(f"GET {self.url}/v1/models failed: is the engine running?")
        return list(data.get("data") or [])

    async def complete(self, prompt: str, max_tokens: int, fixed_length: bool) -> dict:
        """Non-streaming completion (used to calibrate prompt lengths)."""
        body = self._body(prompt, max_tokens, fixed_length, stream=False)
        async with self.session.post(
            self.url + "/v1/completions", json=body, headers=self.headers
        ) as response:
            if response.status != 200:
                raise RuntimeError(
                    f"completion failed ({response.status}): {(await response.text())[:300]}"
                )
            return await response.json(content_type=None)

    def _body(
        self,
        prompt: str,
        max_tokens: int,
        fixed_length: bool,
        stream: bool,
        token_ids: bool = False,
    ) -> dict:
        body: dict = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
            if token_ids and self.token_ids_supported:
                body["return_token_ids"] = True
        if fixed_length:  # vLLM extras: generate exactly max_tokens
            body["ignore_eos"] = True
            body["min_tokens"] = max_tokens
        return body

    async def stream(
        self, prompt: str, max_tokens: int, fixed_length: bool, token_ids: bool = False
    ) -> StreamResult:
        body = self._body(prompt, max_tokens, fixed_length, stream=True, token_ids=token_ids)
        result = StreamResult(sent=time.perf_counter())
        async with self.session.post(
            self.url + "/v1/completions", json=body, headers=self.headers
        ) as response:
            if response.status != 200:
                raise RuntimeError(
                    f"streaming completion failed ({response.status}): "
                    f"{(await response.text())[:300]}"
                )
            async for raw in response.content:
                now = time.perf_counter()
                line = raw.strip()
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    break
                event = json.loads(payload)
                usage = event.get("usage")
                if usage:
                    result.prompt_tokens = usage.get("prompt_tokens")
                    result.completion_tokens = usage.get("completion_tokens")
                for choice in event.get("choices") or ():
                    ids = choice.get("token_ids")
                    count = len(ids) if isinstance(ids, list) else (1 if choice.get("text") else 0)
                    if count:
                        result.token_times.append(now)
                        result.token_counts.append(count)
        if not result.token_times:
            raise RuntimeError("the engine streamed no tokens")
        return result


# --- prompts ----------------------------------------------------------------------------------


def _code_lines(nonce: str, count: int) -> list[str]:
    """Distinct, code-like lines (what a coding assistant sends)."""
    lines = []
    for i in range(count):
        k = (i * 7919 + len(nonce)) % 997
        lines.append(
            f"def step_{i}_{k}(value_{i}, items):\n"
            f"    return [value_{i} * {k} + item for item in items if item > {i}]\n"
        )
    return lines


def build_prompt(lines: int, nonce: str | None = None) -> str:
    """A prompt of `lines` code lines, unique from its first token (defeats prefix caching)."""
    nonce = nonce or uuid.uuid4().hex[:12]
    return f"# request {nonce}\n" + "".join(_code_lines(nonce, lines))


async def calibrate(engine: Engine) -> tuple[float, float]:
    """Prompt tokens = a + b * lines, from the engine's own token counts."""
    points = []
    for lines in (4, 64):
        response = await engine.complete(build_prompt(lines), max_tokens=1, fixed_length=False)
        points.append((lines, response["usage"]["prompt_tokens"]))
    (l0, t0), (l1, t1) = points
    per_line = (t1 - t0) / (l1 - l0)
    return t0 - per_line * l0, per_line


def lines_for(target_tokens: int, base: float, per_line: float) -> int:
    return max(0, round((target_tokens - base) / per_line))


# --- measurements -----------------------------------------------------------------------------


def cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all CPUs from /proc/stat (Linux), else None."""
    try:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


class LoadSampler:
    """How busy the machine is: the 1-minute load average while the measurement runs, and the
    CPU share used while the engine is idle (just before and just after), which is other
    people's work on a shared machine."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.idle_busy: dict[str, float] = {}

    def sample(self) -> None:
        try:
            self.samples.append(os.getloadavg()[0])
        except OSError:
            pass

    async def idle_cpu(self, label: str, seconds: float = 5.0) -> None:
        first = cpu_times()
        await asyncio.sleep(seconds)
        second = cpu_times()
        if first and second and second[1] > first[1]:
            self.idle_busy[label] = (second[0] - first[0]) / (second[1] - first[1])

    async def run(self, every_s: float = 5.0) -> None:
        while True:
            self.sample()
            await asyncio.sleep(every_s)

    def summary(self) -> str:
        cpus = os.cpu_count() or 1
        parts = []
        if self.samples:
            parts.append(
                f"1-min load average during the measurement {min(self.samples):.2f}.."
                f"{max(self.samples):.2f} (mean {statistics.fmean(self.samples):.2f}) on "
                f"{cpus} CPUs, the measurement's own engine and client included"
            )
        if self.idle_busy:
            shares = ", ".join(
                f"{label} {share * cpus:.2f} CPUs" for label, share in self.idle_busy.items()
            )
            parts.append(f"CPU busy while the engine was idle (other work): {shares}")
        return "; ".join(parts) if parts else "load average unknown"


async def measure_prefill(
    engine: Engine, targets: list[int], repeats: int, max_len: int, log
) -> tuple[dict[int, list[tuple[int, float]]], float, float]:
    base, per_line = await calibrate(engine)
    targets = [t for t in targets if t < max_len - 8]
    samples: dict[int, list[tuple[int, float]]] = {t: [] for t in targets}
    for _ in range(2):  # warm-up: first requests of a fresh engine are slower
        await engine.stream(build_prompt(lines_for(256, base, per_line)), 1, False)
    for rep in range(repeats):
        for target in targets:
            result = await engine.stream(build_prompt(lines_for(target, base, per_line)), 1, False)
            tokens = result.prompt_tokens or target
            samples[target].append((tokens, result.ttft_ms))
            log(
                f"prefill  rep {rep + 1}/{repeats}  prompt {tokens:5d} tokens  "
                f"TTFT {result.ttft_ms:8.1f} ms"
            )
    xs = np.array([statistics.median(t for t, _ in samples[k]) for k in targets], dtype=float)
    ys = np.array([statistics.median(ms for _, ms in samples[k]) for k in targets], dtype=float)
    if len(targets) >= 2:
        # Least squares on the relative error (weights 1/TTFT): short prompts, the common case
        # for code completion, are predicted as well as long ones.
        slope, intercept = np.polyfit(xs, ys, 1, w=1.0 / ys)
    else:
        slope, intercept = 0.0, float(ys[0])
    return samples, max(0.0, float(intercept)), max(0.0, float(slope))


def decode_gaps(results: list[StreamResult], trim: float = 0.1) -> list[float]:
    """Per-token gaps (ms) while every stream of the batch was decoding, ends trimmed."""
    starts = [r.token_times[0] for r in results]
    ends = [r.token_times[-1] for r in results]
    lo, hi = max(starts), min(ends)
    if hi <= lo:
        return []
    span = hi - lo
    lo, hi = lo + trim * span, hi - trim * span
    gaps = []
    for r in results:
        for i in range(1, len(r.token_times)):
            t0, t1 = r.token_times[i - 1], r.token_times[i]
            if t0 >= lo and t1 <= hi:
                gaps.append((t1 - t0) * 1000.0 / r.token_counts[i])
    return gaps


async def measure_decode(
    engine: Engine, batches: list[int], tokens: int, repeats: int, log
) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for batch in batches:
        gaps: list[float] = []
        rates: list[float] = []
        for rep in range(repeats):
            results = await asyncio.gather(
                *(
                    engine.stream(build_prompt(2), tokens, True, token_ids=True)
                    for _ in range(batch)
                )
            )
            for r in results:
                if r.completion_tokens is not None and r.completion_tokens != tokens:
                    raise RuntimeError(
                        f"asked for {tokens} tokens, got {r.completion_tokens}: the engine "
                        f"does not honour ignore_eos/min_tokens"
                    )
            run_gaps = decode_gaps(results)
            gaps += run_gaps
            wall = max(r.token_times[-1] for r in results) - min(r.sent for r in results)
            rates.append(batch * tokens / wall)
            if run_gaps:
                log(
                    f"decode   batch {batch:2d}  run {rep + 1}/{repeats}  step "
                    f"{statistics.median(run_gaps):6.1f} ms (median of {len(run_gaps)} gaps)  "
                    f"{batch * tokens / wall:6.1f} tok/s in total"
                )
        if not gaps:
            raise RuntimeError(f"no steady decode window at batch {batch}: raise --decode-tokens")
        out[batch] = {
            "step_ms": statistics.median(gaps),
            "mean_ms": statistics.fmean(gaps),
            "p90_ms": float(np.percentile(gaps, 90)),
            "tok_s": statistics.median(rates),
        }
    return out


def monotone(points: dict[int, float]) -> tuple[dict[int, float], list[int]]:
    """Make step_ms non-decreasing in the batch size (a bigger batch is never faster per step);
    return the adjusted points and the batch sizes that were raised."""
    adjusted, raised, running = {}, [], 0.0
    for batch in sorted(points):
        value = points[batch]
        if value < running:
            raised.append(batch)
            value = running
        adjusted[batch] = value
        running = value
    return adjusted, raised


def command_line() -> str:
    argv0 = Path(sys.argv[0]).name
    if argv0 in ("profile_measure.py", "__main__.py", "-m"):
        argv0 = "python -m cato_backend.profile_measure"
    return " ".join([argv0] + [shlex.quote(a) for a in sys.argv[1:]])


async def run(args: argparse.Namespace, log) -> EngineProfile:
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    connector = aiohttp.TCPConnector(limit=max(64, args.max_batch * 2))
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        engine = Engine(session, args.url, args.api_key)
        models = await engine.models()
        if not models:
            raise RuntimeError("the engine serves no model")
        chosen = (
            next((m for m in models if m.get("id") == args.model), None)
            if args.model
            else models[0]
        )
        if chosen is None:
            raise RuntimeError(
                f"model {args.model!r} not in /v1/models: {[m.get('id') for m in models]}"
            )
        engine.model = chosen["id"]
        max_len = int(chosen.get("max_model_len") or 0)
        if max_len <= 0:
            raise RuntimeError("/v1/models gives no max_model_len; this profiler needs vLLM")
        version = await engine.get_json("/version")
        engine_label = args.engine or (
            f"vllm {version['version']}" if version and version.get("version") else "openai"
        )
        try:  # is `return_token_ids` accepted? (vLLM extra; others may reject it)
            await engine.stream("x = 1", 2, True, token_ids=True)
        except RuntimeError:
            engine.token_ids_supported = False
            await engine.stream("x = 1", 2, True)

        log(f"profiling {engine.model} at {args.url} ({engine_label}), max_model_len {max_len}")
        load = LoadSampler()
        await load.idle_cpu("before")
        sampler = asyncio.create_task(load.run())
        try:
            targets = [int(x) for x in str(args.prompt_lengths).split(",") if x.strip()]
            samples, overhead, prefill = await measure_prefill(
                engine, targets, args.repeats, max_len, log
            )
            batches = [b for b in DEFAULT_BATCHES if b <= args.max_batch]
            decode = await measure_decode(
                engine, batches, args.decode_tokens, args.decode_repeats, log
            )
        finally:
            load.sample()
            sampler.cancel()
        await load.idle_cpu("after")

    steps, raised = monotone({b: d["step_ms"] for b, d in decode.items()})
    notes = [args.notes.strip()] if args.notes.strip() else []
    notes.append(load.summary() + ". The machine may be shared with other work.")
    notes.append(
        f"TTFT: median of {args.repeats} streamed max_tokens=1 requests per prompt "
        f"length, unique prompts (no prefix-cache hits), line fitted on relative error; "
        f"decode: median per-token gap "
        f"of {args.decode_repeats}x{args.decode_tokens}-token fixed-length streams."
    )
    if raised:
        notes.append(
            f"step_ms raised to the previous batch's value (measurement noise) at batch {raised}."
        )
    if args.engine_command:
        notes.append(f"engine command: {args.engine_command}")
    profile = EngineProfile(
        model=engine.model,
        hardware=args.hardware or default_hardware(),
        engine=engine_label,
        measured_at=dt.date.today().isoformat(),
        command=command_line(),
        notes=" ".join(notes),
        max_model_len=max_len,
        overhead_ms=round(overhead, 3),
        prefill_ms_per_token=round(prefill, 5),
        decode=[DecodePoint(batch=b, step_ms=round(s, 3)) for b, s in steps.items()],
        cold_start_s=args.cold_start_s,
    )

    log("")
    log("prompt tokens  median TTFT ms  fit ms  fit/measured")
    for target in samples:
        tokens = statistics.median(t for t, _ in samples[target])
        ttft = statistics.median(ms for _, ms in samples[target])
        fit = overhead + prefill * tokens
        log(f"{tokens:13.0f}  {ttft:14.1f}  {fit:6.1f}  {fit / ttft:12.2f}")
    log(f"overhead {overhead:.1f} ms, prefill {prefill:.4f} ms/token")
    log("batch  step ms (median)  mean ms  p90 ms  tokens/s total")
    for batch, d in decode.items():
        log(
            f"{batch:5d}  {steps[batch]:16.2f}  {d['mean_ms']:7.2f}  {d['p90_ms']:6.2f}  "
            f"{d['tok_s']:14.1f}"
        )
    log(load.summary())
    return profile


def main(args: argparse.Namespace) -> int:
    def log(message: str) -> None:
        print(message, flush=True)

    if args.max_batch < 1 or args.repeats < 1 or args.decode_tokens < 16:
        print(
            "profile: --max-batch and --repeats must be >= 1, --decode-tokens >= 16",
            file=sys.stderr,
        )
        return 2
    try:
        profile = asyncio.run(run(args, log))
    except (TimeoutError, RuntimeError, aiohttp.ClientError) as error:
        print(f"profile: {error}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(profile.model_dump_json(indent=2) + "\n")
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(
        prog="cato-backend profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
