"""The target's loss with the source left out of the prompt (the source-gain rule's input).

A misaligned target (a translation of another sentence) or one in the wrong language costs the
model about as much without the source as with it; a right translation, hard or easy, costs
much less with it.  The gain — the loss without the source minus the loss with it, per target
token — therefore separates misaligned pairs where the plain loss cannot (a rare but right
translation has a high loss; benchmarks/source_gain.py: AUROC clean vs misaligned 0.997 against
the loss's 0.898 on the Gemma benchmark).

One no-grad forward per candidate through the prompt template with an empty ``{src}``; the target
tokens are the ones the scoring pass saw (the same tokens, cut where prompt.max_length cut them
with the source), and the LM head runs on target positions only (forward_loss).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import torch

from gdig.data.prompts import Encoded, collate, encode_examples, length_batches
from gdig.influence.hooks import forward_loss
from gdig.progress import track


def source_free_encodings(tok, rows: pd.DataFrame, template: str, max_length: int,
                          too_long: str = "truncate_target") -> list[Encoded | None]:
    """Per row: the prompt with an empty source followed by the target tokens the prompt with
    the source keeps under `too_long` (prompt.too_long; None where that encoding skips the row,
    as the scoring did)."""
    tuples = list(zip(rows["src"], rows["tgt"], rows["src_lang"], rows["tgt_lang"]))
    mode = "truncate_target" if too_long == "truncate_target" else "skip"
    with_src, _ = encode_examples(tok, tuples, template, max_length, mode)
    # without the source the prompt is shorter, so at least the same target tokens fit
    without, _ = encode_examples(tok, [("", t, sl, tl) for _, t, sl, tl in tuples], template, max_length,
                                 "truncate_target")
    out: list[Encoded | None] = []
    for w, f in zip(with_src, without):
        if w is None or f is None:
            out.append(None)
            continue
        n_target = len(w.input_ids) - w.prompt_len
        cut = f.prompt_len + n_target  # the same target tokens as with the source
        out.append(Encoded(f.input_ids[:cut], f.labels[:cut], f.prompt_len, w.truncated))
    return out


def source_free_losses(model, enc: list[Encoded], pad_id: int, batch_size: int, reduction: str = "mean",
                       device=None, progress: bool = True, on_batch: Callable[[list[int], np.ndarray], None] | None = None
                       ) -> np.ndarray:
    """Target cross-entropy per encoding (reduction over its target tokens), no gradients.

    Batches group rows of similar length; `on_batch(indices, losses)` is called after each, so
    a caller can store results as they come (a long run that dies keeps what it finished)."""
    device = device if device is not None else next(model.parameters()).device
    out = np.full(len(enc), np.nan)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for b in track(length_batches([len(e.input_ids) for e in enc], batch_size), "source-free loss",
                           unit="batch", enabled=progress):
                batch = {k: v.to(device) for k, v in collate([enc[i] for i in b], pad_id).items()}
                loss = forward_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"],
                                    reduction).loss.float().cpu().numpy().astype(np.float64)
                out[b] = loss
                if on_batch is not None:
                    on_batch(b, loss)
    finally:
        model.train(was_training)
    return out


def prompt_key(cfg) -> str:
    """What the source-free loss depends on besides the checkpoint and the example: the prompt
    and the loss reduction."""
    from gdig.workspace import json_hash

    p = cfg.prompt
    return json_hash({"template": p.template, "max_length": p.max_length, "too_long": p.too_long,
                      "loss": cfg.influence.loss})


def store_source_free_losses(cfg, store, checkpoint_path: str, checkpoint_id: str, scoring_id: str,
                      device: str | None = None, progress: bool = True) -> dict:
    """The source-free loss of every candidate a scoring holds, in the store: rows already
    there (same checkpoint and prompt) are kept, the others computed and stored batch by batch."""
    from gdig.influence.compute import _load, pool_rows

    sc = store.get_scoring(scoring_id)
    if sc is None:
        raise ValueError(f"no scoring {scoring_id!r} in {store.path}")
    key = prompt_key(cfg)
    scored = store.influence(scoring_id)["example_id"]
    have = store.source_free_losses(checkpoint_id, key)
    rows = pool_rows(store, sc["candidate_dataset"])
    missing = rows[rows["example_id"].isin(set(scored) - set(have.index))].reset_index(drop=True)
    if len(missing):
        model, tok = _load(cfg, checkpoint_path, device)
        enc = source_free_encodings(tok, missing, cfg.prompt.template, cfg.prompt.max_length, cfg.prompt.too_long)
        skipped = [i for i, e in enumerate(enc) if e is None]
        if skipped:  # the scoring saw these rows, so its encoding fitted: this would be a bug
            raise RuntimeError(f"source-free loss: {len(skipped)} scored row(s) do not encode, first "
                               f"{missing['example_id'].iloc[skipped[0]]}")
        ids = missing["example_id"].astype(str).to_numpy()
        source_free_losses(model, enc, tok.pad_token_id, cfg.influence.scoring.batch_size, cfg.influence.loss,
                           progress=progress,
                           on_batch=lambda b, loss: store.add_source_free_losses(checkpoint_id, key, ids[b], loss))
    return {"checkpoint_id": checkpoint_id, "prompt_key": key, "n_rows": int(len(scored)),
            "n_computed": int(len(missing))}
