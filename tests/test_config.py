"""Config validation: unknown keys and wrong types name the key; overrides; paths; hashes."""

from __future__ import annotations

import pytest
import yaml

from gdig.config import ConfigError, apply_overrides, load_config, parse_config

MINIMAL = {"languages": {"src": "de", "tgt": "en"}, "model": {"name_or_path": "some/model"}}


def minimal(**extra):
    data = {k: dict(v) for k, v in MINIMAL.items()}
    data.update(extra)
    return data


def test_minimal_config_defaults():
    cfg = parse_config(minimal())
    assert (cfg.languages.src, cfg.languages.tgt) == ("de", "en")
    assert cfg.selection.budgets == [1000] and cfg.influence.curvature.damping is None  # per rule: 0.5 for pi
    assert cfg.influence.curvature.kfac_damping == "pi" and cfg.influence.seed_set.weighting == "auto"
    assert cfg.data.skip_invalid is False and cfg.model.device == "cpu"


@pytest.mark.parametrize("data,key,msg", [
    (minimal(selection={"budgtes": [10]}), "selection.budgtes", "Extra inputs are not permitted"),
    (minimal(data={"candidates": [{"pth": "x.jsonl"}]}), "data.candidates.0.pth", "Extra inputs are not permitted"),
    (minimal(colour="red"), "colour", "Extra inputs are not permitted"),
    (minimal(finetune={"batch_size": "eight"}), "finetune.batch_size", "valid integer"),
    (minimal(influence={"curvature": {"strategy": "shampoo"}}), "influence.curvature.strategy", "'kfac' or 'ekfac'"),
    (minimal(selection={"gamma": 1.5}), "selection.gamma", "less than or equal to 1"),
    (minimal(selection={"budgets": [0]}), "selection.budgets", "positive integers"),
    (minimal(prompt={"template": "no source here"}), "prompt.template", "{src}"),
    ({"languages": {"src": "de", "tgt": "en"}}, "model", "Field required"),
])
def test_errors_name_the_key(data, key, msg):
    with pytest.raises(ConfigError) as err:
        parse_config(data, source="my.yaml")
    text = str(err.value)
    assert text.startswith("my.yaml: invalid config")
    line = next(ln for ln in text.splitlines() if ln.strip().startswith(key + ":")
                or ln.startswith(f"my.yaml: invalid config: {key}:"))
    assert msg in line


def test_languages_are_normalised_and_must_differ():
    cfg = parse_config(minimal(languages={"src": "German", "tgt": "eng"}))
    assert (cfg.languages.src, cfg.languages.tgt) == ("de", "en")
    with pytest.raises(ConfigError, match="both 'de'"):
        parse_config(minimal(languages={"src": "de", "tgt": "German"}))
    with pytest.raises(ConfigError, match="unknown language 'Klingon'"):
        parse_config(minimal(languages={"src": "Klingon", "tgt": "en"}))


def test_overrides_parse_values_as_yaml():
    data = apply_overrides(minimal(), ["selection.budgets=[100, 200]", "influence.curvature.damping=0.1",
                                       "data.skip_invalid=true", "model.device=cuda:1"])
    cfg = parse_config(data)
    assert cfg.selection.budgets == [100, 200]
    assert cfg.influence.curvature.damping == 0.1
    assert cfg.data.skip_invalid is True and cfg.model.device == "cuda:1"
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides(minimal(), ["selection.budgets"])
    with pytest.raises(ConfigError, match="model is not a section"):
        apply_overrides(minimal(model="x"), ["model.device=cpu"])
    with pytest.raises(ConfigError, match="selection.seed: Input should be a valid integer"):
        parse_config(apply_overrides(minimal(), ["selection.seed=abc"]))


def test_load_config_resolves_paths_against_the_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "tiny").mkdir()
    path = tmp_path / "ws.yaml"
    path.write_text(yaml.safe_dump(minimal(
        model={"name_or_path": "tiny"},
        data={"candidates": [{"path": "data/pool.jsonl"}], "eval": [{"path": "hf:wmt19:de-en", "split": "validation"}]},
        workspace={"db": "ws.duckdb"},
    )), encoding="utf-8")
    cfg = load_config(path, ["selection.seed=3"])
    assert cfg.data.candidates[0].path == str(tmp_path / "data" / "pool.jsonl")
    assert cfg.data.eval[0].path == "hf:wmt19:de-en"
    assert cfg.workspace.db == str(tmp_path / "ws.duckdb")
    assert cfg.model.name_or_path == str(tmp_path / "tiny")
    assert cfg.selection.seed == 3


def test_load_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("languages: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(bad)


def test_section_hash_depends_only_on_its_sections():
    a = parse_config(minimal())
    b = parse_config(minimal(selection={"budgets": [5]}))
    assert a.section_hash("influence") == b.section_hash("influence")
    assert a.section_hash("selection") != b.section_hash("selection")
    assert len(a.section_hash("model", "prompt")) == 16


def test_deprecated_influence_seed_is_read_as_seed_set_with_one_warning():
    old = minimal(influence={"seed": {"batch_size": 2, "weighting": "examples"}})
    with pytest.warns(FutureWarning, match="influence.seed is deprecated: rename it to influence.seed_set") as caught:
        cfg = parse_config(old)
    assert len(caught) == 1
    assert cfg.influence.seed_set.batch_size == 2 and cfg.influence.seed_set.weighting == "examples"
    assert cfg == parse_config(minimal(influence={"seed_set": {"batch_size": 2, "weighting": "examples"}}))
    both = minimal(influence={"seed": {"batch_size": 2}, "seed_set": {"batch_size": 3}})
    with pytest.raises(ConfigError, match="influence.seed and influence.seed_set are both given"):
        parse_config(both)
