"""Sharded curvature: per-shard partial sums (worker side, no store) combined in shard order in
the driver give the one-process fit bit for bit, and the plain fit to round-off."""

from __future__ import annotations

import pytest
import torch
from _influence_util import micro_model
from conftest import TEXTS
from curvature_walk import fit_curvature_here
from test_influence_stages import _cfg, _rows

from gdig.data.prompts import collate, length_batches
from gdig.influence.curvature import (
    Curvature, CurvaturePartial, combine_partials, fit_curvature, with_eigenvalues,
)
from gdig.influence.compute import (
    _encode, _load, _modules, curvature_bases_path, fit_eigenbases, curvature_id_for,
    curvature_partial_path, curvature_rows, sum_curvature_shard, curvature_shards, finish_curvature,
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("micro-llama-curv-shards")
    micro_model(d, TEXTS, "llama")
    return str(d)


def _config(tmp_path, model_dir, name, strategy, granularity, shard_size=4):
    cfg = _cfg(tmp_path / name, model_dir)
    cfg.influence.curvature.strategy = strategy
    cfg.influence.curvature.granularity = granularity
    cfg.influence.scoring.shard_size = shard_size
    return cfg


def _factor_partials(cfg, store, model_dir, out_dir, prefix):
    """The factor pass shard by shard into out_dir/{prefix}{start}.safetensors: (rows, paths)."""
    rows = curvature_rows(cfg, store)
    paths = [sum_curvature_shard(cfg, model_dir, rows.iloc[a:b].reset_index(drop=True),
                                   str(out_dir / f"{prefix}{a}.safetensors"), progress=False)
             for a, b in curvature_shards(cfg, len(rows))]
    return rows, paths


def _sharded(cfg, store, model_dir, checkpoint_id="ck"):
    """What the flow does: map shards (here in turn), bases in the driver, map again, finish."""
    rows = curvature_rows(cfg, store)
    cid = curvature_id_for(cfg, checkpoint_id, rows["example_id"])
    blocks = [(a, b, rows.iloc[a:b].reset_index(drop=True)) for a, b in curvature_shards(cfg, len(rows))]
    parts = [sum_curvature_shard(cfg, model_dir, blk, curvature_partial_path(cfg, cid, "factors", a, b),
                                   progress=False) for a, b, blk in blocks]
    bases = eig = None
    if cfg.influence.curvature.strategy == "ekfac":
        bases = fit_eigenbases(cfg, parts, curvature_bases_path(cfg, cid))
        eig = [sum_curvature_shard(cfg, model_dir, blk, curvature_partial_path(cfg, cid, "eigen", a, b),
                                     bases_path=bases, progress=False) for a, b, blk in blocks]
    from gdig.graph import code_keys

    return finish_curvature(cfg, store, checkpoint_id, parts, eigen_paths=eig, bases_path=bases,
                            code=code_keys()["curvature"]), len(blocks)  # the id the stages give


@pytest.mark.parametrize("strategy", ["kfac", "ekfac"])
@pytest.mark.parametrize("granularity", ["sequence", "token"])
def test_sharded_partials_equal_the_one_process_fit(tmp_path, store, model_dir, strategy, granularity):
    store.add_rows(dataset="pool", role="candidates", src_lang="en", tgt_lang="de", rows=_rows(10, 0))
    one = _config(tmp_path, model_dir, "one", strategy, granularity)
    cid = fit_curvature_here(one, store, model_dir, "ck", progress=False)
    sharded = _config(tmp_path, model_dir, "sharded", strategy, granularity)
    cid_sharded, n_shards = _sharded(sharded, store, model_dir)
    assert n_shards == 3 and cid_sharded == cid  # same id whichever path computed it
    a = Curvature.load(tmp_path / "one" / "art" / "curvature" / f"{cid}.safetensors")
    b = Curvature.load(store.get_curvature(cid)["path"])
    assert "sharded" in store.get_curvature(cid)["path"]
    assert (b.strategy, b.granularity, b.n_examples) == (strategy, granularity, 10)
    assert (a.n_tokens, a.meta["examples_hash"]) == (b.n_tokens, b.meta["examples_hash"])
    keys = ("A", "G", "QA", "QG", "eigen") if strategy == "ekfac" else ("A", "G")
    for name in a.module_names:
        for k in keys:
            assert torch.equal(getattr(a.factors[name], k), getattr(b.factors[name], k)), (name, k)
        if strategy == "kfac":
            assert b.factors[name].QA is None and b.factors[name].eigen is None

    # the plain fit (one bucketing over all rows, one running sum) is the same curvature up to the
    # float32 round-off of the model's forward/backward, which depends on how rows are batched
    model, tok = _load(one, model_dir, None)
    modules = _modules(one, model)
    enc, _, _ = _encode(one, tok, curvature_rows(one, store), "reference")
    plan = length_batches([len(e.input_ids) for e in enc], 3)
    ref = fit_curvature(model, modules, lambda: (collate([enc[i] for i in p], tok.pad_token_id) for p in plan),
                        strategy=strategy, granularity=granularity)
    assert (ref.n_examples, ref.n_tokens) == (b.n_examples, b.n_tokens)
    for name in a.module_names:
        for k in ("A", "G"):
            x, y = getattr(ref.factors[name], k), getattr(b.factors[name], k)
            assert not torch.equal(x, torch.zeros_like(x))
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-9)
        if strategy == "ekfac":  # bases of near-equal eigenvalues may rotate; the trace Σ Λ = mean ||grad||² may not
            x, y = ref.factors[name].eigen.sum(), b.factors[name].eigen.sum()
            assert x > 0
            torch.testing.assert_close(x, y, rtol=1e-5, atol=0.0)


