"""Property-based fuzzing of LSP positions and document edits: context.py's conversions, the
server's document model (documents.py over pygls), and a real `cato-lsp` fed random
incremental edits and completion requests.

Texts mix what trips position code: astral characters (2 UTF-16 units), CRLF / lone CR,
characters that `str.splitlines` treats as line breaks but LSP does not (form feed, U+2028,
U+0085, ...), NUL, lone surrogates, and the empty document. Positions go past the end of
lines and of the document, and inside surrogate pairs.
"""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lsprotocol import types

from cato_lsp.context import apply_change, line_starts, offset_at, position_at, split_lines
from cato_lsp.documents import LspTextDocument

from .harness import lsp

ENCODINGS = ("utf-16", "utf-8", "utf-32")
PIECES = ["a", "bc", " ", "\t", "é", "中", "\U0001F600", "\U0001D11E", "\n", "\r\n", "\r",
          "\x0c", "\x0b", "\u2028", "\u2029", "\x85", "\x1c", "\x00", "\ud800", "\udfff",
          "def f():\n    return 1\n"]
texts = st.lists(st.sampled_from(PIECES), max_size=25).map("".join)
small = st.integers(min_value=-3, max_value=40)
huge = st.sampled_from([10 ** 6, 2 ** 31 - 1, 2 ** 31, -(2 ** 31), 10 ** 18])
coords = st.one_of(small, small, huge)

FUZZ = settings(max_examples=400, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def units(text: str, encoding: str) -> int:
    if encoding == "utf-32":
        return len(text)
    if encoding == "utf-16":
        return sum(2 if ord(c) > 0xFFFF else 1 for c in text)
    return sum(1 if ord(c) < 0x80 else 2 if ord(c) < 0x800 else 3 if ord(c) < 0x10000
               else 4 for c in text)


def line_content(text: str, line: int) -> tuple[int, int]:
    """Reference: [start, end) of a line's content, lines split at \\n, \\r\\n, \\r only."""
    starts, pos = [0], 0
    while pos < len(text):
        if text[pos] == "\r" and text[pos + 1:pos + 2] == "\n":
            pos += 2
            starts.append(pos)
        elif text[pos] in "\r\n":
            pos += 1
            starts.append(pos)
        else:
            pos += 1
    start = starts[line]
    end = starts[line + 1] if line + 1 < len(starts) else len(text)
    while end > start and text[end - 1] in "\r\n":
        end -= 1
    return start, end


@FUZZ
@given(text=texts, line=coords, character=coords, encoding=st.sampled_from(ENCODINGS))
def test_offset_at_never_raises_and_clamps_into_the_line(text, line, character, encoding):
    off = offset_at(text, line, character, encoding)
    assert 0 <= off <= len(text)
    n_lines = len(line_starts(text))
    if line < 0:
        assert off == 0
    elif line >= n_lines:
        assert off == len(text)
    else:
        start, end = line_content(text, line)
        assert start <= off <= end  # never into the line break or the next line
        # The largest character boundary whose column is <= the asked one.
        assert units(text[start:off], encoding) <= max(character, 0)
        if off < end:
            assert units(text[start:off + 1], encoding) > max(character, 0)


@FUZZ
@given(text=texts, offset=coords, encoding=st.sampled_from(ENCODINGS))
def test_position_at_round_trips_except_inside_line_breaks(text, offset, encoding):
    line, character = position_at(text, offset, encoding)
    assert 0 <= line < len(line_starts(text)) and character >= 0
    back = offset_at(text, line, character, encoding)
    clamped = min(max(offset, 0), len(text))
    assert back == clamped or (back < clamped and set(text[back:clamped]) <= {"\r", "\n"}
                               and len(text[back:clamped]) <= 2)


@FUZZ
@given(text=texts)
def test_split_lines_is_the_lsp_line_structure(text):
    lines = split_lines(text)
    assert "".join(lines) == text
    assert len(lines) == len(line_starts(text)) - (1 if text and text[-1] in "\r\n" else 0) \
        or text == ""
    for ln in lines[:-1]:
        assert ln.endswith(("\n", "\r"))
        assert not any(c in "\r\n" for c in ln.rstrip("\r\n"))


edits = st.tuples(coords, coords, coords, coords, st.sampled_from(["", "x", "\n", "\r\n",
                                                                    "\U0001F600", "\x0c",
                                                                    "é\n中", "\r"]))


@FUZZ
@given(text=texts, changes=st.lists(edits, min_size=1, max_size=6),
       encoding=st.sampled_from(ENCODINGS))
def test_incremental_changes_keep_the_servers_document_equal_to_the_editors(
        text, changes, encoding):
    """The server's document (documents.py) after a series of didChange edits equals the
    reference splice computed with LSP line rules: no edit ever lands on another line."""
    from pygls.workspace.position_codec import PositionCodec

    doc = LspTextDocument("file:///fuzz.py", text, position_codec=PositionCodec(encoding))
    expected = text
    for change in changes:
        l0, c0, l1, c1 = (min(max(v, 0), 2 ** 31 - 1) for v in change[:4])  # LSP uinteger
        new = change[4]
        doc.apply_change(types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=l0, character=c0),
                              end=types.Position(line=l1, character=c1)),
            text=new))
        expected = apply_change(expected, (l0, c0), (l1, c1), new, encoding)
        assert doc.source == expected
    # pygls's helpers read `lines`: they must agree with offset_at on every line start.
    assert [len("".join(doc.lines[:i])) for i in range(len(doc.lines))] == \
        line_starts(doc.source)[:len(doc.lines)]


