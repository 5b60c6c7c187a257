"""The `paper` preset against the G-DIG reference code's formulas, re-derived densely on a tiny Llama.

The reference, written here from its description with plain autograd and HF's own loss:

- modules: `mlp.down_proj` of every third layer (indices 0, 3, ...) of a Llama-family model;
- curvature on the pool, per example (batch of one): ā = Σ_t x_t (the module's inputs summed over
  the sequence), ḡ = Σ_t ∂L/∂y_t (L = HF's mean loss over the example's target tokens);
  A = mean ā āᵀ, G = mean ḡ ḡᵀ; π-damping with λ = 0.5: H = (G + √λ/π I) ⊗ (A + π√λ I),
  π = sqrt((tr A / dim A) / (tr G / dim G));
- seeds in pairs, the gradient of HF's loss over the padded pair; an odd last seed is dropped;
- every candidate gradient and seed-pair gradient replaced by ``torch.svd_lowrank(grad, q=r,
  niter=2)``'s U·diag(S)·Vᵀ (torch's own function, its Gaussian test matrix the one gdig draws
  for the module, so the two can agree to float precision);
- I(z, s) = -vec(ĝ_z)ᵀ H⁻¹ vec(ĝ_s), summed over the modules.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn as nn
from _influence_util import TEMPLATE, encode
from conftest import TEXTS
from curvature_walk import fit_curvature_here

from gdig.config import ConfigError, parse_config
from gdig.data.prompts import collate
from gdig.influence.compute import compute_seed_products, pool_rows, score_rows
from gdig.influence.lowrank import GradientRank, cut_rank, gaussian_matrix
from gdig.influence.modules import ModuleSelectionError, select_from_config, select_modules
from gdig.influence.seeds import SeedProducts, kept_seeds
from gdig.modeling import build_tiny_model, load_model

LAM, RANK = 0.5, 3
POOL = [("the cat sat on the mat", "der Hund lief"), ("a small test", "ein kleiner Satz zum Testen und mehr"),
        ("the house is red and big and the cat", "das Haus"), ("red", "rot und gross"),
        ("the mat is small", "das Haus ist rot und gross"), ("big house", "das Haus ist gross")]
SEEDS = [("the cat", "der Hund lief schnell nach Hause"), ("a test sentence", "ein Satz"),
         ("big house", "das Haus ist gross"), ("red mat", "rot"),
         ("the small house is red", "das kleine Haus ist rot und gross")]  # odd: the last one is dropped


def _frame(pairs):
    return pd.DataFrame({
        "example_id": [hashlib.sha256(f"{s}|{t}".encode()).hexdigest()[:16] for s, t in pairs],
        "src_lang": "en", "tgt_lang": "de", "src": [s for s, _ in pairs], "tgt": [t for _, t in pairs],
        "source_file": "mem", "source_row": range(len(pairs)), "label": None,
    })


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    """A 4-layer tiny Llama: the official map keeps layers 0 and 3."""
    d = tmp_path_factory.mktemp("llama-4-layers")
    build_tiny_model(TEXTS, d, arch="llama", hidden=16, intermediate=24, layers=4, heads=2, vocab_size=300)
    return str(d)


def _cfg(tmp_path, model_dir, **influence):
    return parse_config({
        "preset": "paper",
        "workspace": {"db": str(tmp_path / "w.duckdb"), "dir": str(tmp_path / "art")},
        "languages": {"src": "en", "tgt": "de"},
        "model": {"name_or_path": model_dir},
        "prompt": {"template": TEMPLATE, "max_length": 64},
        "influence": {"curvature": {"batch_size": 3}, "scoring": {"batch_size": 2, "shard_size": 4}, **influence},
    })


# -- the module map -----------------------------------------------------------------------------------

def test_paper_preset_on_llama_takes_down_proj_of_every_third_layer_and_finetunes_on_the_pool(tmp_path, llama_dir):
    cfg = _cfg(tmp_path, llama_dir)
    assert cfg.influence.modules.preset == "official"
    pf = cfg.pool_finetune
    assert pf.enabled and pf.method == "full" and pf.checkpoint is None
    assert cfg.influence.curvature.sample is None  # the curvature is fitted on the whole pool it was trained on
    assert (cfg.influence.seed_set.batch_size, cfg.influence.seed_set.last_group) == (2, "drop")
    gr = cfg.influence.gradient_rank
    assert (gr.rank, gr.method, gr.niter) == (32, "randomized", 2)
    model, _ = load_model(llama_dir)
    assert [m.name for m in select_from_config(model, cfg.influence.modules)] == [
        "model.layers.0.mlp.down_proj", "model.layers.3.mlp.down_proj"]
    lora = parse_config({**cfg.model_dump(mode="json"), "pool_finetune": {"method": "lora"}})
    assert lora.pool_finetune.method == "lora" and lora.pool_finetune.enabled  # LoRA by choice
    # gdig's own default stays gate/up/down of every layer
    assert len(select_modules(model, "auto")) == 12


def test_official_map_layers_bloom_and_other_families(tmp_path, llama_dir, tiny_bloom_dir, tiny_gpt2_dir):
    model, _ = load_model(llama_dir)
    assert [m.name for m in select_modules(model, "official", layers=[-1])] == ["model.layers.3.mlp.down_proj"]
    with pytest.raises(ModuleSelectionError, match="no linear module matches"):
        select_modules(model, "official", layers=[1])  # not a layer of the map
    got = select_modules(model, "official", include=[r"layers\.1\.mlp\.up_proj$"])  # include is not strided
    assert [m.name for m in got] == ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.up_proj",
                                     "model.layers.3.mlp.down_proj"]
    bloom, _ = load_model(str(tiny_bloom_dir))
    assert [m.name for m in select_modules(bloom, "official")] == [
        "transformer.h.0.mlp.dense_h_to_4h", "transformer.h.1.mlp.dense_h_to_4h"]
    gpt2, _ = load_model(str(tiny_gpt2_dir))
    with pytest.raises(ModuleSelectionError, match="preset=official: the G-DIG reference code maps only BLOOM "
                                                   "and Llama-family models, not this 'gpt2' model"):
        select_modules(gpt2, "official")


@pytest.mark.parametrize("model_type", ["qwen2", "gemma3_text", "llama"])
def test_official_map_by_model_type(model_type):
    class Stub(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"model_type": model_type})()
            self.layers = nn.ModuleList(nn.ModuleDict({"mlp": nn.ModuleDict({
                "down_proj": nn.Linear(4, 2, bias=False), "up_proj": nn.Linear(2, 4, bias=False)})})
                for _ in range(7))

    assert [m.name for m in select_modules(Stub(), "official")] == [f"layers.{i}.mlp.down_proj" for i in (0, 3, 6)]


# -- pairs and the low-rank step -----------------------------------------------------------------------

def test_seed_pairs_drop_an_odd_last_seed():
    assert kept_seeds(5, 2, "drop") == 4 and kept_seeds(5, 2, "keep") == 5 and kept_seeds(6, 2, "drop") == 6
    assert kept_seeds(7, 3, "drop") == 6
    with pytest.raises(ValueError, match="1 seed\\(s\\) make no whole group of batch_size 2"):
        kept_seeds(1, 2, "drop")


def test_randomized_cut_is_torch_svd_lowrank_with_the_module_test_matrix(monkeypatch):
    gen = torch.Generator().manual_seed(3)
    grads = torch.randn(3, 12, 30, generator=gen, dtype=torch.float64)  # wide: torch works on the transpose
    spec = GradientRank(4, "randomized", 2, seed=7)
    got = cut_rank(grads, spec, "m.x")
    r = gaussian_matrix("m.x", 12, 4, seed=7)
    monkeypatch.setattr(torch, "randn", lambda *shape, dtype=None, device=None, **kw: r.to(dtype=dtype, device=device))
    for i in range(3):
        u, s, v = torch.svd_lowrank(grads[i], q=4, niter=2)
        assert torch.allclose(got[i], u @ torch.diag(s) @ v.T, rtol=0, atol=1e-12)
    monkeypatch.undo()
    assert int(torch.linalg.matrix_rank(got[0])) == 4
    assert torch.equal(cut_rank(grads, spec, "m.x"), got)  # seeded: the same again
    assert not torch.allclose(cut_rank(grads, GradientRank(4, "randomized", 2, seed=8), "m.x"), got)
    assert torch.equal(cut_rank(grads[:1], spec, "m.x"), got[:1])  # one test matrix per module, not per batch
    exact = cut_rank(grads, GradientRank(4, "exact"), "m.x")
    u, s, vh = torch.linalg.svd(grads[0])
    assert torch.allclose(exact[0], u[:, :4] @ torch.diag(s[:4]) @ vh[:4], atol=1e-12)
    assert (grads - exact).norm() < (grads - got).norm()  # the SVD is the best rank-4 approximation
    assert torch.equal(cut_rank(grads, GradientRank(12), "m.x"), grads)  # rank >= the smaller side: no cut


def test_gradient_rank_and_the_token_path_are_a_config_error():
    with pytest.raises(ConfigError, match="gradient_rank.rank cuts each candidate's gradient"):
        parse_config({"languages": {"src": "en", "tgt": "de"}, "model": {"name_or_path": "/nonexistent/m"},
                      "preset": "paper", "influence": {"scoring": {"path": "token"}}})


# -- the formula ---------------------------------------------------------------------------------------

def _hf_grads(model, mods, batch):
    """Per module: (weight gradient of HF's loss on ``batch``, inputs, output gradients), float64."""
    store, hooks = {}, []
    for cm in mods:
        def fwd(mod, inp, outp, name=cm.name):
            outp.retain_grad()
            store[name] = (inp[0].detach(), outp)
        hooks.append(cm.module.register_forward_hook(fwd))
    for p in model.parameters():
        p.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss.backward()
    finally:
        for h in hooks:
            h.remove()
    out = {cm.name: (cm.module.weight.grad.double(), store[cm.name][0].double(), store[cm.name][1].grad.double())
           for cm in mods}
    model.zero_grad(set_to_none=True)
    return out


def _svd_lowrank(grad, name, rank, seed, monkeypatch):
    """torch.svd_lowrank's rank-r reconstruction, its test matrix the module's (torch's own code otherwise)."""
    if rank is None:
        return grad
    r = gaussian_matrix(name, min(grad.shape), rank, seed)
    with monkeypatch.context() as mp:
        mp.setattr(torch, "randn", lambda *shape, dtype=None, device=None, **kw: r.to(dtype=dtype, device=device))
        u, s, v = torch.svd_lowrank(grad, q=rank, niter=2)
    return u @ torch.diag(s) @ v.T


def reference_scores(model, tok, mods, pool_enc, seed_enc, cand_enc, rank, monkeypatch, seed=0):
    """The reference formula, dense: [candidates, seed pairs] float64."""
    seed_enc = seed_enc[: len(seed_enc) // 2 * 2]  # an odd last seed is dropped
    singles = [_hf_grads(model, mods, collate([e], tok.pad_token_id)) for e in pool_enc]
    pairs = [_hf_grads(model, mods, collate(seed_enc[i:i + 2], tok.pad_token_id)) for i in range(0, len(seed_enc), 2)]
    cands = [_hf_grads(model, mods, collate([e], tok.pad_token_id)) for e in cand_enc]
    total = torch.zeros(len(cand_enc), len(pairs), dtype=torch.float64)
    for cm in mods:
        a = torch.stack([d[cm.name][1][0].sum(0) for d in singles])
        g = torch.stack([d[cm.name][2][0].sum(0) for d in singles])
        A, G = a.T @ a / len(a), g.T @ g / len(g)
        pi = math.sqrt((torch.trace(A) / A.shape[0]) / (torch.trace(G) / G.shape[0]))
        s = math.sqrt(LAM)
        H = torch.kron(G + s / pi * torch.eye(G.shape[0], dtype=torch.float64),
                       A + pi * s * torch.eye(A.shape[0], dtype=torch.float64))
        sg = torch.stack([_svd_lowrank(p[cm.name][0], cm.name, rank, seed, monkeypatch).reshape(-1) for p in pairs])
        cz = torch.stack([_svd_lowrank(c[cm.name][0], cm.name, rank, seed, monkeypatch).reshape(-1) for c in cands])
        total -= cz @ torch.linalg.solve(H, sg.T)
    return total.numpy()


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture
def workspace(tmp_path, store, llama_dir):
    store.add_rows(dataset="pool", role="candidates", src_lang="en", tgt_lang="de", rows=_frame(POOL))
    store.add_rows(dataset="seed", role="seed", src_lang="en", tgt_lang="de", rows=_frame(SEEDS))
    model, tok = load_model(llama_dir)
    pool, seeds = pool_rows(store), pool_rows(store, "seed")
    as_rows = lambda df: [(s, t, "en", "de") for s, t in zip(df["src"], df["tgt"])]  # noqa: E731
    return store, model, tok, pool, seeds, encode(tok, as_rows(pool)), encode(tok, as_rows(seeds))


def _gdig_scores(tmp_path, store, llama_dir, pool, cfg, name):
    cid = fit_curvature_here(cfg, store, llama_dir, "ck", progress=False)
    ppath = compute_seed_products(cfg, store, llama_dir, "ck", cid, progress=False)
    out = score_rows(cfg, llama_dir, ppath, pool, str(tmp_path / f"{name}.parquet"), progress=False)
    return np.array(pq.read_table(out).column("scores").to_pylist()), SeedProducts.load(ppath), ppath, cid


def test_paper_preset_matches_the_reference_formula(tmp_path, workspace, llama_dir, monkeypatch):
    store, model, tok, pool, seeds, pool_enc, seed_enc = workspace
    cfg = _cfg(tmp_path, llama_dir, gradient_rank={"rank": RANK})  # rank 32 would not cut a 16 x 24 gradient
    mods = select_from_config(model, cfg.influence.modules)
    assert [m.name for m in mods] == ["model.layers.0.mlp.down_proj", "model.layers.3.mlp.down_proj"]
    got, prods, ppath, cid = _gdig_scores(tmp_path, store, llama_dir, pool, cfg, "cut")
    ids = list(seeds["example_id"])
    assert prods.seed_ids == [f"{ids[0]}+{ids[1]}", f"{ids[2]}+{ids[3]}"] and prods.meta["dropped"] == [ids[4]]
    assert len({sum(x != -100 for x in e.labels) for e in seed_enc}) > 2  # pairs of unequal target lengths

    ref = reference_scores(model, tok, mods, pool_enc, seed_enc, pool_enc, RANK, monkeypatch)
    assert ref.shape == got.shape == (6, 2)
    assert _rel(got, ref) <= 1e-5
    uncut = reference_scores(model, tok, mods, pool_enc, seed_enc, pool_enc, None, monkeypatch)
    assert _rel(uncut, ref) > 1e-2  # the cut really changes the scores, so the match above tells them apart

    # seeded: a shard scored alone gives its rows' scores bit for bit
    part = score_rows(cfg, llama_dir, ppath, pool[pool["position"] >= 4], str(tmp_path / "part.parquet"),
                      progress=False)
    np.testing.assert_array_equal(np.array(pq.read_table(part).column("scores").to_pylist()), got[4:])


def test_exact_cut_and_no_cut_match_their_references(tmp_path, workspace, llama_dir, monkeypatch):
    store, model, tok, pool, seeds, pool_enc, seed_enc = workspace
    cfg = _cfg(tmp_path, llama_dir, gradient_rank={"rank": None})
    mods = select_from_config(model, cfg.influence.modules)
    got, _, _, _ = _gdig_scores(tmp_path, store, llama_dir, pool, cfg, "uncut")
    assert _rel(got, reference_scores(model, tok, mods, pool_enc, seed_enc, pool_enc, None, monkeypatch)) <= 1e-5

    cfg = _cfg(tmp_path, llama_dir, gradient_rank={"rank": RANK, "method": "exact"})
    got, _, _, _ = _gdig_scores(tmp_path, store, llama_dir, pool, cfg, "exact")
    # the reference with the truncated SVD in place of svd_lowrank
    with monkeypatch.context() as mp:
        def truncated(grad, q, niter):
            u, s, vh = torch.linalg.svd(grad, full_matrices=False)
            return u[:, :q], s[:q], vh[:q].T
        mp.setattr(torch, "svd_lowrank", truncated)
        ref = reference_scores(model, tok, mods, pool_enc, seed_enc, pool_enc, RANK, monkeypatch)
    assert _rel(got, ref) <= 1e-5
