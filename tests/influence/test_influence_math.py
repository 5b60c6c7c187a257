"""Hooks, K-FAC/EK-FAC factors and damped inverses against direct dense computations."""

from __future__ import annotations

import gc
import math
import weakref

import pytest
import torch
from _influence_util import direct_capture, encode, micro_model
from conftest import TEXTS

from gdig.data.prompts import collate, length_batches
from gdig.influence.curvature import Curvature, ModuleFactors, fit_curvature, gram_upper_, symmetrize_
from gdig.influence.hooks import capture_batch
from gdig.influence.inverse import InverseHessian
from gdig.influence.modules import select_modules


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    model, tok = micro_model(tmp_path_factory.mktemp("micro-llama"), TEXTS, "llama")
    mods = select_modules(model, "llama", include=[], exclude=["gate_proj", "down_proj"], layers=[0]) + \
        select_modules(model, "llama", exclude=["gate_proj", "up_proj"], layers=[-1])
    return model, tok, mods


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    model, tok = micro_model(tmp_path_factory.mktemp("micro-gpt2"), TEXTS, "gpt2")
    return model, tok, select_modules(model, "gpt2", layers=[1], exclude=["c_proj"])


@pytest.fixture(scope="module")
def llama_direct(llama):
    model, tok, mods = llama
    enc = encode(tok)
    return enc, direct_capture(model, mods, enc)


def test_hook_per_example_grads_match_autograd(llama, llama_direct):
    model, tok, mods = llama
    assert [m.name for m in mods] == ["model.layers.0.mlp.up_proj", "model.layers.1.mlp.down_proj"]
    enc, direct = llama_direct
    cap = capture_batch(model, mods, collate(enc, tok.pad_token_id))  # one padded batch of 5
    assert cap.mask.sum(1).tolist() == [len(e.input_ids) for e in enc]
    peg = cap.per_example_grads()
    for i in range(len(enc)):
        for m in mods:
            ref = direct[i][m.name][2]
            assert torch.allclose(peg[m.name][i].double(), ref, rtol=1e-4, atol=1e-7 * ref.abs().max().item())
    # parameters are left as they were (frozen only inside the capture)
    assert all(p.requires_grad for p in model.parameters())


def test_capture_is_freed_without_the_cyclic_collector(llama):
    """Dropping a capture frees its a and g at once: no reference cycle (a leaf's backward hook
    pointing back at the ModuleCapture that holds the leaf) keeps them until gc runs, which
    made scoring's peak memory grow with the number of candidates."""
    model, tok, mods = llama
    batch = collate(encode(tok), tok.pad_token_id)
    gc.collect()
    gc.disable()
    try:
        cap = capture_batch(model, mods, batch, mask_inputs=False)
        refs = [weakref.ref(t) for d in (cap.a, cap.g) for t in d.values()]
        del cap
        assert [r() is None for r in refs] == [True] * len(refs)
    finally:
        gc.enable()


def test_hook_grads_conv1d_with_bias(gpt2):
    model, tok, mods = gpt2
    assert [(m.name, m.kind, m.has_bias, m.in_dim) for m in mods] == [("transformer.h.1.mlp.c_fc", "conv1d", True, 17)]
    enc = encode(tok)
    direct = direct_capture(model, mods, enc)
    peg = capture_batch(model, mods, collate(enc, tok.pad_token_id)).per_example_grads()
    for i in range(len(enc)):
        ref = direct[i][mods[0].name][2]  # [out, in+1]: transposed Conv1D weight grad | bias grad
        assert peg[mods[0].name][i].shape == ref.shape == (24, 17)
        assert torch.allclose(peg[mods[0].name][i].double(), ref, rtol=1e-4, atol=1e-7 * ref.abs().max().item())


def _direct_factors(direct, name, granularity):
    if granularity == "token":
        a = torch.cat([d[name][0] for d in direct])
        g = torch.cat([d[name][1] for d in direct])
        return a.T @ a / len(a), g.T @ g / len(g)
    a = torch.stack([d[name][0].sum(0) for d in direct])
    g = torch.stack([d[name][1].sum(0) for d in direct])
    return a.T @ a / len(a), g.T @ g / len(g)


