"""The source-free loss (the source-gain rule's input): the dense target loss of the prompt with
an empty source, over the target tokens the scoring saw."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from _influence_util import ROWS, TEMPLATE, micro_model
from conftest import TEXTS

from gdig.data.prompts import build_prompt
from gdig.influence.source_free import source_free_encodings, source_free_losses


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    return micro_model(tmp_path_factory.mktemp("micro-llama-source-free"), TEXTS, "llama")


def _frame(rows):
    return pd.DataFrame(rows, columns=["src", "tgt", "src_lang", "tgt_lang"])


def _dense(model, tok, prompt: str, target_ids: list[int], reduction: str) -> float:
    """CE of the target tokens after the prompt, from the full logits of one unpadded forward."""
    p = tok(prompt, add_special_tokens=True)["input_ids"]
    ids = torch.tensor([p + target_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
    ce = [-logp[len(p) + i - 1, t].item() for i, t in enumerate(target_ids)]
    return float(np.mean(ce) if reduction == "mean" else np.sum(ce))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_source_free_loss_is_the_dense_loss_without_the_source(micro, reduction):
    model, tok = micro
    rows = _frame(ROWS)
    enc = source_free_encodings(tok, rows, TEMPLATE, 64)
    got = source_free_losses(model, enc, tok.pad_token_id, batch_size=3, reduction=reduction, progress=False)
    for i, r in rows.iterrows():
        target = tok(r["tgt"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        want = _dense(model, tok, build_prompt(TEMPLATE, "", r["src_lang"], r["tgt_lang"]), target, reduction)
        assert got[i] == pytest.approx(want, rel=1e-5), i


def test_a_truncated_target_keeps_the_tokens_the_source_left_room_for(micro):
    model, tok = micro
    rows = _frame(ROWS)
    with_src = [len(tok(build_prompt(TEMPLATE, s, sl, tl), add_special_tokens=True)["input_ids"])
                for s, _, sl, tl in ROWS]
    max_length = max(with_src) + 2  # targets are cut to what fits beside their own source
    enc = source_free_encodings(tok, rows, TEMPLATE, max_length)
    n_cut = 0
    for e, (s, t, sl, tl), n_prompt in zip(enc, ROWS, with_src):
        full = tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        kept = min(len(full), max_length - n_prompt)
        n_cut += kept < len(full)
        assert e.labels[e.prompt_len:] == full[:kept] and e.truncated == (kept < len(full))
        assert e.input_ids[:e.prompt_len] == tok(build_prompt(TEMPLATE, "", sl, tl),
                                                 add_special_tokens=True)["input_ids"]
    assert n_cut >= 2  # the case is exercised (rows whose source left no room for the whole target)


def test_a_row_the_scoring_skipped_has_no_encoding(micro):
    _, tok = micro
    rows = _frame(ROWS)
    enc = source_free_encodings(tok, rows, TEMPLATE, 64, too_long="skip")
    short = source_free_encodings(tok, rows, TEMPLATE, 14, too_long="skip")
    assert all(e is not None for e in enc)
    n_full = [len(e.input_ids) - e.prompt_len for e in enc]
    for e, s, (src, _, sl, tl), n in zip(short, enc, ROWS, n_full):
        fits = len(tok(build_prompt(TEMPLATE, src, sl, tl), add_special_tokens=True)["input_ids"]) + n <= 14
        assert (e is not None) == fits
