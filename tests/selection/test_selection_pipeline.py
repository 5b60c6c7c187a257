"""End to end: `select_pipeline` on a tiny model and a small noisy demo pool, then `gdig select`."""

from __future__ import annotations

import json

import pytest
import yaml

from gdig.config import parse_config
from gdig.selection.summary import SelectSummary


from tiny_workspace import demo_config, demo_model_dir  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, demo_model_dir):
    """One pipeline run shared by the tests: (tmp dir, config dict, summary)."""
    from gdig.pipeline import select_pipeline

    tmp_path = tmp_path_factory.mktemp("select-e2e")
    data = demo_config(tmp_path, demo_model_dir)
    return tmp_path, data, select_pipeline(parse_config(data), progress=False)


def test_select_pipeline_end_to_end(workspace):
    from gdig.pipeline import select_pipeline
    from gdig.selection.explain import explain
    from gdig.store import Store

    tmp_path, data, summary = workspace
    cfg = parse_config(data)
    assert summary.pool_size == 120 and summary.n_seeds == 6
    assert summary.noise_types and sum(summary.noise_types.values()) == 36
    assert 0.0 <= summary.auroc["quality"] <= 1.0
    got = {(r.strategy, r.budget): r for r in summary.selections}
    assert set(got) == {(s, b) for s in ("gdig", "quality", "random", "diversity") for b in (20, 60)} | {("full", 120)}
    for (strategy, budget), r in got.items():
        assert r.size == min(budget, 120)
        lines = (tmp_path / "artifacts" / "selections" / f"{r.selection_id}.jsonl").read_text().splitlines()
        assert r.selection_id.startswith(f"{strategy}-{budget}-")  # the name carries the settings' hash
        assert len(lines) == r.size and json.loads(lines[0])["rank"] == 0
    assert got[("gdig", 20)].n_clusters == round(20 ** 0.5)
    text = summary.render()
    assert "|D_hq|" in text and "gdig" in text
    assert summary.datasets["pool"]["rows"] == 120 and summary.datasets["seed"]["rows"] == 6
    assert f"pool 120 rows ({summary.datasets['pool']['duplicates']} exact duplicates kept once" in text

    shards = sorted((tmp_path / "artifacts" / "scores" / "shards").glob("*.parquet"))
    # <ids>-<start>-<end>-c<code key of the scoring code>.parquet
    assert [p.name.rsplit("-", 3)[1:3] for p in shards] == [["0", "80"], ["80", "120"]]
    mtimes = [p.stat().st_mtime_ns for p in shards]
    again = select_pipeline(cfg, progress=False)  # everything reused: same ids, shards untouched
    assert [r.selection_id for r in again.selections] == [r.selection_id for r in summary.selections]
    assert [p.stat().st_mtime_ns for p in shards] == mtimes

    with Store(cfg.workspace.db) as store:
        sel = store.selection(got[("gdig", 20)].selection_id)
        ex = explain(store, summary.scoring_id, sel["example_id"].iloc[0], k=3)
    import pyarrow.parquet as pq

    with Store(cfg.workspace.db) as store:
        matrix = pq.read_table(store.get_scoring(summary.scoring_id)["matrix_path"]).to_pandas()
    row = matrix.set_index("example_id").loc[ex.example_id, "scores"]
    assert [e.influence for e in ex.helps] == pytest.approx(sorted(v for v in row if v < 0)[:3])
    assert len(ex.helps) + len(ex.hurts) <= 6


def test_gdig_select_command(workspace):
    """Same workspace: scoring is reused, only the selections are new."""
    from typer.testing import CliRunner

    from gdig.cli import app

    tmp_path, data, _ = workspace
    cfg_path = tmp_path / "gdig.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    res = CliRunner().invoke(app, ["select", str(cfg_path), "--no-progress", "--no-prefect", "--set", "selection.budgets=[30]",
                                   "--set", "selection.strategies=[gdig,random]"])
    assert res.exit_code == 0, res.output
    assert "gdig" in res.output and "AUROC" in res.output
    assert len(list((tmp_path / "artifacts" / "selections").glob("gdig-30-*.jsonl"))) == 1
    bad = CliRunner().invoke(app, ["select", str(cfg_path), "--no-prefect", "--set", "selection.gama=1"])
    assert bad.exit_code == 2 and "selection.gama" in bad.output


