"""The reference code's low-rank step: a module's gradient G [out, in'] cut to rank r.

``randomized`` is the algorithm of ``torch.svd_lowrank(G, q=r, niter)`` (Halko et al. 2009,
Alg. 4.4 + 5.1): in the tall orientation (Gᵀ when out < in'), Q = orth(G R) for a Gaussian test
matrix R [in', r], ``niter`` subspace iterations Q = orth(G orth(Gᵀ Q)), then the factors of
QᵀG.  Their product U·diag(S)·Vᵀ is Q Qᵀ G, which is what is returned (no SVD needed).
torch draws R from the global generator, so its result changes from call to call; here R is
drawn per module from ``seed`` and the module name, the same for every example, batch, shard
and machine, so a run repeats bit for bit on the same device.

``exact`` is the truncated SVD, the best rank-r approximation (Eckart–Young).

A gradient whose smaller side is at most r is returned unchanged: rank r is then no cut.
The work runs on the gradient's device in float32 (float64 when given float64).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import torch

from gdig.influence.strategies import RANK_METHODS

METHODS = RANK_METHODS


@dataclass(frozen=True)
class GradientRank:
    rank: int
    method: str = "randomized"
    niter: int = 2
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"influence.gradient_rank.method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.rank < 1 or self.niter < 0:
            raise ValueError("influence.gradient_rank: rank must be >= 1 and niter >= 0")

    @classmethod
    def from_config(cls, cfg) -> "GradientRank | None":
        """From an InfluenceConfig.gradient_rank section; None when the step is off."""
        return None if cfg.rank is None else cls(cfg.rank, cfg.method, cfg.niter, cfg.seed)


def gaussian_matrix(name: str, rows: int, q: int, seed: int = 0) -> torch.Tensor:
    """The Gaussian test matrix R [rows, q] of module ``name`` (float64, CPU): fixed by seed + name."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63))
    return torch.randn(rows, q, generator=gen, dtype=torch.float64)




def cut_rank(grads: torch.Tensor, spec: GradientRank, name: str) -> torch.Tensor:
    """Rank-``spec.rank`` approximations of a batch of gradients [B, out, in'] (same shape)."""
    work = torch.promote_types(grads.dtype, torch.float32)
    m = grads.to(work)
    r = spec.rank
    if r >= min(m.shape[-2:]):
        return m
    if spec.method == "exact":
        u, s, vh = torch.linalg.svd(m, full_matrices=False)
        return (u[..., :r] * s[..., None, :r]) @ vh[..., :r, :]
    wide = m.shape[-2] < m.shape[-1]
    a = m.transpose(-1, -2) if wide else m  # tall: [B, rows, cols], rows >= cols
    big = gaussian_matrix(name, a.shape[-1], r, spec.seed).to(device=a.device, dtype=work)
    q = torch.linalg.qr(a @ big).Q
    for _ in range(spec.niter):
        q = torch.linalg.qr(a.transpose(-1, -2) @ q).Q
        q = torch.linalg.qr(a @ q).Q
    approx = q @ (q.transpose(-1, -2) @ a)
    return approx.transpose(-1, -2) if wide else approx
