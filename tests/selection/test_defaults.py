"""gdig's selection defaults are written once (SelectSettings) and are what both a notebook's
`select()` and `gdig select` run; the paper preset is an overlay by name."""

from __future__ import annotations

import ast
import dataclasses
import inspect

import pytest

from gdig.config import SelectionConfig, parse_config
from gdig.presets import PRESETS
from gdig.selection.rules import HQ_RULES
from gdig.selection.select import SelectSettings, select
from tiny_workspace import demo_config, demo_model_dir  # noqa: F401  (fixture)

SETTINGS = [f.name for f in dataclasses.fields(SelectSettings) if f.name != "rules"] + list(HQ_RULES)


def test_the_config_and_select_share_one_set_of_defaults():
    assert SelectSettings.from_config(SelectionConfig()) == SelectSettings()
    assert (SelectSettings().gamma, SelectSettings().quality, SelectSettings().allocation) == ("auto", "loss", "drop_low")
    assert SelectSettings().rules == {k: r.default for k, r in HQ_RULES.items()}


def test_selection_config_writes_no_default_of_its_own():
    """Every SelectionConfig key that SelectSettings holds takes its default from there: no literal
    in gdig/config.py that could drift from the one `select()` uses."""
    import gdig.config

    tree = ast.parse(inspect.getsource(gdig.config))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SelectionConfig")
    seen = set()
    for node in cls.body:
        if not (isinstance(node, ast.AnnAssign) and node.target.id in SETTINGS):
            continue
        call = node.value
        default = call.args[0] if call.args else next(k.value for k in call.keywords if k.arg == "default")
        assert "_SELECT" in ast.unparse(default), f"SelectionConfig.{node.target.id}: default {ast.unparse(default)}"
        seen.add(node.target.id)
    assert seen == set(SETTINGS)


def test_the_paper_preset_is_an_overlay_by_name():
    paper = SelectSettings.preset("paper")
    over = PRESETS["paper"]["selection"]
    assert (paper.gamma, paper.quality, paper.allocation, paper.within_cluster) == (
        over["gamma"], over["quality"], over["allocation"], over["within_cluster"])
    assert all(t is None for t in paper.rules.values())
    cfg = parse_config({"preset": "paper", "languages": {"src": "de", "tgt": "en"}, "model": {"name_or_path": "m"}})
    assert SelectSettings.from_config(cfg.selection) == paper
    # settings laid over the preset keep the rest of it
    assert SelectSettings.of({"seed": 3}, base=paper) == dataclasses.replace(paper, seed=3)
    with pytest.raises(ValueError, match="unknown"):
        SelectSettings.preset("fast")


def test_select_from_python_at_its_defaults_equals_gdig_select(tmp_path, demo_model_dir):
    """`gdig select` with no selection setting, and select() with none, pick the same rows."""
    from gdig.pipeline import select_pipeline
    from gdig.selection.outputs import load_pool
    from gdig.store import Store

    data = demo_config(tmp_path, demo_model_dir)
    data["selection"] = {"budgets": [20], "strategies": ["gdig", "quality"]}  # every other key at its default
    cfg = parse_config(data)
    select_pipeline(cfg, progress=False)
    with Store(cfg.workspace.db, read_only=True) as store:
        meta = store.selections()
        for strategy in ("gdig", "quality"):
            row = meta[meta["strategy"] == strategy].iloc[0]
            influence, X = load_pool(store, row["scoring_id"], strategy == "gdig")
            n_groups = int(store.get_scoring(row["scoring_id"])["n_seeds"])
            mine = select(strategy, 20, influence, X, n_seed_groups=n_groups)
            assert list(mine.rows["example_id"]) == list(store.selection(row["selection_id"])["example_id"])
            assert mine.gamma is not None and mine.gamma <= 1.0
