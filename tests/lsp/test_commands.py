"""Commands end to end: code actions offer them; executeCommand streams through $/progress
and ends with one applied, versioned edit."""

from __future__ import annotations

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcException

from .harness import lsp, plain, rng

URI = "file:///work/app.py"
TEXT = ("import os\n"
        "\n"
        "    # return the size of a file in bytes\n"
        "def area(w, h):\n"
        "    return w * h\n")


def the_edit(s) -> types.TextEdit:
    (params,) = s.edits
    (doc_edit,) = params.edit.document_changes
    assert doc_edit.text_document.uri == URI and doc_edit.text_document.version == 1
    (edit,) = doc_edit.edits
    assert edit.range.start == edit.range.end  # an insertion
    return edit


def progress_kinds(s) -> list[str]:
    (reports,) = s.progress().values()
    return [type(r).__name__ for r in reports]


async def test_code_actions_are_offered_on_a_selection(backend, tmp_path):
    async with lsp(backend.url, tmp_path) as s:
        s.open(URI, TEXT)
        actions = await s.code_actions(URI, rng(3, 0, 5, 0))
        commands = {a["command"]["command"]: a for a in actions}
        assert set(commands) == {"cato.generate", "cato.translate", "cato.summarize"}
        assert commands["cato.translate"]["kind"] == "refactor.cato.translate"
        args = commands["cato.translate"]["command"]["arguments"]
        assert args == [URI, rng(3, 0, 5, 0)]  # what executeCommand takes
        # A comment line without selection offers generation from it; code does not.
        on_comment = await s.code_actions(URI, rng(2, 5, 2, 5))
        assert [a["command"]["command"] for a in on_comment] == ["cato.generate"]
        assert await s.code_actions(URI, rng(4, 2, 4, 2)) == []


async def test_generate_from_the_comment_at_the_cursor_inserts_below_it(backend, tmp_path):
    async with lsp(backend.url, tmp_path) as s:
        s.open(URI, TEXT)
        result = plain(await s.command("cato.generate", URI, rng(2, 6, 2, 6)))
        assert result["applied"] is True and result["kind"] == "generation"
        edit = the_edit(s)
        assert edit.range.start == types.Position(line=3, character=0)
        assert edit.new_text == result["text"] and edit.new_text.endswith("\n")
        assert all(ln.startswith("    ") for ln in edit.new_text.splitlines() if ln)
        kinds = progress_kinds(s)
        assert kinds[0] == "WorkDoneProgressBegin" and kinds[-1] == "WorkDoneProgressEnd"
        assert "WorkDoneProgressReport" in kinds
        (reports,) = s.progress().values()
        assert reports[0].cancellable is True


async def test_translate_with_a_target_inserts_the_translation_below(backend, tmp_path):
    async with lsp(backend.url, tmp_path) as s:
        s.open(URI, TEXT)
        result = plain(await s.command("cato.translate", URI, rng(3, 0, 5, 0), "rust"))
        assert result["applied"] and result["kind"] == "translation"
        edit = the_edit(s)
        assert edit.range.start == types.Position(line=5, character=0)
        assert edit.new_text.startswith("# CATO: translated to rust\n")
        assert not s.questions


async def test_translate_without_a_target_asks_which_language(backend, tmp_path):
    async with lsp(backend.url, tmp_path) as s:
        s.open(URI, TEXT)
        s.answer = "go"
        result = plain(await s.command("cato.translate", URI, rng(3, 0, 5, 0)))
        (question,) = s.questions
        assert {a.title for a in question.actions} >= {"rust", "go", "typescript"}
        assert result["applied"] and "translated to go" in the_edit(s).new_text


async def test_dismissing_the_language_question_changes_nothing(backend, tmp_path):
    async with lsp(backend.url, tmp_path) as s:
        s.open(URI, TEXT)
        s.answer = None
        assert await s.command("cato.translate", URI, rng(3, 0, 5, 0)) is None
        assert not s.edits


async def test_summarize_inserts_a_comment_above_the_selection(backend, tmp_path):
    async with lsp(backend.url, tmp_path) as s:
        s.open(URI, TEXT)
        result = plain(await s.command("cato.summarize", URI, rng(3, 0, 5, 0)))
        assert result["applied"] and result["kind"] == "summarization"
        edit = the_edit(s)
        assert edit.range.start == types.Position(line=3, character=0)
        assert all(ln.startswith("# ") for ln in edit.new_text.splitlines())


BAD = [
    ("cato.summarize", [URI], "bad arguments"),
    ("cato.summarize", [URI, {"start": 3}], "bad arguments"),
    ("cato.translate", [URI, rng(3, 0, 5, 0), "rust", "extra"], "bad arguments"),
    ("cato.summarize", ["file:///not/open.py", rng(0, 0, 1, 0)], "not open"),
    ("cato.summarize", [URI, rng(1, 0, 1, 0)], "select the code"),
    ("cato.generate", [URI, rng(1, 0, 1, 0)], "no instruction"),
]


async def test_bad_command_arguments_get_a_clear_error(backend, tmp_path):
    async with lsp(backend.url, tmp_path) as s:
        s.open(URI, TEXT)
        for command, args, problem in BAD:
            with pytest.raises(JsonRpcException, match=problem):
                await s.command(command, *args)
        assert not s.edits
        # The server is still fine afterwards.
        assert (await s.inline(URI, 4, 4)) is not None