def test_partials_sum_in_shard_order_and_counts_add_up(tmp_path, store, model_dir):
    store.add_rows(dataset="pool", role="candidates", src_lang="en", tgt_lang="de", rows=_rows(10, 0))
    cfg = _config(tmp_path, model_dir, "w", "kfac", "token")
    rows, paths = _factor_partials(cfg, store, model_dir, tmp_path, "p")
    parts = [CurvaturePartial.load(p) for p in paths]
    assert [p.n_examples for p in parts] == [4, 4, 2]
    assert [p.meta["example_ids"] for p in parts] == [list(rows["example_id"][a:b]) for a, b in ((0, 4), (4, 8), (8, 10))]
    total = combine_partials(parts)
    assert total.n_tokens == sum(p.n_tokens for p in parts) > 10
    name = parts[0].modules[0]["name"]
    expect = parts[0].sums[name]["A"].clone()
    expect += parts[1].sums[name]["A"]
    expect += parts[2].sums[name]["A"]
    assert torch.equal(total.sums[name]["A"], expect)
    assert torch.equal(parts[0].sums[name]["A"], CurvaturePartial.load(paths[0]).sums[name]["A"])  # not mutated

    eigen = CurvaturePartial("eigen", "token", parts[0].modules, {}, 1, 1)
    with pytest.raises(ValueError, match=r"curvature partial 1 \(eigen, token"):
        combine_partials([parts[0], eigen])
    with pytest.raises(ValueError, match="no curvature partials to combine"):
        combine_partials([])


def test_eigenvalue_pass_on_other_data_is_refused(tmp_path, store, model_dir):
    store.add_rows(dataset="pool", role="candidates", src_lang="en", tgt_lang="de", rows=_rows(10, 0))
    cfg = _config(tmp_path, model_dir, "w", "ekfac", "sequence")
    rows, factors = _factor_partials(cfg, store, model_dir, tmp_path, "f")
    bases = fit_eigenbases(cfg, factors, str(tmp_path / "bases.safetensors"))
    eig0 = sum_curvature_shard(cfg, model_dir, rows.iloc[:4].reset_index(drop=True), str(tmp_path / "e0.safetensors"),
                                 bases_path=bases, progress=False)
    with pytest.raises(RuntimeError, match="the two EK-FAC passes saw different data: factors on 10 examples"):
        with_eigenvalues(Curvature.load(bases), [CurvaturePartial.load(eig0)])
    with pytest.raises(ValueError, match="EK-FAC curvature needs the eigenbases file"):
        finish_curvature(cfg, store, "ck", factors)
    with pytest.raises(FileNotFoundError, match="curvature partial .*nope.safetensors does not exist"):
        finish_curvature(cfg, store, "ck", [str(tmp_path / "nope.safetensors")])


def test_curvature_rows_of_the_reference_pool_ignore_appended_rows(tmp_path, store, model_dir):
    store.add_rows(dataset="pool", role="candidates", src_lang="en", tgt_lang="de", rows=_rows(10, 0))
    cfg = _config(tmp_path, model_dir, "w", "kfac", "sequence")
    before = curvature_rows(cfg, store)
    store.add_rows(dataset="pool", role="candidates", src_lang="en", tgt_lang="de", rows=_rows(3, 5))
    assert len(curvature_rows(cfg, store)) == 13
    assert curvature_rows(cfg, store, n_rows=10).equals(before)
    with pytest.raises(ValueError, match="dataset 'pool' has 13 rows, fewer than the reference's 20"):
        curvature_rows(cfg, store, n_rows=20)
