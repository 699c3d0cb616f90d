"""The non-LLM steps (context gathering, validation, code extraction) and the prompt builders."""

from __future__ import annotations

from cato_backend.steps import (
    SYSTEM,
    completion_prompt,
    extract_code,
    gather_context,
    generation_messages,
    repair_messages,
    summarization_messages,
    translation_messages,
    validate,
)
from cato_backend.tokens import CHARS_PER_TOKEN

# -- gather_context ------------------------------------------------------------------------

BUDGET_TOKENS = 50
BUDGET_CHARS = int(BUDGET_TOKENS * CHARS_PER_TOKEN)  # 200


def test_short_context_is_kept_whole():
    ctx = "import os\n\ndef f():\n    return os.getcwd()"
    assert gather_context(ctx, BUDGET_TOKENS) == ctx


def test_long_context_keeps_imports_and_the_end_and_drops_the_middle():
    middle = [f"middle_{i:03d} = {i}" for i in range(50)]
    ctx = "\n".join(["import os", "from typing import Any", *middle, "def near_cursor():"])
    out = gather_context(ctx, BUDGET_TOKENS)
    assert len(out) <= BUDGET_CHARS
    lines = out.splitlines()
    assert lines[:2] == ["import os", "from typing import Any"]
    assert lines[-1] == "def near_cursor():"
    assert lines[-2] == middle[-1]
    assert "middle_000 = 0" not in out


def test_imports_from_other_languages_are_kept():
    ctx = "\n".join(["#include <stdio.h>", "use std::io;", "using System;", *["x"] * 200, "end"])
    out = gather_context(ctx, BUDGET_TOKENS).splitlines()
    assert out[:3] == ["#include <stdio.h>", "use std::io;", "using System;"]
    assert out[-1] == "end"


def test_context_trimming_counts_characters_and_never_splits_one():
    lines = [f"s{i} = '日本語のコメント 🐍{i}'" for i in range(40)]
    ctx = "import ünïcode\n" + "\n".join(lines)
    out = gather_context(ctx, BUDGET_TOKENS)
    assert len(out) <= BUDGET_CHARS
    out.encode("utf-8")  # no lone surrogates or broken characters
    assert out.startswith("import ünïcode\n")
    assert out.endswith(lines[-1])
    assert all(ln in lines for ln in out.splitlines()[1:])  # whole lines only


def test_a_cursor_line_longer_than_the_budget_keeps_its_end():
    ctx = "import os\nshort = 1\nvery_long = " + "x" * 500 + " + 'cursor here'"
    out = gather_context(ctx, BUDGET_TOKENS)
    assert len(out) <= BUDGET_CHARS
    assert out.startswith("import os\n")
    assert out.endswith("x + 'cursor here'")


def test_imports_take_at_most_a_quarter_of_the_budget_in_whole_lines():
    imports = [f"import module_{i}" for i in range(100)]
    out = gather_context("\n".join(imports) + "\nbody()", BUDGET_TOKENS)
    *head, tail = out.splitlines()
    assert len("\n".join(head)) <= BUDGET_CHARS // 4
    assert head == imports[: len(head)] and len(head) >= 2
    assert tail == "body()"


def test_a_megabyte_of_imports_is_trimmed_in_one_pass():
    # Each line was once looked up in a list of all import lines: quadratic, ~30 s here.
    ctx = "".join(f"import module_{i}\n" for i in range(60_000)) + "cursor()"
    out = gather_context(ctx)
    assert out.endswith("\ncursor()")
    assert out.startswith("import module_0\n")


def test_empty_context_gives_empty_context():
    assert gather_context("") == ""


# -- validate ------------------------------------------------------------------------------

def test_valid_python_passes():
    v = validate("def f(x):\n    return x + 1\n", "Python")
    assert (v.ok, v.checked) == (True, True)


def test_python_syntax_error_fails_with_its_line():
    v = validate("def f(x):\n    return x +\n", " python3 ")
    assert (v.ok, v.checked) == (False, True)
    assert v.message.startswith("SyntaxError") and "line 2" in v.message


def test_empty_python_answer_fails():
    v = validate("\n  \n", "python")
    assert (v.ok, v.checked, v.message) == (False, True, "empty answer")


def test_degenerate_python_that_exhausts_the_parser_fails_instead_of_raising():
    for code in ("-" * 20_000 + "1", "x = " + "not " * 5_000 + "1", "a\x00b"):
        v = validate(code, "py")
        assert (v.ok, v.checked) == (False, True)


def test_json_is_checked():
    assert validate('{"a": [1, 2]}', "json").ok
    bad = validate('{"a": }', "JSON")
    assert (bad.ok, bad.checked) == (False, True) and bad.message.startswith("JSON error")
    assert not validate("[" * 100_000, "json").ok


def test_unknown_language_is_not_checked():
    v = validate("fn main() {", "rust")
    assert (v.ok, v.checked) == (True, False)
    assert "rust" in v.message


def test_empty_answer_in_an_unknown_language_fails():
    assert validate("   ", "rust") == validate("", "haskell") == validate("", "rust")
    assert not validate("", "rust").ok


# -- extract_code --------------------------------------------------------------------------

def test_extract_code_takes_the_first_fenced_block():
    text = "Here you go:\n```python\ndef f():\n    pass\n```\nand\n```\nother\n```"
    assert extract_code(text) == "def f():\n    pass"


def test_extract_code_without_fences_returns_the_text():
    assert extract_code("\nx = 1\n") == "x = 1"


def test_extract_code_of_an_unterminated_fence_takes_the_rest():
    assert extract_code("```js\nlet x = 1;\nlet y") == "let x = 1;\nlet y"


def test_extract_code_keeps_indentation_inside_the_fence():
    assert extract_code("```\n    indented()\n```") == "    indented()"


# -- prompts -------------------------------------------------------------------------------

def test_completion_prompt_fills_the_template_without_reading_braces_in_the_code():
    fim = "<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>"
    out = completion_prompt(fim, prefix="d = {'a': 1}\nf'{x}'", suffix="}")
    assert out == "<fim_prefix>d = {'a': 1}\nf'{x}'<fim_suffix>}<fim_middle>"
    assert completion_prompt("{prefix}", "def f(", "") == "def f("


def test_generation_messages_include_context_only_when_given():
    with_ctx = generation_messages("parse a date", "python", "import datetime")
    assert [m["role"] for m in with_ctx] == ["system", "user"]
    assert with_ctx[0]["content"] == SYSTEM
    assert "```python\nimport datetime\n```" in with_ctx[1]["content"]
    assert "parse a date" in with_ctx[1]["content"]
    without = generation_messages("parse a date", "python", "")
    assert "Code around the cursor" not in without[1]["content"]


def test_translation_repair_and_summarization_prompts_carry_their_inputs():
    t = translation_messages("print(1)", "python", "rust")[1]["content"]
    assert "```python\nprint(1)\n```" in t and "rust" in t
    r = repair_messages("fn main() {", "rust", "unclosed brace")[1]["content"]
    assert "unclosed brace" in r and "```rust\nfn main() {\n```" in r
    s = summarization_messages("def f(): pass", "python")[1]["content"]
    assert "```python\ndef f(): pass\n```" in s and "Summarize" in s
