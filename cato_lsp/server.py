"""`CatoLanguageServer`: the state of one editor session, and the thin LSP handlers.

Handlers only delegate: completion.py and commands.py do the work, tasks.py runs tasks,
health.py / cache.py / debounce.py keep the small pure state. This module owns the I/O
glue: settings, the backend client, the `/healthz` probe while the backend is away, and
the messages to the editor (`cato/status`, `window/logMessage`, `window/showMessage`).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from lsprotocol import types
from pydantic import ValidationError
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.workspace import TextDocument

from . import __version__
from .backend_client import (
    BackendClient,
    BackendError,
    BackendUnreachable,
    is_emulated,
    models_by_kind,
)
from .cache import ResultCache, default_cache_dir
from .commands import CommandProvider
from .documents import use_lsp_documents
from .completion import CompletionProvider
from .health import Change, Health
from .protocol import (
    CMD_GENERATE,
    CMD_SUMMARIZE,
    CMD_TRANSLATE,
    CODE_ACTION_KINDS,
    SERVER_NAME,
    STATUS_NOTIFICATION,
    LastTask,
    Settings,
    StatusParams,
    merge_settings,
)
from .tasks import TaskService


class CatoProtocol(LanguageServerProtocol):
    """pygls runs a command inside its `workspace/executeCommand` handler as a separate
    task, which `$/cancelRequest` would not reach; this also cancels that task."""

    def _handle_cancel_notification(self, msg_id):
        task = self._server.running_commands.pop(msg_id, None)
        super()._handle_cancel_notification(msg_id)
        if task is not None and not task.done():
            task.cancel()


class CatoLanguageServer(LanguageServer):
    def __init__(self, settings: Settings | None = None, cache_dir: str | Path | None = None):
        super().__init__(SERVER_NAME, __version__, protocol_cls=CatoProtocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.base_settings = settings or Settings()  # defaults + command line
        self.init_options: dict | None = None
        self.settings = self.base_settings
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.cache: ResultCache | None = None
        self.client = self._new_client()
        self.health = self._new_health()
        self.models: dict[str, str] = {}  # kind -> served model name (cache keys)
        self.emulated: bool | None = None
        self.tasks = TaskService(self)
        self.completions = CompletionProvider(self)
        self.commands = CommandProvider(self)
        self.running_commands: dict[Any, asyncio.Task] = {}
        self._state = "ok"
        self._probe: asyncio.Task | None = None
        self._first_contact: asyncio.Task | None = None  # the start-up /v1/status
        self._logged_once: set[str] = set()
        self.auth_error: str | None = None  # the backend refused our token (401/403)
        self._background: set[asyncio.Task] = set()

    # -- settings ------------------------------------------------------------------------
    def _new_client(self) -> BackendClient:
        s = self.settings
        return BackendClient(s.backend_url, s.token, connect_timeout_s=s.timeouts.connect_ms / 1000)

    def _new_health(self) -> Health:
        h = self.settings.health
        return Health(self.settings.backend_url, window=h.window,
                      miss_threshold=h.miss_threshold, max_age_s=h.max_age_s)

    def apply_settings(self, workspace_section: Any = None, reconnect: bool = True) -> None:
        """defaults + command line < initializationOptions < workspace `cato` section.
        `reconnect`: ask a changed backend what it serves (not during `initialize`: nothing
        but the answer may be sent before it)."""
        try:
            new = merge_settings(self.base_settings, self.init_options,
                                 workspace_section if isinstance(workspace_section, dict)
                                 else None)
        except (ValidationError, TypeError) as e:
            msg = f"CATO: settings rejected, keeping the previous ones: {_short(e)}"
            self.log(msg, error=True)
            self.show_message(msg, types.MessageType.Warning)
            return
        old, self.settings = self.settings, new
        self.completions.configure()
        if (old.backend_url, old.token, old.timeouts.connect_ms) != (
                new.backend_url, new.token, new.timeouts.connect_ms):
            stale, self.client = self.client, self._new_client()
            self._spawn(stale.close())
            if old.token != new.token:  # a new token gets a fresh verdict
                self.auth_error = None
                self._logged_once.discard(f"auth:{new.backend_url}")
        if old.backend_url != new.backend_url or old.health != new.health:
            was_unreachable = self.health.unreachable
            self.health = self._new_health()
            if old.backend_url != new.backend_url:
                self.models = self.cache.known_models(new.backend_url) if self.cache else {}
            if reconnect and (old.backend_url != new.backend_url or was_unreachable):
                self._spawn(self.connect())

    async def load_workspace_settings(self, reconnect: bool = True) -> None:
        caps = self.client_capabilities.workspace
        if caps is None or not caps.configuration:
            return
        try:
            async with asyncio.timeout(10):
                res = await self.workspace_configuration_async(types.ConfigurationParams(
                    items=[types.ConfigurationItem(section="cato")]))
        except Exception as e:  # noqa: BLE001 - the editor may not answer; keep what we have
            self.log(f"workspace/configuration failed: {e}", error=True)
            return
        self.apply_settings(res[0] if res else None, reconnect=reconnect)

    # -- backend connection --------------------------------------------------------------
    async def connect(self) -> None:
        """Ask the backend what it serves; on failure go unreachable (and probe)."""
        client = self.client
        try:
            status = await client.status(timeout_s=self.settings.timeouts.connect_ms / 1000 + 3)
        except BackendUnreachable as e:
            if client is self.client:
                self.backend_unreachable(e.message)
            return
        except BackendError as e:
            self.log(f"GET /v1/status: {e.message}", error=True)
            if e.status in (401, 403):
                self.auth_failed(e.message)
            return
        if client is not self.client:
            return
        self.auth_error = None
        self.models = models_by_kind(status)
        self.emulated = is_emulated(status)
        if self.cache is not None:
            self.cache.remember_models(self.settings.backend_url, self.models)
        label = " (EMULATED engine: load testing only)" if self.emulated else ""
        self.log(f"backend {self.settings.backend_url}{label}: models {self.models}")
        self._after(self.health.mark_reachable(time.monotonic()))
        self.publish_status()

    def start(self) -> None:
        """After `initialized`: settings from the workspace, then the backend."""
        async def go() -> None:
            await self.load_workspace_settings(reconnect=False)
            await self.connect()

        self._first_contact = self._spawn(go())

    async def first_contact(self) -> None:
        """Wait (bounded) for the start-up exchange with the backend, if still running."""
        task = self._first_contact
        if task is None or task.done():
            return
        try:
            async with asyncio.timeout(self.settings.timeouts.connect_ms / 1000 + 1):
                await asyncio.shield(task)
        except (TimeoutError, asyncio.CancelledError):
            if asyncio.current_task().cancelling():
                raise

    def backend_unreachable(self, reason: str) -> None:
        change = self.health.mark_unreachable(reason, time.monotonic())
        self._after(change)
        if self._probe is None or self._probe.done():
            self._probe = self._spawn(self._probe_loop())

    async def _probe_loop(self) -> None:
        """While unreachable: GET /healthz every probeIntervalMs until it answers."""
        while self.health.unreachable:
            await asyncio.sleep(self.settings.health.probe_interval_ms / 1000)
            client = self.client
            try:
                await client.healthz(timeout_s=min(2.0, self.settings.timeouts.connect_ms / 1000))
            except BackendError:
                continue
            if client is self.client:
                await self.connect()

    def auth_failed(self, message: str) -> None:
        """The backend refused our token (401/403): every task would fail the same way, so
        say so once per backend URL (window/showMessage) and keep it in `cato/status`."""
        self.auth_error = message
        key = f"auth:{self.settings.backend_url}"
        if key not in self._logged_once:
            self._logged_once.add(key)
            self.show_message(f"CATO: {message}", types.MessageType.Error)
        self.publish_status()

    def record_sla(self, met: bool, now: float) -> None:
        self.auth_error = None  # a served task: the token is fine
        self._after(self.health.record(met, now))

    def _after(self, change: Change | None) -> None:
        if change is None:
            return
        if change.announce:
            level = (types.MessageType.Warning if change.after == "unreachable"
                     else types.MessageType.Info)
            self.show_message(change.announce, level)
            self.log(change.announce)
        self.publish_status()

    def publish_status(self, last_task: LastTask | None = None) -> None:
        state = self.health.state(time.monotonic())
        self._state = state
        message = None
        if state == "unreachable":
            message = f"unreachable: {self.health.reason}"
        elif self.auth_error is not None:
            message = self.auth_error
        elif state == "degraded":
            message = "recent tasks missed their SLA"
        params = StatusParams(state=state, backend=self.settings.backend_url,
                              emulated=self.emulated, message=message, last_task=last_task)
        self.protocol.notify(STATUS_NOTIFICATION, params.wire())

    # -- editor I/O ----------------------------------------------------------------------
    def log(self, message: str, error: bool = False, debug: bool = False) -> None:
        level = self.settings.log_level
        if (debug and level != "debug") or (level == "error" and not error):
            return
        kind = (types.MessageType.Error if error else
                types.MessageType.Log if debug else types.MessageType.Info)
        self.window_log_message(types.LogMessageParams(type=kind, message=message))

    def log_once(self, key: str, message: str) -> None:
        if key not in self._logged_once:
            self._logged_once.add(key)
            self.log(message)

    def show_message(self, message: str, kind: types.MessageType) -> None:
        self.window_show_message(types.ShowMessageParams(type=kind, message=message))

    def document(self, uri: str) -> TextDocument | None:
        """An open document, or None (never a file read from disk behind the editor)."""
        return self.workspace.text_documents.get(unquote(uri))

    def position_encoding(self) -> str:
        enc = self.workspace.position_encoding
        return str(getattr(enc, "value", enc) or "utf-16")

    def client_supports_inline(self) -> bool:
        td = self.client_capabilities.text_document
        return td is not None and td.inline_completion is not None

    def client_supports_progress(self) -> bool:
        w = self.client_capabilities.window
        return bool(w is not None and w.work_done_progress)

    def client_supports_document_changes(self) -> bool:
        ws = self.client_capabilities.workspace
        return bool(ws is not None and ws.workspace_edit is not None
                    and ws.workspace_edit.document_changes)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await self.client.close()
        if self.cache is not None:
            self.cache.close()


def _short(e: Exception) -> str:
    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
                         for err in e.errors(include_url=False))
    return str(e)


def start_stdio(server: CatoLanguageServer) -> None:
    """Serve over stdin/stdout with stdin read by the event loop itself.

    pygls' `start_io` reads stdin in a thread pool, one hop per header line and per body:
    measurable milliseconds on the completion path of a busy 2-core machine. An asyncio pipe
    reader has no hops. Where stdin is not a pipe or socket (what editors give), e.g. a file
    or /dev/null, pygls' reader is used."""
    import logging
    import os
    import stat
    import sys
    import threading

    from pygls.io_ import StdoutWriter, run_async

    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):
        mode = 0
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        server.start_io()
        return

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=2**26)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                     sys.stdin.buffer)
        server._stop_event = threading.Event()
        server.protocol.set_writer(StdoutWriter(sys.stdout.buffer))
        await run_async(stop_event=server._stop_event, reader=reader,
                        protocol=server.protocol, logger=logging.getLogger("cato_lsp"),
                        error_handler=server.report_server_error)

    try:
        asyncio.run(serve())
    except (KeyboardInterrupt, SystemExit, BrokenPipeError):
        pass
    finally:
        server.shutdown()


