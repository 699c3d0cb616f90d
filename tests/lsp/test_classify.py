"""classify.py: editor action -> task kind, SLA metric and SLA."""

from __future__ import annotations

import pytest

from cato_lsp.classify import Action, classify
from cato_lsp.protocol import SlaSettings


@pytest.mark.parametrize("action,kind,metric", [
    (Action.INLINE_COMPLETION, "completion", "ttft"),
    (Action.COMPLETION_ITEM, "completion", "ttft"),
    ("cato.generate", "generation", "ttft"),
    ("cato.translate", "translation", "e2e"),
    ("cato.summarize", "summarization", "e2e"),
])
def test_each_action_has_its_kind_and_sla_metric(action, kind, metric):
    task = classify(action, SlaSettings())
    assert (task.kind, task.metric) == (kind, metric)


def test_sla_comes_from_the_settings():
    sla = SlaSettings(completion=123, translation=45_000)
    assert classify(Action.INLINE_COMPLETION, sla).sla_ms == 123
    assert classify(Action.TRANSLATE, sla).sla_ms == 45_000
    assert classify(Action.SUMMARIZE, sla).sla_ms == 8000  # the default


def test_only_completion_is_not_streamed_to_the_editor():
    assert not classify(Action.INLINE_COMPLETION, SlaSettings()).streamed
    assert classify(Action.GENERATE, SlaSettings()).streamed


def test_unknown_action_is_rejected():
    with pytest.raises(ValueError, match="not a CATO action"):
        classify("cato.refactorEverything", SlaSettings())
