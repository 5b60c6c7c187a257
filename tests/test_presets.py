"""Named presets: the paper's setting fills the config, the config's own keys win, and the preset
runs end to end through `gdig select` and `gdig run` on the tiny workspace."""

from __future__ import annotations


import pytest
import yaml
from tiny_workspace import demo_model_dir  # noqa: F401  (fixture)

from gdig.config import ConfigError, parse_config

BASE = {"languages": {"src": "cs", "tgt": "en"}, "model": {"name_or_path": "/nonexistent/model"}}


def test_paper_preset_fills_the_official_setting():
    cfg = parse_config({**BASE, "preset": "paper"})
    assert cfg.preset == "paper"
    assert cfg.pool_finetune.enabled and cfg.pool_finetune.epochs == 1.0
    assert not cfg.prefilter.enabled
    c = cfg.influence.curvature
    assert (c.strategy, c.granularity, c.kfac_damping, c.damping) == ("kfac", "sequence", "pi", 0.5)
    assert cfg.influence.seed_set.batch_size == 2 and cfg.influence.modules.layers is None
    s = cfg.selection
    assert (s.gamma, s.quality, s.allocation, s.within_cluster) == (1.0, "paper", "even", "random")
    assert s.closing_loss_max is None and s.source_gain_min is None
    plain = parse_config(BASE)  # without the preset: gdig's defaults
    assert (plain.selection.quality, plain.selection.gamma, plain.pool_finetune.enabled) == ("loss", "auto", False)


def test_config_keys_win_over_the_preset():
    cfg = parse_config({**BASE, "preset": "paper", "selection": {"gamma": 0.5, "budgets": [7]},
                        "influence": {"curvature": {"sample": 64}}})
    assert cfg.selection.gamma == 0.5 and cfg.selection.budgets == [7] and cfg.selection.quality == "paper"
    assert cfg.influence.curvature.sample == 64 and cfg.influence.curvature.damping == 0.5


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match="x.yaml: invalid config: preset: unknown 'papers'; one of paper"):
        parse_config({**BASE, "preset": "papers"}, source="x.yaml")


@pytest.mark.prefect
@pytest.mark.parametrize("executor", ["--no-prefect", "prefect"])
def test_paper_preset_runs_select_and_run_end_to_end(tmp_path, executor, request):
    from typer.testing import CliRunner

    from gdig.cli import app
    from gdig.config import load_config
    from gdig.store import Store
    from tiny_workspace import demo_config
    from gdig.demo import generate_pairs
    from gdig.modeling import build_tiny_model

    pairs = generate_pairs(200, seed=5)
    model = build_tiny_model(list(pairs["src"]) + list(pairs["tgt"]), tmp_path / "model", arch="llama",
                             pad_token=False, hidden=32, layers=1, intermediate=64, vocab_size=384)
    data = demo_config(tmp_path, model)
    data["data"]["eval"] = [{"path": str(tmp_path / "data" / "eval.jsonl"), "name": "eval"}]
    data["selection"] = {"budgets": [20], "strategies": ["gdig", "random"]}  # the preset's γ and ranking
    data["pool_finetune"] = {"batch_size": 16, "lr": 1e-3}  # the preset turns it on; one epoch
    data["finetune"] = {"max_steps": 2, "batch_size": 8}
    data["evaluate"] = {"max_new_tokens": 8}
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(data))
    if executor == "prefect":  # the default path of `gdig select|run`: the Prefect flows
        from gdig_flows.flows.select import select_flow

        request.getfixturevalue("prefect_harness")
        state = select_flow(str(path), ["preset=paper"], return_state=True)
        assert state.is_completed(), state.message
        # one CLI call per Prefect test: a second one logged to the first call's closed output stream
        commands = ["run"]
    else:
        commands = ["select", "run"]
    for cmd in commands:
        flags = ["--no-prefect"] if executor == "--no-prefect" else []
        res = CliRunner().invoke(app, [cmd, str(path), *flags, "--no-progress", "--set", "preset=paper"])
        assert res.exit_code == 0, res.output
    cfg = load_config(path, ["preset=paper"])
    with Store(cfg.workspace.db) as store:
        kinds = set(store.table("checkpoints")["kind"])
        scoring = store.table("scorings").iloc[-1]
        sel = store.selections()
        metrics = store.metrics()
    assert "pool" in kinds  # the gradients were taken at the pool-finetuned checkpoint
    assert int(scoring["n_seeds"]) == 3  # 6 seeds in groups of 2
    assert set(sel["strategy"]) == {"gdig", "random"} and set(sel["budget"]) == {20}
    assert {"BLEU", "chrF"} <= set(metrics["metric"])


def test_influence_on_the_lora_adapters_of_a_pool_checkpoint(tmp_path, demo_model_dir):
    """LESS-style influence: a LoRA pool finetune, then curvature, seed products, scoring and the
    source-free loss over the adapters' own weights; the same checkpoint, other modules, other scores."""
    import numpy as np

    from gdig.config import parse_config
    from gdig.pipeline import select_pipeline
    from gdig.store import Store
    from tiny_workspace import demo_config

    data = demo_config(tmp_path, demo_model_dir)
    data["pool_finetune"] = {"enabled": True, "method": "lora", "lora_r": 4, "epochs": 1, "batch_size": 16, "lr": 1e-2}
    data["selection"].update({"budgets": [20], "strategies": ["gdig"], "source_gain_min": 0.0})
    scores = {}
    for lora_only in (False, True):
        cfg = parse_config({**data, "influence": {**data["influence"], "modules": {"lora_only": lora_only}}})
        select_pipeline(cfg, progress=False)
        with Store(cfg.workspace.db) as store:
            infl = store.influence(store.table("scorings").sort_values("created_at").iloc[-1]["scoring_id"])
            checkpoints = store.table("checkpoints")
        assert infl["grad_norm"].notna().all() and np.isfinite(infl["mean"]).all()
        scores[lora_only] = infl.set_index("example_id")
    assert (checkpoints["kind"] == "pool").sum() == 1  # one pool checkpoint serves both
    a, b = scores[False], scores[True].loc[scores[False].index]
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-4)  # the same model: merged weights = base + adapter
    assert not np.allclose(a["grad_norm"], b["grad_norm"])  # other modules: other gradients
