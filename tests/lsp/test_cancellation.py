"""Cancellation end to end: the editor cancels, the backend sees the task cancelled.

The backend counts cancelled tasks in `cato_tasks_total{kind,outcome="cancelled"}`; each test
reads it before and waits for it to grow, so the proof comes from the backend itself.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled

from .harness import lsp, rng, running_on_backend

URI = "file:///work/app.py"
TEXT = "def area(w, h):\n    return w * h\n\n"
LONG = {"maxTokens": {"completion": 1000, "translation": 1000}}  # ~4 s each: surely running


async def test_cancel_request_for_inline_completion_aborts_the_backend_task(backend, tmp_path):
    before = backend.cancelled("completion")
    async with lsp(backend.url, tmp_path, settings=LONG) as s:
        s.open(URI, TEXT)
        msg_id = str(uuid.uuid4())
        pending = asyncio.ensure_future(s.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri=URI),
                position=types.Position(line=1, character=16),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Invoked)),
            msg_id=msg_id))
        await running_on_backend(backend)
        s.client.cancel_request(types.CancelParams(id=msg_id))
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(pending, 5)
        await s.wait_for(lambda: backend.cancelled("completion") > before,
                         what="the backend counting the completion as cancelled")


async def test_cancel_request_for_a_command_aborts_the_backend_task(backend, tmp_path):
    before = backend.cancelled("translation")
    async with lsp(backend.url, tmp_path, settings=LONG) as s:
        s.open(URI, TEXT)
        msg_id = str(uuid.uuid4())
        pending = asyncio.ensure_future(s.client.protocol.send_request_async(
            types.WORKSPACE_EXECUTE_COMMAND, types.ExecuteCommandParams(
                command="cato.translate", arguments=[URI, rng(0, 0, 2, 0), "rust"]),
            msg_id=msg_id))
        await running_on_backend(backend)
        s.client.cancel_request(types.CancelParams(id=msg_id))
        with pytest.raises(JsonRpcRequestCancelled):
            await asyncio.wait_for(pending, 5)
        await s.wait_for(lambda: backend.cancelled("translation") > before,
                         what="the backend counting the translation as cancelled")
        assert not s.edits


async def test_cancelling_the_progress_aborts_the_backend_task(backend, tmp_path):
    before = backend.cancelled("translation")
    async with lsp(backend.url, tmp_path, settings=LONG) as s:
        s.open(URI, TEXT)
        pending = asyncio.ensure_future(s.command("cato.translate", URI, rng(0, 0, 2, 0), "go"))
        # Tokens are streaming once the first report arrives.
        reports = await s.wait_for(lambda: [t for t, r in s.progress().items() if any(
            isinstance(x, types.WorkDoneProgressReport) for x in r)], what="a progress report")
        s.client.window_work_done_progress_cancel(
            types.WorkDoneProgressCancelParams(token=reports[0]))
        assert await asyncio.wait_for(pending, 5) is None  # cancelled: no result, no edit
        await s.wait_for(lambda: backend.cancelled("translation") > before,
                         what="the backend counting the translation as cancelled")
        assert not s.edits
        end = s.progress()[reports[0]][-1]
        assert isinstance(end, types.WorkDoneProgressEnd) and end.message == "cancelled"