def build_server(settings: Settings | None = None,
                 cache_dir: str | Path | None = None) -> CatoLanguageServer:
    server = CatoLanguageServer(settings, cache_dir)

    @server.feature(types.INITIALIZE)
    def initialize(ls: CatoLanguageServer, params: types.InitializeParams) -> None:
        use_lsp_documents(ls.workspace)  # split lines as editors do (documents.py)
        ls.init_options = params.initialization_options if isinstance(
            params.initialization_options, dict) else None
        ls.apply_settings(reconnect=False)
        s = ls.settings
        if ls.cache is None:
            ls.cache = ResultCache(ls.cache_dir, int(s.cache.max_size_mb * 1024 * 1024),
                                   s.cache.max_age_s, log=lambda m: ls.log(m, error=True))
            ls.models = ls.cache.known_models(s.backend_url)

    @server.feature(types.INITIALIZED)
    def initialized(ls: CatoLanguageServer, params: types.InitializedParams) -> None:
        ls.start()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: CatoLanguageServer,
                                       params: types.DidChangeConfigurationParams) -> None:
        # Clients either push the new settings or expect us to pull them.
        pushed = params.settings.get("cato") if isinstance(params.settings, dict) else None
        if pushed is not None:
            ls.apply_settings(pushed)
        else:
            await ls.load_workspace_settings()

    @server.feature(types.SHUTDOWN)
    async def shutdown(ls: CatoLanguageServer, params: None) -> None:
        await ls.close()

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: CatoLanguageServer, params: types.InlineCompletionParams):
        return await ls.completions.inline(params)

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions())
    async def completion(ls: CatoLanguageServer, params: types.CompletionParams):
        return await ls.completions.items(params)

    @server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                    types.CodeActionOptions(code_action_kinds=CODE_ACTION_KINDS))
    def code_action(ls: CatoLanguageServer, params: types.CodeActionParams):
        return ls.commands.code_actions(params)

    def register(name: str) -> None:
        @server.command(name)
        async def run(ls: CatoLanguageServer, *args: Any):
            msg_id = ls.protocol.msg_id
            if msg_id is not None:
                ls.running_commands[msg_id] = asyncio.current_task()
            try:
                return await ls.commands.execute(name, args)
            finally:
                if msg_id is not None:
                    ls.running_commands.pop(msg_id, None)

    for name in (CMD_GENERATE, CMD_TRANSLATE, CMD_SUMMARIZE):
        register(name)
    return server
