"""The prefilter as a pipeline stage: verdicts stored and reused; only passing rows are scored and
selected; a changed threshold never refits the pool model or the curvature and scores at most
the rows that newly pass."""

from __future__ import annotations

import numpy as np
import pandas as pd
from tiny_workspace import demo_config, demo_model_dir  # noqa: F401  (fixture)

from gdig.config import parse_config
from gdig.store import Store


def _files(root, pattern):
    return {p.name: p.stat().st_mtime_ns for p in root.glob(pattern)}


def test_prefilter_stage_scores_only_passing_rows_and_a_threshold_change_scores_only_the_new_ones(
        tmp_path, demo_model_dir):  # noqa: F811
    from gdig.pipeline import select_pipeline

    data = demo_config(tmp_path, demo_model_dir)
    data["prefilter"] = {"langid": {"enabled": False}}  # the invented demo languages have no language ID
    data["selection"]["strategies"] = ["gdig", "random", "full"]
    summary = select_pipeline(parse_config(data), progress=False)
    art = tmp_path / "artifacts"
    with Store(data["workspace"]["db"]) as store:
        pool = store.dataset_examples("pool")
        sig = store.prefilter_signatures("pool")[0]
        verdicts = store.prefilter("pool", sig)
        passed = set(verdicts.loc[verdicts["passed"], "example_id"])
        copies = verdicts.loc[verdicts["rule"] == "copies", "example_id"].tolist()
        assert 0 < len(passed) < len(pool) and copies
        labels = pool.set_index("example_id")["label"]
        assert set(labels[copies]) == {"untranslated"}  # the copy rule catches copies, nothing else
        scored = set(store.influence(summary.scoring_id)["example_id"])
        assert scored == passed  # scoring and every selection draw from the rows that pass
        full = [r for r in summary.selections if r.strategy == "full"][0]
        assert full.size == len(passed)
        assert summary.prefilter["pool"]["n_passed"] == len(passed)
        assert summary.prefilter["pool"]["rejected"]["copies"] == len(copies)
        assert f"rejected per rule: " in summary.render() and "seed" in summary.prefilter
    curvature = _files(art / "curvature", "*.safetensors")
    shards = _files(art / "scores" / "shards", "*.parquet")

    data["prefilter"]["copies"] = {"enabled": False}  # loosen one rule: the copies now pass
    again = select_pipeline(parse_config(data), progress=False)
    assert _files(art / "curvature", "*.safetensors") == curvature  # no refit, file untouched
    now = _files(art / "scores" / "shards", "*.parquet")
    assert {k: now[k] for k in shards} == shards  # every earlier shard file kept as it was
    new = sorted(set(now) - set(shards))
    assert new and all("+" in n for n in new)  # only delta files
    import pyarrow.parquet as pq

    rescored = sum(pq.read_metadata(art / "scores" / "shards" / n).num_rows for n in new)
    with Store(data["workspace"]["db"]) as store:
        sig2 = store.prefilter_signatures("pool")[0]
        passed2 = set(store.prefilter("pool", sig2).query("passed")["example_id"])
        assert sig2 != sig and passed2 > passed
        assert rescored == len(passed2 - passed)  # at most the rows that newly pass: exactly them
        assert set(store.influence(again.scoring_id)["example_id"]) == passed2
        ckpts = store.table("checkpoints")
        assert (ckpts["kind"] == "pool").sum() <= 1

    data["prefilter"]["copies"] = {"enabled": True}  # back: nothing is scored, the copies drop out
    back = select_pipeline(parse_config(data), progress=False)
    assert _files(art / "scores" / "shards", "*.parquet") == now
    with Store(data["workspace"]["db"]) as store:
        assert set(store.influence(back.scoring_id)["example_id"]) == passed
        assert back.scoring_id == summary.scoring_id


def test_prefilter_disabled_scores_every_row(tmp_path, demo_model_dir):  # noqa: F811
    from gdig.pipeline import select_pipeline

    data = demo_config(tmp_path, demo_model_dir)
    data["selection"]["strategies"] = ["full"]
    summary = select_pipeline(parse_config(data), progress=False)
    assert summary.pool_size == 120 and summary.prefilter == {}
    with Store(data["workspace"]["db"]) as store:
        assert store.prefilter_signatures("pool") == []
        assert isinstance(store.influence(summary.scoring_id), pd.DataFrame)


def test_the_pool_learns_the_ratio_bounds_and_the_seed_set_is_judged_by_them(tmp_path):
    from types import SimpleNamespace

    from gdig.data.ingest import example_id
    from gdig.config import PrefilterConfig
    from gdig.prefilter import prefilter_rows
    from gdig.prefilter.verdicts import judge_datasets

    rng = np.random.default_rng(0)
    words = ["jablko", "strom", "zahrada", "dům", "voda", "slunce", "řeka", "les"]

    def rows(n, stretch):  # target about `stretch` times as long as the source, in letters
        out = []
        for i in range(n):
            src = " ".join(rng.choice(words, 8)) + f" {i}."
            out.append((src, " ".join(rng.choice(["tree", "wood", "lake", "hill"], int(round(len(src) * stretch / 5))))
                        + "."))
        return pd.DataFrame(out, columns=["src", "tgt"])

    cfg = SimpleNamespace(prefilter=PrefilterConfig.model_validate({"langid": {"enabled": False},
                                                                    "repeats": {"enabled": False}}))
    with Store(tmp_path / "s.duckdb") as store:
        for name, df in (("pool", rows(150, 2.0)), ("seed", rows(5, 1.0))):
            df["src_lang"], df["tgt_lang"] = "cs", "en"
            df["example_id"] = [example_id("cs", "en", s, t) for s, t in zip(df["src"], df["tgt"])]
            df["source_file"], df["source_row"] = f"{name}.jsonl", range(1, len(df) + 1)
            store.add_rows(dataset=name, role="candidates" if name == "pool" else "seed", src_lang="cs",
                           tgt_lang="en", rows=df)
        out = judge_datasets(cfg, store, "pool", ["seed"])
        pool_bounds = out["pool"]["ratio_bounds"]
        assert pool_bounds == out["seed"]["ratio_bounds"]  # the seed set is judged by the pool's
        assert 0.5 < pool_bounds["center"] < 0.9  # the pool's targets are about twice as long
        # the seed set's own ratio (1.0, log 0) is far from the pool's: every seed row fails it
        assert out["seed"]["rejected"] == {"ratio.length": 5}
        alone = prefilter_rows(store.dataset_examples("seed"), cfg.prefilter, "cs", "en")
        assert alone["passed"].all()  # judged alone (5 rows < min_rows: the prior), they pass
        stored = store.prefilter("pool", out["pool"]["signature"])  # the bounds, with every verdict
        assert {f["ratio.center"] for f in stored["figures"]} == {pool_bounds["center"]}
        assert {f["ratio.spread"] for f in stored["figures"]} == {pool_bounds["spread"]}
        again = judge_datasets(cfg, store, "pool", ["seed"])  # a rerun reads them back
        assert again == out


def test_the_stage_declares_every_prefilter_module():
    from pathlib import Path

    from gdig import graph

    package = Path(graph.__file__).parent / "prefilter"
    modules = {f"gdig.prefilter.{p.stem}" for p in package.glob("*.py") if p.stem != "__init__"}
    # an edit to any of them renews the stage's cache key (its code, walked from its function)
    assert modules <= set(graph.stage("prefilter").code_modules())
