"""The demo's sizes come from one file (gdig/demo/config.yaml) wherever they are read."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

import gdig.demo.corpus
from gdig.demo import CONFIG_PATH, demo_config_template, demo_defaults, demo_settings, write_demo_data


def test_the_demo_sizes_are_the_config_files():
    assert demo_defaults() == yaml.safe_load(CONFIG_PATH.read_text(encoding="utf-8"))["demo"]
    assert demo_config_template()["demo"] == demo_defaults()
    # the sizes benchmarks/README.md's demo section reports
    assert {k: demo_defaults()[k] for k in ("n_pool", "n_seed", "n_eval", "n_general", "noise_rate")} == {
        "n_pool": 2000, "n_seed": 100, "n_eval": 200, "n_general": 2000, "noise_rate": 0.3}


def test_overrides_and_unknown_settings():
    assert demo_settings({"n_pool": 40}) == {**demo_defaults(), "n_pool": 40}
    with pytest.raises(ValueError, match=r"unknown demo setting\(s\) \['n_pol'\]; known: n_pool, n_seed"):
        demo_settings({"n_pol": 3})


def test_write_demo_data_defaults_are_the_demo_settings(tmp_path, monkeypatch):
    small = {**demo_defaults(), "n_pool": 20, "n_seed": 3, "n_eval": 4, "n_general": 5, "noise_rate": 0.5}
    monkeypatch.setattr(gdig.demo.corpus, "demo_defaults", lambda: small)
    paths = write_demo_data(tmp_path, n_seed=6)  # an explicit size wins over the file's
    sizes = {k: len(pd.read_json(p, lines=True)) for k, p in paths.items()}
    assert sizes == {"pool": 20, "seed": 6, "eval": 4, "general": 5}
    assert pd.read_json(paths["pool"], lines=True)["label"].ne("clean").sum() == 10
