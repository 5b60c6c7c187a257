"""Damped inverse-Hessian application per module, V [.., out, in'] -> H⁻¹V.

K-FAC, H ≈ A ⊗ G (Linear layout: vec_row(G V A) = (G ⊗ A) vec_row(V)), damped by
``kfac_damping``:
    ``pi`` (the reference code's factored Tikhonov damping, π-correction, Martens & Grosse 2015 §6.3):
        π = sqrt( (tr A / dim A) / (tr G / dim G) )
        H⁻¹V = (G + √λ/π · I)⁻¹ · V · (A + π√λ · I)⁻¹
    ``mean_eigenvalue`` (kronfluence's K-FAC): with A = Q_A diag(λ_A) Q_Aᵀ, G = Q_G diag(λ_G) Q_Gᵀ,
        H⁻¹V = (G ⊗ A + δ I)⁻¹ V = Q_G [ (Q_Gᵀ V Q_A) / (λ_G ⊗ λ_A + δ) ] Q_Aᵀ,
        δ = λ · mean(λ_G ⊗ λ_A) = λ · (tr G / dim G) · (tr A / dim A)

EK-FAC, H ≈ (Q_G ⊗ Q_A) diag(Λ) (Q_G ⊗ Q_A)ᵀ with corrected eigenvalues Λ [out, in']:
    H⁻¹V = Q_G [ (Q_Gᵀ V Q_A) / (Λ + δ) ] Q_Aᵀ,
    δ = λ (``absolute``) or λ · mean(Λ) (``mean_eigenvalue``, scale-free; kronfluence's EK-FAC).

λ (``damping``) defaults per rule: 0.5 for ``pi`` and ``absolute`` (the reference code's),
0.1 for ``mean_eigenvalue`` (kronfluence's heuristic).
"""

from __future__ import annotations

import math

import torch

from gdig.influence.curvature import Curvature, ModuleFactors
from gdig.influence.strategies import DAMPING_RULES, EKFAC, KFAC, curvature_strategy, one_of


class CurvatureError(ValueError):
    pass


def kfac_damped(f: ModuleFactors, damping: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(A + π√λ I, G + √λ/π I)."""
    dim_a, dim_g = f.A.shape[0], f.G.shape[0]
    tr_a, tr_g = torch.trace(f.A).item() / dim_a, torch.trace(f.G).item() / dim_g
    if tr_a <= 0 or tr_g <= 0:
        raise CurvatureError("a K-FAC factor has zero trace (module gets no input or no gradient); "
                             "drop it from influence.modules")
    pi = math.sqrt(tr_a / tr_g)
    s = math.sqrt(damping)
    eye_a = torch.eye(dim_a, dtype=f.A.dtype, device=f.A.device)
    eye_g = torch.eye(dim_g, dtype=f.G.dtype, device=f.G.device)
    return f.A + pi * s * eye_a, f.G + (s / pi) * eye_g


def default_damping(strategy: str, kfac_damping: str = "pi", ekfac_damping: str = "absolute") -> float:
    """λ when influence.curvature.damping is not set: the damping rule's own default."""
    kind = curvature_strategy(strategy)
    rule = kind.damping_rule(kfac_damping, ekfac_damping)
    return DAMPING_RULES[one_of(f"influence.curvature.{kind.damping_key}", rule, kind.damping_rules)].default_damping


def kfac_eigen(f: ModuleFactors, damping: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Q_G, Q_A, 1 / (λ_G ⊗ λ_A + δ)) with δ = λ · mean(λ_G ⊗ λ_A): K-FAC, kronfluence's damping."""
    lam_a, qa = torch.linalg.eigh(f.A)
    lam_g, qg = torch.linalg.eigh(f.G)
    kron = torch.outer(lam_g, lam_a)
    return qg.contiguous(), qa.contiguous(), 1.0 / (kron + damping * kron.mean())


def ekfac_shift(f: ModuleFactors, damping: float, mode: str) -> float:
    if mode == "absolute":
        return damping
    if mode == "mean_eigenvalue":
        return damping * f.eigen.mean().item()
    one_of("influence.curvature.ekfac_damping", mode, EKFAC.damping_rules)
    raise AssertionError(f"ekfac_shift: no shift for the damping rule {mode!r}")


class InverseHessian:
    """Precomputed per-module damped inverses; ``apply(name, V)`` works on [.., out, in']."""

    def __init__(self, curvature: Curvature, damping: float | None = None, ekfac_damping: str = "absolute",
                 kfac_damping: str = "pi"):
        one_of("influence.curvature.kfac_damping", kfac_damping, KFAC.damping_rules)
        if damping is None:
            damping = default_damping(curvature.strategy, kfac_damping, ekfac_damping)
        if damping <= 0:
            raise ValueError("influence.curvature.damping must be > 0")
        self.strategy, self.damping = curvature.strategy, damping
        corrected = curvature_strategy(self.strategy).eigen_pass  # EK-FAC: its own eigenvalues
        # the form of each op: "kfac" (G⁻¹, A⁻¹) or "eigen" (Q_G, Q_A, 1 / damped eigenvalues)
        self.form = "kfac" if not corrected and kfac_damping == "pi" else "eigen"
        self.ops: dict[str, tuple[torch.Tensor, ...]] = {}
        for name, f in curvature.factors.items():
            if corrected:
                if f.eigen is None or f.QA is None:
                    raise CurvatureError(f"{name}: EK-FAC needs eigenbases and corrected eigenvalues")
                self.ops[name] = (f.QG, f.QA, 1.0 / (f.eigen + ekfac_shift(f, damping, ekfac_damping)))
            elif kfac_damping == "mean_eigenvalue":
                self.ops[name] = kfac_eigen(f, damping)
            else:
                A_d, G_d = kfac_damped(f, damping)
                self.ops[name] = (torch.linalg.inv(G_d), torch.linalg.inv(A_d))

    def apply(self, name: str, v: torch.Tensor) -> torch.Tensor:
        op = self.ops[name]
        v = v.to(op[0].dtype)
        if self.form == "kfac":
            g_inv, a_inv = op
            return g_inv @ v @ a_inv
        qg, qa, inv_eig = op
        return qg @ ((qg.T @ v @ qa) * inv_eig) @ qa.T
