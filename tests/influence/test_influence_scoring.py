"""Fused scores vs dense -g_zᵀ H⁻¹ g_s; padding/prompt invariance; sign; low rank; sketches."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from _influence_util import ROWS, direct_capture, encode, micro_model
from conftest import TEXTS

from gdig.data.prompts import IGNORE, collate, length_batches
from gdig.influence.curvature import fit_curvature
from gdig.influence.hooks import capture_batch, per_example_loss
from gdig.influence.inverse import InverseHessian
from gdig.influence.modules import select_modules
from gdig.influence.scoring import Scorer, SketchSpec, aggregate, contraction_costs, plan_batches
from gdig.influence.seeds import seed_gradients, seed_products

SEEDS = [("the cat", "der Hund lief schnell", "en", "de"), ("a test sentence", "ein Satz", "en", "de"),
         ("big house", "das Haus ist gross", "en", "de")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    model, tok = micro_model(tmp_path_factory.mktemp("micro-llama-s"), TEXTS, "llama")
    mods = select_modules(model, "llama", include=[], exclude=["gate_proj", "down_proj"], layers=[0]) + \
        select_modules(model, "llama", exclude=["gate_proj", "up_proj"], layers=[1])
    cands = encode(tok)
    seeds = encode(tok, SEEDS)
    plan = length_batches([len(e.input_ids) for e in cands], 2)
    batches = lambda: (collate([cands[i] for i in b], tok.pad_token_id) for b in plan)  # noqa: E731
    curv = {s: fit_curvature(model, mods, batches, strategy=s, granularity="sequence") for s in ("kfac", "ekfac")}
    return model, tok, mods, cands, seeds, curv, direct_capture(model, mods, cands), direct_capture(model, mods, seeds)


def _dense_hinv(inv: InverseHessian, name, n_out, n_in):
    """H⁻¹ as an explicit matrix: apply to every basis matrix (the operator is checked against a
    dense Kronecker solve in test_influence_math)."""
    eye = torch.eye(n_out * n_in, dtype=torch.float64).reshape(-1, n_out, n_in)
    return inv.apply(name, eye).reshape(n_out * n_in, -1)


@pytest.mark.parametrize("strategy", ["kfac", "ekfac"])
def test_fused_scores_equal_dense_reference(setup, strategy):
    model, tok, mods, cands, seeds, curv, dc, ds = setup
    inv = InverseHessian(curv[strategy], 0.5)
    grads = seed_gradients(model, mods, seeds, pad_id=tok.pad_token_id, batch_size=2)
    prods = seed_products(grads, inv, mods, [str(i) for i in range(len(seeds))])
    res = Scorer(model, mods, prods).score_encoded(cands, pad_id=tok.pad_token_id, batch_size=3)
    # the per-example path in slices of one output row (cache-sized slices on a big model)
    sliced = Scorer(model, mods, prods, slice_bytes=1).score_encoded(cands, pad_id=tok.pad_token_id, batch_size=3)
    ref = np.zeros((len(cands), len(seeds)))
    for m in mods:
        hinv = _dense_hinv(inv, m.name, m.out_features, m.in_dim)
        gz = torch.stack([d[m.name][2].reshape(-1) for d in dc])
        gs = torch.stack([d[m.name][2].reshape(-1) for d in ds])
        ref += (-(gz @ hinv @ gs.T)).numpy()  # I(z, s) = -g_zᵀ H⁻¹ g_s
    np.testing.assert_allclose(res.scores, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    # batches contracted one at a time (score_encoded groups them to read the products once)
    alone = Scorer(model, mods, prods, contract_rows=1).score_encoded(cands, pad_id=tok.pad_token_id, batch_size=3)
    np.testing.assert_allclose(alone.scores, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(alone.grad_norm, res.grad_norm, rtol=1e-6)
    np.testing.assert_array_equal(alone.loss, res.loss)
    np.testing.assert_allclose(sliced.scores, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
    np.testing.assert_allclose(sliced.grad_norm, res.grad_norm, rtol=1e-5)
    assert np.abs(ref).min() > 0
    agg = res.aggregates()
    np.testing.assert_allclose(agg["helped_fraction"], (ref < 0).mean(1))
    np.testing.assert_allclose(agg["min"], ref.min(1), rtol=1e-5)
    # own loss = mean CE over target tokens; closing loss = CE of the last target token (the EOS)
    np.testing.assert_array_equal(alone.closing_loss, res.closing_loss)
    for i, e in enumerate(cands):
        b = collate([e], 0)
        with torch.no_grad():
            logits = model(input_ids=b["input_ids"]).logits[0, :-1]
        tgt = torch.tensor(e.input_ids[1:])
        on = torch.tensor(e.labels[1:]) != IGNORE
        ce = torch.nn.functional.cross_entropy(logits[on], tgt[on], reduction="none")
        assert res.loss[i] == pytest.approx(ce.mean().item(), rel=1e-5)
        assert e.input_ids[-1] == tok.eos_token_id and on[-1]  # the last target token is the appended EOS
        assert res.closing_loss[i] == pytest.approx(ce[-1].item(), rel=1e-5)
    assert len(set(res.closing_loss.tolist())) == len(cands)  # one per row, not one per batch


def test_seed_groups_average_gradients(setup):
    model, tok, mods, cands, seeds, curv, dc, ds = setup
    g2 = seed_gradients(model, mods, seeds, pad_id=tok.pad_token_id, group_size=2)
    for m in mods:
        assert g2[m.name].shape[0] == 2  # 3 seeds in groups of 2: (0,1), (2,)
        ref0 = (ds[0][m.name][2] + ds[1][m.name][2]) / 2
        torch.testing.assert_close(g2[m.name][0].double(), ref0, rtol=1e-4, atol=1e-8)
        torch.testing.assert_close(g2[m.name][1].double(), ds[2][m.name][2], rtol=1e-4, atol=1e-8)


def test_padding_and_prompt_do_not_change_scores(setup):
    model, tok, mods, cands, seeds, curv, dc, ds = setup
    inv = InverseHessian(curv["ekfac"], 0.5)
    prods = seed_products(seed_gradients(model, mods, seeds, pad_id=tok.pad_token_id), inv, mods, ["a", "b", "c"])
    scorer = Scorer(model, mods, prods)
    short = min(range(len(cands)), key=lambda i: len(cands[i].input_ids))
    alone = scorer.score_batch(collate([cands[short]], tok.pad_token_id))
    padded = scorer.score_batch(collate(cands, tok.pad_token_id))  # padded to the longest row
    assert len(cands[short].input_ids) < max(len(e.input_ids) for e in cands)
    torch.testing.assert_close(padded[0][short], alone[0][0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(padded[1][short], alone[1][0], rtol=1e-6, atol=1e-7)
    # prompt tokens carry no loss: a different prompt-token *label* changes nothing, a target label does
    b = collate([cands[short]], tok.pad_token_id)
    p = cands[short].prompt_len
    b2 = {k: v.clone() for k, v in b.items()}
    assert (b2["labels"][0, :p] == IGNORE).all()
    b3 = {k: v.clone() for k, v in b.items()}
    b3["labels"][0, 1:p] = b3["input_ids"][0, 1:p]  # what an unmasked prompt would do
    assert not torch.allclose(scorer.score_batch(b3)[0], alone[0])
    # per_example_loss counts target tokens only; the closing loss is the last one's
    logits = torch.randn(3, 6, 11)
    labels = torch.tensor([[IGNORE, IGNORE, IGNORE, 4, 5, IGNORE], [IGNORE, 1, 2, 3, 4, 5],
                           [IGNORE] * 6])
    loss, n, closing = per_example_loss(logits, labels, "sum")
    ce = lambda r, a, b, t: torch.nn.functional.cross_entropy(logits[r, a:b], torch.tensor(t), reduction="none")  # noqa: E731
    assert n.tolist() == [2, 5, 0]
    assert loss[0].item() == pytest.approx(ce(0, 2, 4, [4, 5]).sum().item(), rel=1e-6)
    assert loss[1].item() == pytest.approx(ce(1, 0, 5, [1, 2, 3, 4, 5]).sum().item(), rel=1e-6)
    assert closing[0].item() == pytest.approx(ce(0, 3, 4, [5]).item(), rel=1e-6)
    assert closing[1].item() == pytest.approx(ce(1, 4, 5, [5]).item(), rel=1e-6)
    assert loss[2].item() == 0 and torch.isnan(closing[2])  # no target token: no closing loss


@pytest.mark.parametrize("strategy", ["kfac", "ekfac"])
def test_candidate_identical_to_seed_helps_it(setup, strategy):
    model, tok, mods, cands, seeds, curv, dc, ds = setup
    inv = InverseHessian(curv[strategy], 0.5)
    prods = seed_products(seed_gradients(model, mods, seeds, pad_id=tok.pad_token_id), inv, mods, ["a", "b", "c"])
    res = Scorer(model, mods, prods).score_encoded(seeds, pad_id=tok.pad_token_id)
    assert (np.diag(res.scores) < 0).all()  # I(s, s) = -g_sᵀ H⁻¹ g_s < 0


def test_low_rank_full_rank_is_exact_and_paths_agree(setup):
    model, tok, mods, cands, seeds, curv, dc, ds = setup
    inv = InverseHessian(curv["ekfac"], 0.5)
    grads = seed_gradients(model, mods, seeds, pad_id=tok.pad_token_id)
    exact = seed_products(grads, inv, mods, ["a", "b", "c"])
    full_rank = seed_products(grads, inv, mods, ["a", "b", "c"], rank=64)  # >= min(out, in) = 16
    low = seed_products(grads, inv, mods, ["a", "b", "c"], rank=2)
    for m in mods:
        assert low.low[m.name][0].shape == (3, m.out_features, 2)
        torch.testing.assert_close(full_rank.dense(m.name), exact.full[m.name], rtol=1e-4, atol=1e-5)
    ref = Scorer(model, mods, exact).score_encoded(cands, pad_id=tok.pad_token_id).scores
    tol = dict(rtol=1e-4, atol=1e-5 * np.abs(ref).max())
    for path in ("per_example", "token"):
        sc = Scorer(model, mods, full_rank, path=path)
        np.testing.assert_allclose(sc.score_encoded(cands, pad_id=tok.pad_token_id).scores, ref, **tol)
        assert sc.paths_used[mods[0].name] == {path}
    # rank 2 is an approximation: the two paths still agree with each other
    s1 = Scorer(model, mods, low, path="token").score_encoded(cands, pad_id=tok.pad_token_id).scores
    s2 = Scorer(model, mods, low, path="per_example").score_encoded(cands, pad_id=tok.pad_token_id).scores
    np.testing.assert_allclose(s1, s2, rtol=1e-4, atol=1e-6 * np.abs(s2).max())
    assert not np.allclose(s1, ref, rtol=1e-3)
    with pytest.raises(ValueError, match="low-rank"):
        Scorer(model, mods, exact, path="token")


def test_gradient_norm_is_the_dense_per_example_gradient_norm_on_both_paths(setup):
    model, tok, mods, cands, seeds, curv, dc, ds = setup
    inv = InverseHessian(curv["kfac"], 0.5)
    grads = seed_gradients(model, mods, seeds, pad_id=tok.pad_token_id)
    prods = seed_products(grads, inv, mods, ["a", "b", "c"], rank=2)
    ref = np.sqrt([sum(float(d[m.name][2].square().sum()) for m in mods) for d in dc])
    assert ref.min() > 0
    for path in ("per_example", "token"):
        res = Scorer(model, mods, prods, path=path).score_encoded(cands, pad_id=tok.pad_token_id, batch_size=3)
        np.testing.assert_allclose(res.grad_norm, ref, rtol=1e-4)
    # each batch picks its path by its own shape: a contraction group can mix both
    class Mixed(Scorer):
        def _choose(self, m, b, t):
            return "token" if t % 2 else "per_example"

    lengths = {len(c.input_ids) % 2 for c in cands}
    assert lengths == {0, 1}
    mixer = Mixed(model, mods, prods)
    mixed = mixer.score_encoded(cands, pad_id=tok.pad_token_id, batch_size=1)
    assert all(p == {"token", "per_example"} for p in mixer.paths_used.values())
    one = Scorer(model, mods, prods, path="per_example").score_encoded(cands, pad_id=tok.pad_token_id, batch_size=1)
    np.testing.assert_allclose(mixed.grad_norm, ref, rtol=1e-4)
    np.testing.assert_allclose(mixed.scores, one.scores, rtol=1e-4, atol=1e-5 * np.abs(one.scores).max())


def test_contraction_choice_by_cost():
    # dense products: per-example gradients; wide module + small rank: token projections
    assert contraction_costs(8, 64, 64, 4096, 4096, 8)["token"] < contraction_costs(8, 64, 64, 4096, 4096, 8)["per_example"]
    c = contraction_costs(8, 64, 64, 24, 16, 16)
    assert c["per_example"] < c["token"]


def test_sketch_is_kronecker_projection_of_per_example_gradient(setup):
    model, tok, mods, cands, seeds, curv, dc, ds = setup
    inv = InverseHessian(curv["kfac"], 0.5)
    prods = seed_products(seed_gradients(model, mods, seeds, pad_id=tok.pad_token_id), inv, mods, ["a", "b", "c"])
    spec = SketchSpec(3, 4, seed=7)
    scorer = Scorer(model, mods, prods, sketch=spec)
    res = scorer.score_encoded(cands, pad_id=tok.pad_token_id, batch_size=2)
    assert res.sketch.shape == (len(cands), 2 * 3 * 4)
    for i, d in enumerate(dc):
        ref = torch.cat([(scorer.proj[m.name][0].double() @ d[m.name][2] @ scorer.proj[m.name][1].double().T).reshape(-1)
                         for m in mods])
        np.testing.assert_allclose(res.sketch[i], ref.numpy(), rtol=1e-4, atol=1e-6 * ref.abs().max().item())
    # fixed seed -> same projections in another process; another seed -> different ones
    again = Scorer(model, mods, prods, sketch=spec).proj
    other = Scorer(model, mods, prods, sketch=SketchSpec(3, 4, seed=8)).proj
    assert torch.equal(again[mods[0].name][0], scorer.proj[mods[0].name][0])
    assert not torch.equal(other[mods[0].name][0], scorer.proj[mods[0].name][0])


def test_plan_batches_stays_within_blocks():
    lengths = [9, 3, 7, 1, 5, 8, 2, 6]
    positions = list(range(10, 18))
    plan = plan_batches(lengths, positions, batch_size=2, block_size=4)  # blocks [8,12), [12,16), [16,20)
    assert plan == [[1, 0], [3, 4], [2, 5], [6, 7]]
    assert aggregate(np.array([[-1.0, 2.0, -3.0, 0.0]], np.float32))["helped_fraction"][0] == 0.5


def test_bfloat16_model_scores_in_float32_close_to_float32(setup, tmp_path):
    model, tok, mods, cands, seeds, curv, dc, ds = setup
    inv = InverseHessian(curv["kfac"], 0.5)
    prods = seed_products(seed_gradients(model, mods, seeds, pad_id=tok.pad_token_id), inv, mods, ["a", "b", "c"])
    ref = Scorer(model, mods, prods).score_encoded(cands, pad_id=tok.pad_token_id).scores
    m16 = copy.deepcopy(model).to(torch.bfloat16)
    mods16 = select_modules(m16, "llama", exclude=["gate_proj", "down_proj"], layers=[0]) + \
        select_modules(m16, "llama", exclude=["gate_proj", "up_proj"], layers=[1])
    res = Scorer(m16, mods16, prods, sketch=SketchSpec(2, 2)).score_encoded(cands, pad_id=tok.pad_token_id)
    assert res.scores.dtype == np.float32 and res.sketch.dtype == np.float32
    # bf16 activations (8 mantissa bits): same scores to a few percent, same signs where not tiny
    np.testing.assert_allclose(res.scores, ref, rtol=0.1, atol=0.05 * np.abs(ref).max())
    big = np.abs(ref) > 0.2 * np.abs(ref).max()
    assert (np.sign(res.scores[big]) == np.sign(ref[big])).all()