def test_gdig_explain_command(workspace):
    from typer.testing import CliRunner

    from gdig.cli import app
    from gdig.store import Store

    tmp_path, data, summary = workspace
    with Store(data["workspace"]["db"]) as store:
        eid = store.influence(summary.scoring_id)["example_id"].iloc[0]
    res = CliRunner().invoke(app, ["explain", eid, "--db", data["workspace"]["db"], "-k", "2"])
    assert res.exit_code == 0, res.output
    assert eid in res.output and "helps most" in res.output and "hurts most" in res.output
    res = CliRunner().invoke(app, ["explain", "nope", "--db", data["workspace"]["db"]])
    assert res.exit_code == 2 and "'nope' is not in scoring" in res.output


def test_source_gain_rule_end_to_end(workspace):
    """The rule on the same workspace: the scoring is reused, the source-free forward runs once,
    is stored per candidate (the dense computation's values), resumes, and the rule holds."""
    from gdig import graph
    from gdig.influence.source_free import source_free_encodings, source_free_losses
    from gdig.influence.compute import pool_rows
    from gdig.modeling import load_from_config
    from gdig.pipeline import PlainExecutor
    from gdig.store import Store

    tmp_path, data, summary = workspace
    cfg = parse_config({**data, "selection": {**data["selection"], "source_gain_min": 0.0}})
    with Store(cfg.workspace.db) as store:
        ex = PlainExecutor(cfg, store, progress=False)
        out = graph.select(ex)
        assert out["scoring"]["scoring_id"] == summary.scoring_id  # scores reused: a selection setting
        sf = out["source_free"]
        assert sf["n_rows"] == sf["n_computed"] == 120
        rows = pool_rows(store)
        model, tok = load_from_config(cfg.model, out["checkpoint"]["path"])
        enc = source_free_encodings(tok, rows, cfg.prompt.template, cfg.prompt.max_length, cfg.prompt.too_long)
        want = source_free_losses(model, enc, tok.pad_token_id, cfg.influence.scoring.batch_size, progress=False)
        stored = store.source_free_losses(sf["checkpoint_id"], sf["prompt_key"])
        assert stored.loc[rows["example_id"]].to_numpy() == pytest.approx(want, rel=1e-6)

        infl = store.influence(summary.scoring_id).set_index("example_id")
        gain = stored.loc[infl.index] - infl["loss"]
        failing = set(gain.index[gain < 0.0])
        assert 0 < len(failing) < 120  # the case is exercised both ways
        by_sel = {(r.strategy, r.budget): r for r in SelectSummary.from_dict(out["summary"]["summary"]).selections}
        for strategy in ("gdig", "quality"):
            r = by_sel[(strategy, 20)]
            assert r.n_gain_rejected == len(failing)
            picked = store.selection(r.selection_id)
            assert not failing & set(picked.loc[picked["reason"] == "quality", "example_id"])
        assert f"{len(failing)} candidates gaining less than 0 nats per target token" in out["summary"]["text"]
        # random reads no quality rule: its selection (and id) is the one made without the rule
        assert by_sel[("random", 20)].selection_id == {(r.strategy, r.budget): r for r in summary.selections}[
            ("random", 20)].selection_id

        # reused, then resumed: rows already stored are never recomputed
        assert ex.run("source-free-loss", checkpoint=out["checkpoint"], scoring=out["scoring"])["n_computed"] == 0
        store.con.execute("DELETE FROM source_free_loss WHERE example_id IN (SELECT example_id FROM "
                          "source_free_loss ORDER BY example_id LIMIT 50)")
        again = ex.run("source-free-loss", checkpoint=out["checkpoint"], scoring=out["scoring"])
        assert again["n_computed"] == 50
        assert store.source_free_losses(sf["checkpoint_id"], sf["prompt_key"]).loc[rows["example_id"]].to_numpy() \
            == pytest.approx(want, rel=1e-6)
