"""Document text around the cursor: LSP positions <-> string offsets, and the token-budgeted
fill-in-the-middle window. Pure functions, no pygls.

LSP positions count `character` in the negotiated encoding's code units: UTF-16 by default
(an astral-plane character such as an emoji is 2 units), or UTF-8 / UTF-32. Lines end at
"\\n", "\\r\\n" or "\\r" (not at the other separators `str.splitlines` knows). A position past
the end of its line or of the document is clamped to that end, as the spec asks; one
inside a UTF-16 surrogate pair (or a UTF-8 sequence) is moved to the character's start.
"""

from __future__ import annotations

import itertools
import re
import textwrap
from dataclasses import dataclass

CHARS_PER_TOKEN = 4  # the backend's estimate (cato_backend/tokens.py)

_EOL = re.compile(r"\r\n|\r|\n")


def _units(ch: str, encoding: str) -> int:
    cp = ord(ch)
    if encoding == "utf-32":
        return 1
    if encoding == "utf-8":
        return 1 if cp < 0x80 else 2 if cp < 0x800 else 3 if cp < 0x10000 else 4
    return 2 if cp > 0xFFFF else 1  # utf-16


def line_starts(text: str) -> list[int]:
    """Offsets where each line begins (always at least one line)."""
    return [0] + [m.end() for m in _EOL.finditer(text)]


def _line_end(text: str, starts: list[int], line: int) -> int:
    """Offset of the end of `line`'s content (before its line break)."""
    if line + 1 < len(starts):
        end = starts[line + 1]
        if text[end - 2:end] == "\r\n":
            return end - 2
        return end - 1
    return len(text)


def offset_at(text: str, line: int, character: int, encoding: str = "utf-16",
              starts: list[int] | None = None) -> int:
    """String offset of an LSP position, clamped to the document."""
    starts = starts if starts is not None else line_starts(text)
    if line < 0:
        return 0
    if line >= len(starts):
        return len(text)
    start, end = starts[line], _line_end(text, starts, line)
    if encoding == "utf-32":
        return min(start + max(character, 0), end)
    units = 0
    i = start
    while i < end:
        u = _units(text[i], encoding)
        if units + u > character:
            break  # inside this character (e.g. half a surrogate pair): its start
        units += u
        i += 1
    return i


def position_at(text: str, offset: int, encoding: str = "utf-16",
                starts: list[int] | None = None) -> tuple[int, int]:
    """LSP (line, character) of a string offset (clamped)."""
    starts = starts if starts is not None else line_starts(text)
    offset = min(max(offset, 0), len(text))
    lo, hi = 0, len(starts) - 1
    while lo < hi:  # last line start <= offset
        mid = (lo + hi + 1) // 2
        if starts[mid] <= offset:
            lo = mid
        else:
            hi = mid - 1
    start = starts[lo]
    offset = min(offset, _line_end(text, starts, lo))
    if encoding == "utf-32":
        return lo, offset - start
    return lo, sum(_units(c, encoding) for c in text[start:offset])


def split_lines(text: str) -> list[str]:
    """The document's lines with their line breaks, split the LSP way ("\\n", "\\r\\n",
    "\\r" only; `str.splitlines` also splits at form feeds, U+2028 and others, which
    editors do not count, so line numbers would disagree). The last line may be empty only
    when the text is empty."""
    starts = line_starts(text)
    lines = [text[a:b] for a, b in itertools.pairwise(starts)]
    if starts[-1] < len(text) or not lines:
        lines.append(text[starts[-1]:])
    return lines


def apply_change(text: str, start: tuple[int, int], end: tuple[int, int], new_text: str,
                 encoding: str = "utf-16") -> str:
    """The text after an incremental `didChange` that replaces the range start..end (LSP
    (line, character) positions in `encoding`) by `new_text`. Positions are clamped like
    `offset_at`; a reversed range is taken as the range between its two ends."""
    starts = line_starts(text)
    a = offset_at(text, start[0], start[1], encoding, starts)
    b = offset_at(text, end[0], end[1], encoding, starts)
    if b < a:
        a, b = b, a
    return text[:a] + new_text + text[b:]