def _fit(model, tok, mods, enc, strategy, granularity, eigen_average="auto"):
    plan = length_batches([len(e.input_ids) for e in enc], 2)  # padded batches of mixed lengths
    return fit_curvature(model, mods, lambda: (collate([enc[i] for i in b], tok.pad_token_id) for b in plan),
                         strategy=strategy, granularity=granularity, fp64=True, eigen_average=eigen_average)


@pytest.mark.parametrize("granularity,eigen_average", [("token", "auto"), ("sequence", "auto"),
                                                       ("token", "example"), ("sequence", "token")])
def test_kfac_and_ekfac_factors_match_direct(llama, llama_direct, granularity, eigen_average):
    """Factors at either granularity; the EK-FAC correction averaged per token or per example
    (token factors + per-example average = kronfluence's EK-FAC)."""
    model, tok, mods = llama
    enc, direct = llama_direct
    curv = _fit(model, tok, mods, enc, "ekfac", granularity, eigen_average)
    average = {"auto": "token" if granularity == "token" else "example"}.get(eigen_average, eigen_average)
    assert curv.meta["eigen_average"] == average
    n_tokens = sum(len(e.input_ids) for e in enc)
    assert (curv.n_examples, curv.n_tokens) == (len(enc), n_tokens)
    for m in mods:
        A, G = _direct_factors(direct, m.name, granularity)
        f = curv.factors[m.name]
        assert torch.allclose(f.A, A, rtol=1e-5, atol=1e-6 * A.abs().max().item())
        assert torch.allclose(f.G, G, rtol=1e-5, atol=1e-6 * G.abs().max().item())
        # corrected eigenvalues: diagonal of the per-token / per-example gradient 2nd moment in the eigenbasis
        if average == "token":
            per = [torch.outer(gt, at) for d in direct for at, gt in zip(d[m.name][0], d[m.name][1])]
        else:
            per = [d[m.name][2] for d in direct]
        lam = torch.stack([(f.QG.T @ x @ f.QA) ** 2 for x in per]).mean(0)
        assert torch.allclose(f.eigen, lam, rtol=1e-4, atol=1e-6 * lam.max().item())


@pytest.mark.parametrize("d,block", [(10, 3), (9, 3), (8, 16), (257, 64)])
def test_blocked_gram_is_the_full_symmetric_product(d, block):
    """Upper block triangle accumulated over batches, then mirrored: Σ xᵀx exactly symmetric,
    equal to the dense product (blocks that do not divide d, one block, many)."""
    gen = torch.Generator().manual_seed(d)
    xs = [torch.randn(n, d, generator=gen) for n in (7, 13)]
    acc = torch.zeros(d, d, dtype=torch.float64)
    for x in xs:
        gram_upper_(acc, x, block)
    if d > block:
        assert acc[block:, :block].abs().max() == 0  # only the upper blocks were written
    full = symmetrize_(acc)
    assert torch.equal(full, full.T)
    dense = sum(x.double().T @ x.double() for x in xs)
    assert torch.allclose(full, dense, rtol=1e-5, atol=1e-5 * dense.abs().max().item())


def _spd(n, gen):
    x = torch.randn(n, n + 3, generator=gen, dtype=torch.float64)
    return x @ x.T / n


