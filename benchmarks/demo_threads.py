"""Torch threads for the demo's tiny model: training steps at 1 and at 2 threads, side by side.

    PYTHONPATH=. python benchmarks/demo_threads.py [--steps 20] [--rounds 3] [--out DIR]

The demo's tiny Llama (gdig/demo/config.yaml sizes, random init, its tokenizer) takes --steps
optimizer steps of the demo's pretraining setup (batch 16, the general corpus) at 1 thread and
at 2, in alternating order, --rounds times; printed: seconds per step of each and the median and
range of the per-round ratio (2 threads / 1 thread; above 1: one thread is faster).  Results:
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None, help="working directory (default: a new temp dir)")
    args = ap.parse_args()

    import torch

    from gdig.config import PromptConfig, TrainConfig
    from gdig.demo import demo_defaults, prepare_demo
    from gdig.demo.corpus import SRC_LANG, TGT_LANG
    from gdig.modeling import load_model
    from gdig.train import encode_frame, load_training_frame, train_model

    work = Path(args.out or tempfile.mkdtemp(prefix="gdig-demo-threads-"))
    prepare_demo(work, progress=False, demo_overrides={"pretrain_steps": 0})
    knobs = demo_defaults()
    import yaml

    prompt = PromptConfig(**yaml.safe_load((work / "gdig.yaml").read_text())["prompt"])
    model0, tok = load_model(str(work / "models" / "init"))
    encoded, _ = encode_frame(tok, load_training_frame(work / "data" / "general.jsonl", SRC_LANG, TGT_LANG), prompt)
    tcfg = TrainConfig(max_steps=args.steps, batch_size=knobs["pretrain_batch_size"], lr=knobs["pretrain_lr"],
                       save_every=10**6)

    def run(threads: int, k: int) -> float:
        torch.set_num_threads(threads)
        model, _ = load_model(str(work / "models" / "init"))
        t0 = time.perf_counter()
        train_model(model, tok, encoded, tcfg, work / f"ab-{threads}-{k}", steps=args.steps, progress=False)
        return (time.perf_counter() - t0) / args.steps

    run(1, -1)  # warm-up
    ratios, per = [], {1: [], 2: []}
    for k in range(args.rounds):
        for threads in ((1, 2) if k % 2 == 0 else (2, 1)):
            per[threads].append(run(threads, k))
        ratios.append(per[2][-1] / per[1][-1])
    for threads in (1, 2):
        print(f"{threads} thread(s): {statistics.median(per[threads]) * 1000:.0f} ms/step "
              f"[{min(per[threads]) * 1000:.0f}-{max(per[threads]) * 1000:.0f}]")
    print(f"2 threads / 1 thread, time per step: {statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
