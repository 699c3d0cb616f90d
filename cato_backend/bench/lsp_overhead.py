"""`cato-bench lsp-overhead`: what the language server adds to an inline completion.

Definition. For each `textDocument/inlineCompletion` request:

    overhead = (request sent -> response read, at the editor's side of the LSP's stdio)
               - (the backend's own `done.e2e_ms` for that task)

The LSP must wait for the WHOLE completion text (ghost text is shown whole), so the backend's
end-to-end time, not its TTFT, is the part the LSP cannot help; everything else is the LSP's:
JSON-RPC over stdio both ways, pygls dispatch, the context window, the cache lookup and
write, the HTTP call to the backend and its event-stream parsing, plus the backend's HTTP
handling outside its own timer. The backend's `done.e2e_ms` reaches the client in the
`cato/status` notification (`lastTask.e2e_ms`), which the server sends before the response.

Set-up (all on loopback, as subprocesses): one backend (`cato-backend serve`) over an
EMULATED engine with a constructed thin profile (load testing only: its timing is made up
and small, so that the engine does not dominate), one `cato-lsp` over stdio with the debounce
disabled (`debounce.enabled: false`) and the default cache on (a realistic editor setting:
every request has a different context, so each one is a miss that also writes the cache),
and this process as the editor. Requests are sequential; each one follows a `didChange`
that appends a line, so no two contexts are equal. After the measured requests, the same
number of repeated contexts measures a cache hit (no backend involved) for context.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from ..provisioner import free_port
from . import (
    REPO_ROOT,
    environment,
    environment_note,
    finish_environment,
    fmt,
    md_table,
    profile_record,
    resolve_profile,
    summary,
    write_results,
)

TARGET_P50_MS = 5.0
PREFIX = ("import math\n\n\ndef is_prime(n: int) -> bool:\n"
          "    \"\"\"True when n is a prime number.\"\"\"\n    if n < 2:\n        return False\n"
          "    for d in range(2, int(math.sqrt(n)) + 1):\n")


def thin_profile():
    """A constructed (NOT measured) engine profile: small, steady costs, so that the LSP's
    milliseconds are not lost in the engine's."""
    from ..profiles import DecodePoint, EngineProfile

    return EngineProfile(
        model="lsp-bench-model", hardware="thin emulated engine (constructed, not measured)",
        engine="emulated", measured_at="1970-01-01",
        command="cato_backend/bench/lsp_overhead.py thin_profile() (constructed, not measured)",
        notes="cato-bench lsp-overhead: 1 ms per request, 0.001 ms per prompt token, "
              "2 ms per decode step",
        max_model_len=8192, overhead_ms=1.0, prefill_ms_per_token=0.001,
        decode=[DecodePoint(batch=1, step_ms=2.0), DecodePoint(batch=16, step_ms=2.5)],
    )


@dataclass
class LspOverheadConfig:
    requests: int = 200
    warmup: int = 20  # discarded requests first (connections, caches, code paths)
    max_tokens: int = 16  # completion length: the backend's e2e grows with it, not the overhead
    cache_hits: bool = True  # also time repeated contexts (cache hits)
    profile: str | None = None  # engine profile; None = the constructed thin one
    timeout_s: float = 300.0
    request_timeout_s: float = 30.0
    start_timeout_s: float = 60.0


class _Backend:
    def __init__(self, tmp: Path, profile_arg: str | None) -> None:
        if profile_arg:
            profile, prof, source = resolve_profile(profile_arg, tmp)
        else:
            prof, source = thin_profile(), "constructed thin profile (not measured)"
            profile = tmp / "thin-profile.json"
            profile.write_text(prof.model_dump_json())
        self.profile = profile_record(profile, prof, source)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = tmp / "backend.yaml"
        self.config = {"models": {"bench": {
            "served_name": "lsp-bench-model", "engine": "emulated", "replicas": 1,
            "profile": str(profile), "max_in_flight": 8}},
            "kinds": {k: {"model": "bench"} for k in
                      ("completion", "generation", "translation", "summarization")}}
        self.config_path.write_text(yaml.safe_dump(self.config))
        self.log_path = tmp / "backend.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float) -> None:
        import json
        import urllib.request

        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cato_backend.cli", "serve", "--config",
                 str(self.config_path), "--port", str(self.port)],
                cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"backend exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if json.loads(r.read()).get("status") == "ok":
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"backend not ready after {timeout_s:g} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # the backend stops its replica processes
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its session: our processes only
        except ProcessLookupError:
            pass
        proc.wait(5)