def test_apply_change_on_a_line_after_a_form_feed():
    """The bug the fuzzing found: pygls counted \\f (and U+2028 ...) as line breaks."""
    text = "a\x0cb\nc\n"
    assert apply_change(text, (1, 0), (1, 0), "X") == "a\x0cb\nXc\n"
    doc = LspTextDocument("file:///f.py", text)
    doc.apply_change(types.TextDocumentContentChangePartial(
        range=types.Range(start=types.Position(line=1, character=0),
                          end=types.Position(line=1, character=0)), text="X"))
    assert doc.source == "a\x0cb\nXc\n"


# -- a real cato-lsp ------------------------------------------------------------------------

async def test_real_server_survives_random_edits_and_completion_requests(backend, tmp_path):
    """60 random incremental edits (positions past the end, surrogates, CR/CRLF, \\f) with
    an inline completion at a random position after each: every request gets an answer, the
    server's document stays equal to ours (the position an answer is anchored at is the
    request's position clamped in the server's copy: it must equal the clamp in ours), and
    the process stays up."""
    rnd = random.Random(7)
    uri = "file:///fuzz/doc.py"
    text = "def f():\n    return 1\n"
    async with lsp(backend.url, tmp_path / "cache") as s:
        s.open(uri, text)
        version, answered = 1, 0
        for step in range(60):
            n_lines = len(line_starts(text))
            l0 = rnd.choice([rnd.randrange(n_lines + 2), 10 ** 6])
            c0 = rnd.choice([rnd.randrange(12), 10 ** 6])
            l1, c1 = (l0, c0) if rnd.random() < 0.5 else (l0 + rnd.randrange(2),
                                                          rnd.randrange(12))
            new = "".join(rnd.choice(PIECES[:16]) for _ in range(rnd.randrange(4)))
            version += 1
            s.client.text_document_did_change(types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(line=l0, character=c0),
                                      end=types.Position(line=l1, character=c1)),
                    text=new)]))
            text = apply_change(text, (l0, c0), (l1, c1), new)
            line = rnd.choice([rnd.randrange(len(line_starts(text)) + 1), 2 ** 31 - 1])
            character = rnd.choice([rnd.randrange(30), 2 ** 31 - 1])
            result = await s.inline(uri, line, character)
            # The server clamps the position in ITS copy of the document; equal to the
            # clamp in ours only while the two documents agree.
            expected = position_at(text, offset_at(text, line, character))
            for item in (result.items if result is not None else []):
                if item.range is not None:
                    answered += 1
                    got = (item.range.start.line, item.range.start.character)
                    assert got == expected, (step, repr(text), line, character, item.range)
        assert answered >= 20, answered
        assert s.client._server.returncode is None  # still running
        errors = [m for m in s.client.log_messages
                  if m.type == types.MessageType.Error and "Traceback" in m.message]
        assert not errors, errors[:2]
