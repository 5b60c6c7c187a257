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


def test_demo_overrides_split_from_the_config_overrides():
    from gdig.config import ConfigError
    from gdig.demo import split_demo_overrides

    demo, rest = split_demo_overrides(["demo.n_pool=10000", "selection.budgets=[200]", "demo.noise_rate=0.1"])
    assert demo == {"n_pool": 10000, "noise_rate": 0.1} and rest == ["selection.budgets=[200]"]
    with pytest.raises(ConfigError, match=r"^unknown demo setting\(s\) \['n_pol'\]; known: n_pool, "):
        split_demo_overrides(["demo.n_pol=3"])
    with pytest.raises(ConfigError, match=r"\['seed'\] \(the corpus seed is --seed\)"):
        split_demo_overrides(["demo.seed=3"])
    with pytest.raises(ConfigError, match="expected demo.SETTING=VALUE"):
        split_demo_overrides(["demo.n_pool.x=3"])


def test_a_demo_override_outside_the_demo_refuses(tmp_path):
    from gdig.config import ConfigError, load_config

    path = tmp_path / "gdig.yaml"
    path.write_text(CONFIG_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    load_config(path, ["selection.budgets=[20]"])
    with pytest.raises(ConfigError, match=r"^override 'demo.n_pool=5': demo.\* settings are read only by `gdig "
                                          r"demo`, which applies them before it generates its workspace"):
        load_config(path, ["demo.n_pool=5"])


def test_gdig_demo_hands_its_demo_overrides_to_prepare_demo(tmp_path, monkeypatch):
    """`gdig demo --set demo.n_pool=N` reaches the corpus: prepare_demo gets it before anything is
    generated (and the generated config gets only the rest)."""
    from typer.testing import CliRunner

    import gdig.demo
    from gdig.cli import app
    from gdig.config import ConfigError

    seen = {}

    def prepare(workdir, seed=0, progress=True, demo_overrides=None):
        seen.update(workdir=workdir, seed=seed, demo=demo_overrides)
        raise ConfigError("stop here")

    monkeypatch.setattr(gdig.demo, "prepare_demo", prepare)
    res = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path / "d"), "--no-prefect", "--seed", "3",
                                   "--set", "demo.n_pool=10000", "--set", "selection.budgets=[50]"])
    assert res.exit_code == 2 and res.output.splitlines()[-1] == "error: stop here"
    assert seen == {"workdir": tmp_path / "d", "seed": 3, "demo": {"n_pool": 10000}}

    for bad, line in ((["--set", "demo.n_pol=1"], "error: unknown demo setting(s) ['n_pol']; known: n_pool,"),
                      (["--set", "selection"], "error: override 'selection': expected KEY=VALUE"),
                      (["--set", "selection.budget=[5]"], "error: demo config: invalid config: selection.budget: Extra")):
        seen.clear()
        res = CliRunner().invoke(app, ["demo", "--workdir", str(tmp_path / "e"), "--no-prefect", *bad])
        assert res.exit_code == 2 and res.output.splitlines()[-1].startswith(line), res.output
    assert not (tmp_path / "e" / "data").exists()


def test_a_demo_workdir_is_reused_only_with_its_own_settings(tmp_path):
    from gdig.config import ConfigError
    from gdig.demo import prepare_demo

    work = tmp_path / "d"
    work.mkdir()
    (work / "gdig.yaml").write_text(yaml.safe_dump({"demo": {**demo_defaults(), "seed": 0}}), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"a demo workspace built with other settings \(n_pool 2000 -> 30, "
                                          r"seed 0 -> 1\); use a new --workdir, or delete this one$"):
        prepare_demo(work, seed=1, progress=False, demo_overrides={"n_pool": 30})
    assert not (work / "data").exists()