async def _measure(cfg: LspOverheadConfig, backend_url: str, cache_dir: Path,
                   progress) -> dict[str, Any]:
    from lsprotocol import types
    from pygls.lsp.client import LanguageClient
    from pygls.protocol import JsonRPCNotification, default_converter

    def converter():
        # pygls turns the params of unknown notifications (cato/status) into namedtuples,
        # creating a class per object: slow client-side work an editor does not do, and it
        # lands right before the measured response. Keep them as dicts.
        c = default_converter()
        c.register_structure_hook(JsonRPCNotification, lambda obj, cls: cls(**obj))
        return c

    client = LanguageClient("cato-bench", "0", converter_factory=converter)
    statuses: list[Any] = []

    @client.feature("cato/status")
    def on_status(ls, params):
        statuses.append(params)

    @client.feature(types.WINDOW_LOG_MESSAGE)
    def on_log(ls, params):
        pass

    @client.feature(types.WINDOW_SHOW_MESSAGE)
    def on_message(ls, params):
        pass

    settings = {"debounce": {"enabled": False}, "maxTokens": {"completion": cfg.max_tokens},
                "logLevel": "error", "health": {"probeIntervalMs": 200}}
    await client.start_io(sys.executable, "-m", "cato_lsp", "--backend", backend_url,
                          "--cache-dir", str(cache_dir), cwd=str(REPO_ROOT))
    uri = "file:///bench/lsp_overhead.py"
    try:
        await asyncio.wait_for(client.initialize_async(types.InitializeParams(
            capabilities=types.ClientCapabilities(
                text_document=types.TextDocumentClientCapabilities(
                    inline_completion=types.InlineCompletionClientCapabilities())),
            process_id=os.getpid(), initialization_options=settings)), cfg.start_timeout_s)
        client.initialized(types.InitializedParams())
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                 text=PREFIX)))
        version, text = 1, PREFIX
        # Wait for the server's start-up exchange with the backend (status `ok`).
        t0 = time.monotonic()
        while not any(s.get("state") == "ok" for s in statuses):
            if time.monotonic() - t0 > cfg.start_timeout_s:
                raise TimeoutError("cato-lsp never reported the backend ok")
            await asyncio.sleep(0.02)

        async def one(text: str, version: int) -> tuple[float, Any]:
            line = text.count("\n")
            statuses.clear()
            params = types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=0),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Automatic))
            t = time.perf_counter()
            result = await asyncio.wait_for(
                client.text_document_inline_completion_async(params), cfg.request_timeout_s)
            ms = (time.perf_counter() - t) * 1000
            if result is None or not result.items:
                raise RuntimeError(f"empty completion (request {version}); statuses {statuses}")
            last = statuses[-1].get("lastTask") if statuses else None
            return ms, last

        def edit(i: int) -> tuple[str, int]:
            nonlocal version
            version += 1
            new = PREFIX + "".join(f"    # step {j}\n" for j in range(i % 50)) + \
                f"    x_{i} = d * {i}\n"
            client.text_document_did_change(types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[types.TextDocumentContentChangeWholeDocument(text=new)]))
            return new, version

        lsp_ms, backend_ms, overhead_ms, met = [], [], [], 0
        for i in range(cfg.warmup + cfg.requests):
            text, v = edit(i)
            ms, last = await one(text, v)
            if last is None or last["cached"] or last["e2e_ms"] is None:
                raise RuntimeError(f"request {i}: expected a backend-served task, got {last}")
            if i >= cfg.warmup:
                lsp_ms.append(ms)
                backend_ms.append(float(last["e2e_ms"]))
                overhead_ms.append(ms - float(last["e2e_ms"]))
                met += bool(last["met"])
            progress(i + 1)
        hit_ms = []
        if cfg.cache_hits:
            for i in range(cfg.warmup, cfg.warmup + cfg.requests):
                text, v = edit(i)  # a context measured above: now in the cache
                ms, last = await one(text, v)
                if last is None or not last["cached"]:
                    raise RuntimeError(f"repeat {i}: expected a cache hit, got {last}")
                hit_ms.append(ms)
                progress(cfg.warmup + cfg.requests + i - cfg.warmup + 1)
        return {"lsp_ms": lsp_ms, "backend_e2e_ms": backend_ms, "overhead_ms": overhead_ms,
                "cache_hit_ms": hit_ms, "sla_met": met}
    finally:
        with contextlib.suppress(Exception):  # a server that does not go is killed below
            await asyncio.wait_for(client.shutdown_async(None), 10)
            client.exit(None)
            await asyncio.wait_for(client._server.wait(), 10)
        if client._server is not None and client._server.returncode is None:
            client._server.kill()
        await asyncio.wait_for(client.stop(), 10)


