"""Capture, in ONE forward+backward over a padded batch, what influence needs per chosen module:

- ``a`` [B, T, in(+1)]: the module's input per token; when the module has a bias, a ones
  column is appended, so the weight gradient [out, in] and the bias gradient [out] come out
  together as one [out, in+1] matrix (last column = bias);
- ``g`` [B, T, out]: the gradient of the per-example loss L_z w.r.t. the module's output.

The batch loss is Σ_z L_z, and examples never interact in a causal LM forward, so ``g`` of a
token of example z is ∂L_z/∂y_t: one backward gives every per-example gradient
Σ_t g_t a_tᵀ without ever forming it for the full model.

L_z is the cross-entropy over z's target tokens (labels -100 on prompt and padding), reduced
by ``mean`` (reference code) or ``sum``.  Positions: every non-padding token enters the sums.
Prompt tokens carry no loss, but the target loss flows back to their hidden states through
attention, so their g_t is non-zero inside the network and part of the exact gradient;
padding positions are zeroed in both a and g (they never reach the factors either).

Nothing is kept for modules that are not chosen, and no weight gradient is computed: all
parameters are frozen while capturing; each chosen module's output that does not already
require grad is turned into a leaf that does, so the autograd graph starts at the first
chosen module and only activation gradients flow.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import torch
import torch.nn.functional as F

from gdig.data.prompts import IGNORE
from gdig.influence.modules import ChosenModule
from gdig.influence.strategies import LOSS_REDUCTIONS, one_of


@dataclass
class Captured:
    a: dict[str, torch.Tensor]  # [B, T, in(+1)], padding rows zero, acc dtype
    g: dict[str, torch.Tensor]  # [B, T, out], padding rows zero, acc dtype
    loss: torch.Tensor  # [B] per-example loss (float32, detached)
    mask: torch.Tensor  # [B, T] 1.0 on real tokens
    n_target: torch.Tensor  # [B] number of target tokens per example
    closing: torch.Tensor | None = None  # [B] CE of each example's last target token (float32, detached)

    def per_example_grads(self) -> dict[str, torch.Tensor]:
        """{module: [B, out, in(+1)]} = Σ_t g_t a_tᵀ (Linear layout; transpose for Conv1D)."""
        return {n: torch.einsum("bto,bti->boi", self.g[n], self.a[n]) for n in self.a}


class TargetLoss(NamedTuple):
    """Per-example cross-entropy over target tokens (float32)."""

    loss: torch.Tensor  # [B] mean (or sum) over the target tokens
    n_target: torch.Tensor  # [B] number of target tokens
    closing: torch.Tensor  # [B] CE of the last target token (the EOS encode_examples appends); NaN without one


def _reduce(ce: torch.Tensor, row: torch.Tensor, n: torch.Tensor, reduction: str) -> TargetLoss:
    """TargetLoss from the CE of the target positions (flat, row-major) and their rows."""
    total = torch.zeros(n.shape[0], dtype=ce.dtype, device=ce.device).index_add(0, row, ce)
    if reduction == "mean":
        total = total / n.clamp(min=1)
    # a row's target positions are contiguous in the flat order: its last one closes at cumsum - 1
    closing = torch.full_like(total, float("nan"))
    has = n > 0
    closing[has] = ce[(n.cumsum(0) - 1)[has]]
    return TargetLoss(total, n, closing)


def _check_reduction(reduction: str) -> None:
    one_of("influence.loss", reduction, LOSS_REDUCTIONS)


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> TargetLoss:
    """(loss [B], n_target [B], closing [B]): next-token CE over target tokens, in float32."""
    _check_reduction(reduction)
    target = labels[:, 1:]
    keep = target != IGNORE
    ce = F.cross_entropy(logits[:, :-1][keep].float(), target[keep], reduction="none")
    row = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(keep)[keep]
    return _reduce(ce, row, keep.sum(1), reduction)


def _accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def forward_loss(model, ids, attn, labels, reduction: str = "mean") -> TargetLoss:
    """(per-example loss [B], n_target [B], closing-token loss [B]) of one forward.

    When the model supports ``logits_to_keep`` (HF causal LMs), the LM head runs only on the
    positions that predict a target token: the same loss, without vocabulary-wide logits for
    prompt and padding positions."""
    if not _accepts_logits_to_keep(model):
        return per_example_loss(model(input_ids=ids, attention_mask=attn, use_cache=False).logits, labels, reduction)
    _check_reduction(reduction)
    target = labels[:, 1:]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = target != IGNORE
    logits = model(input_ids=ids, attention_mask=attn, use_cache=False, logits_to_keep=keep).logits
    n_keep = int(keep.sum())
    if logits.dim() != 2 or logits.shape[0] != n_keep:  # a model that ignores the mask form
        return per_example_loss(logits, labels, reduction)
    ce = F.cross_entropy(logits.float(), target[keep[:, :-1]], reduction="none")
    row = torch.arange(labels.shape[0], device=labels.device)[:, None].expand_as(keep)[keep]
    return _reduce(ce, row, keep.sum(1), reduction)


@contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    """All parameters requires_grad=False inside the block (restored after)."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, rg in saved:
            p.requires_grad_(rg)


