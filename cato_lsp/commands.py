"""Commands `cato.generate`, `cato.translate`, `cato.summarize` and the code actions that
offer them (argument shapes and edit placement: protocol.py).

A command streams its task through a cancellable work-done progress, then applies ONE
versioned `workspace/applyEdit` (undoable as one step; rejected if the document changed
while the model worked, since the computed position would be stale). Cancelling the
progress or the request aborts the backend task.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pydantic import ValidationError
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams

from .backend_client import BackendError
from .classify import Action
from .context import (
    as_comment,
    indentation,
    line_comment,
    line_starts,
    looks_binary,
    offset_at,
    position_at,
    reindent,
    strip_comment,
    strip_fences,
    tail_within,
)
from .protocol import (
    CMD_GENERATE,
    CMD_SUMMARIZE,
    CMD_TRANSLATE,
    COMMON_TARGET_LANGUAGES,
    KIND_GENERATE,
    KIND_SUMMARIZE,
    KIND_TRANSLATE,
    CommandArgs,
    CommandResult,
)

if TYPE_CHECKING:
    from .server import CatoLanguageServer

REQUEST_FAILED = -32803  # LSP ErrorCodes.RequestFailed
MAX_INPUT_CHARS = 400_000  # the backend's per-field limit
PROGRESS_EVERY_S = 0.05  # at most 20 progress reports a second, however fast tokens come
APPLY_EDIT_TIMEOUT_S = 30.0



@dataclass(frozen=True)
class Plan:
    """What to ask the backend and where the answer goes (computed from one snapshot)."""

    action: Action
    body: dict[str, Any]
    insert_line: int  # the answer is inserted at the start of this line...
    at_end: bool  # ...or, when the document has no such line, at its end (after a newline)
    indent: str
    title: str


class CommandProvider:
    def __init__(self, ls: CatoLanguageServer) -> None:
        self.ls = ls

    # -- code actions --------------------------------------------------------------------
    def code_actions(self, params: types.CodeActionParams) -> list[types.CodeAction] | None:
        ls = self.ls
        uri, rng = params.text_document.uri, params.range
        doc = ls.document(uri)
        if doc is None:
            return None
        args = [uri, {"start": {"line": rng.start.line, "character": rng.start.character},
                      "end": {"line": rng.end.line, "character": rng.end.character}}]
        actions: list[tuple[str, str, str]] = []
        if (rng.start.line, rng.start.character) != (rng.end.line, rng.end.character):
            actions = [(KIND_GENERATE, "CATO: Generate code from the selection", CMD_GENERATE),
                       (KIND_TRANSLATE, "CATO: Translate the selection to...", CMD_TRANSLATE),
                       (KIND_SUMMARIZE, "CATO: Summarize the selection", CMD_SUMMARIZE)]
        else:
            lines = doc.lines
            line = lines[rng.start.line] if rng.start.line < len(lines) else ""
            if strip_comment(line) and strip_comment(line) != line.strip():
                actions = [(KIND_GENERATE, "CATO: Generate code from this comment",
                            CMD_GENERATE)]
        only = params.context.only
        if only:
            actions = [a for a in actions if any(a[0] == k or a[0].startswith(k + ".")
                                                 for k in only)]
        return [types.CodeAction(title=title, kind=kind,
                                 command=types.Command(title=title, command=cmd, arguments=args))
                for kind, title, cmd in actions] or None

    # -- commands ------------------------------------------------------------------------
    async def execute(self, command: str, arguments: tuple[Any, ...]) -> dict | None:
        """Run a command to its applied edit. None when cancelled or dismissed."""
        ls = self.ls
        try:
            args = CommandArgs.from_arguments(command, list(arguments))
        except (ValidationError, ValueError) as e:
            raise JsonRpcInvalidParams(f"{command}: bad arguments: {_short(e)}") from None
        doc = ls.document(args.uri)
        if doc is None:
            raise JsonRpcInvalidParams(f"{command}: document not open: {args.uri}")
        text, version = doc.source, doc.version
        if looks_binary(text):
            raise JsonRpcInvalidParams(f"{command}: the document looks binary")
        target = args.target_language
        if command == CMD_TRANSLATE and target is None:
            target = await self._ask_target_language()
            if target is None:
                return None  # the user dismissed the question
        plan = self._plan(command, args, text, doc.language_id or "plaintext", target)

        # The work runs as a child task so that a cancelled progress (which cancels the
        # child) can be told apart from $/cancelRequest (which cancels this handler).
        work = asyncio.create_task(self._run(plan, args.uri, version, text))
        try:
            return await work
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise
            return None

    def _plan(self, command: str, args: CommandArgs, text: str, language: str,
              target: str | None) -> Plan:
        encoding = self.ls.position_encoding()
        starts = line_starts(text)
        r = args.range
        a = offset_at(text, r.start.line, r.start.character, encoding, starts)
        b = offset_at(text, r.end.line, r.end.character, encoding, starts)
        a, b = min(a, b), max(a, b)
        selection = text[a:b]
        first_line = _line_of(starts, a)
        last_line = _line_of(starts, b - 1 if b > a else b)
        line_text = _line_text(text, starts, first_line)
        indent = indentation(line_text)
        below, at_end = last_line + 1, last_line + 1 >= len(starts)
        if len(selection) > MAX_INPUT_CHARS:
            raise JsonRpcInvalidParams(f"{command}: the selection has {len(selection)} "
                                       f"characters; the limit is {MAX_INPUT_CHARS}")
        budget = self.ls.settings.context.prefix_tokens
        if command == CMD_GENERATE:
            if selection.strip():
                instruction = "\n".join(strip_comment(ln) for ln in selection.split("\n"))
            else:
                instruction = strip_comment(line_text)
            instruction = instruction.strip()
            if not instruction:
                raise JsonRpcInvalidParams(f"{command}: no instruction: select one, or put "
                                           "the cursor on a comment saying what to write")
            body = {"instruction": instruction, "language": language[:64],
                    "context": tail_within(text[:starts[first_line]], budget)}
            return Plan(Action.GENERATE, body, below, at_end, indent, "CATO: generating")
        if not selection.strip():
            what = "translate" if command == CMD_TRANSLATE else "summarize"
            raise JsonRpcInvalidParams(f"{command}: select the code to {what}")
        if command == CMD_TRANSLATE:
            body = {"code": selection, "source_language": language[:64],
                    "target_language": (target or "")[:64]}
            return Plan(Action.TRANSLATE, body, below, at_end, indent,
                        f"CATO: translating to {target}")
        if command == CMD_SUMMARIZE:
            body = {"code": selection, "language": language[:64]}
            return Plan(Action.SUMMARIZE, body, first_line, False, indent,
                        "CATO: summarizing")
        raise JsonRpcInvalidParams(f"unknown command {command!r}")  # pragma: no cover

    async def _ask_target_language(self) -> str | None:
        ls = self.ls
        answer = await ls.window_show_message_request_async(types.ShowMessageRequestParams(
            type=types.MessageType.Info, message="CATO: translate the selection to which "
            "language?", actions=[types.MessageActionItem(title=t)
                                  for t in COMMON_TARGET_LANGUAGES]))
        return answer.title if answer is not None else None

    async def _run(self, plan: Plan, uri: str, version: int | None, text: str) -> dict | None:
        ls = self.ls
        task, body, key = await ls.tasks.prepare(plan.action, plan.body)
        progress = _Progress(ls, plan.title, asyncio.current_task())
        await progress.begin()
        t0 = time.perf_counter()
        try:
            out = ls.tasks.lookup(task, key)
            if out is None:
                out = await ls.tasks.run(task, body, key,
                                         timeout_s=ls.settings.timeouts.command_ms / 1000,
                                         on_token=progress.token if task.streamed else None)
        except asyncio.CancelledError:
            progress.end("cancelled")
            raise
        except BackendError as e:
            progress.end(f"failed: {e.message}")
            raise JsonRpcException(f"{plan.title[6:]} failed: {e.message}",
                                   code=REQUEST_FAILED) from None
        except BaseException:
            progress.end("failed")
            raise
        new_text = self._render(plan, out.text, body)
        if not new_text.strip():
            progress.end("the model answered nothing")
            raise JsonRpcException("the model answered nothing", code=REQUEST_FAILED)
        progress.end(f"applying ({(time.perf_counter() - t0) * 1000:.0f} ms)")
        applied = await self._apply(plan, uri, version, text, new_text)
        return CommandResult(applied=applied, kind=task.kind, text=new_text,
                             e2e_ms=out.result.e2e_ms if out.result else None,
                             sla_met=out.result.sla_met if out.result else None,
                             cached=out.cached).model_dump()

    def _render(self, plan: Plan, answer: str, body: dict[str, Any]) -> str:
        if plan.action == Action.SUMMARIZE:
            return as_comment(strip_fences(answer.strip()), body["language"], plan.indent)
        code = reindent(strip_fences(answer.strip()), plan.indent)
        if plan.action == Action.TRANSLATE:
            lead = line_comment(body["source_language"])
            code = f"{plan.indent}{lead} CATO: translated to {body['target_language']}\n" + code
        return code

    async def _apply(self, plan: Plan, uri: str, version: int | None, text: str,
                     new_text: str) -> bool:
        ls = self.ls
        doc = ls.document(uri)
        if doc is None or doc.version != version:
            ls.show_message("CATO: the document changed while the model worked; nothing was "
                            "inserted. Run the command again.", types.MessageType.Warning)
            return False
        if plan.at_end:  # no line below: append at the very end, on a line of its own
            line, character = position_at(text, len(text), ls.position_encoding())
            pos = types.Position(line=line, character=character)
            if text and not text.endswith(("\n", "\r")):
                new_text = "\n" + new_text.rstrip("\n")
        else:
            pos = types.Position(line=plan.insert_line, character=0)
        edit = types.TextEdit(range=types.Range(start=pos, end=pos), new_text=new_text)
        if ls.client_supports_document_changes():
            wedit = types.WorkspaceEdit(document_changes=[types.TextDocumentEdit(
                text_document=types.OptionalVersionedTextDocumentIdentifier(uri=uri,
                                                                            version=version),
                edits=[edit])])
        else:
            wedit = types.WorkspaceEdit(changes={uri: [edit]})
        try:
            async with asyncio.timeout(APPLY_EDIT_TIMEOUT_S):
                res = await ls.workspace_apply_edit_async(
                    types.ApplyWorkspaceEditParams(edit=wedit, label=plan.title))
        except TimeoutError:
            ls.log("workspace/applyEdit: no answer from the editor", error=True)
            return False
        if not res.applied:
            ls.log(f"the editor did not apply the edit: {res.failure_reason}", error=True)
        return bool(res.applied)


class _Progress:
    """A cancellable work-done progress for one command (when the client supports it);
    cancelling it cancels `task`."""

    def __init__(self, ls: CatoLanguageServer, title: str, task: asyncio.Task | None) -> None:
        self.ls = ls
        self.title = title
        self.task = task
        self.id: str | None = None  # the progress token, once created
        self.count = 0
        self._last_report = 0.0

    async def begin(self) -> None:
        ls = self.ls
        if not ls.client_supports_progress():
            return
        token = f"cato-{uuid.uuid4().hex}"
        try:
            async with asyncio.timeout(10):
                await ls.work_done_progress.create_async(token)
        except Exception as e:  # noqa: BLE001 - no progress bar is no reason to fail
            ls.log(f"window/workDoneProgress/create failed: {e}", error=True)
            return
        self.id = token
        fut = ls.work_done_progress.tokens.get(token)
        if fut is not None and self.task is not None:
            task = self.task
            # window/workDoneProgress/cancel cancels this future (pygls): abort the work.
            fut.add_done_callback(lambda f: task.cancel() if f.cancelled() else None)
        ls.work_done_progress.begin(token, types.WorkDoneProgressBegin(
            title=self.title, cancellable=True, message="waiting for the backend"))

    def token(self, text: str) -> None:
        """One streamed token: report it (throttled; the first one at once)."""
        self.count += 1
        if self.id is None:
            return
        now = time.monotonic()
        if self.count > 1 and now - self._last_report < PROGRESS_EVERY_S:
            return
        self._last_report = now
        self.ls.work_done_progress.report(self.id, types.WorkDoneProgressReport(
            message=f"{self.count} tokens", cancellable=True))

    def end(self, message: str) -> None:
        if self.id is None:
            return
        token, self.id = self.id, None
        self.ls.work_done_progress.end(token, types.WorkDoneProgressEnd(message=message))
        self.ls.work_done_progress.tokens.pop(token, None)


def _line_of(starts: list[int], offset: int) -> int:
    import bisect

    return max(0, bisect.bisect_right(starts, max(offset, 0)) - 1)


def _line_text(text: str, starts: list[int], line: int) -> str:
    end = starts[line + 1] if line + 1 < len(starts) else len(text)
    return text[starts[line]:end].rstrip("\r\n")


def _short(e: Exception) -> str:
    if isinstance(e, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
                         for err in e.errors(include_url=False))
    return str(e)
