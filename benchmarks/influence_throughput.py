"""Influence engine throughput on a tiny model, side by side with plain training steps.

    python benchmarks/influence_throughput.py [--n 256] [--seeds 64] [--hidden 128] [--layers 4] [--memory-only]

Modules: the --preset MLP projections of the --module-layers layers (default: the upper half).
Measures, in one run on the same model and the same length-bucketed candidates:
  - training step (forward + backward of the mean target loss, all weights trainable,
    no optimizer step) examples/s, at each batch size; its best is the reference;
  - curvature fitting examples/s (K-FAC one pass; EK-FAC two passes);
  - scoring examples/s against --seeds seed products, with and without gradient sketches;
  - peak memory while scoring N and 4N candidates, each in a fresh process: the peak resident
    set size (VmHWM from /proc/self/status, reset with /proc/self/clear_refs after the model
    and the seed products are loaded, so it is the peak of the scoring loop itself; the RSS
    before scoring is printed too); equal peaks = memory independent of the number of candidates.
The batch sizes are scanned (best of --repeats each); then the ratios are measured with the two
sides at their best batch sizes run back to back, in rotating order, for --rounds rounds: the
median and range of the per-round ratios are printed.  The last line is ``scoring/training
throughput ratio: X.XX (range A-B)`` (scoring over training, each at its best batch size).

Results, with their date, machine and settings: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import random
import resource
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

WORDS = ("the cat sat on a mat and the house is red big small test sentence der Hund lief schnell nach Hause "
         "ein kleiner Satz zum Testen das Haus ist rot und gross").split()
TEMPLATE = "Translate the following English text into German.\nEnglish: {src}\nGerman: "


def make_rows(n: int, seed: int) -> list[tuple[str, str, str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        k = rng.randint(4, 40)
        src = " ".join(rng.choice(WORDS) for _ in range(k))
        tgt = " ".join(rng.choice(WORDS) for _ in range(max(2, int(k * rng.uniform(0.7, 1.3)))))
        rows.append((src, tgt, "en", "de"))
    return rows


def build(args, model_dir: str):
    from gdig.modeling import build_tiny_model

    texts = [" ".join(WORDS)] * 20 + [TEMPLATE]
    build_tiny_model(texts, model_dir, arch="llama", hidden=args.hidden, layers=args.layers, heads=4,
                     intermediate=args.intermediate, vocab_size=512)


def setup(args, model_dir: str):
    import torch

    from gdig.data.prompts import encode_examples
    from gdig.influence.modules import select_modules
    from gdig.modeling import load_model

    torch.manual_seed(0)
    model, tok = load_model(model_dir, dtype=args.dtype)
    if args.module_layers == "all":
        layers = None
    elif args.module_layers == "upper-half":
        layers = list(range(args.layers // 2, args.layers))
    else:
        layers = [int(x) for x in args.module_layers.split(",")]
    mods = select_modules(model, args.preset, layers=layers)
    cands, _ = encode_examples(tok, make_rows(args.n, 1), TEMPLATE, 256)
    seeds, _ = encode_examples(tok, make_rows(args.seeds, 2), TEMPLATE, 256)
    return model, tok, mods, cands, seeds


REPEATS = 3


def timed(fn) -> float:
    """Best of REPEATS timed runs after one warm-up: the least disturbed by other load on the box."""
    fn()  # warm-up (allocator, kernels)
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def train_pass(model, tok, cands, bs: int):
    """A callable: one training pass (fwd+bwd of the mean target loss, every weight) over the candidates."""
    from gdig.data.prompts import collate, length_batches

    plan = length_batches([len(e.input_ids) for e in cands], bs)
    batches = [collate([cands[i] for i in b], tok.pad_token_id) for b in plan]

    def run():
        for p in model.parameters():  # the scorer freezes them while it runs
            p.requires_grad_(True)
        for b in batches:
            out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"], use_cache=False)
            out.loss.backward()
            model.zero_grad(set_to_none=True)

    return run


def train_throughput(model, tok, cands, bs: int) -> float:
    return len(cands) / timed(train_pass(model, tok, cands, bs))


def products(model, tok, mods, cands, seeds, strategy="ekfac"):
    from gdig.data.prompts import collate, length_batches
    from gdig.influence.curvature import fit_curvature
    from gdig.influence.inverse import InverseHessian
    from gdig.influence.seeds import seed_gradients, seed_products

    plan = length_batches([len(e.input_ids) for e in cands], 8)
    curv = fit_curvature(model, mods, lambda: (collate([cands[i] for i in b], tok.pad_token_id) for b in plan),
                         strategy=strategy, granularity="sequence")
    grads = seed_gradients(model, mods, seeds, pad_id=tok.pad_token_id, batch_size=8)
    return seed_products(grads, InverseHessian(curv, 0.5), mods, [str(i) for i in range(len(seeds))])


def score_pass(model, tok, mods, cands, prods, bs: int, sketch: bool):
    """A callable: one scoring pass over the candidates against the seed products."""
    from gdig.influence.scoring import Scorer, SketchSpec

    scorer = Scorer(model, mods, prods, sketch=SketchSpec() if sketch else None)
    return lambda: scorer.score_encoded(cands, pad_id=tok.pad_token_id, batch_size=bs)


def score_throughput(model, tok, mods, cands, prods, bs: int, sketch: bool) -> float:
    return len(cands) / timed(score_pass(model, tok, mods, cands, prods, bs, sketch))


def interleaved(fns: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds per pass of each callable over `rounds` rounds, run back to back in each round in
    rotating order (so all sides see the same machine load)."""
    names = list(fns)
    sec = {k: [] for k in names}
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            fns[k]()
            sec[k].append(time.perf_counter() - t0)
    return sec


