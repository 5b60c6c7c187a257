"""The training loss on target positions only, the LM head run a chunk of rows at a time.

The finetuning loss is the cross-entropy of the target tokens; prompt and padding positions
carry none, so their logits are never needed.  And the LM head is a large share of a small
model (Gemma 3 270M: a 640 x 262,144 matrix, 168M of its 268M parameters).  So one backward of
a micro-batch goes:

1. the backbone (every layer up to the final norm) runs over the whole batch;
2. its hidden states are gathered at the positions whose next token is a target token;
3. the LM head and the float32 cross-entropy run on those rows, ``chunk_rows`` at a time,
   each chunk's backward right after its forward: the head's gradient accumulates in place
   (a head tied to the embeddings too), the gathered rows' gradient is collected, and the
   chunk's logits are freed;
4. one backward through the backbone from the gathered rows' gradient.

The loss and every gradient are those of the full-logits computation (same masking, float32
cross-entropy, autocast as the caller sets it), up to the order of float sums; no [T, V] tensor
is formed, at most one chunk's [rows, V] logits at a time.

A model is split into backbone and head with transformers' own accessors
(``get_decoder``, ``get_output_embeddings``) plus the logit soft-capping Gemma 2/3 apply after
the head.  ``split_head`` checks the split against the model's own logits once, on one row, and
returns None (the caller then trains with full logits) when a model does more after its head.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gdig.data.prompts import IGNORE

# float32 bytes of one chunk's logits: 64 rows of Gemma's 262k vocabulary (the chunk's peak,
# with its bf16 copy, log-softmax and gradient, is about 3.5x that)
CHUNK_BYTES = 64 << 20


@dataclass
class SplitHead:
    backbone: torch.nn.Module  # input_ids, attention_mask -> final hidden states [B, T, H]
    head: torch.nn.Module  # [N, H] -> [N, V]
    softcap: float | None = None  # logits = cap * tanh(logits / cap) after the head (Gemma 2/3)
    chunk_rows: int = 64

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.head(h)
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        return logits


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a peft wrapper (its LoRA layers are injected in place)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _vocab(head: torch.nn.Module) -> int | None:
    w = getattr(head, "weight", None)
    return int(w.shape[0]) if isinstance(w, torch.Tensor) and w.dim() == 2 else None


def find_split(model: torch.nn.Module, chunk_bytes: int = CHUNK_BYTES) -> SplitHead | None:
    """Backbone and head of a transformers causal LM (peft-wrapped or not); None when the model
    does not expose them."""
    base = _unwrap(model)
    get_decoder = getattr(base, "get_decoder", None)
    get_head = getattr(base, "get_output_embeddings", None)
    if not (callable(get_decoder) and callable(get_head)):
        return None
    try:
        backbone, head = get_decoder(), get_head()
    except (AttributeError, NotImplementedError, ValueError):
        return None
    vocab = _vocab(head) if head is not None else None
    if backbone is None or backbone is base or vocab is None:
        return None
    softcap = getattr(getattr(base, "config", None), "final_logit_softcapping", None)
    return SplitHead(backbone, head, softcap, max(1, chunk_bytes // (4 * vocab)))


def split_head(model: torch.nn.Module, batch: dict[str, torch.Tensor], device, autocast=None,
               chunk_bytes: int = CHUNK_BYTES) -> tuple[SplitHead | None, str]:
    """(the split, "") when backbone + head reproduce the model's logits on the first row of
    `batch` (in eval mode, no grad, no RNG drawn); (None, why) otherwise."""
    split = find_split(model, chunk_bytes)
    if split is None:
        return None, f"{type(_unwrap(model)).__name__} exposes no decoder and output embeddings"
    ids = batch["input_ids"][:1].to(device)
    attn = batch["attention_mask"][:1].to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast or nullcontext():
            ref = model(input_ids=ids, attention_mask=attn, use_cache=False).logits.float()
            got = split.logits(split.hidden(ids, attn)).float()
    finally:
        model.train(was_training)
    if ref.shape != got.shape:
        return None, f"head logits of shape {tuple(got.shape)}, the model's {tuple(ref.shape)}"
    real = attn[0].bool()
    ref, got = ref[0, real], got[0, real]
    scale = float(ref.abs().max()) or 1.0
    tol = 2e-2 if _lowered(autocast) or split.head.weight.dtype != torch.float32 else 1e-4
    err = float((ref - got).abs().max()) / scale
    if not err <= tol:
        return None, f"backbone + head differ from the model's logits by {err:.2e} of their range"
    return split, ""


def _lowered(autocast) -> bool:
    return isinstance(autocast, torch.autocast) and autocast.fast_dtype != torch.float32


def target_loss_backward(split: SplitHead, batch: dict[str, torch.Tensor], n_tok: int, autocast=None) -> torch.Tensor:
    """Backward of (sum of the batch's target-token cross-entropies) / n_tok into the parameters'
    .grad; returns that sum (float32, detached).  batch: input_ids, attention_mask, labels
    (IGNORE on prompt and padding) on the model's device."""
    autocast = autocast or nullcontext()
    labels = batch["labels"]
    keep = labels[:, 1:] != IGNORE  # position t predicts token t+1
    with autocast:
        hidden = split.hidden(batch["input_ids"], batch["attention_mask"])
    h = hidden[:, :-1][keep]
    y = labels[:, 1:][keep]
    total = torch.zeros((), dtype=torch.float32, device=labels.device)
    if h.shape[0] == 0:
        return total
    rows = h.detach().requires_grad_()
    for s in range(0, rows.shape[0], split.chunk_rows):
        with autocast:
            logits = split.logits(rows[s : s + split.chunk_rows])
        loss = F.cross_entropy(logits.float(), y[s : s + split.chunk_rows], reduction="sum")
        (loss / n_tok).backward()
        total += loss.detach()
    h.backward(rows.grad)
    return total
