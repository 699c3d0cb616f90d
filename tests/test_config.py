"""The configuration schema: defaults, YAML overrides, and clear errors for bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from cato_backend.config import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_SLA_MS,
    Config,
    ModelConfig,
    default_config,
    load_config,
)
from cato_backend.kinds import METRIC_OF_KIND, TaskKind


def write(tmp_path: Path, text: str, name: str = "cato.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_default_config_is_valid_and_survives_a_round_trip():
    cfg = default_config()
    again = Config.model_validate(cfg.model_dump(mode="json"))
    assert again == cfg
    assert cfg.router.policy == "cato" and cfg.queue.live_per_violated == 3
    assert list(cfg.models) == ["smollm2"] and cfg.models["smollm2"].engine == "vllm"


def test_every_kind_has_an_sla_a_token_budget_and_a_metric():
    cfg = default_config()
    for kind in TaskKind:
        kc = cfg.kinds[kind]
        assert kc.sla_ms == DEFAULT_SLA_MS[kind] > 0
        assert kc.max_tokens == DEFAULT_MAX_TOKENS[kind] > 0
        assert kc.model in cfg.models
        assert kind in METRIC_OF_KIND
        assert cfg.limits.min_sla_ms <= kc.sla_ms <= cfg.limits.max_sla_ms
        assert kc.max_tokens <= cfg.limits.max_tokens


def test_yaml_overrides_one_section_and_keeps_the_others(tmp_path):
    cfg = load_config(write(tmp_path, "router:\n  policy: p2c\n"))
    assert cfg.router.policy == "p2c"
    assert cfg.router.seed == 0
    assert cfg.models == default_config().models
    assert cfg.kinds == default_config().kinds


def test_a_section_given_in_part_takes_defaults_for_the_rest_of_it(tmp_path):
    cfg = load_config(write(tmp_path, "limits:\n  max_tokens: 100\nport: 9000\n"))
    assert cfg.limits.max_tokens == 100
    assert cfg.limits.min_sla_ms == default_config().limits.min_sla_ms
    assert cfg.port == 9000


def test_yaml_can_switch_the_model_to_a_static_list_of_urls(tmp_path):
    cfg = load_config(write(tmp_path, """
models:
  smollm2:
    served_name: SmolLM2-135M-Instruct
    engine: static
    urls: ["http://10.0.0.5:8000", "http://10.0.0.6:8000"]
"""))
    assert cfg.models["smollm2"].engine == "static"
    assert len(cfg.models["smollm2"].urls) == 2


def test_json_config_files_load_too(tmp_path):
    cfg = load_config(write(tmp_path, json.dumps({"queue": {"live_per_violated": 5}}), "c.json"))
    assert cfg.queue.live_per_violated == 5


def test_unknown_top_level_key_is_rejected_naming_it(tmp_path):
    with pytest.raises(ValidationError, match=r"(?s)routr.*Extra inputs are not permitted"):
        load_config(write(tmp_path, "routr:\n  policy: p2c\n"))


def test_unknown_nested_key_is_rejected_naming_its_place(tmp_path):
    with pytest.raises(ValidationError, match=r"(?s)router\.polcy.*Extra inputs"):
        load_config(write(tmp_path, "router:\n  polcy: p2c\n"))


def test_unknown_router_policy_is_rejected(tmp_path):
    with pytest.raises(ValidationError, match="router.policy"):
        load_config(write(tmp_path, "router:\n  policy: fastest\n"))


def test_kind_mapped_to_an_unknown_model_is_rejected():
    data = default_config().model_dump(mode="json")
    data["kinds"]["translation"]["model"] = "starcoder2"
    with pytest.raises(ValidationError, match="kind translation uses unknown model 'starcoder2'"):
        Config.model_validate(data)


def test_replacing_the_models_section_without_the_kinds_is_rejected(tmp_path):
    yaml = "models:\n  starcoder2:\n    served_name: bigcode/starcoder2-3b\n"
    with pytest.raises(ValidationError, match="unknown model 'smollm2'"):
        load_config(write(tmp_path, yaml))


def test_a_kind_left_without_configuration_is_rejected():
    data = default_config().model_dump(mode="json")
    del data["kinds"]["summarization"]
    with pytest.raises(ValidationError, match=r"kinds without a configuration: \['summarization'\]"):
        Config.model_validate(data)


def test_unknown_kind_is_rejected():
    data = default_config().model_dump(mode="json")
    data["kinds"]["review"] = dict(data["kinds"]["completion"])
    with pytest.raises(ValidationError, match="kinds.review"):
        Config.model_validate(data)


def test_static_engine_without_urls_is_rejected():
    with pytest.raises(ValidationError, match="static engine needs at least one URL"):
        ModelConfig(served_name="m", engine="static")
    assert ModelConfig(served_name="m", engine="static", urls=["http://h:1"]).urls == ["http://h:1"]


@pytest.mark.parametrize("field, value", [("sla_ms", 0), ("sla_ms", -5), ("max_tokens", 0)])
def test_non_positive_sla_or_token_budget_is_rejected(field, value):
    data = default_config().model_dump(mode="json")
    data["kinds"]["completion"][field] = value
    with pytest.raises(ValidationError, match=f"kinds.completion.{field}"):
        Config.model_validate(data)


@pytest.mark.parametrize("text", ["", "- just\n- a list\n", "42\n"])
def test_a_file_that_is_not_a_mapping_is_rejected(tmp_path, text):
    with pytest.raises(ValueError, match="expected a mapping at the top level"):
        load_config(write(tmp_path, text))


def test_a_file_can_change_one_kinds_sla_alone(tmp_path):
    from cato_backend.config import DEFAULT_MAX_TOKENS, load_config
    from cato_backend.kinds import TaskKind

    f = tmp_path / "c.yaml"
    f.write_text("kinds:\n  completion: {sla_ms: 250}\n")
    c = load_config(f)
    assert c.kinds[TaskKind.COMPLETION].sla_ms == 250
    assert c.kinds[TaskKind.COMPLETION].max_tokens == DEFAULT_MAX_TOKENS[TaskKind.COMPLETION]
    assert c.kinds[TaskKind.TRANSLATION].sla_ms == 20000


def test_fim_template_with_unknown_fields_is_rejected():
    import pytest
    from pydantic import ValidationError

    from cato_backend.config import ModelConfig

    with pytest.raises(ValidationError, match="fim_template"):
        ModelConfig(served_name="m", fim_template="<pre>{prefix}{cursor}")
    assert ModelConfig(served_name="m", fim_template="{{x}}{prefix}{suffix}").fim_template


def test_examples_load():
    from pathlib import Path

    from cato_backend.config import load_config

    for f in sorted((Path(__file__).parent.parent / "examples").glob("*.yaml")):
        assert load_config(f).models, f
