"""Fused batched scoring: I(z, s) = -Σ_modules Σ_t g_tᵀ M_s a_t for all seeds s at once.

One forward+backward per candidate batch (hooks.py) gives a, g per chosen module; then per
module one of two contractions, whichever costs fewer multiply-adds for the batch's shapes
(B candidates, T tokens, S seeds, module out × in', product rank r):

- ``per_example``: form the module's per-example gradients DW_b = Σ_t g_t a_tᵀ (B·T·out·in')
  and contract them with all products in one GEMM, I = -DW·Mᵀ (B·S·out·in').  Always the
  cheaper choice for dense products (the token form would cost B·T·S·out·in').
- ``token`` (low-rank products M_s = U_s V_sᵀ only): project every token on every seed's
  factors, I = -Σ_t Σ_r (U_sᵀ g_t)_r (V_sᵀ a_t)_r, costing B·T·S·r·(out+in').  Wins for
  wide modules and small r, and never needs the dense products in memory.

With ``gradient_rank`` (the reference code's low-rank step, lowrank.py) each per-example gradient
is cut to rank r before the contraction, so the ``per_example`` path is the only one.

Only per-module [B, out, in'] gradients exist at any time, never the full-model one.
The optional gradient sketch is Σ_t (P_g g_t)(P_a a_t)ᵀ per module (a Kronecker-structured
Gaussian projection of the per-example gradient, P entries N(0, 1/k), seeded per module
name), flattened and concatenated in module order: length Σ_modules k_g·k_a.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from gdig.progress import track

from gdig.data.prompts import Encoded, collate, length_batches
from gdig.influence.hooks import capture_batch
from gdig.influence.lowrank import GradientRank, cut_rank
from gdig.influence.modules import ChosenModule
from gdig.influence.seeds import SeedProducts
from gdig.influence.strategies import SCORING_PATHS, one_of


@dataclass(frozen=True)
class SketchSpec:
    dim_g: int = 16
    dim_a: int = 16
    seed: int = 0


def sketch_projections(modules: list[ChosenModule], spec: SketchSpec, device, dtype=torch.float32):
    """{name: (P_g [k_g, out], P_a [k_a, in'])}: fixed Gaussian matrices, same on every machine."""
    out = {}
    for m in modules:
        gen = torch.Generator().manual_seed((spec.seed * 1_000_003 + zlib.crc32(m.name.encode())) % (2**63))
        pg = torch.randn(spec.dim_g, m.out_features, generator=gen, dtype=torch.float64) / math.sqrt(spec.dim_g)
        pa = torch.randn(spec.dim_a, m.in_dim, generator=gen, dtype=torch.float64) / math.sqrt(spec.dim_a)
        out[m.name] = (pg.to(device=device, dtype=dtype), pa.to(device=device, dtype=dtype))
    return out


def contraction_costs(b: int, t: int, s: int, out: int, inn: int, rank: int | None) -> dict[str, float]:
    costs = {"per_example": float(b * t * out * inn + b * s * out * inn)}
    if rank is not None:
        costs["token"] = float(b * t * s * rank * (out + inn))
    return costs


def plan_batches(lengths: list[int], positions: list[int], batch_size: int, block_size: int) -> list[list[int]]:
    """Length-bucketed batches decided WITHIN aligned position blocks [k·block, (k+1)·block).

    A candidate's batch depends only on the rows of its own block, so scoring any union of
    whole blocks (a shard from ``shard_ranges``) reproduces the unsharded batches exactly.
    """
    blocks: dict[int, list[int]] = {}
    for i, p in enumerate(positions):
        blocks.setdefault(int(p) // block_size, []).append(i)
    plan = []
    for k in sorted(blocks):
        idx = blocks[k]
        for b in length_batches([lengths[i] for i in idx], batch_size):
            plan.append([idx[j] for j in b])
    return plan


@dataclass
class ScoreResult:
    scores: np.ndarray  # [N, S] float32
    loss: np.ndarray  # [N] float32
    sketch: np.ndarray | None  # [N, D] float32
    grad_norm: np.ndarray | None = None  # [N] float32: ||g_z|| over the tracked modules
    closing_loss: np.ndarray | None = None  # [N] float32: CE of the last target token (its EOS)

    def aggregates(self) -> dict[str, np.ndarray]:
        return aggregate(self.scores)


def aggregate(scores: np.ndarray) -> dict[str, np.ndarray]:
    """helped_fraction = share of seeds with I < 0 (training on z lowers that seed's loss)."""
    s = scores.astype(np.float64)
    return {"helped_fraction": (s < 0).mean(1), "mean": s.mean(1), "min": s.min(1), "max": s.max(1)}


def _nbytes(cap) -> int:
    return sum(t.numel() * t.element_size() for d in (cap.a, cap.g) for t in d.values())


class Scorer:
    def __init__(
        self,
        model: torch.nn.Module,
        modules: list[ChosenModule],
        products: SeedProducts,
        *,
        loss_reduction: str = "mean",
        sketch: SketchSpec | None = None,
        path: str = "auto",
        slice_bytes: int | None = None,
        contract_rows: int = 64,
        contract_bytes: int = 256 << 20,
        gradient_rank: GradientRank | None = None,
    ):
        names = [m.name for m in modules]
        if names != products.module_names:
            raise ValueError(
                f"seed products were computed for modules {products.module_names}, "
                f"but the model selection gives {names}; recompute the seed products"
            )
        one_of("influence.scoring.path", path, SCORING_PATHS)
        if path == "token" and products.full:
            raise ValueError("the token path needs low-rank seed products (influence.seed_set.low_rank)")
        if path == "token" and gradient_rank is not None:
            raise ValueError("influence.gradient_rank cuts each candidate's gradient, which the token path never "
                             "forms: use scoring.path auto or per_example")
        self.gradient_rank = gradient_rank
        self.model, self.modules, self.loss_reduction, self.path = model, modules, loss_reduction, path
        self.device = next(model.parameters()).device
        self.products = products.to(self.device)
        self.n_seeds = products.n_seeds
        self._dense: dict[str, torch.Tensor] = {}  # [out·in', S] contiguous (2x faster skinny GEMM), on demand
        self._stacked: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # [out, S·r], [in', S·r]
        for name, (u, v) in self.products.low.items():
            s, o, r = u.shape
            self._stacked[name] = (u.permute(1, 0, 2).reshape(o, s * r), v.permute(1, 0, 2).reshape(v.shape[1], s * r))
        self.proj = sketch_projections(modules, sketch, self.device) if sketch else None
        self.paths_used: dict[str, set[str]] = {n: set() for n in names}
        # per-example path: bytes of one slice of per-example gradients, a bound on the reused
        # work buffer.  On a CPU 64 MiB, not cache-sized: with the buffer reused, small slices no
        # longer pay; they only multiply the GEMM calls (6 per module on the tiny benchmark model,
        # 80+ on Gemma 270M), and on a shared machine every multi-threaded call can wait a
        # scheduler tick for a preempted thread (measured: benchmarks/README.md, influence_throughput).
        self.slice_bytes = slice_bytes or (64 << 20 if self.device.type == "cpu" else 256 << 20)
        self._work: torch.Tensor | None = None
        # score_encoded: examples (and bytes of captured a, g) contracted with the products at once
        self.contract_rows = contract_rows
        self.contract_bytes = contract_bytes
        self.clock = None  # a hooks.PartClock to profile where a batch's time goes (benchmarks/scoring_profile.py)

    def _mark(self, part: str) -> None:
        if self.clock is not None:
            self.clock.mark(part)

    def _choose(self, m: ChosenModule, b: int, t: int) -> str:
        if self.path != "auto":
            return self.path
        if self.gradient_rank is not None:
            return "per_example"
        rank = self.products.low[m.name][0].shape[-1] if m.name in self.products.low else None
        costs = contraction_costs(b, t, self.n_seeds, m.out_features, m.in_dim, rank)
        return min(costs, key=costs.get)

    def _dense_flat(self, name: str) -> torch.Tensor:
        if name not in self._dense:
            self._dense[name] = self.products.dense(name).reshape(self.n_seeds, -1).T.contiguous()
            self.products.full.pop(name, None)  # keep one copy
        return self._dense[name]

    def _buffer(self, numel: int, like: torch.Tensor) -> torch.Tensor:
        """A reusable flat work buffer (no allocation, hence no page faults, per batch)."""
        buf = self._work
        if buf is None or buf.numel() < numel or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._work = torch.empty(numel, dtype=like.dtype, device=like.device)
        return buf[:numel]

    def _per_example(self, name: str, parts: list[tuple[torch.Tensor, torch.Tensor]], total: torch.Tensor,
                     sq_norm: torch.Tensor) -> None:
        """total += DW·M and sq_norm += ||DW||² with DW_b = Σ_t g_t a_tᵀ, in slices of output rows,
        for the examples of several captured batches at once (``parts``: their (a, g), rows of
        ``total`` in that order).

        The per-example gradients of all the rows, R·out·in', are hundreds of MB on a real
        model: freshly allocated every call they would page-fault.  A slice of ``rows`` output
        rows for all examples (at most ``slice_bytes``) lives in one reused buffer and is
        contracted at once with the matching rows of the products.  Each product entry is read once per call: with a few examples per call the
        GEMM is bound by reading the products (S·out·in' floats, GBs on a real model), so
        score_encoded contracts several forward batches together (``contract_rows``)."""
        if self.gradient_rank is not None:
            return self._per_example_cut(name, parts, total, sq_norm)
        n_rows = sum(a.shape[0] for a, _ in parts)
        a0, g0 = parts[0]
        inn, out = a0.shape[-1], g0.shape[-1]
        flat = self._dense_flat(name)  # [out·in', S], row o of DW = flat rows [o·in', (o+1)·in')
        rows = max(1, min(out, self.slice_bytes // max(1, n_rows * inn * a0.element_size())))
        rows = -(-out // -(-out // rows))  # the same number of slices, of balanced sizes
        for o0 in range(0, out, rows):
            o1 = min(out, o0 + rows)
            buf = self._buffer(n_rows * (o1 - o0) * inn, a0).view(n_rows, o1 - o0, inn)
            off = 0
            for a, g in parts:
                b = a.shape[0]
                torch.bmm(g.transpose(1, 2)[:, o0:o1], a, out=buf[off:off + b])
                off += b
            dw = buf.view(n_rows, -1)
            self._mark("per-example gradients")
            total.addmm_(dw, flat[o0 * inn:o1 * inn].to(dw.dtype))
            self._mark("contraction with the seed products")
            sq_norm += torch.linalg.vector_norm(dw, dim=1).float().square()
            self._mark("gradient norms")

    def _per_example_cut(self, name: str, parts: list[tuple[torch.Tensor, torch.Tensor]], total: torch.Tensor,
                         sq_norm: torch.Tensor) -> None:
        """As _per_example, each DW_b cut to rank r first (whole gradients: the cut needs all rows),
        a few examples at a time (at most ``slice_bytes`` of gradients)."""
        flat = self._dense_flat(name)
        off = 0
        for a, g in parts:
            b, inn, out = a.shape[0], a.shape[-1], g.shape[-1]
            step = max(1, self.slice_bytes // max(1, out * inn * a.element_size()))
            for i in range(0, b, step):
                dw = torch.bmm(g[i:i + step].transpose(1, 2), a[i:i + step])
                self._mark("per-example gradients")
                dw = cut_rank(dw, self.gradient_rank, name).to(flat.dtype).reshape(dw.shape[0], -1)
                self._mark("low-rank step")
                rows = slice(off + i, off + i + dw.shape[0])
                total[rows] += dw @ flat
                self._mark("contraction with the seed products")
                sq_norm[rows] += torch.linalg.vector_norm(dw, dim=1).float().square()
                self._mark("gradient norms")
            off += b

    @torch.no_grad()
    def _contract(self, caps: list) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Scores [R, S], sketches [R, D] or None and gradient norms [R] of the R examples of the
        captured batches ``caps``, in their order."""
        sizes = [c.mask.shape[0] for c in caps]
        starts = [sum(sizes[:j]) for j in range(len(caps))]
        n_rows = sum(sizes)
        total = torch.zeros(n_rows, self.n_seeds, dtype=torch.float32, device=self.device)
        sq_norm = torch.zeros(n_rows, dtype=torch.float32, device=self.device)
        sketches = [[] for _ in caps]
        for m in self.modules:
            dense = []  # the batches whose contraction goes through the per-example gradients
            for j, cap in enumerate(caps):
                a, g = cap.a[m.name], cap.g[m.name]
                b, t = cap.mask.shape
                path = self._choose(m, b, t)
                self.paths_used[m.name].add(path)
                if path == "per_example":
                    dense.append(j)
                else:
                    us, vs = self._stacked[m.name]
                    r = self.products.low[m.name][0].shape[-1]
                    rs = slice(starts[j], starts[j] + b)
                    total[rs] += ((g @ us) * (a @ vs)).reshape(b, t, self.n_seeds, r).sum(dim=(1, 3))
                    # ||Σ_t g_t a_tᵀ||² = Σ_{t,t'} (g_t·g_t')(a_t·a_t'), without forming the gradient
                    sq_norm[rs] += ((g @ g.transpose(1, 2)) * (a @ a.transpose(1, 2))).float().sum(dim=(1, 2))
                    self._mark("contraction with the seed products")
                if self.proj is not None:
                    pg, pa = self.proj[m.name]
                    sketches[j].append(torch.einsum("btk,btl->bkl", g @ pg.T, a @ pa.T).reshape(b, -1))
                    self._mark("sketches")
            if dense:
                parts = [(caps[j].a[m.name], caps[j].g[m.name]) for j in dense]
                if len(dense) == len(caps):  # the usual case: all rows, in place
                    self._per_example(m.name, parts, total, sq_norm)
                else:
                    idx = torch.cat([torch.arange(starts[j], starts[j] + sizes[j]) for j in dense]).to(self.device)
                    part_t = torch.zeros(len(idx), self.n_seeds, dtype=total.dtype, device=self.device)
                    part_n = torch.zeros(len(idx), dtype=sq_norm.dtype, device=self.device)
                    self._per_example(m.name, parts, part_t, part_n)
                    total[idx] += part_t
                    sq_norm[idx] += part_n
        sketch = torch.cat([torch.cat(sk, dim=1) for sk in sketches]) if self.proj is not None else None
        return -total, sketch, sq_norm.clamp_min(0).sqrt()

    def score_batch(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(scores [B, S], loss [B], sketch [B, D] or None) for one collated batch."""
        scores, loss, sketch, _ = self.score_batch_with_norm(batch)
        return scores, loss, sketch

    def _capture(self, batch: dict[str, torch.Tensor]):
        if self.clock is not None:
            self.clock.start()
        return capture_batch(self.model, self.modules, batch, loss_reduction=self.loss_reduction, mask_inputs=False,
                             clock=self.clock)

    def score_batch_with_norm(self, batch: dict[str, torch.Tensor]):
        """score_batch plus the candidates' gradient norms [B] over the tracked modules (for
        influence on unit-normalised gradients: raw inner products favour high-norm rows)."""
        cap = self._capture(batch)
        scores, sketch, norm = self._contract([cap])
        self._mark("rest (sums, negation)")
        return scores, cap.loss, sketch, norm

    def score_encoded(
        self,
        encoded: list[Encoded],
        *,
        pad_id: int,
        batch_size: int = 8,
        positions: list[int] | None = None,
        block_size: int | None = None,
        progress: bool = False,
    ) -> ScoreResult:
        """Score examples in input order; batches are length-bucketed within position blocks."""
        n = len(encoded)
        positions = list(range(n)) if positions is None else list(positions)
        plan = plan_batches([len(e.input_ids) for e in encoded], positions, batch_size, block_size or max(n, 1))
        scores = np.zeros((n, self.n_seeds), dtype=np.float32)
        loss = np.zeros(n, dtype=np.float32)
        closing = np.full(n, np.nan, dtype=np.float32)
        norm = np.zeros(n, dtype=np.float32)
        sketch = None
        block = block_size or max(n, 1)
        pending: list[tuple[list[int], object]] = []  # captured batches not contracted yet

        def flush():
            nonlocal sketch
            if not pending:
                return
            idx = [i for ix, _ in pending for i in ix]
            sc, sk, nm = self._contract([cap for _, cap in pending])
            self._mark("rest (sums, negation)")
            scores[idx] = sc.cpu().numpy()
            loss[idx] = torch.cat([cap.loss for _, cap in pending]).cpu().numpy()
            closing[idx] = torch.cat([cap.closing for _, cap in pending]).cpu().numpy()
            norm[idx] = nm.cpu().numpy()
            if sk is not None:
                if sketch is None:
                    sketch = np.zeros((n, sk.shape[1]), dtype=np.float32)
                sketch[idx] = sk.float().cpu().numpy()
            pending.clear()

        # Batches of one position block are contracted together, up to contract_rows examples
        # and contract_bytes of captured activations: the products are read once per group
        # instead of once per batch.  Groups never cross a block, so shards stay bit-for-bit.
        for idx in track(plan, "scoring", unit="batch", enabled=progress):
            cap = self._capture(collate([encoded[i] for i in idx], pad_id))
            if pending and (positions[pending[0][0][0]] // block != positions[idx[0]] // block
                            or sum(len(ix) for ix, _ in pending) + len(idx) > self.contract_rows
                            or sum(_nbytes(c) for _, c in pending) + _nbytes(cap) > self.contract_bytes):
                flush()
            pending.append((idx, cap))
        flush()
        return ScoreResult(scores, loss, sketch, norm, closing)
