"""`textDocument/completion` for clients without inline completion, and bad input."""

from __future__ import annotations

import asyncio
import time

from lsprotocol import types

from .harness import lsp, running_on_backend

URI = "file:///work/demo.py"
TEXT = "import math\n\n\ndef is_prime(n: int) -> bool:\n    \n"


def completion_params(uri: str, line: int, character: int) -> types.CompletionParams:
    return types.CompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked))


async def test_client_without_inline_completion_gets_a_completion_item(backend, tmp_path):
    async with lsp(backend.url, tmp_path, inline=False) as s:
        s.open(URI, TEXT)
        result = await s.client.text_document_completion_async(completion_params(URI, 4, 4))
        assert isinstance(result, types.CompletionList) and result.is_incomplete
        (item,) = result.items
        assert item.text_edit.new_text.strip()
        assert item.text_edit.range.start == types.Position(line=4, character=4)
        assert item.detail.startswith("CATO") and "cached" not in item.detail


async def test_client_with_inline_completion_gets_no_duplicate_items(backend, tmp_path):
    async with lsp(backend.url, tmp_path) as s:
        s.open(URI, TEXT)
        result = await s.client.text_document_completion_async(completion_params(URI, 4, 4))
        assert result is None or not result.items


async def test_unknown_documents_and_odd_positions(backend, tmp_path):
    async with lsp(backend.url, tmp_path) as s:
        # A document the client never opened: empty, no error.
        assert await s.inline("file:///never/opened.py", 0, 0) is None
        # A position past the end is clamped to the end of the document.
        s.open(URI, "def f():\n    return")
        result = await s.inline(URI, 99, 99)
        end = types.Position(line=1, character=10)
        assert result is not None and result.items[0].range == types.Range(start=end, end=end)
        # After an astral-plane character the UTF-16 position is kept as the client sent it.
        s.open("file:///work/emoji.py", "s = '\U0001F600'\nt = ")
        result = await s.inline("file:///work/emoji.py", 0, 8)  # 5 + 2 + 1 units
        assert result is not None
        assert result.items[0].range.start == types.Position(line=0, character=8)


async def test_binary_and_huge_documents_get_no_completion(backend, tmp_path):
    async with lsp(backend.url, tmp_path,
                   settings={"context": {"maxDocumentChars": 10_000}}) as s:
        s.open("file:///work/blob.bin", "ELF\x00\x01\x02 junk", language="plaintext")
        assert await s.inline("file:///work/blob.bin", 0, 5) is None
        s.open("file:///work/huge.py", "x = 1\n" * 5000)
        assert await s.inline("file:///work/huge.py", 10, 0) is None
        logs = " ".join(m.message for m in s.client.log_messages)
        assert "binary" in logs and "maxDocumentChars" in logs


async def test_newer_request_for_the_same_document_cancels_the_older(backend, tmp_path):
    before = backend.cancelled("completion")
    # 250 tokens: about 1 s on the fast profile, so the first is surely still running.
    async with lsp(backend.url, tmp_path, settings={"maxTokens": {"completion": 250}}) as s:
        s.open(URI, TEXT)
        first = asyncio.ensure_future(s.inline(URI, 4, 4, invoked=False))
        await running_on_backend(backend)
        s.change(URI, TEXT + "x")
        t0 = time.monotonic()
        second = await s.inline(URI, 4, 4, invoked=False)
        older = await first
        assert older is None or not older.items  # superseded: empty, not an error
        assert second is not None and second.items
        assert time.monotonic() - t0 < 10
    await s.wait_for(lambda: backend.cancelled("completion") > before,
                     what="the backend counting the superseded completion as cancelled")
