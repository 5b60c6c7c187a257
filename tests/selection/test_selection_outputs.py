"""Selections through the store: ids, stored rows and clusters, JSONL export -> `gdig ingest`, summary."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gdig.cli import app
from gdig.config import SelectionConfig
from gdig.data.ingest import ingest
from gdig.selection.outputs import export_selection, run_selection, selection_id
from gdig.selection.summary import build_summary

N = 40


# the paper's selection settings (these hand-built scorings carry no loss or gradient norms)
PAPER = {"quality": "paper", "allocation": "even", "within_cluster": "random", "closing_loss_max": None}

@pytest.fixture()
def scored_store(store, tmp_path):
    """A pool of N rows (every 4th labelled noisy) with a hand-made scoring: noisy rows hurt."""
    path = tmp_path / "pool.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i in range(N):
            rec = {"src": f"Satz nummer {i} über Häuser", "tgt": f"sentence number {i} about houses",
                   "src_lang": "de", "tgt_lang": "en"}
            if i % 4 == 0:
                rec["label"] = "misaligned" if i % 8 else "copy"
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    ingest(store, path, role="candidates", name="pool", progress=False)
    pool = store.dataset_examples("pool")
    noisy = (np.arange(N) % 4 == 0)
    rng = np.random.default_rng(0)
    n_seeds = 5
    M = rng.normal(-1.0, 0.3, size=(N, n_seeds))
    M[noisy] = rng.normal(1.0, 0.3, size=(noisy.sum(), n_seeds))
    agg = pd.DataFrame({
        "example_id": pool["example_id"], "position": pool["position"], "loss": 1.0,
        "helped_fraction": (M < 0).mean(1), "mean": M.mean(1), "min": M.min(1), "max": M.max(1),
    })
    sk = rng.normal(size=(N, 8)).astype(np.float32)
    sk[: N // 2] += 5
    sketches = pd.DataFrame({"example_id": pool["example_id"], "sketch": list(sk)})
    store.add_scoring("sc1", curvature_id="cv1", seed_dataset="seed", candidate_dataset="pool",
                      aggregates=agg, sketches=sketches, matrix_path=None, n_seeds=n_seeds)
    return store


def test_selection_id_is_a_content_hash():
    cfg = SelectionConfig()
    a = selection_id("sc1", "gdig", 10, cfg)
    assert a == selection_id("sc1", "gdig", 10, SelectionConfig(budgets=[5, 10]))  # budgets list excluded
    assert a != selection_id("sc1", "gdig", 10, SelectionConfig(seed=1))
    assert a != selection_id("sc2", "gdig", 10, cfg)
    assert a != selection_id("sc1", "gdig", 11, cfg)


def test_store_rows_export_and_round_trip_through_gdig_ingest(scored_store, tmp_path):
    store = scored_store
    cfg = SelectionConfig(n_clusters=3, **PAPER)
    sid, sel = run_selection(store, "sc1", "gdig", 12, cfg)
    stored = store.selection(sid)
    assert stored["example_id"].tolist() == sel.rows["example_id"].tolist()
    assert stored["rank"].tolist() == list(range(12))
    assert set(stored["reason"]) == {"quality"}
    clusters = store.clusters(sid)
    assert len(clusters) == sel.n_high_quality and clusters["cluster"].nunique() == 3
    out = export_selection(store, sid, tmp_path / "sel" / "gdig-12.jsonl")
    recs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(recs) == 12 and recs[0]["rank"] == 0
    assert {"src", "tgt", "src_lang", "tgt_lang", "helped_fraction", "mean_influence", "cluster", "reason"} <= set(recs[0])
    infl = store.influence("sc1").set_index("example_id")
    assert recs[3]["mean_influence"] == pytest.approx(infl.loc[recs[3]["example_id"], "mean"])

    res = CliRunner().invoke(app, ["ingest", str(out), "--db", str(tmp_path / "rt.duckdb"), "--role",
                                   "candidates", "--name", "again", "--no-progress"])
    assert res.exit_code == 0, res.output
    from gdig.store import Store

    with Store(tmp_path / "rt.duckdb") as s2:
        back = s2.dataset_examples("again")
    assert back["example_id"].tolist() == stored["example_id"].tolist()  # same content hash, same order
    assert back["src"].tolist() == stored["src"].tolist()


def test_filled_rows_and_labels_survive_export(scored_store, tmp_path):
    store = scored_store
    sid, sel = run_selection(store, "sc1", "quality", N - 2, SelectionConfig(gamma=1.0, **PAPER))  # the paper's fixed rule: D_hq smaller than the budget
    assert sel.counts()["filled"] == N - 2 - sel.n_high_quality
    recs = [json.loads(x) for x in export_selection(store, sid, tmp_path / "q.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in recs][-1] == "filled"
    assert sum("label" in r for r in recs) == int(sel.rows["label"].notna().sum())


def test_summary_noise_figures_and_coverage(scored_store):
    store = scored_store
    cfg = SelectionConfig(n_clusters=4, **PAPER)
    ids = [run_selection(store, "sc1", s, 10, cfg)[0] for s in ("gdig", "quality", "random", "full")]
    summ = build_summary(store, "sc1", ids, gamma=cfg.gamma, normalize=cfg.normalize)
    assert summ.pool_size == N and summ.n_seeds == 5
    assert summ.noise_types == {"copy": 5, "misaligned": 5}
    assert summ.auroc["quality"] > 0.95  # the hand-made scores separate the noise
    by = {r.strategy: r for r in summ.selections}
    assert by["gdig"].clusters_covered == 4 and by["gdig"].clusters_total == 4
    assert by["gdig"].cluster_evenness == pytest.approx(-(0.6 * np.log(0.3) + 0.4 * np.log(0.2)) / np.log(4))  # 3,3,2,2
    assert by["gdig"].noise["selected_clean_fraction"] == 1.0
    assert by["full"].size == N and by["full"].noise["removal_recall"] == 0.0
    text = summ.render()
    assert "|D_hq| = " in text and "AUROC" in text and "gdig" in text


def test_closing_rule_through_the_store_settings_and_summary(scored_store):
    store = scored_store
    infl = store.influence("sc1")
    closing = np.where(np.arange(N) % 5 == 1, 9.5, 2.0)  # 8 rows above 8 nats, none of them noisy-labelled
    agg = infl.drop(columns=["label"]).assign(closing_loss=closing)
    store.add_scoring("sc2", curvature_id="cv1", seed_dataset="seed", candidate_dataset="pool", aggregates=agg,
                      sketches=None, matrix_path=None, n_seeds=5)
    back = store.influence("sc2")
    np.testing.assert_array_equal(back["closing_loss"].to_numpy(), closing)  # kept, in pool order
    assert store.influence("sc1")["closing_loss"].isna().all()  # a scoring without it reads back as NaN
    cfg = SelectionConfig(gamma=0.0, quality="paper", closing_loss_max=8.0)
    assert cfg.closing_loss_max == SelectionConfig().closing_loss_max  # the default rule
    sid, sel = run_selection(store, "sc2", "quality", N - 8, cfg)
    assert sel.n_closing_rejected == 8 and sel.n_high_quality == N - 8
    assert not set(sel.rows["example_id"]) & set(back.loc[closing > 8, "example_id"])
    assert selection_id("sc2", "quality", N - 8, cfg) != selection_id("sc2", "quality", N - 8,
                                                                       SelectionConfig(gamma=0.0, quality="paper",
                                                                                       closing_loss_max=None))
    summ = build_summary(store, "sc2", [sid], gamma=cfg.gamma, normalize=True, rules={"closing_loss_max": 8.0})
    assert summ.selections[0].n_closing_rejected == 8
    assert "8 candidates with a closing-token loss above 8 nats ranked last" in summ.render()
    assert "-closing_loss" in summ.auroc
    with pytest.raises(ValueError, match="closing-token loss, which this scoring lacks"):
        run_selection(store, "sc1", "quality", 5, cfg)


def test_evenness():
    from gdig.selection.summary import evenness

    assert evenness(np.array([0, 1, 2, 3]), 4) == pytest.approx(1.0)
    assert evenness(np.array([2, 2, 2]), 4) == pytest.approx(0.0)
    assert evenness(np.array([0, 0, 1, 1]), 4) == pytest.approx(0.5)  # log 2 / log 4
    assert evenness(np.array([0]), 1) is None
