"""context.py: LSP positions (UTF-16 by default) <-> offsets, the token-budgeted window."""

from __future__ import annotations

import pytest

from cato_lsp.context import (
    as_comment,
    fim_window,
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

EMOJI = "\U0001F600"  # outside the BMP: 2 UTF-16 units, 4 UTF-8 bytes, 1 code point


def test_utf16_counts_an_astral_character_as_two_units():
    text = f"s = '{EMOJI}' + x\n"
    # s,space,=,space,' = 5 units; the emoji 2 more; the closing quote is unit 7.
    assert text[offset_at(text, 0, 7)] == "'"
    assert offset_at(text, 0, 7) == 6


def test_position_inside_a_surrogate_pair_moves_to_the_characters_start():
    text = f"a{EMOJI}b"
    assert offset_at(text, 0, 2) == 1  # unit 2 is the emoji's low surrogate
    assert offset_at(text, 0, 3) == 2


@pytest.mark.parametrize("encoding,character", [("utf-8", 5), ("utf-16", 3), ("utf-32", 2)])
def test_other_negotiated_encodings(encoding, character):
    text = f"a{EMOJI}b"
    assert offset_at(text, 0, character, encoding) == 2
    assert position_at(text, 2, encoding) == (0, character)


def test_position_round_trips_through_offsets_on_every_character():
    text = f"def f():\r\n    return '{EMOJI}é'\rx\n\n"
    starts = line_starts(text)
    for off in range(len(text) + 1):
        line, ch = position_at(text, off, starts=starts)
        back = offset_at(text, line, ch, starts=starts)
        # Offsets inside a line break map to the end of that line's content.
        assert back == off or text[back:off] in ("\r", "\n", "\r\n")


def test_line_breaks_are_lf_crlf_and_cr_only():
    text = "a\r\nb\rc\nd\u2028e"
    assert line_starts(text) == [0, 3, 5, 7]  # U+2028 is no LSP line break
    assert offset_at(text, 3, 2) == 9


def test_positions_past_the_end_are_clamped():
    text = "ab\ncd\n"
    assert offset_at(text, 0, 99) == 2  # end of line 0, not into line 1
    assert offset_at(text, 1, 99) == 5
    assert offset_at(text, 7, 0) == len(text)
    assert offset_at(text, 2, 5) == len(text)  # the empty last line
    assert position_at(text, 999) == (2, 0)
    assert offset_at("", 3, 3) == 0


def test_fim_window_keeps_everything_within_budget():
    text = "line1\nline2\n"
    ctx = fim_window(text, 6, prefix_tokens=100, suffix_tokens=100)
    assert (ctx.prefix, ctx.suffix, ctx.truncated) == ("line1\n", "line2\n", False)


def test_fim_window_cuts_at_line_boundaries_within_the_budget():
    text = "".join(f"line {i:03d}\n" for i in range(100))  # 9 chars a line
    offset = text.index("line 050")
    ctx = fim_window(text, offset, prefix_tokens=5, suffix_tokens=5)  # 20 chars each way
    assert ctx.truncated
    assert len(ctx.prefix) <= 20 and len(ctx.suffix) <= 20
    assert ctx.prefix == "line 048\nline 049\n"  # starts at a line start
    assert ctx.suffix == "line 050\nline 051\n"  # ends at a line end


def test_fim_window_on_one_huge_line_cuts_mid_line():
    text = "x" * 10_000
    ctx = fim_window(text, 5000, prefix_tokens=10, suffix_tokens=10)
    assert ctx.prefix == "x" * 40 and ctx.suffix == "x" * 40


def test_tail_within_budget():
    assert tail_within("a\nbb\nccc\n", 2) == "bb\nccc\n"


def test_binary_content_is_detected():
    assert looks_binary("ELF\x00\x01")
    assert not looks_binary("print('hi')\n")


@pytest.mark.parametrize("line,instruction", [
    ("    # sort the list by age", "sort the list by age"),
    ("// parse the header */", "parse the header"),
    ("/* read a file */", "read a file"),
    ("-- all users older than 30", "all users older than 30"),
    ("write a fibonacci function", "write a fibonacci function"),
])
def test_strip_comment(line, instruction):
    assert strip_comment(line) == instruction


def test_comment_leaders_by_language():
    assert line_comment("python") == "#"
    assert line_comment("rust") == "//"
    assert line_comment("sql") == "--"
    assert line_comment("never-heard-of-it") == "//"
    assert as_comment("Adds two.\nReturns a sum.", "python", "    ") == (
        "    # Adds two.\n    # Returns a sum.\n")


def test_reindent_and_fences():
    assert strip_fences("```rust\nfn f() {}\n```") == "fn f() {}"
    assert strip_fences("plain") == "plain"
    assert reindent("  a\n    b\n\n  c", "\t") == "\ta\n\t  b\n\n\tc\n"
