"""Damped inverse-Hessian application per module, V [.., out, in'] -> H⁻¹V.

K-FAC, H ≈ A ⊗ G (Linear layout: vec_row(G V A) = (G ⊗ A) vec_row(V)), with the factored
Tikhonov damping of the reference code (π-correction, Martens & Grosse 2015 §6.3):
    π = sqrt( (tr A / dim A) / (tr G / dim G) )
    H⁻¹V = (G + √λ/π · I)⁻¹ · V · (A + π√λ · I)⁻¹

EK-FAC, H ≈ (Q_G ⊗ Q_A) diag(Λ) (Q_G ⊗ Q_A)ᵀ with corrected eigenvalues Λ [out, in']:
    H⁻¹V = Q_G [ (Q_Gᵀ V Q_A) / (Λ + δ) ] Q_Aᵀ,
    δ = λ (``absolute``) or λ · mean(Λ) (``mean_eigenvalue``, scale-free).
"""

from __future__ import annotations

import math

import torch

from gdig.influence.curvature import Curvature, ModuleFactors


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


def ekfac_shift(f: ModuleFactors, damping: float, mode: str) -> float:
    if mode == "absolute":
        return damping
    if mode == "mean_eigenvalue":
        return damping * f.eigen.mean().item()
    raise ValueError(f"influence.curvature.ekfac_damping must be 'absolute' or 'mean_eigenvalue', got {mode!r}")


class InverseHessian:
    """Precomputed per-module damped inverses; ``apply(name, V)`` works on [.., out, in']."""

    def __init__(self, curvature: Curvature, damping: float = 0.5, ekfac_damping: str = "absolute"):
        if damping <= 0:
            raise ValueError("influence.curvature.damping must be > 0")
        self.strategy = curvature.strategy
        self.ops: dict[str, tuple[torch.Tensor, ...]] = {}
        for name, f in curvature.factors.items():
            if self.strategy == "kfac":
                A_d, G_d = kfac_damped(f, damping)
                self.ops[name] = (torch.linalg.inv(G_d), torch.linalg.inv(A_d))
            elif self.strategy == "ekfac":
                if f.eigen is None or f.QA is None:
                    raise CurvatureError(f"{name}: EK-FAC needs eigenbases and corrected eigenvalues")
                self.ops[name] = (f.QG, f.QA, 1.0 / (f.eigen + ekfac_shift(f, damping, ekfac_damping)))
            else:
                raise ValueError(f"unknown curvature strategy {self.strategy!r}")

    def apply(self, name: str, v: torch.Tensor) -> torch.Tensor:
        op = self.ops[name]
        v = v.to(op[0].dtype)
        if self.strategy == "kfac":
            g_inv, a_inv = op
            return g_inv @ v @ a_inv
        qg, qa, inv_eig = op
        return qg @ ((qg.T @ v @ qa) * inv_eig) @ qa.T
