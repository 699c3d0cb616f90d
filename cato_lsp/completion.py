"""Inline completion (`textDocument/inlineCompletion`, LSP 3.18) and the same completion as a
`textDocument/completion` item for clients without inline completion.

One request per document is alive: a newer one (the user typed on) cancels the older one,
whose HTTP call is closed so the backend aborts it, and the older request answers empty.
Automatic triggers wait an adaptive debounce first (debounce.py); a cache hit is answered at
once. A completion is shown only whole (TTFT-critical task, but ghost text cannot grow under
the cursor), so the editor waits for the backend's `done`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lsprotocol import types

from .backend_client import BackendError
from .classify import Action
from .context import fim_window, looks_binary, offset_at, position_at
from .debounce import AdaptiveDebounce

if TYPE_CHECKING:
    from .server import CatoLanguageServer
    from .tasks import Outcome


@dataclass(frozen=True)
class Completion:
    text: str
    position: types.Position  # where it goes (the request's position, clamped)
    cached: bool
    ttft_ms: float | None = None


class CompletionProvider:
    def __init__(self, ls: CatoLanguageServer) -> None:
        self.ls = ls
        self.debounce = AdaptiveDebounce()
        self._inflight: dict[str, asyncio.Task] = {}  # uri -> the live request's work

    def configure(self) -> None:
        d = self.ls.settings.debounce
        self.debounce.enabled, self.debounce.min_ms = d.enabled, d.min_ms
        self.debounce.max_ms, self.debounce.factor = d.max_ms, d.factor

    async def inline(self, params: types.InlineCompletionParams) -> types.InlineCompletionList | None:
        explicit = params.context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        c = await self._latest_only(params.text_document.uri, params.position, explicit,
                                    Action.INLINE_COMPLETION)
        if c is None:
            return None
        rng = types.Range(start=c.position, end=c.position)
        return types.InlineCompletionList(
            items=[types.InlineCompletionItem(insert_text=c.text, range=rng)])

    async def items(self, params: types.CompletionParams) -> types.CompletionList | None:
        # A client with inline completion gets ghost text from `inline`; the same text as an
        # item would show twice.
        if self.ls.client_supports_inline():
            return None
        ctx = params.context
        explicit = ctx is None or ctx.trigger_kind == types.CompletionTriggerKind.Invoked
        c = await self._latest_only(params.text_document.uri, params.position, explicit,
                                    Action.COMPLETION_ITEM)
        if c is None:
            return types.CompletionList(is_incomplete=True, items=[])
        first = next((ln for ln in c.text.split("\n") if ln.strip()), c.text).strip()
        label = first if len(first) <= 60 else first[:57] + "..."
        detail = "CATO (cached)" if c.cached else (
            "CATO" if c.ttft_ms is None else f"CATO ({c.ttft_ms:.0f} ms to first token)")
        item = types.CompletionItem(
            label=label, kind=types.CompletionItemKind.Text, detail=detail,
            documentation=c.text, sort_text="0000", filter_text=label,
            insert_text_format=types.InsertTextFormat.PlainText,
            text_edit=types.TextEdit(range=types.Range(start=c.position, end=c.position),
                                     new_text=c.text),
            data={"cato": True, "cached": c.cached})
        # Incomplete: typing on asks again instead of filtering a stale completion.
        return types.CompletionList(is_incomplete=True, items=[item])

    async def _latest_only(self, uri: str, position: types.Position, explicit: bool,
                           action: Action) -> Completion | None:
        old = self._inflight.get(uri)
        if old is not None and not old.done():
            old.cancel()  # superseded: its HTTP call is closed, the backend aborts it
        work = asyncio.create_task(self._complete(uri, position, explicit, action))
        self._inflight[uri] = work
        try:
            return await work
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise  # $/cancelRequest for this request: pygls answers RequestCancelled
            return None  # superseded by a newer request: an empty answer
        finally:
            if self._inflight.get(uri) is work:
                del self._inflight[uri]

    async def _complete(self, uri: str, position: types.Position, explicit: bool,
                        action: Action) -> Completion | None:
        ls = self.ls
        doc = ls.document(uri)
        if doc is None:
            ls.log(f"completion for a document that is not open: {uri}", debug=True)
            return None
        text = doc.source
        limits = ls.settings.context
        if len(text) > limits.max_document_chars:
            ls.log_once(f"big:{uri}", f"no completions in {uri}: {len(text)} characters is "
                        f"over context.maxDocumentChars ({limits.max_document_chars})")
            return None
        encoding = ls.position_encoding()
        offset = offset_at(text, position.line, position.character, encoding)
        fim = fim_window(text, offset, limits.prefix_tokens, limits.suffix_tokens)
        if looks_binary(fim.prefix) or looks_binary(fim.suffix):
            ls.log_once(f"binary:{uri}", f"no completions in {uri}: it looks binary (NUL "
                        "characters)")
            return None
        if not fim.prefix.strip() and not fim.suffix.strip():
            return None  # nothing to complete from
        line, character = position_at(text, offset, encoding)
        where = types.Position(line=line, character=character)
        body = {"prefix": fim.prefix, "suffix": fim.suffix,
                "language": (doc.language_id or "plaintext")[:64]}
        task, body, key = await ls.tasks.prepare(action, body)
        hit = ls.tasks.lookup(task, key)
        if hit is not None:
            return _completion(hit, where)
        delay = self.debounce.delay_ms(explicit)
        if delay > 0:
            await asyncio.sleep(delay / 1000)  # a newer keystroke cancels us here
        t0 = time.perf_counter()
        try:
            out = await ls.tasks.run(task, body, key,
                                     timeout_s=ls.settings.timeouts.completion_ms / 1000)
        except BackendError:
            return None  # logged and reflected in cato/status; ghost text just stays away
        self.debounce.observe((time.perf_counter() - t0) * 1000)
        return _completion(out, where)


def _completion(out: Outcome, where: types.Position) -> Completion | None:
    text = out.text.rstrip()  # trailing blank lines/spaces are noise in ghost text
    if not text.strip():
        return None
    return Completion(text=text, position=where, cached=out.cached,
                      ttft_ms=out.result.ttft_ms if out.result else None)