def ratio_spread(num: list[float], den: list[float]) -> tuple[float, float, float]:
    """(median, min, max) of the per-round ratios num[r] / den[r]."""
    q = sorted(a / b for a, b in zip(num, den))
    return statistics.median(q), q[0], q[-1]


def fit_throughput(model, tok, mods, cands, strategy: str, bs: int) -> float:
    from gdig.data.prompts import collate, length_batches
    from gdig.influence.curvature import fit_curvature

    plan = length_batches([len(e.input_ids) for e in cands], bs)
    batches = [collate([cands[i] for i in b], tok.pad_token_id) for b in plan]
    return len(cands) / timed(lambda: fit_curvature(model, mods, lambda: iter(batches), strategy=strategy,
                                                    granularity="sequence"))


def _fit_batches(tok, cands, bs: int):
    from gdig.data.prompts import collate, length_batches

    plan = length_batches([len(e.input_ids) for e in cands], bs)
    return [collate([cands[i] for i in b], tok.pad_token_id) for b in plan]


def fit_curvature_on(model, mods, batches, strategy: str):
    from gdig.influence.curvature import fit_curvature

    return fit_curvature(model, mods, lambda: iter(batches), strategy=strategy, granularity="sequence")


def _status_mib(key: str) -> float | None:
    """VmRSS / VmHWM of this process from /proc (Linux), in MiB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _memory_child(args, model_dir: str, n: int, bs: int, queue) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    args.n = n
    model, tok, mods, cands, seeds = setup(args, model_dir)
    prods = products(model, tok, mods, cands[:64], seeds)
    from gdig.influence.scoring import Scorer, SketchSpec

    scorer = Scorer(model, mods, prods, sketch=SketchSpec())
    del prods
    gc.collect()  # garbage of the setup is not the scoring loop's
    before = _status_mib("VmRSS")
    if not _reset_peak():  # no /proc: whole-process peak from getrusage (KiB on Linux)
        before = None
    scorer.score_encoded(cands, pad_id=tok.pad_token_id, batch_size=bs)
    peak = _status_mib("VmHWM") if before is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((before, peak))


def peak_memory_mib(args, model_dir: str, n: int, bs: int) -> tuple[float | None, float]:
    """(RSS before scoring, peak RSS while scoring n candidates), in a fresh process."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_memory_child, args=(args, model_dir, n, bs, q))
    p.start()
    out = q.get()
    p.join()
    return out


