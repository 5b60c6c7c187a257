"""Stage functions through a Store: curvature -> seed products -> sharded scoring -> merge."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from _influence_util import TEMPLATE, micro_model
from curvature_walk import fit_curvature_here
from conftest import TEXTS

from gdig.config import parse_config
from gdig.influence.scoring import plan_batches
from gdig.influence.seeds import SeedProducts
from gdig.influence.compute import (
    merge_score_files, pool_rows, read_score_matrix, score_rows,
    compute_seed_products, shard_ranges,
)

WORDS = "the cat sat on a mat and the house is red big small test sentence".split()


def _rows(n, offset):
    out = []
    for i in range(n):
        k = (i * 7 + offset) % 11 + 1  # varied lengths, not monotone in position
        src = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(k))
        tgt = " ".join(WORDS[(i * 3 + j) % len(WORDS)] for j in range((i * 5 + offset) % 9 + 1))
        out.append((src, tgt))
    return pd.DataFrame({
        "example_id": [hashlib.sha256(f"{s}|{t}".encode()).hexdigest()[:16] for s, t in out],
        "src_lang": "en", "tgt_lang": "de", "src": [s for s, _ in out], "tgt": [t for _, t in out],
        "source_file": "mem", "source_row": range(n), "label": [("noise" if i % 4 == 0 else None) for i in range(n)],
    })


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("micro-llama-stages")
    micro_model(d, TEXTS, "llama")
    return str(d)


def _cfg(tmp_path, model_dir):
    return parse_config({
        "workspace": {"db": str(tmp_path / "w.duckdb"), "dir": str(tmp_path / "art")},
        "languages": {"src": "en", "tgt": "de"},
        "model": {"name_or_path": model_dir},
        "prompt": {"template": TEMPLATE, "max_length": 64},
        "influence": {
            "modules": {"preset": "llama", "layers": [1], "exclude": ["gate_proj"]},
            "curvature": {"strategy": "ekfac", "batch_size": 3},
            "seed_set": {"batch_size": 2},
            "scoring": {"batch_size": 2, "shard_size": 4, "sketch_dim_g": 2, "sketch_dim_a": 3},
        },
    })


def test_stages_round_trip_and_sharded_equals_unsharded(tmp_path, store, model_dir):
    cfg = _cfg(tmp_path, model_dir)
    store.add_rows(dataset="pool", role="candidates", src_lang="en", tgt_lang="de", rows=_rows(10, 0))
    store.add_rows(dataset="seed", role="seed", src_lang="en", tgt_lang="de", rows=_rows(3, 5))
    rows = pool_rows(store)
    assert list(rows.columns) == ["example_id", "position", "src", "tgt", "src_lang", "tgt_lang", "label",
                                  "dataset", "source_file", "source_row"]
    assert shard_ranges(len(rows), 4) == [(0, 4), (4, 8), (8, 10)]
    assert shard_ranges(12, 4)[:2] == shard_ranges(10, 4)[:2]  # appending keeps earlier full shards
    assert shard_ranges(0, 4) == []

    cid = fit_curvature_here(cfg, store, model_dir, "ck1", progress=False)
    rec = store.get_curvature(cid)
    assert rec["modules"] == ["model.layers.1.mlp.up_proj", "model.layers.1.mlp.down_proj"]
    assert (rec["strategy"], rec["granularity"], rec["n_examples"]) == ("ekfac", "sequence", 10)
    assert rec["meta"]["n_tokens"] == rec["n_tokens"] > 10
    mtime = os.path.getmtime(rec["path"])
    assert fit_curvature_here(cfg, store, model_dir, "ck1", progress=False) == cid  # cached, not refitted
    assert os.path.getmtime(rec["path"]) == mtime
    assert fit_curvature_here(cfg, store, model_dir, "ck2", progress=False) != cid

    ppath = compute_seed_products(cfg, store, model_dir, "ck1", cid, progress=False)
    prods = SeedProducts.load(ppath)
    seed_ids = list(pool_rows(store, "seed")["example_id"])
    assert prods.seed_ids == [f"{seed_ids[0]}+{seed_ids[1]}", seed_ids[2]]  # groups of 2, averaged
    assert prods.full["model.layers.1.mlp.up_proj"].shape == (2, 24, 16)

    # within each shard the length bucketing really reorders rows (so block alignment matters)
    lengths = [len(s) + len(t) for s, t in zip(rows["src"], rows["tgt"])]
    blockwise = plan_batches(lengths, list(rows["position"]), 2, 4)
    assert blockwise != plan_batches(lengths, list(rows["position"]), 2, 10)
    assert blockwise != [[i, i + 1] for i in range(0, 10, 2)]

    whole = score_rows(cfg, model_dir, ppath, rows, str(tmp_path / "whole.parquet"), progress=False)
    shards = []
    for lo, hi in reversed(shard_ranges(len(rows), cfg.influence.scoring.shard_size)):
        part = rows[(rows["position"] >= lo) & (rows["position"] < hi)]
        shards.append(score_rows(cfg, model_dir, ppath, part, str(tmp_path / f"s{lo}.parquet"),
                                        progress=False, device="cpu"))
    t = pq.read_table(shards[0])
    assert t.column_names == ["example_id", "position", "loss", "closing_loss", "grad_norm", "helped_fraction",
                              "mean", "min", "max", "scores", "sketch"]
    assert t.column("closing_loss").null_count == 0 and min(t.column("closing_loss").to_pylist()) > 0

    sid_whole = merge_score_files(cfg, store, [whole], cid, ppath)
    ids_w, seeds_w, mat_w = read_score_matrix(store.get_scoring(sid_whole)["matrix_path"])
    agg_w = store.influence(sid_whole)
    sk_w = store.sketches(sid_whole)
    sid = merge_score_files(cfg, store, shards, cid, ppath)
    assert sid == sid_whole  # same inputs, same scoring id
    ids_s, seeds_s, mat_s = read_score_matrix(store.get_scoring(sid)["matrix_path"])
    assert ids_s == ids_w == list(rows["example_id"]) and seeds_s == seeds_w == prods.seed_ids
    assert mat_s.shape == (10, 2) and mat_s.dtype == np.float32
    assert mat_s.tobytes() == mat_w.tobytes()  # bit-for-bit
    agg_s = store.influence(sid)
    pd.testing.assert_frame_equal(agg_s, agg_w, check_exact=True)
    assert list(agg_s["position"]) == list(range(10))
    assert agg_s["label"].tolist()[0] == "noise"
    np.testing.assert_array_equal(agg_s["helped_fraction"], (mat_s < 0).mean(1))
    np.testing.assert_array_equal(agg_s["min"], mat_s.min(1).astype(np.float64))
    assert sk_w[1].shape == (10, 2 * 2 * 3) and store.sketches(sid)[1].tobytes() == sk_w[1].tobytes()
    sc = store.get_scoring(sid)
    assert (sc["n_candidates"], sc["n_seeds"], sc["seed_dataset"], sc["curvature_id"]) == (10, 2, "seed", cid)

    with pytest.raises(ValueError, match="overlap"):
        merge_score_files(cfg, store, [whole, shards[0]], cid, ppath)
    with pytest.raises(ValueError, match="no curvature"):
        compute_seed_products(cfg, store, model_dir, "ck1", "nope", progress=False)


def test_curvature_sample_is_seeded_and_in_pool_order(tmp_path, store, model_dir):
    from gdig.influence.compute import curvature_rows

    store.add_rows(dataset="pool", role="candidates", src_lang="en", tgt_lang="de", rows=_rows(10, 0))
    cfg = _cfg(tmp_path, model_dir)
    assert len(curvature_rows(cfg, store)) == 10
    cfg.influence.curvature.sample = 4
    a, b = curvature_rows(cfg, store), curvature_rows(cfg, store)
    assert len(a) == 4 and list(a["position"]) == sorted(a["position"]) and a.equals(b)
    cfg.influence.curvature.sample_seed = 1
    assert list(curvature_rows(cfg, store)["position"]) != list(a["position"])
    with pytest.raises(ValueError, match="lack column"):
        score_rows(cfg, model_dir, "unused", a.drop(columns=["tgt"]), str(tmp_path / "x.parquet"))
