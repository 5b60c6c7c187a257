"""Helpers for the influence tests: very small models (dense Kronecker references stay tiny)
and direct, loop-of-single-example reference computations with plain torch.autograd."""

from __future__ import annotations

import torch

from gdig.data.prompts import collate, encode_examples
from gdig.influence.hooks import per_example_loss
from gdig.modeling import build_tiny_model, load_model

TEMPLATE = "T: {src}\nD: "
ROWS = [
    ("the cat sat on the mat", "der Hund lief", "en", "de"),
    ("a small test", "ein kleiner Satz zum Testen und mehr", "en", "de"),
    ("the house is red and big and the cat", "das Haus", "en", "de"),
    ("red", "rot und gross", "en", "de"),
    ("the mat is small", "das Haus ist rot und gross", "en", "de"),
]


def micro_model(path, texts, arch="llama"):
    """hidden 16, MLP 24, 2 layers: a module's gradient has a few hundred entries."""
    build_tiny_model(texts, path, arch=arch, hidden=16, intermediate=24, layers=2, heads=2, vocab_size=300)
    model, tok = load_model(str(path))
    return model, tok


def encode(tok, rows=ROWS):
    enc, _ = encode_examples(tok, rows, TEMPLATE, 64)
    return enc


def direct_capture(model, modules, enc, reduction="mean"):
    """Per example alone: (a list [T, in'], g list [T, out], per-example grads) via autograd."""
    out = []
    for e in enc:
        b = collate([e], 0)
        store = {}
        hooks = []
        for cm in modules:
            def fwd(mod, inp, outp, name=cm.name):
                outp.retain_grad()
                store[name] = (inp[0].detach()[0], outp)
            hooks.append(cm.module.register_forward_hook(fwd))
        model.zero_grad(set_to_none=True)
        for p in model.parameters():
            p.requires_grad_(True)
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        loss = per_example_loss(logits, b["labels"], reduction).loss
        loss.sum().backward()
        for h in hooks:
            h.remove()
        rec = {}
        for cm in modules:
            a, o = store[cm.name]
            a = a.double()
            if cm.has_bias:
                a = torch.cat([a, torch.ones_like(a[:, :1])], 1)
            w = cm.module.weight.grad.double()
            grad = w.T if cm.kind == "conv1d" else w
            if cm.has_bias:
                grad = torch.cat([grad, cm.module.bias.grad.double()[:, None]], 1)
            rec[cm.name] = (a, o.grad[0].double(), grad)
        out.append(rec)
    return out
