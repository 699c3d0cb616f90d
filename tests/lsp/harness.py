"""Harness for the language server tests: a REAL `cato-backend` process over emulated
replicas (started once per session, always stopped), and `cato-lsp` processes driven by a
pytest-lsp client over stdio.

Every process a test starts is stopped in a `finally`, also when the test fails: the LSP
gets shutdown/exit and is killed if it does not go; the backend gets SIGTERM (it stops its
replicas) and its whole process group is killed if it does not go.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml
from lsprotocol import types
from pytest_lsp import LanguageClient
from pytest_lsp.client import make_test_lsp_client

from cato_backend.provisioner import free_port  # noqa: F401 (re-exported for the tests)
from tests.conftest import FAST_PROFILE

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
# Small answers keep the default run fast (4 ms a token on the fast profile); the
# cancellation tests ask for long ones.
TEST_SETTINGS: dict[str, Any] = {
    "maxTokens": {"completion": 8, "generation": 16, "translation": 24, "summarization": 16},
    "debounce": {"enabled": False},
    "health": {"probeIntervalMs": 200},
    "logLevel": "debug",
}


def http_json(url: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def metric(url: str, name: str, labels: dict[str, str]) -> float:
    """One sample of the backend's Prometheus text (0 when absent)."""
    with urllib.request.urlopen(url + "/metrics", timeout=2.0) as resp:
        text = resp.read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            got = ",".join(sorted(line[len(name) + 1:line.index("}")].split(",")))
            if got == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def running_on_backend(backend) -> None:
    """Wait until some replica of the backend is running a request."""
    for _ in range(250):
        replicas = http_json(backend.url + "/v1/status")["replicas"]
        if any(r["running"] for r in replicas):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the backend never started the task")


class BackendProcess:
    """`cato-backend serve` with emulated replicas on a fixed port (so that it can be
    started after an LSP that already points at it)."""

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        profile = tmp / "fast-profile.json"
        profile.write_text(FAST_PROFILE.model_dump_json())
        self.config = tmp / "backend.yaml"
        self.config.write_text(yaml.safe_dump({"models": {"smollm2": {
            "served_name": "test-model", "engine": "emulated", "replicas": 1,
            "profile": str(profile), "max_in_flight": 4}}}))
        self.log = tmp / "backend.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "cato_backend.cli", "serve", "--config", str(self.config),
                 "--port", str(self.port)],
                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"backend exited: {self.log.read_text()[-2000:]}")
            try:
                if http_json(self.url + "/healthz", 0.5).get("status") == "ok":
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"backend not ready in {timeout_s}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # it stops its replica processes
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        try:  # anything left in its session (replicas included): our processes only
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)

    def cancelled(self, kind: str) -> float:
        return metric(self.url, "cato_tasks_total", {"kind": kind, "outcome": "cancelled"})


def plain(obj: Any) -> Any:
    """pygls hands unknown payloads over as namedtuples; tests compare dicts."""
    if hasattr(obj, "_asdict"):
        return {k: plain(v) for k, v in obj._asdict().items()}
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def capabilities(inline: bool = True, progress: bool = True,
                 configuration: bool = True) -> types.ClientCapabilities:
    return types.ClientCapabilities(
        workspace=types.WorkspaceClientCapabilities(
            apply_edit=True, configuration=configuration,
            workspace_edit=types.WorkspaceEditClientCapabilities(document_changes=True)),
        text_document=types.TextDocumentClientCapabilities(
            inline_completion=types.InlineCompletionClientCapabilities() if inline else None,
            completion=types.CompletionClientCapabilities(),
            code_action=types.CodeActionClientCapabilities()),
        window=types.WindowClientCapabilities(
            work_done_progress=progress,
            show_message=types.ShowMessageRequestClientCapabilities()),
    )