def looks_binary(text: str) -> bool:
    """NUL characters do not occur in source code; they mean a binary file was opened."""
    return "\x00" in text


@dataclass(frozen=True)
class FimContext:
    prefix: str
    suffix: str
    truncated: bool  # the budget cut something off


def fim_window(text: str, offset: int, prefix_tokens: int, suffix_tokens: int) -> FimContext:
    """Prefix and suffix around `offset`, each within its token budget. The cut is moved to
    a line boundary (whole lines read better to a model) unless that would leave nothing."""
    max_prefix = prefix_tokens * CHARS_PER_TOKEN
    max_suffix = suffix_tokens * CHARS_PER_TOKEN
    lo = max(0, offset - max_prefix)
    truncated = lo > 0
    if lo > 0:
        nl = text.find("\n", lo, offset)
        if nl != -1:
            lo = nl + 1
    hi = min(len(text), offset + max_suffix)
    if hi < len(text):
        truncated = True
        nl = text.rfind("\n", offset, hi)
        if nl != -1:
            hi = nl + 1
    return FimContext(prefix=text[lo:offset], suffix=text[offset:hi], truncated=truncated)


def tail_within(text: str, tokens: int) -> str:
    """The end of `text` within a token budget, starting at a line start when possible."""
    return fim_window(text, len(text), tokens, 0).prefix


def head_within(text: str, tokens: int) -> str:
    return fim_window(text, 0, 0, tokens).suffix if tokens > 0 else ""


# -- languages ---------------------------------------------------------------------------

_HASH = {"python", "ruby", "shellscript", "shell", "bash", "sh", "zsh", "perl", "r", "yaml",
         "toml", "dockerfile", "makefile", "cmake", "powershell", "elixir", "julia", "nim",
         "coffeescript", "graphql", "properties", "ini"}
_DASH = {"sql", "haskell", "lua", "ada", "elm", "purescript", "vhdl"}
_SEMI = {"lisp", "clojure", "scheme", "racket", "commonlisp", "elisp", "asm", "nasm"}
_PERCENT = {"latex", "tex", "erlang", "matlab", "prolog"}


def line_comment(language_id: str) -> str:
    """The line-comment leader of an LSP language id ("//" when unknown: C-like)."""
    lang = language_id.lower()
    if lang in _HASH:
        return "#"
    if lang in _DASH:
        return "--"
    if lang in _SEMI:
        return ";;"
    if lang in _PERCENT:
        return "%"
    if lang in ("vb", "vba"):
        return "'"
    return "//"


_COMMENT_LEAD = re.compile(r"^\s*(?:#+|//+|--+|;+|%+|/\*+|\*+(?!/)|<!--|'|\"\"\"|''')\s?")
_COMMENT_TAIL = re.compile(r"\s*(?:\*/|-->|\"\"\"|''')\s*$")


def strip_comment(line: str) -> str:
    """The instruction inside a comment line ("# sort the list" -> "sort the list");
    a line that is not a comment is returned stripped."""
    return _COMMENT_TAIL.sub("", _COMMENT_LEAD.sub("", line, count=1)).strip()


def indentation(line: str) -> str:
    return line[:len(line) - len(line.lstrip(" \t"))]


_FENCE = re.compile(r"^\s*```[^\n]*\n(.*?)\n?```\s*$", re.DOTALL)


def strip_fences(text: str) -> str:
    """Code from a model answer that wrapped it in a Markdown fence."""
    m = _FENCE.match(text)
    return m.group(1) if m else text


def reindent(code: str, indent: str) -> str:
    """`code` dedented, then every non-blank line indented by `indent`; ends with a newline."""
    code = textwrap.dedent(code.strip("\n"))
    lines = [(indent + ln) if ln.strip() else "" for ln in code.split("\n")]
    return "\n".join(lines) + "\n"


def as_comment(text: str, language_id: str, indent: str) -> str:
    """`text` as line comments of the language, one per line, ending with a newline."""
    lead = line_comment(language_id)
    lines = [ln.rstrip() for ln in text.strip().split("\n")] or [""]
    return "".join(f"{indent}{lead} {ln}".rstrip() + "\n" for ln in lines)
