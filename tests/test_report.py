"""The report: every plot from a synthetic store; a partial store says what is missing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gdig.report import pca_2d, write_report

N = 60


def _fill(store):
    rng = np.random.default_rng(0)
    labels = [None] * 40 + ["misaligned"] * 10 + ["untranslated"] * 10
    pool = pd.DataFrame({
        "example_id": [f"e{i}" for i in range(N)], "src_lang": "xa", "tgt_lang": "xb",
        "src": [f"s {i}" for i in range(N)], "tgt": [f"t {i}" for i in range(N)],
        "source_file": "pool.jsonl", "source_row": range(N), "label": labels,
    })
    store.add_rows(dataset="pool", role="candidates", src_lang="xa", tgt_lang="xb", rows=pool)
    mean = np.where(pd.isna(pd.Series(labels)), -1.0, 1.0) + rng.normal(0, 0.3, N)
    agg = pd.DataFrame({
        "example_id": pool["example_id"], "position": range(N), "loss": rng.uniform(1, 3, N),
        "helped_fraction": np.clip(0.5 - mean / 3, 0, 1), "mean": mean, "min": mean - 1, "max": mean + 1,
    })
    sk = pd.DataFrame({"example_id": pool["example_id"], "sketch": list(rng.normal(size=(N, 8)).astype(np.float32))})
    store.add_scoring("sc1", curvature_id="cv", seed_dataset="seed", candidate_dataset="pool",
                      aggregates=agg, sketches=sk, matrix_path=None, n_seeds=5)
    for budget in (10, 20):
        hq = pool["example_id"][:30]
        sid = f"gdig-{budget}"
        store.add_clusters(sid, "sc1", pd.DataFrame({"example_id": hq, "cluster": np.arange(30) % 4, "distance": 0.1}))
        sel = pd.DataFrame({"example_id": hq[:budget], "rank": range(budget), "reason": "quality",
                            "cluster": np.arange(budget) % 4})
        store.add_selection(sid, strategy="gdig", budget=budget, df=sel, scoring_id="sc1")
        rnd = pd.DataFrame({"example_id": pool["example_id"][-budget:], "rank": range(budget), "reason": "random"})
        store.add_selection(f"random-{budget}", strategy="random", budget=budget, df=rnd, scoring_id="sc1")
        for strategy, bleu in (("gdig", 20.0 + budget), ("random", 10.0 + budget)):
            ck = f"ck-{strategy}-{budget}"
            store.add_metric(ck, "dev", "BLEU", bleu, "nrefs:1|tok:13a", strategy, budget, f"{strategy}-{budget}")
            store.add_metric(ck, "dev", "chrF", bleu + 5, "nrefs:1|nc:6", strategy, budget, f"{strategy}-{budget}")
            store.add_metric(ck, "dev", "COMET", None, "COMET: not available (unbabel-comet is not installed)",
                             strategy, budget, f"{strategy}-{budget}")


def test_report_with_every_section(store, tmp_path):
    _fill(store)
    store.add_checkpoint("ck-base", "base", "models/base")
    store.add_metric("ck-base", "dev", "BLEU", 3.5, "nrefs:1|tok:13a")
    paths = write_report(store, tmp_path / "rep")
    for key in ("plot_influence_hist", "plot_helped_fraction", "plot_cluster_sizes", "plot_sketch_projection",
                "plot_metric_vs_budget"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths["html"].read_text()
    assert page.count("<img ") == 5 and "data:image/png;base64," in page
    assert "Not available" not in page
    assert "Base model before finetuning, dev: BLEU 3.50" in page
    assert "misaligned" in page and "COMET: not available (unbabel-comet is not installed)" in page
    md = paths["markdown"].read_text()
    assert "![Influence scores](influence_hist.png)" in md and "| gdig" in md
    table = pd.read_csv(paths["comparison_csv"], index_col=0)
    assert list(table.index) == ["gdig", "random"]
    assert table.loc["gdig", "BLEU@20"] == 40.0 and table.loc["random", "chrF@10"] == 25.0


def test_run_report_states_the_run_and_keeps_earlier_runs(store, tmp_path):
    from gdig.report import write_run_report

    _fill(store)
    header = {"date": "2026-12-01 21:00:00 UTC", "command": "gdig run cfg.yaml --set selection.gamma=0.4",
              "config": "/srv/cfg.yaml", "workspace": "wmt-de-en"}
    first = write_run_report(store, tmp_path / "reports", "20261201-210000-a", header, gamma=0.4)
    second = write_run_report(store, tmp_path / "reports", "20261202-210000-b", {**header, "date": "2026-12-02"})
    assert first["html"].is_file() and second["html"].is_file()  # one directory per run
    latest = tmp_path / "reports" / "latest"
    assert (latest / "report.html").read_text() == second["html"].read_text()
    md = first["markdown"].read_text()
    top = md.split("## Data and runs")[0]  # the run's identity comes first
    for value in header.values():
        assert value in top
    assert "γ = 0.4:" in md and "high-quality" in md


def test_report_of_partial_store_says_what_is_missing(store, tmp_path):
    paths = write_report(store, tmp_path / "empty")
    page = paths["html"].read_text()
    assert "<img " not in page
    assert page.count("Not available") == 6  # influence, helped, clusters, projection, metrics, comparison
    assert "No datasets in this store yet" in page
    assert not any(k.startswith("plot_") for k in paths)


def test_pca_matches_sklearn():
    from sklearn.decomposition import PCA

    X = np.random.default_rng(1).normal(size=(50, 6)) @ np.diag([5, 3, 1, 0.5, 0.2, 0.1])
    ours = pca_2d(X)
    ref = PCA(n_components=2).fit_transform(X)
    for k in range(2):  # equal up to the sign of each component
        sign = np.sign(ours[:, k] @ ref[:, k])
        np.testing.assert_allclose(ours[:, k] * sign, ref[:, k], atol=1e-10)


def test_report_command(tmp_path):
    from typer.testing import CliRunner

    from gdig.cli import app
    from gdig.store import Store

    with Store(tmp_path / "s.duckdb") as s:
        _fill(s)
    res = CliRunner().invoke(app, ["report", "--db", str(tmp_path / "s.duckdb"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "report.html").exists() and "report.html" in res.output
    res = CliRunner().invoke(app, ["report", "--db", str(tmp_path / "missing.duckdb"), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "no gdig store here" in res.output


def test_report_from_a_db_path(tmp_path):
    from gdig.store import Store

    with Store(tmp_path / "s.duckdb") as s:
        _fill(s)
    paths = write_report(str(tmp_path / "s.duckdb"), tmp_path / "r")
    assert paths["html"].read_text().count("<img ") == 5
