"""Open documents with LSP line semantics (pygls glue over context.py's pure functions).

pygls's TextDocument splits lines with `str.splitlines`, which also breaks at form feeds,
vertical tabs, U+001C..U+001E, U+0085, U+2028 and U+2029. Editors count only "\\n", "\\r\\n"
and "\\r", so after an incremental `didChange` below such a character pygls applied the edit
to the wrong line and the server's copy of the document silently diverged from the editor's
(found by tests/lsp/test_fuzz_positions.py). These documents split and edit the LSP way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lsprotocol import types
from pygls.workspace import TextDocument, Workspace

from .context import apply_change, split_lines


class LspTextDocument(TextDocument):
    @property
    def lines(self) -> Sequence[str]:  # what pygls's position helpers index
        return tuple(split_lines(self.source)) if self.source else ()

    def _apply_incremental_change(self, change: types.TextDocumentContentChangePartial) -> None:
        r = change.range
        encoding = str(getattr(self.position_codec.encoding, "value",
                               self.position_codec.encoding) or "utf-16")
        self._source = apply_change(self.source, (r.start.line, r.start.character),
                                    (r.end.line, r.end.character), change.text, encoding)


def use_lsp_documents(workspace: Workspace) -> None:
    """Make `workspace` create LspTextDocument for every document opened from now on."""

    def create(doc_uri: str, source: str | None = None, version: int | None = None,
               language_id: str | None = None, **_: Any) -> TextDocument:
        return LspTextDocument(doc_uri, source=source, version=version,
                               language_id=language_id, sync_kind=workspace._sync_kind,
                               position_codec=workspace._position_codec)

    workspace._create_text_document = create  # type: ignore[method-assign]