class Session:
    """One `cato-lsp` process and what it told the client."""

    def __init__(self, client: LanguageClient) -> None:
        self.client = client
        self.statuses: list[dict] = []
        self.edits: list[types.ApplyWorkspaceEditParams] = []
        self.questions: list[types.ShowMessageRequestParams] = []
        self.answer: str | None = "rust"  # to window/showMessageRequest
        self._versions: dict[str, int] = {}
        self.init_result: types.InitializeResult | None = None

        @client.feature("cato/status")
        def on_status(ls, params):
            self.statuses.append(plain(params))

        @client.feature(types.WORKSPACE_APPLY_EDIT)
        def on_apply(ls, params: types.ApplyWorkspaceEditParams):
            self.edits.append(params)
            return types.ApplyWorkspaceEditResult(applied=True)

        @client.feature(types.WINDOW_SHOW_MESSAGE_REQUEST)
        def on_question(ls, params: types.ShowMessageRequestParams):
            self.questions.append(params)
            return None if self.answer is None else types.MessageActionItem(title=self.answer)

    def open(self, uri: str, text: str, language: str = "python") -> None:
        self._versions[uri] = 1
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language, version=1,
                                                 text=text)))

    def change(self, uri: str, text: str) -> None:
        """Replace the whole text (a full-document change)."""
        self._versions[uri] += 1
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri,
                                                                version=self._versions[uri]),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))

    async def inline(self, uri: str, line: int, character: int,
                     invoked: bool = True) -> types.InlineCompletionList | None:
        kind = (types.InlineCompletionTriggerKind.Invoked if invoked
                else types.InlineCompletionTriggerKind.Automatic)
        return await self.client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=character),
                context=types.InlineCompletionContext(trigger_kind=kind)))

    async def code_actions(self, uri: str, range_: dict) -> list[dict]:
        """Code actions as plain dicts. (lsprotocol's client-side structuring of the
        `Command | CodeAction` union turns CodeActions into Commands with a stringified
        `command`, so the raw JSON is read instead.)"""
        proto = self.client.protocol
        typed = proto.get_result_type
        proto.get_result_type = lambda method: (  # type: ignore[method-assign]
            None if method == types.TEXT_DOCUMENT_CODE_ACTION else typed(method))
        try:
            result = await proto.send_request_async(
                types.TEXT_DOCUMENT_CODE_ACTION,
                types.CodeActionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    range=proto._converter.structure(range_, types.Range),
                    context=types.CodeActionContext(diagnostics=[])))
        finally:
            del proto.get_result_type
        return plain(result) or []

    async def command(self, name: str, *args: Any) -> Any:
        return await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=name, arguments=list(args)))

    async def wait_for(self, predicate: Callable[[], Any], timeout_s: float = 10.0,
                       what: str = "condition") -> Any:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            value = predicate()
            if value:
                return value
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; statuses "
                             f"{self.statuses[-3:]}, messages {self.client.messages}")

    def progress(self) -> dict[str, list]:
        return self.client.progress_reports


def rng(l0: int, c0: int, l1: int, c1: int) -> dict:
    return {"start": {"line": l0, "character": c0}, "end": {"line": l1, "character": c1}}


@asynccontextmanager
async def lsp(backend_url: str, cache_dir: Path, *, settings: dict | None = None,
              workspace: dict | None = None, args: tuple[str, ...] = (),
              **caps: bool) -> AsyncIterator[Session]:
    """Start `python -m cato_lsp`, initialize it, and always shut it down."""
    client = make_test_lsp_client()
    session = Session(client)
    if workspace is not None:
        client.set_configuration(workspace, section="cato")
    await client.start_io(PYTHON, "-m", "cato_lsp", "--backend", backend_url,
                          "--cache-dir", str(cache_dir), *args, cwd=str(REPO))
    try:
        session.init_result = await asyncio.wait_for(client.initialize_session(
            types.InitializeParams(capabilities=capabilities(**caps),
                                   initialization_options={**TEST_SETTINGS, **(settings or {})})),
            15)
        yield session
    finally:
        with contextlib.suppress(Exception):  # a server that does not go is killed below
            await asyncio.wait_for(client.shutdown_session(), 10)
        proc = client._server
        if proc is not None and proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(client.stop(), 10)