def print_peak_memory(args, model_dir: str, bs: int) -> None:
    (r1, m1), (r2, m2) = (peak_memory_mib(args, model_dir, k, bs) for k in (args.n, 4 * args.n))
    rise = lambda m, r: f"{r:.0f} before, +{m - r:.0f}" if r is not None else "whole-process peak"  # noqa: E731
    print(f"peak RSS while scoring at batch {bs}, each in a fresh process (RSS with model + products loaded, "
          f"before scoring; the rise): {m1:.0f} MiB for {args.n} candidates ({rise(m1, r1)}), "
          f"{m2:.0f} MiB for {4 * args.n} ({rise(m2, r2)})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=128, help="candidates (and training examples)")
    ap.add_argument("--seeds", type=int, default=64, help="seed products scored against")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--intermediate", type=int, default=352)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--preset", default="llama", help="module preset (influence.modules.preset)")
    ap.add_argument("--module-layers", default="upper-half",
                    help="layers whose modules are scored: 'upper-half' (default; the reference code also "
                         "scores a subset of layers), 'all', or comma-separated indices like -2,-1")
    ap.add_argument("--train-batch-sizes", default="1,4,8,16,32", help="training batch sizes tried")
    ap.add_argument("--score-batch-sizes", default="8,16,32,64", help="scoring batch sizes tried")
    ap.add_argument("--no-memory", action="store_true", help="skip the two peak-memory subprocesses")
    ap.add_argument("--memory-only", action="store_true",
                    help="only the two peak-memory subprocesses (N and 4N candidates; --score-batch-sizes' first "
                         "is the batch size)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per batch-size scan point (best is kept)")
    ap.add_argument("--no-fit-rounds", action="store_true", help="leave the fits out of the interleaved rounds")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds for the ratios (median, range)")
    args = ap.parse_args()
    import torch

    global REPEATS
    REPEATS = args.repeats
    if args.threads:
        torch.set_num_threads(args.threads)

    train_bs = [int(x) for x in args.train_batch_sizes.split(",")]
    score_bs = [int(x) for x in args.score_batch_sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        build(args, tmp)
        if args.memory_only:
            print_peak_memory(args, tmp, score_bs[0])
            return
        model, tok, mods, cands, seeds = setup(args, tmp)
        n_tok = sum(len(e.input_ids) for e in cands)
        print(f"model: llama hidden={args.hidden} layers={args.layers} intermediate={args.intermediate} "
              f"dtype={args.dtype}; torch threads={torch.get_num_threads()}")
        print(f"modules ({len(mods)}): {', '.join(m.name.replace('model.layers.', 'L') for m in mods)}", flush=True)
        print(f"candidates: {len(cands)} ({n_tok / len(cands):.1f} tokens on average), seeds: {len(seeds)}", flush=True)

        prods = products(model, tok, mods, cands, seeds)
        train, score, score_sk = {}, {}, {}
        print("\nbatch  train ex/s", flush=True)
        for bs in train_bs:
            train[bs] = train_throughput(model, tok, cands, bs)
            print(f"{bs:5d}  {train[bs]:10.1f}", flush=True)
        print("\nbatch  score ex/s  score+sketch ex/s", flush=True)
        for bs in score_bs:
            score[bs] = score_throughput(model, tok, mods, cands, prods, bs, sketch=False)
            score_sk[bs] = score_throughput(model, tok, mods, cands, prods, bs, sketch=True)
            print(f"{bs:5d}  {score[bs]:10.1f}  {score_sk[bs]:17.1f}", flush=True)
        bt, bsc, bsk = max(train, key=train.get), max(score, key=score.get), max(score_sk, key=score_sk.get)
        fit_bs = bsc
        fit_k = fit_throughput(model, tok, mods, cands, "kfac", fit_bs)
        fit_e = fit_throughput(model, tok, mods, cands, "ekfac", fit_bs)
        print(f"\ntraining step (fwd+bwd), best batch {bt}: {train[bt]:.1f} ex/s", flush=True)
        print(f"curvature fitting, batch {fit_bs}: K-FAC {fit_k:.1f} ex/s, EK-FAC (2 passes) {fit_e:.1f} ex/s", flush=True)
        print(f"scoring, {len(seeds)} seeds, best batch {bsc}: {score[bsc]:.1f} ex/s; "
              f"with sketches (batch {bsk}): {score_sk[bsk]:.1f} ex/s")
        if not args.no_memory:
            print_peak_memory(args, tmp, bsc)
        # the ratios: the two sides of each, at their best batch sizes, interleaved over --rounds rounds
        fns = {"train": train_pass(model, tok, cands, bt), "fit-kfac": None, "fit-ekfac": None,
               "score": score_pass(model, tok, mods, cands, prods, bsc, sketch=False),
               "score+sketch": score_pass(model, tok, mods, cands, prods, bsk, sketch=True)}
        plan = [b for b in _fit_batches(tok, cands, fit_bs)]
        fns["fit-kfac"] = lambda: fit_curvature_on(model, mods, plan, "kfac")
        fns["fit-ekfac"] = lambda: fit_curvature_on(model, mods, plan, "ekfac")
        if args.no_fit_rounds:
            del fns["fit-kfac"], fns["fit-ekfac"]
        sec = interleaved(fns, args.rounds)
        fmt = lambda k: "{:.2f} (range {:.2f}-{:.2f})".format(*ratio_spread(sec["train"], sec[k]))  # noqa: E731
        print(f"\nper-round ratios over {args.rounds} interleaved rounds, median (range); load average "
              f"{os.getloadavg()[0]:.1f}:", flush=True)
        if not args.no_fit_rounds:
            print(f"fitting/training throughput ratio: K-FAC {fmt('fit-kfac')}, EK-FAC {fmt('fit-ekfac')}", flush=True)
        print(f"scoring+sketch/training throughput ratio: {fmt('score+sketch')}", flush=True)
        print(f"scoring/training throughput ratio: {fmt('score')}", flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
