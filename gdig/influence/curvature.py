"""K-FAC and EK-FAC curvature of the per-example loss over the chosen modules (empirical Fisher).

Per module, with a = input (+ ones column for the bias) and g = output gradient (hooks.py):

granularity ``token`` (standard K-FAC of the influence literature, as kronfluence):
    A = Σ_tokens a aᵀ / N_tokens,   G = Σ_tokens g gᵀ / N_tokens
granularity ``sequence`` (the G-DIG reference code): per example ā = Σ_t a_t, ḡ = Σ_t g_t, then
    A = Σ_examples ā āᵀ / N_examples,   G = Σ_examples ḡ ḡᵀ / N_examples
Padding tokens never enter either (they are zero rows in the captured tensors).
The bias entry of ā (``sequence_bias``): ``one`` = 1 per example, as the reference code's
nngeometry K-FAC appends one bias entry per sequence; ``tokens`` = Σ_t 1 = the example's token
count (the summed ones column of the exact gradient's input).  Token granularity has 1 per token.

EK-FAC keeps the eigenbases A = Q_A diag(.) Q_Aᵀ, G = Q_G diag(.) Q_Gᵀ and replaces the
Kronecker eigenvalues by corrected ones from a second pass, averaged (``eigen_average``)
    token:    Λ[o, i] = mean over tokens   of ((Q_Gᵀ g_t)[o] · (Q_Aᵀ a_t)[i])²
    example:  Λ[o, i] = mean over examples of (Q_Gᵀ (Σ_t g_t a_tᵀ) Q_A)[o, i]²
i.e. the diagonal, in the Kronecker eigenbasis, of the second moment of the per-token /
per-example gradient.  By default the average follows the granularity (token -> token,
sequence -> example); token factors with the per-example average are kronfluence's EK-FAC.
Accumulation is streaming over batches: each batch's products (Σ over its B·T tokens or B
examples) are computed in the captured dtype (float32), as kronfluence computes its factors,
and summed over batches in float64 by default (``fp64``).  float64 GEMMs ran at half speed on a
CPU; the dense reference test (tests/influence/test_influence_reference.py) gives a relative error of
5.3e-7 either way.  A and G are symmetric, so each batch computes only their block upper
triangle (``gram_upper_``), mirrored once at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import torch
from safetensors.torch import load_file
from gdig.progress import track

from gdig.influence.files import save_tensors
from gdig.influence.hooks import Captured, capture_batch
from gdig.influence.modules import ChosenModule
from gdig.influence.strategies import (EIGEN_AVERAGES, GRANULARITIES, SEQUENCE_BIASES, CurvatureStrategy,
                                       curvature_strategy, one_of)


@dataclass
class ModuleFactors:
    A: torch.Tensor  # [in', in']
    G: torch.Tensor  # [out, out]
    QA: torch.Tensor | None = None  # EK-FAC eigenbases
    QG: torch.Tensor | None = None
    eigen: torch.Tensor | None = None  # corrected eigenvalues [out, in']


@dataclass
class Curvature:
    strategy: str  # kfac | ekfac
    granularity: str  # token | sequence
    modules: list[dict]  # ChosenModule.spec per module, model order
    factors: dict[str, ModuleFactors]
    n_examples: int = 0
    n_tokens: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def module_names(self) -> list[str]:
        return [m["name"] for m in self.modules]

    def save(self, path: str | Path) -> None:
        tensors = {}
        for name, f in self.factors.items():
            for key in ("A", "G", "QA", "QG", "eigen"):
                t = getattr(f, key)
                if t is not None:
                    tensors[f"{name}::{key}"] = t.detach().cpu().contiguous()
        meta = {"strategy": self.strategy, "granularity": self.granularity,
                "modules": json.dumps(self.modules), "n_examples": str(self.n_examples),
                "n_tokens": str(self.n_tokens), "meta": json.dumps(self.meta, sort_keys=True)}
        save_tensors(tensors, path, meta)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "Curvature":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            md = fh.metadata()
        tensors = load_file(str(path), device=str(device))
        modules = json.loads(md["modules"])
        factors = {}
        for m in modules:
            n = m["name"]
            factors[n] = ModuleFactors(**{k: tensors.get(f"{n}::{k}") for k in ("A", "G", "QA", "QG", "eigen")})
        return cls(md["strategy"], md["granularity"], modules, factors, int(md["n_examples"]),
                   int(md["n_tokens"]), json.loads(md.get("meta", "{}")))


def _check_granularity(granularity: str) -> None:
    one_of("influence.curvature.granularity", granularity, GRANULARITIES)


def eigen_average_for(granularity: str, eigen_average: str | None = "auto") -> str:
    """The EK-FAC correction's averaging unit: ``token`` or ``example``; auto follows the granularity."""
    _check_granularity(granularity)
    if eigen_average in (None, "auto"):
        return "token" if granularity == "token" else "example"
    return one_of("influence.curvature.eigen_average", eigen_average, EIGEN_AVERAGES)


