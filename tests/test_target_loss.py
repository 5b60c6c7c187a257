"""The target-only training loss (gdig.target_loss) against the full-logits computation:
the same loss and the same gradient of every parameter, untied and tied heads, LoRA, Gemma's
soft-capped logits, and the fallback for a model whose head the split does not reproduce."""

from __future__ import annotations

import pytest
import torch

from gdig.config import TrainConfig
from gdig.data.prompts import IGNORE
from gdig.target_loss import find_split, split_head, target_loss_backward
from gdig.train import _accumulate_gradients, _full_logits_gradients, wrap_lora

VOCAB = 97


def _llama(tied: bool, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=tied, pad_token_id=0)
    return LlamaForCausalLM(cfg)


def _gemma3(softcap: float):
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(1)
    cfg = Gemma3TextConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=64,
                           sliding_window=8, final_logit_softcapping=softcap, pad_token_id=0)
    model = Gemma3ForCausalLM(cfg)
    with torch.no_grad():  # large logits, so the cap bends them
        model.lm_head.weight.mul_(40.0)
    return model


def _batch(seed: int, lengths: list[int], prompts: list[int]) -> dict[str, torch.Tensor]:
    """Right-padded rows: a prompt (label IGNORE), then target tokens, then padding."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE)
    attn = torch.zeros_like(ids)
    for i, (n, p) in enumerate(zip(lengths, prompts)):
        ids[i, :n] = torch.randint(1, VOCAB, (n,), generator=g)
        labels[i, p:n] = ids[i, p:n]
        attn[i, :n] = 1
    return {"input_ids": ids, "attention_mask": attn, "labels": labels}


BATCHES = [_batch(0, [11, 7, 9], [6, 3, 5]), _batch(1, [13, 12], [4, 10])]  # one step, grad_accum 2


def _grads(model, step) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    loss = step(model)
    return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}


def _assert_same(model, chunk_rows: int = 4, autocast=None, tol: float = 1e-5):
    from contextlib import nullcontext

    autocast = autocast or nullcontext()
    split = find_split(model)
    assert split is not None
    split.chunk_rows = chunk_rows  # several chunks per micro-batch
    ref_loss, ref = _grads(model, lambda m: _full_logits_gradients(m, BATCHES, "cpu", autocast))
    loss, got = _grads(model, lambda m: _accumulate_gradients(m, BATCHES, "cpu", autocast, split))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(ref) == set(got) == trainable  # every trainable parameter got its gradient
    assert loss == pytest.approx(ref_loss, rel=tol, abs=tol)
    for name in ref:
        scale = max(1.0, float(ref[name].abs().max()))
        assert float((got[name] - ref[name]).abs().max()) <= tol * scale, name
    return ref_loss, ref


def test_full_finetune_same_loss_and_gradients():
    model = _llama(tied=False).train()
    loss, ref = _assert_same(model)
    assert loss > 0 and float(ref["lm_head.weight"].abs().max()) > 0


def test_tied_head_same_gradients():
    model = _llama(tied=True).train()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    _, ref = _assert_same(model, chunk_rows=5)
    # the tied matrix is one parameter; its gradient sums the head's and the embedding lookup's
    assert "lm_head.weight" not in ref and float(ref["model.embed_tokens.weight"].abs().max()) > 0


def test_lora_same_gradients():
    tc = TrainConfig(method="lora", lora_r=4, lora_dropout=0.0)
    model = wrap_lora(_llama(tied=True), tc).train()
    _, ref = _assert_same(model, chunk_rows=3)
    assert ref and all("lora_" in n for n in ref)


def test_softcapped_logits_same_gradients():
    model = _gemma3(softcap=3.0).train()
    split = find_split(model)
    assert split.softcap == 3.0
    _assert_same(model)


def test_bf16_autocast_close_to_full_logits():
    model = _llama(tied=False).train()
    _assert_same(model, autocast=torch.autocast("cpu", dtype=torch.bfloat16), tol=2e-2)


def test_head_sees_target_rows_only_in_chunks():
    model = _llama(tied=False).train()
    split = find_split(model)
    split.chunk_rows = 4
    seen = []
    hook = model.lm_head.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    try:
        batch = BATCHES[0]
        n_target = int((batch["labels"][:, 1:] != IGNORE).sum())
        target_loss_backward(split, batch, n_target)
    finally:
        hook.remove()
    assert n_target == 13 and seen == [(4, 32), (4, 32), (4, 32), (1, 32)]


def test_chunk_rows_from_vocabulary():
    split = find_split(_llama(tied=False), chunk_bytes=4 * VOCAB * 7)
    assert split.chunk_rows == 7


def test_model_that_changes_logits_after_its_head_falls_back():
    from transformers import LlamaForCausalLM

    class Scaled(LlamaForCausalLM):  # an unknown transform after the head (as Granite, Cohere do)
        def forward(self, *args, **kwargs):
            out = super().forward(*args, **kwargs)
            out.logits = out.logits / 8.0
            return out

    plain = _llama(tied=False)
    model = Scaled(plain.config)
    model.load_state_dict(plain.state_dict())
    split, why = split_head(model, BATCHES[0], "cpu")
    assert split is None and "differ from the model's logits" in why
    ok, why = split_head(plain, BATCHES[0], "cpu")
    assert ok is not None and why == ""


@pytest.mark.parametrize("method", ["full", "lora"])
def test_finetune_trains_on_target_positions_only(tiny_model_dir, tmp_path, monkeypatch, method, recwarn):
    import gdig.train as train
    from gdig.config import ModelConfig, PromptConfig

    def full_logits(*args, **kwargs):
        raise AssertionError("finetune used the full-logits path")

    monkeypatch.setattr(train, "_full_logits_gradients", full_logits)
    rows = [{"src": "der Hund lief", "tgt": "the dog ran", "src_lang": "de", "tgt_lang": "en"},
            {"src": "das Haus ist rot", "tgt": "the house is red", "src_lang": "de", "tgt_lang": "en"}]
    tc = TrainConfig(method=method, lora_r=4, batch_size=2, max_steps=2, save_every=1000)
    res = train.finetune(ModelConfig(name_or_path=str(tiny_model_dir)), PromptConfig(), tc, rows, tmp_path / "out",
                         progress=False)
    assert res.steps == 2 and len(res.losses) == 2
    assert not [w for w in recwarn if "full logits" in str(w.message)]
