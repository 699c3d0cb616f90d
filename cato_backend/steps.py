"""The non-LLM steps of task graphs and the prompts of the LLM steps.

Plain functions of their inputs: easy to test, and the same in the server and the simulator.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass

from .tokens import CHARS_PER_TOKEN

CONTEXT_BUDGET_TOKENS = 1024
SYSTEM = "You are a precise coding assistant. Answer with what is asked and nothing else."


# -- gather_context ------------------------------------------------------------------------

def gather_context(context: str, budget_tokens: int = CONTEXT_BUDGET_TOKENS) -> str:
    """Keep what a generation prompt needs from the surrounding code within a token budget:
    the import lines (they name the libraries in play), then the lines nearest the cursor
    (the end of the context), dropping the middle first."""
    budget = int(budget_tokens * CHARS_PER_TOKEN)
    lines = context.splitlines()
    imports = [ln for ln in lines if re.match(r"\s*(import|from\s+\S+\s+import|#include|use|using)\b", ln)]
    import_set = set(imports)  # a list here made a context of many imports quadratic
    head = "\n".join(imports)
    if len(head) > budget // 4:  # whole import lines only: half an import is noise
        head = head[: budget // 4 + 1].rpartition("\n")[0]
    tail: list[str] = []
    size = len(head)
    for ln in reversed(lines):
        if ln in import_set:
            continue
        if size + len(ln) + 1 > budget:
            if not tail and (room := budget - size - 1) > 0:  # a long cursor line: keep its end
                tail.append(ln[-room:])
            break
        tail.append(ln)
        size += len(ln) + 1
    return "\n".join(x for x in (head, "\n".join(reversed(tail))) if x)


# -- validate ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Validation:
    ok: bool
    checked: bool  # False when we have no parser for the language
    message: str


_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.S)


def extract_code(text: str) -> str:
    """The code inside the first markdown fence, or the text itself when there is none."""
    m = _FENCE.search(text)
    return (m.group(1) if m else text).strip("\n")


def validate(code: str, language: str) -> Validation:
    lang = language.strip().lower()
    if not code.strip():  # before the parsers: an empty module is valid Python
        return Validation(False, True, "empty answer")
    if lang in ("python", "py", "python3"):
        try:
            ast.parse(code)
        except SyntaxError as e:
            return Validation(False, True, f"SyntaxError: {e.msg} (line {e.lineno})")
        except (ValueError, RecursionError, MemoryError) as e:  # e.g. a degenerate `-----...1`
            return Validation(False, True, f"does not parse as Python: {type(e).__name__}")
        return Validation(True, True, "parses as Python")
    if lang == "json":
        try:
            json.loads(code)
        except json.JSONDecodeError as e:
            return Validation(False, True, f"JSON error: {e.msg} (line {e.lineno})")
        except RecursionError:
            return Validation(False, True, "JSON error: nested too deeply")
        return Validation(True, True, "parses as JSON")
    return Validation(True, False, f"no parser for {language}; not checked")


# -- prompts -------------------------------------------------------------------------------

def completion_prompt(template: str, prefix: str, suffix: str) -> str:
    return template.format(prefix=prefix, suffix=suffix)


def _chat(user: str) -> tuple[dict, ...]:
    return ({"role": "system", "content": SYSTEM}, {"role": "user", "content": user})


def generation_messages(instruction: str, language: str, context: str) -> tuple[dict, ...]:
    ctx = f"Code around the cursor:\n```{language}\n{context}\n```\n\n" if context else ""
    return _chat(f"{ctx}Write {language} code that does this: {instruction}\n"
                 f"Answer with the code only, in one ```{language} block.")


def translation_messages(code: str, source: str, target: str) -> tuple[dict, ...]:
    return _chat(f"Translate this {source} code to {target}.\n```{source}\n{code}\n```\n"
                 f"Answer with the {target} code only, in one ```{target} block.")


def repair_messages(code: str, target: str, problem: str) -> tuple[dict, ...]:
    return _chat(f"This {target} code is invalid ({problem}). Fix it.\n```{target}\n{code}\n```\n"
                 f"Answer with the corrected {target} code only, in one ```{target} block.")


def summarization_messages(code: str, language: str) -> tuple[dict, ...]:
    return _chat(f"Summarize what this {language} code does in one or two sentences, "
                 f"suitable as its docstring.\n```{language}\n{code}\n```")