def _check_sequence_bias(sequence_bias: str) -> None:
    one_of("influence.curvature.sequence_bias", sequence_bias, SEQUENCE_BIASES)


GRAM_BLOCK = 256  # column block of the blocked Gram product (gram_upper_)


def gram_upper_(acc: torch.Tensor, x: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """acc += xᵀx on the block upper triangle only (blocks of ``block`` columns; symmetrize_ fills
    the rest).  xᵀx is symmetric, so one GEMM per row of blocks, X_iᵀ [X_i .. X_last], does
    (k + 1) / 2k of the full product's multiply-adds for k blocks (62.5% at d = 1024): the
    factor products were the largest part of a curvature fit besides the model's own
    forward and backward (benchmarks/kronfluence_compare.py).  Each product in x's dtype,
    added in acc's."""
    d, block = x.shape[1], block or GRAM_BLOCK
    for i in range(0, d, block):
        j = min(d, i + block)
        acc[i:j, i:] += (x[:, i:j].T @ x[:, i:]).to(acc.dtype)
    return acc


def symmetrize_(acc: torch.Tensor) -> torch.Tensor:
    """The upper triangle written by gram_upper_ mirrored onto the lower one, in place: exactly
    symmetric (a GEMM's diagonal blocks need not be bit-for-bit)."""
    return acc.copy_(torch.triu(acc) + torch.triu(acc, 1).T)


class FactorAccumulator:
    """Streaming sums for the K-FAC factors A, G (block upper triangles until ``sums``)."""

    def __init__(self, modules: list[ChosenModule], granularity: str, dtype: torch.dtype, device,
                 sequence_bias: str = "one"):
        _check_granularity(granularity)
        _check_sequence_bias(sequence_bias)
        self.granularity, self.dtype, self.sequence_bias = granularity, dtype, sequence_bias
        self._A = {m.name: torch.zeros(m.in_dim, m.in_dim, dtype=dtype, device=device) for m in modules}
        self._G = {m.name: torch.zeros(m.out_features, m.out_features, dtype=dtype, device=device) for m in modules}
        self.biased = {m.name for m in modules if m.has_bias}
        self.n_examples = 0
        self.n_tokens = 0

    def update(self, cap: Captured) -> None:
        self.n_examples += cap.mask.shape[0]
        self.n_tokens += int(cap.mask.sum().item())
        for name in self._A:
            a, g = cap.a[name], cap.g[name]  # the captured dtype (float32): one batch's products
            if self.granularity == "token":
                a, g = a.reshape(-1, a.shape[-1]), g.reshape(-1, g.shape[-1])  # padding rows are zero
            else:
                a, g = a.sum(1), g.sum(1)
                if name in self.biased and self.sequence_bias == "one":  # one bias entry per sequence
                    a[:, -1] = (cap.mask.sum(1) > 0).to(a.dtype)
            gram_upper_(self._A[name], a)  # summed over batches in the accumulator's dtype
            gram_upper_(self._G[name], g)

    def sums(self) -> dict[str, dict[str, torch.Tensor]]:
        """{module: {"A": Σ a aᵀ, "G": Σ g gᵀ}}, full symmetric matrices (the end of streaming)."""
        return {k: {"A": symmetrize_(self._A[k]), "G": symmetrize_(self._G[k])} for k in self._A}

    def factors(self) -> dict[str, ModuleFactors]:
        n = self.n_tokens if self.granularity == "token" else self.n_examples
        if n == 0:
            raise ValueError("curvature fitting saw no examples (or no tokens)")
        return {k: ModuleFactors(d["A"] / n, d["G"] / n) for k, d in self.sums().items()}


def eigenbasis(factor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Eigenvectors of a symmetric factor, row-major.  eigh returns them column-major; a basis
    saved and reloaded (the sharded EK-FAC pass) is row-major, and GEMM sums in an order that
    depends on the layout, so both paths use the row-major one to give the same bits."""
    return torch.linalg.eigh(factor.to(dtype))[1].contiguous()


class EigenCorrectionAccumulator:
    """Second EK-FAC pass: corrected eigenvalues in the K-FAC eigenbasis."""

    def __init__(self, factors: dict[str, ModuleFactors], granularity: str, dtype: torch.dtype,
                 eigen_average: str | None = "auto"):
        self.granularity, self.dtype = granularity, dtype
        self.average = eigen_average_for(granularity, eigen_average)
        self.factors = factors
        for f in factors.values():
            if f.QA is None or f.QG is None:  # bases given (sharded pass 2): keep them
                f.QA, f.QG = eigenbasis(f.A, dtype), eigenbasis(f.G, dtype)
        self.sums = {k: torch.zeros(f.G.shape[0], f.A.shape[0], dtype=dtype, device=f.A.device)
                     for k, f in factors.items()}
        self._cast: dict = {}  # the bases in the captured dtype
        self.n_examples = 0
        self.n_tokens = 0

    def update(self, cap: Captured) -> None:
        self.n_examples += cap.mask.shape[0]
        self.n_tokens += int(cap.mask.sum().item())
        for name, f in self.factors.items():
            a, g = cap.a[name], cap.g[name]
            qa, qg = self._bases(name, f, a.dtype)
            ra = a @ qa  # [B, T, in'] rotated, in the captured dtype (one batch's products)
            rg = g @ qg  # [B, T, out]
            if self.average == "token":
                part = torch.einsum("bto,bti->oi", rg.square(), ra.square())
            else:
                part = torch.einsum("bto,bti->boi", rg, ra).square_().sum(0)  # in place: [B, out, in'] is the big one
            self.sums[name] += part.to(self.dtype)  # summed over batches in the accumulator's dtype

    def _bases(self, name: str, f: ModuleFactors, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        key = (name, dtype)
        if key not in self._cast:
            self._cast[key] = (f.QA.to(dtype).contiguous(), f.QG.to(dtype).contiguous())
        return self._cast[key]

    def finalize(self) -> dict[str, ModuleFactors]:
        n = self.n_tokens if self.average == "token" else self.n_examples
        for k, f in self.factors.items():
            f.eigen = self.sums[k] / n
        return self.factors


def fit_curvature(
    model: torch.nn.Module,
    modules: list[ChosenModule],
    batches: Callable[[], Iterable[dict[str, torch.Tensor]]],
    *,
    strategy: str = "ekfac",
    granularity: str = "sequence",
    loss_reduction: str = "mean",
    fp64: bool = True,
    progress: bool = False,
    n_batches: int | None = None,
    sequence_bias: str = "one",
    eigen_average: str | None = "auto",
) -> Curvature:
    """Fit K-FAC (one pass) or EK-FAC (two passes) factors; ``batches()`` yields collated batches
    and is called once per pass, so it must replay the same data."""
    kind = curvature_strategy(strategy)  # ValueError naming the known strategies
    dtype = torch.float64 if fp64 else torch.float32
    device = next(model.parameters()).device
    average = eigen_average_for(granularity, eigen_average)
    acc = FactorAccumulator(modules, granularity, dtype, device, sequence_bias)
    for batch in track(batches(), "curvature: factors", total=n_batches, unit="batch", enabled=progress):
        acc.update(capture_batch(model, modules, batch, loss_reduction=loss_reduction))
    factors = acc.factors()
    if kind.eigen_pass:
        corr = EigenCorrectionAccumulator(factors, granularity, dtype, average)
        for batch in track(batches(), "curvature: eigenvalues", total=n_batches, unit="batch", enabled=progress):
            corr.update(capture_batch(model, modules, batch, loss_reduction=loss_reduction))
        if (corr.n_examples, corr.n_tokens) != (acc.n_examples, acc.n_tokens):
            raise RuntimeError("the two EK-FAC passes saw different data; batches() must replay the same batches")
        factors = corr.finalize()
    return Curvature(strategy, granularity, [m.spec for m in modules], factors, acc.n_examples, acc.n_tokens,
                     _fit_meta(loss_reduction, dtype, granularity, sequence_bias,
                               average if kind.eigen_pass else None))


def _fit_meta(loss_reduction, dtype, granularity, sequence_bias, average) -> dict:
    meta = {"loss": loss_reduction, "dtype": str(dtype).replace("torch.", "")}
    if granularity == "sequence" and sequence_bias is not None:
        meta["sequence_bias"] = sequence_bias
    if average is not None:
        meta["eigen_average"] = average
    return meta


# -- sharded fitting: partial sums per shard, combined in shard order -----------------------------

@dataclass
class CurvaturePartial:
    """Unnormalised sums of one shard: kind "factors" (A, G per module) or "eigen" (the
    EK-FAC corrected-eigenvalue sums against given eigenbases), with the counts to divide by."""

    kind: str  # factors | eigen
    granularity: str
    modules: list[dict]
    sums: dict[str, dict[str, torch.Tensor]]  # module -> {"A", "G"} or {"eigen"}
    n_examples: int = 0
    n_tokens: int = 0
    meta: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        tensors = {f"{n}::{k}": t.detach().cpu().contiguous() for n, d in self.sums.items() for k, t in d.items()}
        md = {"kind": self.kind, "granularity": self.granularity, "modules": json.dumps(self.modules),
              "n_examples": str(self.n_examples), "n_tokens": str(self.n_tokens),
              "meta": json.dumps(self.meta, sort_keys=True)}
        save_tensors(tensors, path, md)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "CurvaturePartial":
        from safetensors import safe_open

        if not Path(path).exists():
            raise FileNotFoundError(f"curvature partial {path} does not exist")
        with safe_open(str(path), framework="pt") as fh:
            md = fh.metadata()
        tensors = load_file(str(path), device=str(device))
        modules = json.loads(md["modules"])
        sums: dict[str, dict[str, torch.Tensor]] = {m["name"]: {} for m in modules}
        for key, t in tensors.items():
            name, part = key.rsplit("::", 1)
            sums[name][part] = t
        return cls(md["kind"], md["granularity"], modules, sums, int(md["n_examples"]), int(md["n_tokens"]),
                   json.loads(md.get("meta", "{}")))


def curvature_partial(
    model: torch.nn.Module,
    modules: list[ChosenModule],
    batches: Iterable[dict[str, torch.Tensor]],
    *,
    granularity: str = "sequence",
    loss_reduction: str = "mean",
    fp64: bool = True,
    eigenbases: dict[str, ModuleFactors] | None = None,
    progress: bool = False,
    n_batches: int | None = None,
    sequence_bias: str = "one",
    eigen_average: str | None = "auto",
) -> CurvaturePartial:
    """One shard's sums: the K-FAC factor sums, or (given ``eigenbases`` with QA, QG per module)
    the EK-FAC corrected-eigenvalue sums.  Empty ``batches`` give zero sums and zero counts."""
    dtype = torch.float64 if fp64 else torch.float32
    device = next(model.parameters()).device
    if eigenbases is None:
        acc = FactorAccumulator(modules, granularity, dtype, device, sequence_bias)
        desc, kind = "curvature shard: factors", "factors"
        average = None
    else:
        missing = [m.name for m in modules if m.name not in eigenbases or eigenbases[m.name].QA is None]
        if missing:
            raise ValueError(f"eigenbases lack module(s) {missing}")
        given = {m.name: ModuleFactors(*(getattr(eigenbases[m.name], k).to(device) for k in ("A", "G", "QA", "QG")))
                 for m in modules}
        acc = EigenCorrectionAccumulator(given, granularity, dtype, eigen_average)
        desc, kind = "curvature shard: eigenvalues", "eigen"
        average = acc.average
    for batch in track(batches, desc, total=n_batches, unit="batch", enabled=progress):
        acc.update(capture_batch(model, modules, batch, loss_reduction=loss_reduction))
    if kind == "factors":
        sums = acc.sums()
    else:
        sums = {m.name: {"eigen": acc.sums[m.name]} for m in modules}
    return CurvaturePartial(kind, granularity, [m.spec for m in modules], sums, acc.n_examples, acc.n_tokens,
                            _fit_meta(loss_reduction, dtype, granularity, sequence_bias if kind == "factors" else None,
                                      average))


_CONVENTIONS = ("sequence_bias", "eigen_average")


def combine_partials(partials: list[CurvaturePartial]) -> CurvaturePartial:
    """Sum the shards' partials in the order given (shard order: the sum is then reproducible)."""
    if not partials:
        raise ValueError("no curvature partials to combine")
    first = partials[0]
    for i, p in enumerate(partials[1:], 1):
        if (p.kind, p.granularity, p.modules) != (first.kind, first.granularity, first.modules):
            raise ValueError(f"curvature partial {i} ({p.kind}, {p.granularity}, "
                             f"{[m['name'] for m in p.modules]}) does not match partial 0 "
                             f"({first.kind}, {first.granularity}, {[m['name'] for m in first.modules]})")
        for key in _CONVENTIONS:
            if p.meta.get(key) != first.meta.get(key):
                raise ValueError(f"curvature partial {i} has {key}={p.meta.get(key)!r}, partial 0 {first.meta.get(key)!r}")
    sums = {n: {k: t.clone() for k, t in d.items()} for n, d in first.sums.items()}
    for p in partials[1:]:
        for n, d in p.sums.items():
            for k, t in d.items():
                sums[n][k] += t.to(sums[n][k].device)
    return CurvaturePartial(first.kind, first.granularity, first.modules, sums,
                            sum(p.n_examples for p in partials), sum(p.n_tokens for p in partials), dict(first.meta))


def _count(total: CurvaturePartial) -> int:
    if total.kind == "eigen":
        unit = eigen_average_for(total.granularity, total.meta.get("eigen_average"))
    else:
        unit = "token" if total.granularity == "token" else "example"
    n = total.n_tokens if unit == "token" else total.n_examples
    if n == 0:
        raise ValueError("curvature fitting saw no examples (or no tokens)")
    return n


def factors_from_partials(partials: list[CurvaturePartial], eigenbases: bool = False) -> Curvature:
    """K-FAC factors from the shards' factor sums; with ``eigenbases`` also QA, QG (the bases the
    EK-FAC eigenvalue pass rotates into; strategy is then "ekfac" pending eigenvalues)."""
    total = combine_partials(partials)
    if total.kind != "factors":
        raise ValueError(f"expected factor partials, got {total.kind!r}")
    n = _count(total)
    factors = {}
    for name, d in total.sums.items():
        f = ModuleFactors(d["A"] / n, d["G"] / n)
        if eigenbases:
            dtype = d["A"].dtype
            f.QA, f.QG = eigenbasis(f.A, dtype), eigenbasis(f.G, dtype)
        factors[name] = f
    return Curvature("ekfac" if eigenbases else "kfac", total.granularity, total.modules, factors,
                     total.n_examples, total.n_tokens, dict(total.meta))


def with_eigenvalues(bases: Curvature, partials: list[CurvaturePartial]) -> Curvature:
    """EK-FAC: the corrected eigenvalues (summed over the shards' eigen partials) set on ``bases``."""
    total = combine_partials(partials)
    if total.kind != "eigen":
        raise ValueError(f"expected eigenvalue partials, got {total.kind!r}")
    if (total.n_examples, total.n_tokens) != (bases.n_examples, bases.n_tokens):
        raise RuntimeError(f"the two EK-FAC passes saw different data: factors on {bases.n_examples} examples / "
                           f"{bases.n_tokens} tokens, eigenvalues on {total.n_examples} / {total.n_tokens}")
    n = _count(total)
    for name, f in bases.factors.items():
        f.eigen = total.sums[name]["eigen"] / n
    bases.strategy = "ekfac"
    bases.meta["eigen_average"] = eigen_average_for(total.granularity, total.meta.get("eigen_average"))
    return bases


def fit_from_partials(strategy: CurvatureStrategy, factors: list[CurvaturePartial], bases: Curvature | None = None,
                      eigen: list[CurvaturePartial] | None = None) -> Curvature:
    """The fitted curvature from the shards' partials (in shard order), as `strategy` needs it:
    the factors alone, or (a second pass) the factors' eigenbases with their corrected eigenvalues."""
    if not strategy.eigen_pass:
        return factors_from_partials(factors)
    if bases is None or not eigen:
        raise ValueError(f"{strategy.label} curvature needs the eigenbases file and the eigenvalue partials")
    n = (sum(p.n_examples for p in factors), sum(p.n_tokens for p in factors))
    if (bases.n_examples, bases.n_tokens) != n:
        raise ValueError(f"the eigenbases ({bases.n_examples} examples, {bases.n_tokens} tokens) were not "
                         f"computed from these factor partials ({n[0]} examples, {n[1]} tokens)")
    return with_eigenvalues(bases, eigen)