class ModuleCapture:
    """Forward hooks on the chosen modules; use as a context manager around forward+backward."""

    def __init__(self, modules: list[ChosenModule]):
        self.modules = modules
        self._handles = []
        self.inputs: dict[str, torch.Tensor] = {}
        self.grads: dict[str, torch.Tensor] = {}
        self.leaves: list[torch.Tensor] = []

    def _hook(self, name: str):
        def fwd(module, inputs, output):
            if name in self.inputs:
                raise RuntimeError(f"module {name} ran twice in one forward; influence hooks need one call")
            self.inputs[name] = inputs[0].detach()
            if not output.requires_grad:
                output = output.detach().requires_grad_(True)
                self.leaves.append(output)
            grads = self.grads  # not self: a leaf holds its hook, and self holds the leaf (a cycle would
            # keep every captured a and g alive until Python's cyclic collector happens to run)

            def bwd(grad, name=name):
                grads[name] = grad.detach()

            output.register_hook(bwd)
            return output

        return fwd

    def __enter__(self) -> "ModuleCapture":
        for cm in self.modules:
            self._handles.append(cm.module.register_forward_hook(self._hook(cm.name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def padding_plan(mask: torch.Tensor) -> list[tuple[int, slice]] | None:
    """Per padded row, the slice of its padding positions (right or left padding); None when
    some row has holes (then zero_padding_ falls back to a masked where)."""
    real = mask.bool()
    width = real.shape[1]
    lengths = real.sum(1).tolist()
    plan = []
    for b, n in enumerate(lengths):
        if n == width:
            continue
        if n == 0 or bool(real[b, :n].all()):
            plan.append((b, slice(n, width)))
        elif bool(real[b, width - n:].all()):
            plan.append((b, slice(0, width - n)))
        else:
            return None
    return plan


def zero_padding_(x: torch.Tensor, mask: torch.Tensor, plan=False) -> torch.Tensor:
    """Zero x[b, t] wherever mask[b, t] is 0, in place.  Right/left padding is one slice per row
    (much cheaper than a broadcast multiply over the whole batch); other masks use where()."""
    if plan is False:
        plan = padding_plan(mask)
    if plan is None:
        x.copy_(torch.where(mask.bool()[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device)))
        return x
    for b, sl in plan:
        x[b, sl] = 0
    return x


class PartClock:
    """Wall time per named part of a loop: ``mark(part)`` books the time since the previous mark
    to ``part``.  On an accelerator it synchronises first, so a part is charged its own kernels
    (which slows the run a little: for profiling only)."""

    def __init__(self, device=None):
        import time

        self._now = time.perf_counter
        self.sync = (lambda: torch.cuda.synchronize(device)) if torch.device(device or "cpu").type == "cuda" else None
        self.parts: dict[str, float] = {}
        self.t = self._now()

    def start(self) -> None:
        if self.sync:
            self.sync()
        self.t = self._now()

    def mark(self, part: str) -> None:
        if self.sync:
            self.sync()
        now = self._now()
        self.parts[part] = self.parts.get(part, 0.0) + now - self.t
        self.t = now


def capture_batch(
    model: torch.nn.Module,
    modules: list[ChosenModule],
    batch: dict[str, torch.Tensor],
    *,
    loss_reduction: str = "mean",
    acc_dtype: torch.dtype = torch.float32,
    mask_inputs: bool = True,
    clock=None,
) -> Captured:
    """One forward+backward over a collated batch; returns masked a, g per chosen module.

    mask_inputs=False leaves padding rows of ``a`` as they are (g is zero there, so every
    Σ_t g_t a_tᵀ is unchanged): scoring skips a copy; the curvature factors need the mask.
    clock: optional ``PartClock`` (profiling: benchmarks/scoring_profile.py)."""
    device = next(model.parameters()).device
    ids = batch["input_ids"].to(device)
    attn = batch["attention_mask"].to(device)
    labels = batch["labels"].to(device)
    with frozen(model), torch.enable_grad(), ModuleCapture(modules) as cap:
        loss, n_target, closing = forward_loss(model, ids, attn, labels, loss_reduction)
        if clock is not None:
            clock.mark("loss (cross-entropy)")
        if cap.leaves:
            torch.autograd.grad(loss.sum(), cap.leaves, allow_unused=True)
        if clock is not None:
            clock.mark("backward")
    mask = attn.to(acc_dtype)
    plan = padding_plan(attn)  # once per batch, shared by every module
    a_out, g_out = {}, {}
    for cm in modules:
        x = cap.inputs[cm.name].to(acc_dtype)
        if cm.has_bias:
            x = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)
        if mask_inputs:
            x = zero_padding_(x.clone() if x is cap.inputs[cm.name] else x, attn, plan)
        a_out[cm.name] = x
        g = cap.grads.get(cm.name)
        if g is None:  # output does not reach the loss
            g = torch.zeros(*x.shape[:-1], cm.out_features, dtype=acc_dtype, device=device)
        g_out[cm.name] = zero_padding_(g.to(acc_dtype), attn, plan)  # the backward is over: ours to edit
    if clock is not None:
        clock.mark("capture: casts, padding")
    return Captured(a_out, g_out, loss.detach().float(), mask, n_target, closing.detach().float())
