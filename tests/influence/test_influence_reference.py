"""`sequence` mode against the G-DIG reference code's formula, computed densely on a tiny BLOOM.

The reference (nngeometry K-FAC over the MLP dense_h_to_4h modules, run as the paper's code runs
it), written here from its description, with plain autograd and HF's own loss:

- curvature per example (batch of one): ā = (Σ_t x_t, 1) = the module's inputs summed over the
  sequence plus ONE bias entry per sequence, ḡ = Σ_t ∂L/∂y_t (L = HF's mean loss over the
  example's target tokens); A = mean ā āᵀ, G = mean ḡ ḡᵀ over the examples;
- π-damping with λ: H = (G + √λ/π I) ⊗ (A + π√λ I), π = sqrt((tr A / dim A) / (tr G / dim G));
- seeds in pairs: a pair's gradient is the gradient of HF's loss over the padded pair, i.e. the
  mean over ALL target tokens of both seeds (an odd last seed is a group of one);
- I(z, s) = -∇L(z)ᵀ H⁻¹ ∇L(s), summed over the modules, ∇L(z) of each candidate alone.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _influence_util import ROWS, encode, micro_model
from conftest import TEXTS

from gdig.data.prompts import collate, length_batches
from gdig.influence.curvature import fit_curvature
from gdig.influence.inverse import InverseHessian
from gdig.influence.modules import select_modules
from gdig.influence.scoring import Scorer
from gdig.influence.seeds import seed_gradients, seed_products, seed_weighting_for

SEEDS = [("the cat", "der Hund lief schnell nach Hause", "en", "de"), ("a test sentence", "ein Satz", "en", "de"),
         ("big house", "das Haus ist gross", "en", "de"), ("red mat", "rot", "en", "de"),
         ("the small house is red", "das kleine Haus ist rot und gross", "en", "de")]
LAM = 0.5


@pytest.fixture(scope="module")
def bloom(tmp_path_factory):
    model, tok = micro_model(tmp_path_factory.mktemp("micro-bloom"), TEXTS, "bloom")
    mods = select_modules(model, "bloom")
    assert [m.name for m in mods] == [f"transformer.h.{i}.mlp.dense_h_to_4h" for i in (0, 1)]
    assert all(m.has_bias for m in mods)
    return model, tok, mods


def _hf_grads(model, mods, batch):
    """Per module ([out, in+1] weight|bias gradient of HF's loss on ``batch``, inputs, output grads)."""
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
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss
        loss.backward()
    finally:
        for h in hooks:
            h.remove()
    out = {}
    for cm in mods:
        x, y = store[cm.name]
        grad = torch.cat([cm.module.weight.grad.double(), cm.module.bias.grad.double()[:, None]], 1)
        out[cm.name] = (grad, x.double(), y.grad.double())
    model.zero_grad(set_to_none=True)
    return out


def reference_scores(model, tok, mods, curv_enc, seed_enc, cand_enc, bias_entry="one"):
    """The reference formula, dense: [candidates, seed pairs] float64."""
    singles = [_hf_grads(model, mods, collate([e], tok.pad_token_id)) for e in curv_enc]
    pairs = [_hf_grads(model, mods, collate(seed_enc[i:i + 2], tok.pad_token_id)) for i in range(0, len(seed_enc), 2)]
    cands = [_hf_grads(model, mods, collate([e], tok.pad_token_id)) for e in cand_enc]
    total = torch.zeros(len(cand_enc), len(pairs), dtype=torch.float64)
    for cm in mods:
        abar, gbar = [], []
        for d in singles:
            _, x, g = d[cm.name]
            n_tok = x.shape[1]
            bias = 1.0 if bias_entry == "one" else float(n_tok)
            abar.append(torch.cat([x[0].sum(0), torch.tensor([bias], dtype=torch.float64)]))
            gbar.append(g[0].sum(0))
        a, g = torch.stack(abar), torch.stack(gbar)
        A, G = a.T @ a / len(a), g.T @ g / len(g)
        pi = math.sqrt((torch.trace(A) / A.shape[0]) / (torch.trace(G) / G.shape[0]))
        s = math.sqrt(LAM)
        H = torch.kron(G + s / pi * torch.eye(G.shape[0], dtype=torch.float64),
                       A + pi * s * torch.eye(A.shape[0], dtype=torch.float64))
        seeds = torch.stack([p[cm.name][0].reshape(-1) for p in pairs])  # [S, out·in']
        hinv_s = torch.linalg.solve(H, seeds.T)  # [out·in', S]
        cz = torch.stack([c[cm.name][0].reshape(-1) for c in cands])
        total -= cz @ hinv_s
    return total.numpy()


def gdig_scores(model, tok, mods, curv_enc, seed_enc, cand_enc, *, weighting="auto", sequence_bias="one"):
    plan = length_batches([len(e.input_ids) for e in curv_enc], 3)  # padded batches of mixed lengths
    curv = fit_curvature(model, mods, lambda: (collate([curv_enc[i] for i in b], tok.pad_token_id) for b in plan),
                         strategy="kfac", granularity="sequence", sequence_bias=sequence_bias)
    grads = seed_gradients(model, mods, seed_enc, pad_id=tok.pad_token_id, group_size=2, batch_size=3,
                           weighting=seed_weighting_for("sequence", weighting))
    prods = seed_products(grads, InverseHessian(curv, LAM), mods, [str(i) for i in range(len(grads[mods[0].name]))])
    return Scorer(model, mods, prods).score_encoded(cand_enc, pad_id=tok.pad_token_id, batch_size=2).scores


def _rel(a, b) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def data(bloom):
    model, tok, mods = bloom
    curv_enc = encode(tok, ROWS + SEEDS)
    return curv_enc, encode(tok, SEEDS), encode(tok, ROWS)


def test_sequence_mode_matches_the_reference_formula(bloom, data):
    model, tok, mods = bloom
    curv_enc, seed_enc, cand_enc = data
    assert len({sum(x != -100 for x in e.labels) for e in seed_enc}) > 2  # pairs of unequal target lengths
    ref = reference_scores(model, tok, mods, curv_enc, seed_enc, cand_enc)
    assert ref.shape == (5, 3)
    got = gdig_scores(model, tok, mods, curv_enc, seed_enc, cand_enc)  # the defaults: tokens, one
    assert _rel(got, ref) <= 1e-5
    # the per-example average of a pair is a different quantity, available by name
    avg = gdig_scores(model, tok, mods, curv_enc, seed_enc, cand_enc, weighting="examples")
    assert _rel(avg, ref) > 1e-3
    assert np.allclose(avg[:, -1], got[:, -1], rtol=1e-5, atol=1e-7 * np.abs(ref).max())  # last group: one seed


def test_sequence_bias_tokens_is_the_summed_ones_column(bloom, data):
    model, tok, mods = bloom
    curv_enc, seed_enc, cand_enc = data
    ref = reference_scores(model, tok, mods, curv_enc, seed_enc, cand_enc, bias_entry="tokens")
    got = gdig_scores(model, tok, mods, curv_enc, seed_enc, cand_enc, sequence_bias="tokens")
    assert _rel(got, ref) <= 1e-5
    one = reference_scores(model, tok, mods, curv_enc, seed_enc, cand_enc, bias_entry="one")
    assert _rel(one, ref) > 1e-4  # the convention matters, so the test above can tell them apart


def test_seed_weighting_resolution_and_errors():
    assert seed_weighting_for("sequence") == "tokens"
    assert seed_weighting_for("token") == "examples"
    assert seed_weighting_for("sequence", "examples") == "examples"
    with pytest.raises(ValueError, match="influence.seed_set.weighting"):
        seed_gradients(None, [], [object()], pad_id=0, weighting="bogus")
