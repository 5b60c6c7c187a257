"""Prompts and target-only loss masks: exact label positions with the tiny tokenizers."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer

from gdig.config import DEFAULT_TEMPLATE
from gdig.data.prompts import (
    IGNORE, PromptTooLong, build_prompt, collate, encode_examples, encode_pair, ensure_pad_token, length_batches,
)


@pytest.fixture(params=["tiny_model_dir", "tiny_bloom_dir"], ids=["llama-no-pad", "bloom-pad"])
def tok(request):
    return AutoTokenizer.from_pretrained(request.getfixturevalue(request.param))


def test_tiny_tokenizers_pad_state(tiny_model_dir, tiny_bloom_dir):
    llama = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert llama.pad_token_id is None  # as Llama ships
    ensure_pad_token(llama)
    assert llama.pad_token_id == llama.eos_token_id
    bloom = AutoTokenizer.from_pretrained(tiny_bloom_dir)
    pad = bloom.pad_token_id
    ensure_pad_token(bloom)
    assert bloom.pad_token_id == pad != bloom.eos_token_id


def test_default_prompt_text():
    assert build_prompt(DEFAULT_TEMPLATE, "Das Haus ist rot.", "de", "en") == (
        "Translate the following German text into English.\nGerman: Das Haus ist rot.\nEnglish: ")
    assert build_prompt("{src_lang}>{tgt_lang}: {src} =", "a", "xa", "xb") == "xa>xb: a ="


def test_labels_mask_exactly_the_prompt(tok):
    prompt = build_prompt(DEFAULT_TEMPLATE, "der Hund lief schnell", "de", "en")
    target = "the dog ran fast"
    enc = encode_pair(tok, prompt, target, max_length=256)
    p_ids = tok(prompt)["input_ids"]
    t_ids = tok(target, add_special_tokens=False)["input_ids"]
    assert p_ids[0] == tok.bos_token_id
    assert enc.input_ids == p_ids + t_ids + [tok.eos_token_id]
    assert enc.labels == [IGNORE] * len(p_ids) + t_ids + [tok.eos_token_id]
    assert enc.prompt_len == len(p_ids) and enc.n_target == len(t_ids) + 1 and not enc.truncated
    assert tok.decode(enc.input_ids[enc.prompt_len:-1]) == target


def test_collate_right_and_left_padding_masks_padding(tok):
    ensure_pad_token(tok)
    a = encode_pair(tok, "German: a\nEnglish: ", "the house is red and big", 256)
    b = encode_pair(tok, "German: Haus\nEnglish: ", "cat", 256)
    width = max(len(a.input_ids), len(b.input_ids))
    short, n = b, len(b.input_ids)
    batch = collate([a, b], tok.pad_token_id)
    assert batch["input_ids"].shape == (2, width)
    assert batch["input_ids"][1, :n].tolist() == short.input_ids
    assert batch["labels"][1].tolist() == short.labels + [IGNORE] * (width - n)
    assert batch["attention_mask"][1].tolist() == [1] * n + [0] * (width - n)
    assert batch["input_ids"][1, n:].tolist() == [tok.pad_token_id] * (width - n)
    # the real EOS keeps its label even when the pad id is the EOS id (no pad token)
    assert batch["labels"][1, n - 1].item() == tok.eos_token_id
    left = collate([a, b], tok.pad_token_id, padding_side="left")
    assert left["labels"][1].tolist() == [IGNORE] * (width - n) + short.labels
    assert left["attention_mask"][1].tolist() == [0] * (width - n) + [1] * n
    # loss positions = target + EOS tokens of each row, nothing else
    assert (batch["labels"] != IGNORE).sum().item() == a.n_target + b.n_target


def test_truncation_policy_is_reported(tok):
    rows = [("a", "the cat sat on the mat", "de", "en"), ("b", "cat", "de", "en")]
    template = "{src_lang_name}: {src}\n{tgt_lang_name}: "
    p_len = len(tok(build_prompt(template, "a", "de", "en"))["input_ids"])
    full = encode_pair(tok, build_prompt(template, "a", "de", "en"), rows[0][1], 256)
    max_length = p_len + 3
    assert len(full.input_ids) > max_length
    out, report = encode_examples(tok, rows, template, max_length)
    assert report.truncated == [0] and report.skipped == []
    assert out[0].input_ids == full.input_ids[:max_length] and out[0].truncated
    assert out[0].labels == [IGNORE] * p_len + full.input_ids[p_len:max_length]
    assert out[1].input_ids[-1] == tok.eos_token_id and not out[1].truncated
    assert report.summary().startswith("1 target(s) truncated")

    out, report = encode_examples(tok, rows, template, max_length, too_long="skip")
    assert out[0] is None and out[1] is not None
    assert report.skipped[0][0] == 0 and "max_length" in report.skipped[0][1]
    assert "1 row(s) skipped" in report.summary()

    with pytest.raises(PromptTooLong, match="row 0"):
        encode_examples(tok, rows, template, max_length, too_long="error")
    # the prompt itself is never cut: a prompt longer than max_length is an error under any policy
    with pytest.raises(PromptTooLong, match="prompt alone"):
        encode_examples(tok, rows, template, p_len - 1, too_long="truncate_target")
    assert encode_examples(tok, rows[1:], template, 256)[1].summary() == "all rows fit"


def test_length_batches_bucket_by_length():
    assert length_batches([5, 1, 3, 1, 9, 3], 2) == [[1, 3], [2, 5], [0, 4]]
    assert length_batches([], 4) == []


def test_tokenizer_without_eos_is_refused(tiny_bloom_dir):
    tok = AutoTokenizer.from_pretrained(tiny_bloom_dir)
    tok.eos_token = None
    with pytest.raises(ValueError, match="no EOS"):
        encode_pair(tok, "a: ", "b", 64)
    tok.pad_token = None
    with pytest.raises(ValueError, match="neither a pad nor an EOS"):
        ensure_pad_token(tok)
    assert torch.tensor([IGNORE]).item() == -100
