"""The prefilter: config section: defaults, errors that name the key, and its rows in docs/config.md."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from gdig.config import ConfigError, PrefilterConfig, apply_overrides, parse_config

MINIMAL = {"languages": {"src": "cs", "tgt": "en"}, "model": {"name_or_path": "some/model"}}


def config(prefilter):
    return {**MINIMAL, "prefilter": prefilter}


def test_on_by_default_with_every_rule_on():
    cfg = parse_config(dict(MINIMAL)).prefilter
    assert cfg.enabled
    rules = [name for name in PrefilterConfig.model_fields if name != "enabled"]
    assert rules == ["length", "copies", "near_duplicates", "non_alpha", "repeats", "script", "ratio", "langid"]
    assert all(getattr(cfg, r).enabled for r in rules)


def test_the_pure_paper_pipeline_is_one_override():
    cfg = parse_config(apply_overrides(dict(MINIMAL), ["prefilter.enabled=false", "prefilter.ratio.max_deviation=2.5"]))
    assert cfg.prefilter.enabled is False and cfg.prefilter.ratio.max_deviation == 2.5


@pytest.mark.parametrize("prefilter,key,msg", [
    ({"langid": {"min_prb": 0.1}}, "prefilter.langid.min_prb", "Extra inputs are not permitted"),
    ({"lenght": {}}, "prefilter.lenght", "Extra inputs are not permitted"),
    ({"langid": {"min_prob": 1.5}}, "prefilter.langid.min_prob", "less than or equal to 1"),
    ({"copies": {"max_similarity": 0}}, "prefilter.copies.max_similarity", "greater than 0"),
    ({"ratio": {"max_deviation": 0}}, "prefilter.ratio.max_deviation", "greater than 0"),
    ({"ratio": {"spread": -0.1}}, "prefilter.ratio.spread", "spread must be 'auto' or above 0"),
    ({"ratio": {"center": "median"}}, "prefilter.ratio.center.float", "valid number"),
    ({"length": {"min_chars": 50, "max_chars": 10}}, "prefilter.length", "min_chars (50) is above max_chars (10)"),
    ({"length": {"min_words": 9, "max_words": 3}}, "prefilter.length", "min_words (9) is above max_words (3)"),
    ({"langid": {"equivalent": [["cs"]]}}, "prefilter.langid.equivalent", "at least two codes"),
    ({"repeats": {"max_run": "four"}}, "prefilter.repeats.max_run", "valid integer"),
    ({"script": {"enabled": "sometimes"}}, "prefilter.script.enabled", "valid boolean"),
])
def test_errors_name_the_key(prefilter, key, msg):
    with pytest.raises(ConfigError) as err:
        parse_config(config(prefilter), source="my.yaml")
    line = next(ln for ln in str(err.value).splitlines() if f" {key}:" in f" {ln.strip()}")  # "file: key: msg" or "key: msg"
    assert msg in line


def _keys(model: type[BaseModel], prefix: str) -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}"
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out += _keys(sub, key)
        else:
            out.append(key)
    return out


def test_every_prefilter_key_is_in_the_config_reference():
    readme = (Path(__file__).resolve().parents[2] / "docs" / "config.md").read_text(encoding="utf-8")
    keys = _keys(PrefilterConfig, "prefilter")
    assert len(keys) > 20
    missing = [k for k in keys if f"`{k}`" not in readme]
    assert not missing, f"docs/config.md lacks the prefilter keys {missing}"