def test_damped_inverse_matches_dense_kronecker_solve(tmp_path):
    gen = torch.Generator().manual_seed(0)
    out, inn = 5, 7
    A, G = _spd(inn, gen) * 3.0, _spd(out, gen) * 0.01  # unequal scales: π matters
    QA, QG = torch.linalg.eigh(A)[1], torch.linalg.eigh(G)[1]
    eigen = torch.rand(out, inn, generator=gen, dtype=torch.float64) * 0.2
    V = torch.randn(3, out, inn, generator=gen, dtype=torch.float64)
    spec = [{"name": "m", "kind": "linear", "in": inn, "out": out, "bias": False}]
    lam = 0.5
    # K-FAC: (A ⊗ G + factored damping)⁻¹ with π = sqrt((trA/dimA)/(trG/dimG))
    kfac = Curvature("kfac", "token", spec, {"m": ModuleFactors(A, G)})
    pi = math.sqrt((torch.trace(A) / inn) / (torch.trace(G) / out))
    H = torch.kron(G + math.sqrt(lam) / pi * torch.eye(out, dtype=torch.float64),
                   A + pi * math.sqrt(lam) * torch.eye(inn, dtype=torch.float64))  # row-major vec
    got = InverseHessian(kfac, lam).apply("m", V)
    ref = torch.linalg.solve(H, V.reshape(3, -1).T).T.reshape(3, out, inn)
    assert torch.allclose(got, ref, rtol=1e-10, atol=1e-12)
    # EK-FAC: (Q_G ⊗ Q_A) diag(Λ + δ) (Q_G ⊗ Q_A)ᵀ, δ absolute or λ·mean(Λ)
    ek = Curvature("ekfac", "token", spec, {"m": ModuleFactors(A, G, QA, QG, eigen)})
    # the saved/loaded factors give the same operator
    ek.save(tmp_path / "f.safetensors")
    ek_loaded = Curvature.load(tmp_path / "f.safetensors")
    K = torch.kron(QG, QA)
    for mode, delta in [("absolute", lam), ("mean_eigenvalue", lam * eigen.mean().item())]:
        H = K @ torch.diag(eigen.reshape(-1) + delta) @ K.T
        ref = torch.linalg.solve(H, V.reshape(3, -1).T).T.reshape(3, out, inn)
        for c in (ek, ek_loaded):
            got = InverseHessian(c, lam, mode).apply("m", V)
            assert torch.allclose(got, ref, rtol=1e-9, atol=1e-11)
    with pytest.raises(ValueError, match="ekfac_damping"):
        InverseHessian(ek, lam, "relative")


def test_kfac_mean_eigenvalue_damping_matches_dense_kronecker_solve():
    """kronfluence's K-FAC: (G ⊗ A + δ I)⁻¹ with δ = factor · mean eigenvalue of G ⊗ A (0.1 by default)."""
    gen = torch.Generator().manual_seed(1)
    out, inn = 4, 6
    A, G = _spd(inn, gen) * 2.0, _spd(out, gen) * 0.03
    V = torch.randn(2, out, inn, generator=gen, dtype=torch.float64)
    spec = [{"name": "m", "kind": "linear", "in": inn, "out": out, "bias": False}]
    kfac = Curvature("kfac", "token", spec, {"m": ModuleFactors(A, G)})
    K = torch.kron(G, A)  # row-major vec: vec(G V A) = (G ⊗ A) vec(V)
    for factor in (None, 0.1, 0.01):
        inv = InverseHessian(kfac, factor, kfac_damping="mean_eigenvalue")
        assert inv.damping == (0.1 if factor is None else factor)
        delta = inv.damping * torch.linalg.eigvalsh(K).mean()
        ref = torch.linalg.solve(K + delta * torch.eye(out * inn, dtype=torch.float64), V.reshape(2, -1).T).T
        got = inv.apply("m", V)
        assert torch.allclose(got, ref.reshape(2, out, inn), rtol=1e-10, atol=1e-12)
    # the π rule stays the default, with λ = 0.5
    assert InverseHessian(kfac).damping == 0.5 and InverseHessian(kfac).form == "kfac"
    with pytest.raises(ValueError, match="kfac_damping"):
        InverseHessian(kfac, 0.1, kfac_damping="trace")


def test_zero_padding_right_left_and_holes():
    from gdig.influence.hooks import zero_padding_

    x = torch.randn(4, 5, 3)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 0, 1, 0, 1]])
    got = zero_padding_(x.clone(), mask)
    assert torch.equal(got, x * mask[..., None])
