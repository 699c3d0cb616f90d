"""The result cache persists across LSP restarts; hits are marked and not SLA results."""

from __future__ import annotations

from lsprotocol import types

from .harness import lsp, metric, plain, rng

URI = "file:///work/app.py"
TEXT = "def area(w, h):\n    return w * h\n\n\ndef perimeter(w, h):\n    "


def served(backend, kind: str) -> float:
    return sum(metric(backend.url, "cato_tasks_total", {"kind": kind, "outcome": o})
               for o in ("met", "violated"))


async def test_cache_hit_after_restart_is_marked_and_skips_the_backend(backend, tmp_path):
    cache = tmp_path / "cache"
    async with lsp(backend.url, cache) as s:
        s.open(URI, TEXT)
        first = await s.inline(URI, 5, 4)
        assert first is not None
        await s.wait_for(lambda: [x for x in s.statuses if x.get("lastTask")])
        assert s.statuses[-1]["lastTask"]["cached"] is False
        summary = plain(await s.command("cato.summarize", URI, rng(0, 0, 2, 0)))
        assert summary["cached"] is False and summary["sla_met"] is True

    completions, summaries = served(backend, "completion"), served(backend, "summarization")
    async with lsp(backend.url, cache) as s:  # a new process, the same cache directory
        s.open(URI, TEXT)
        again = await s.inline(URI, 5, 4)
        assert again is not None and again.items[0].insert_text == first.items[0].insert_text
        last = await s.wait_for(lambda: [x for x in s.statuses if x.get("lastTask")])
        task = last[-1]["lastTask"]
        assert task["cached"] is True and task["met"] is None  # not an SLA result
        summary = plain(await s.command("cato.summarize", URI, rng(0, 0, 2, 0)))
        assert summary["cached"] is True and summary["applied"] is True
        assert summary["sla_met"] is None
    assert served(backend, "completion") == completions  # the backend did not see them
    assert served(backend, "summarization") == summaries


async def test_completion_item_detail_says_cached(backend, tmp_path):
    cache = tmp_path / "cache"
    params = types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=URI),
                                    position=types.Position(line=5, character=4))
    async with lsp(backend.url, cache, inline=False) as s:
        s.open(URI, TEXT + "# items\n")
        first = await s.client.text_document_completion_async(params)
        assert "cached" not in first.items[0].detail
        second = await s.client.text_document_completion_async(params)
        assert second.items[0].detail == "CATO (cached)"


async def test_disabled_cache_always_asks_the_backend(backend, tmp_path):
    async with lsp(backend.url, tmp_path, settings={"cache": {"enabled": False}}) as s:
        s.open(URI, TEXT + "# no cache\n")
        for _ in range(2):
            assert await s.inline(URI, 5, 4)
            last = await s.wait_for(lambda: [x for x in s.statuses if x.get("lastTask")])
            assert last[-1]["lastTask"]["cached"] is False
