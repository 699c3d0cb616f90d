"""protocol.py: the settings schema and the command argument shapes editors rely on."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cato_lsp.protocol import CommandArgs, LastTask, Settings, StatusParams, merge_settings


def test_settings_merge_section_by_section_in_camel_case():
    s = merge_settings(Settings(backend_url="http://cli:1"),
                       {"backendUrl": "http://init:2", "sla": {"completion": 300}},
                       {"sla": {"translation": 30000}, "token": "t"})
    assert s.backend_url == "http://init:2" and s.token == "t"
    assert (s.sla.completion, s.sla.translation, s.sla.summarization) == (300, 30000, 8000)


@pytest.mark.parametrize("bad", [
    {"sla": {"completion": 0}},  # below the backend's 10 ms
    {"sla": {"completion": "fast"}},
    {"backendUrl": "ftp://x"},
    {"slaa": {}},  # a typo is an error, not silently ignored
    {"debounce": {"minMs": -1}},
])
def test_bad_settings_are_rejected_with_the_field(bad):
    with pytest.raises(ValidationError):
        merge_settings(Settings(), bad)


def test_command_arguments_shapes():
    rng = {"start": {"line": 0, "character": 0}, "end": {"line": 1, "character": 0}}
    a = CommandArgs.from_arguments("cato.translate", ["file:///a.py", rng, "rust"])
    assert a.target_language == "rust" and a.range.end.line == 1
    assert CommandArgs.from_arguments("cato.summarize", ["file:///a.py", rng]).target_language is None
    with pytest.raises(ValueError):
        CommandArgs.from_arguments("cato.summarize", ["file:///a.py", rng, "rust"])
    with pytest.raises(ValidationError):
        CommandArgs.from_arguments("cato.generate", ["file:///a.py", {"start": 1}])


def test_status_payload_uses_last_task_key():
    wire = StatusParams(state="ok", backend="http://b",
                        last_task=LastTask(kind="completion", cached=True)).wire()
    assert wire["lastTask"]["cached"] is True and wire["lastTask"]["met"] is None
