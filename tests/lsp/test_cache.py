"""cache.py: keys, persistence across reopen, age and size bounds, storage failures."""

from __future__ import annotations

import os

from cato_lsp.cache import ResultCache, cache_key, default_cache_dir

BODY = {"kind": "completion", "prefix": "def f(", "suffix": "", "language": "python",
        "sla_ms": 500, "request_id": "abc"}


def test_key_depends_on_model_kind_and_context_but_not_sla_or_request_id():
    k = cache_key("m", "completion", BODY)
    assert k == cache_key("m", "completion", {**BODY, "sla_ms": 100, "request_id": "zz"})
    assert k != cache_key("other", "completion", BODY)
    assert k != cache_key("m", "generation", BODY)
    assert k != cache_key("m", "completion", {**BODY, "prefix": "def g("})
    assert k != cache_key("m", "completion", {**BODY, "max_tokens": 8})


def test_entries_survive_reopening(tmp_path):
    c = ResultCache(tmp_path, 10 << 20, 3600)
    c.put("k", "text", ttft_ms=10, e2e_ms=40)
    c.remember_models("http://b", {"completion": "m"})
    c.close()
    c = ResultCache(tmp_path, 10 << 20, 3600)
    hit = c.get("k")
    assert hit is not None and hit.text == "text" and hit.e2e_ms == 40
    assert c.known_models("http://b") == {"completion": "m"}
    c.close()


def test_old_entries_are_misses(tmp_path):
    now = [1000.0]
    c = ResultCache(tmp_path, 10 << 20, max_age_s=60, clock=lambda: now[0])
    c.put("k", "text")
    now[0] += 59
    assert c.get("k") is not None
    now[0] += 2
    assert c.get("k") is None
    c.close()


def test_size_is_bounded_by_evicting_the_least_recently_used(tmp_path):
    limit = 256 * 1024
    c = ResultCache(tmp_path, limit, 3600)
    c.put("first", "x")
    for i in range(300):
        c.put(f"k{i}", f"{i:04d}" * 1000)  # 4 KB each, 1.2 MB in all
    assert c.volume() < 2 * limit  # diskcache culls on write; SQLite pages add a little
    assert c.get("first") is None
    assert c.get("k299") is not None
    c.close()


def test_unusable_directory_means_no_cache_not_an_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    logs = []
    c = ResultCache(blocker / "cache", 1 << 20, 60, log=logs.append)
    assert not c.available and logs
    c.put("k", "v")
    assert c.get("k") is None


def test_default_dir_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CATO_LSP_CACHE_DIR", str(tmp_path / "here"))
    assert default_cache_dir() == tmp_path / "here"
    monkeypatch.delenv("CATO_LSP_CACHE_DIR")
    assert str(default_cache_dir()).endswith(os.path.join(".cache", "cato", "lsp"))


async def test_deferred_writes_are_visible_at_once_and_flushed_on_close(tmp_path):
    c = ResultCache(tmp_path, 10 << 20, 3600)
    c.put_later("k", "soon", delay_s=60)
    assert c.get("k").text == "soon"  # pending, already a hit
    c.close()  # flushes
    c = ResultCache(tmp_path, 10 << 20, 3600)
    assert c.get("k").text == "soon"
    c.close()