def run_lsp_overhead(cfg: LspOverheadConfig, out: str | Path, name: str = "lsp_overhead",
                     progress_bar: bool = True) -> dict[str, Any]:
    env = environment()
    env["packages"].update({m: _version(m) for m in ("pygls", "lsprotocol", "diskcache")})
    t0 = time.monotonic()
    total = cfg.warmup + cfg.requests + (cfg.requests if cfg.cache_hits else 0)

    def progress(n: int) -> None:
        if progress_bar and (n % 20 == 0 or n == total):
            print(f"\rlsp-overhead: {n}/{total} requests", end="", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="cato-lsp-bench-") as tmp:
        tmp_path = Path(tmp)
        backend = _Backend(tmp_path, cfg.profile)
        try:
            backend.start(cfg.start_timeout_s)
            raw = asyncio.run(asyncio.wait_for(
                _measure(cfg, backend.url, tmp_path / "cache", progress), cfg.timeout_s))
        finally:
            backend.stop()
            if progress_bar:
                print(file=sys.stderr)
        backend_config, profile = backend.config, backend.profile
    finish_environment(env)
    rows = {k: summary(v) for k, v in raw.items() if isinstance(v, list)}
    payload = {
        "benchmark": "lsp-overhead",
        "definition": "overhead = LSP inlineCompletion request->response at the client "
                      "minus the backend's done.e2e_ms for that task (the LSP waits for "
                      "the whole completion)",
        "engine": f"EMULATED ({profile['source']}): load testing only",
        "config": {**asdict(cfg), "lsp_settings": {"debounce.enabled": False,
                                                   "maxTokens.completion": cfg.max_tokens,
                                                   "cache.enabled": True},
                   "backend_config": backend_config,
                   "profile": profile},
        "target": {"overhead_p50_ms": TARGET_P50_MS,
                   "met": (rows["overhead_ms"]["p50"] or 1e9) < TARGET_P50_MS},
        "results_ms": rows,
        "sla_met": raw["sla_met"],
        "raw_ms": {k: [round(x, 3) for x in v] for k, v in raw.items() if isinstance(v, list)},
        "environment": env,
        "elapsed_s": round(time.monotonic() - t0, 1),
    }
    write_results(out, name, payload, lsp_overhead_markdown(payload))
    return payload


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001
        return None


def lsp_overhead_markdown(payload: dict[str, Any]) -> str:
    r = payload["results_ms"]
    labels = [("lsp_ms", "LSP request -> response (editor side)"),
              ("backend_e2e_ms", "backend `done.e2e_ms`"),
              ("overhead_ms", "**overhead** (difference, per request)"),
              ("cache_hit_ms", "cache hit: request -> response (no backend)")]
    rows = [[label, r[k]["n"], fmt(r[k]["p50"]), fmt(r[k]["p90"]), fmt(r[k]["p99"]),
             fmt(r[k]["mean"])] for k, label in labels if r.get(k, {}).get("n")]
    cfg = payload["config"]
    target = payload["target"]
    return "\n".join([
        "# cato-bench lsp-overhead",
        "",
        ("What `cato-lsp` adds to an inline completion: per request, the editor-side "
        "`textDocument/inlineCompletion` request -> response time minus the backend's own "
        "`done.e2e_ms` (the LSP waits for the whole completion). Sequential requests, "
        f"{cfg['requests']} measured after {cfg['warmup']} discarded, each with a new context "
        f"(cache misses that also write the cache); debounce disabled; "
        f"{cfg['max_tokens']}-token completions. "
        f"**EMULATED engine** ({cfg['profile']['source']}): load testing only."),
        "",
        md_table(["path", "n", "p50 ms", "p90 ms", "p99 ms", "mean ms"], rows),
        "",
        (f"Target: overhead p50 under {target['overhead_p50_ms']:g} ms: "
        f"**{'met' if target['met'] else 'NOT met'}** "
        f"(p50 {fmt(r['overhead_ms']['p50'])} ms, p99 {fmt(r['overhead_ms']['p99'])} ms)."),
        "",
        environment_note(payload["environment"], payload["elapsed_s"]),
    ])


def add_parser(sub, common) -> None:
    """Register `lsp-overhead` on cato-bench's subparsers (`common` adds --out/--name/...)."""
    p = sub.add_parser("lsp-overhead", help="what cato-lsp adds to an inline completion "
                       "(EMULATED engine, backend and LSP as subprocesses, loopback)")
    common(p, "lsp_overhead")
    p.add_argument("--requests", type=int, default=200, help="measured requests (default 200)")
    p.add_argument("--warmup", type=int, default=20, help="discarded first (default 20)")
    p.add_argument("--max-tokens", type=int, default=16,
                   help="completion length in tokens (default 16)")
    p.add_argument("--no-cache-hits", action="store_true",
                   help="skip the cache-hit pass")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="stop the whole run after this many seconds (default 300)")


def main_from_args(args) -> int:
    if args.requests < 1 or args.warmup < 0 or args.max_tokens < 1:
        print("cato-bench: --requests, --max-tokens must be >= 1, --warmup >= 0",
              file=sys.stderr)
        return 2
    cfg = LspOverheadConfig(requests=args.requests, warmup=args.warmup,
                            max_tokens=args.max_tokens, cache_hits=not args.no_cache_hits,
                            profile=args.profile, timeout_s=args.timeout)
    t0 = time.monotonic()
    payload = run_lsp_overhead(cfg, args.out, args.name, progress_bar=not args.no_progress)
    print(lsp_overhead_markdown(payload))
    print(f"\nwrote {args.out}/{args.name}.json and .md in {time.monotonic() - t0:.1f} s",
          file=sys.stderr)
    return 0
