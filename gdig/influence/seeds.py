"""Seed side: per module M_s = H⁻¹ Grad_s for every seed (or seed batch).

A seed "batch" groups ``group_size`` consecutive seed examples into one product (the reference
code uses pairs); group size 1 = one product per seed.  The group's gradient (``weighting``):

- ``tokens`` (the reference code): the gradient of the group's loss taken as ONE example's, the
  reduction over all target tokens of the group.  With the mean loss (HF's loss over the
  padded pair) that is the token-weighted Σ_i n_i ∇L_i / Σ_i n_i (L_i = example i's mean loss,
  n_i its target tokens); with the sum loss it is Σ_i ∇L_i;
- ``examples``: the plain average of the per-example gradients, Σ_i ∇L_i / |group|.

``auto`` is ``tokens`` in sequence granularity (the reference's setting) and ``examples`` in
token granularity; both agree for group size 1.  Gradients are computed in length-bucketed
batches (the grouping is by seed order, not by batch).

A last group smaller than ``group_size`` is kept (``last_group: keep``) or its seeds are left
out (``drop``, the reference code's handling of an odd last seed).

The reference code's low-rank step on the seed GRADIENTS (``influence.gradient_rank``, lowrank.py)
comes before H⁻¹.  Optional low-rank compression of the PRODUCTS (``low_rank``) keeps, per module and seed, the best rank-r factorisation
M_s ≈ U_s V_sᵀ (truncated SVD, singular values folded into U), cutting memory from
out·in to r·(out+in) per seed; r >= min(out, in) reproduces M_s exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from gdig.progress import track

from gdig.data.prompts import Encoded, collate, length_batches
from gdig.influence.files import save_tensors
from gdig.influence.strategies import LAST_GROUPS
from gdig.influence.hooks import capture_batch
from gdig.influence.inverse import InverseHessian
from gdig.influence.modules import ChosenModule
from gdig.influence.strategies import SEED_WEIGHTINGS, one_of


@dataclass
class SeedProducts:
    seed_ids: list[str]  # one label per product (a seed id, or "id1+id2" for a group)
    modules: list[dict]  # ChosenModule.spec
    full: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [S, out, in']
    low: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # name -> U [S,out,r], V [S,in',r]
    meta: dict = field(default_factory=dict)

    @property
    def n_seeds(self) -> int:
        return len(self.seed_ids)

    @property
    def module_names(self) -> list[str]:
        return [m["name"] for m in self.modules]

    def dense(self, name: str) -> torch.Tensor:
        if name in self.full:
            return self.full[name]
        u, v = self.low[name]
        return u @ v.transpose(1, 2)

    def to(self, device, dtype=torch.float32) -> "SeedProducts":
        return SeedProducts(
            self.seed_ids, self.modules,
            {k: t.to(device=device, dtype=dtype) for k, t in self.full.items()},
            {k: (u.to(device=device, dtype=dtype), v.to(device=device, dtype=dtype)) for k, (u, v) in self.low.items()},
            self.meta,
        )

    def save(self, path: str | Path) -> None:
        tensors = {f"{k}::M": t.contiguous().cpu() for k, t in self.full.items()}
        for k, (u, v) in self.low.items():
            tensors[f"{k}::U"], tensors[f"{k}::V"] = u.contiguous().cpu(), v.contiguous().cpu()
        md = {"seed_ids": json.dumps(self.seed_ids), "modules": json.dumps(self.modules),
              "meta": json.dumps(self.meta, sort_keys=True)}
        save_tensors(tensors, path, md)

    @classmethod
    def load(cls, path: str | Path, device="cpu") -> "SeedProducts":
        with safe_open(str(path), framework="pt") as fh:
            md = fh.metadata()
        t = load_file(str(path), device=str(device))
        modules = json.loads(md["modules"])
        full, low = {}, {}
        for m in modules:
            n = m["name"]
            if f"{n}::M" in t:
                full[n] = t[f"{n}::M"]
            else:
                low[n] = (t[f"{n}::U"], t[f"{n}::V"])
        return cls(json.loads(md["seed_ids"]), modules, full, low, json.loads(md.get("meta", "{}")))


def seed_gradients(
    model: torch.nn.Module,
    modules: list[ChosenModule],
    encoded: list[Encoded],
    *,
    pad_id: int,
    group_size: int = 1,
    batch_size: int = 8,
    loss_reduction: str = "mean",
    weighting: str = "examples",
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """{module: [n_groups, out, in']} float32: the gradient of each seed group (``weighting``:
    ``tokens`` = of the group's loss over all its target tokens, ``examples`` = the average of
    its per-example gradients)."""
    if not encoded:
        raise ValueError("no seed examples: the seed set is empty")
    one_of("influence.seed_set.weighting", weighting, SEED_WEIGHTINGS[1:])  # "auto" is resolved by now
    n = len(encoded)
    n_groups = (n + group_size - 1) // group_size
    sums = {m.name: None for m in modules}
    group_of = torch.arange(n) // group_size
    pooled_mean = weighting == "tokens" and loss_reduction == "mean"
    if weighting == "examples":
        denom = torch.bincount(group_of, minlength=n_groups).to(torch.float64)
    elif pooled_mean:
        denom = torch.zeros(n_groups, dtype=torch.float64)  # Σ target tokens per group, filled below
    else:  # tokens + sum loss: the group's summed loss
        denom = torch.ones(n_groups, dtype=torch.float64)
    batches = length_batches([len(e.input_ids) for e in encoded], batch_size)
    for idx in track(batches, "seed gradients", unit="batch", enabled=progress):
        cap = capture_batch(model, modules, collate([encoded[i] for i in idx], pad_id), loss_reduction=loss_reduction)
        grads = cap.per_example_grads()
        gi = group_of[idx].to(cap.mask.device)
        if pooled_mean:
            n_t = cap.n_target.to(torch.float64).cpu()
            denom.index_add_(0, group_of[idx], n_t)
        for name, pg in grads.items():
            if sums[name] is None:
                sums[name] = torch.zeros(n_groups, *pg.shape[1:], dtype=torch.float32, device=pg.device)
            pg = pg.float()
            if pooled_mean:  # n_i ∇L_i: the gradient of example i's summed target loss
                pg = pg * n_t.to(device=pg.device, dtype=pg.dtype)[:, None, None]
            sums[name].index_add_(0, gi, pg)
    if (denom <= 0).any():
        bad = torch.nonzero(denom <= 0).flatten().tolist()
        raise ValueError(f"seed group(s) {bad[:5]} have no target tokens: their loss is undefined")
    return {k: v / denom.to(device=v.device, dtype=v.dtype)[:, None, None] for k, v in sums.items()}


def seed_weighting_for(granularity: str, weighting: str = "auto") -> str:
    """``auto`` -> ``tokens`` in sequence granularity (the reference code), ``examples`` in token."""
    if weighting == "auto":
        return "tokens" if granularity == "sequence" else "examples"
    return weighting


def low_rank(m: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-r factors (U·diag(S), V) of a batch of matrices [S, out, in]."""
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    r = min(rank, s.shape[-1])
    return u[..., :r] * s[..., None, :r], vh[..., :r, :].transpose(-1, -2)


def seed_products(
    grads: dict[str, torch.Tensor],
    inverse: InverseHessian,
    modules: list[ChosenModule],
    seed_ids: list[str],
    *,
    rank: int | None = None,
    meta: dict | None = None,
    chunk: int = 16,
    consume: bool = False,
) -> SeedProducts:
    """M_s = H⁻¹ Grad_s per module (float32 storage; the inverse runs in the factors' dtype).

    Seeds go through the inverse `chunk` at a time, so the float64 intermediates stay a few
    hundred MB whatever the number of seeds (200 seeds x a 2048x640 module are 2 GB in float64).
    consume: drop each module's gradients from `grads` once its products exist, so gradients
    and products of all modules are never in memory together (200 seeds x 6 Gemma MLPs: 6 GB each)."""
    out = SeedProducts(list(seed_ids), [m.spec for m in modules], meta=dict(meta or {}))
    for m in modules:
        g = grads.pop(m.name) if consume else grads[m.name]
        if rank is None:
            out.full[m.name] = torch.cat([inverse.apply(m.name, g[i:i + chunk]).float()
                                          for i in range(0, len(g), chunk)])
        else:
            parts = [low_rank(inverse.apply(m.name, g[i:i + chunk]), rank) for i in range(0, len(g), chunk)]
            out.low[m.name] = (torch.cat([u for u, _ in parts]).float(), torch.cat([v for _, v in parts]).float())
    return out


def kept_seeds(n: int, group_size: int, last_group: str = "keep") -> int:
    """How many of ``n`` seeds enter groups: all (``keep``: a short last group), or only whole
    groups (``drop``: the reference code drops an odd last seed of its pairs)."""
    if last_group not in LAST_GROUPS:
        raise ValueError(f"influence.seed_set.last_group must be 'keep' or 'drop', got {last_group!r}")
    if last_group == "keep":
        return n
    kept = n - n % group_size
    if kept == 0:
        raise ValueError(f"influence.seed_set.last_group=drop: {n} seed(s) make no whole group of "
                         f"batch_size {group_size}; add seeds or use last_group keep")
    return kept


def group_labels(seed_ids: list[str], group_size: int) -> list[str]:
    return ["+".join(seed_ids[i : i + group_size]) for i in range(0, len(seed_ids), group_size)]
