"""gdig's influence engine side by side with kronfluence: agreement of the scores and throughput.

    pip install --no-deps kronfluence==1.0.1 einops einconv opt_einsum   # the optional extra
    python benchmarks/kronfluence_compare.py [--n 400] [--seeds 20] [--threads 1] [--gdig-only]

kronfluence installs without its dependencies next to the project's torch (it imports einops,
einconv, opt_einsum, safetensors, accelerate, tqdm; never torchvision).  Without it the script
says so and exits 0; ``--gdig-only`` runs gdig's side alone (what CI's smoke test runs).

One run, one process, the same everything for both tools: a tiny BLOOM (random init, --hidden,
--layers), the same tokenised rows (--n candidates, which are also the curvature data, and
--seeds queries, one product per seed), the --preset modules (bloom: every mlp.dense_h_to_4h),
the same loss (per example: mean cross-entropy over its target tokens; a batch's loss is the
sum over its examples; the LM head runs on target positions only, for both), the empirical
Fisher, and the same damping: δ = 0.1 × mean of the (corrected) Kronecker eigenvalues.
Batches: gdig buckets rows by length by itself; kronfluence batches rows in the order it gets
them, so by default (``--kronfluence-order sorted``) it is handed the rows sorted by length and
its sequential batches are the same buckets (like for like); ``--kronfluence-order given`` hands
them over in their own order, as kronfluence is called on a dataset.  Scores are I = -∇L(z)ᵀ H⁻¹ ∇L(s)
in gdig and ∇L(s)ᵀ H⁻¹ ∇L(z) in kronfluence: the comparison negates kronfluence's.

Two settings (the two kronfluence computes):
  token K-FAC   gdig: strategy kfac, granularity token, kfac_damping mean_eigenvalue
                kronfluence: strategy "kfac"
  EK-FAC        gdig: strategy ekfac, granularity token, eigen_average example,
                ekfac_damping mean_eigenvalue;   kronfluence: strategy "ekfac"
Printed per setting: Spearman over all candidate×seed cells, max relative difference
(max |gdig - kf| / max |kf|), fitting throughput of both (examples/s; gdig's includes building
the damped inverse, which for K-FAC holds the eigendecompositions kronfluence does while
fitting) and scoring throughput at each --score-batch-sizes (candidates/s for the whole
scoring call: seed gradients, their preconditioning, candidates), with gdig/kronfluence ratios
at batch 1 and at each tool's best batch size (by median time).  Each measurement is --repeats
rounds; in each round both tools run back to back, in alternating order, so both see the same
machine load; the ratios printed are the median and range of the per-round ratios.

Results, with their date, machine and settings: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from influence_throughput import TEMPLATE, WORDS, make_rows  # noqa: E402


def kronfluence_available() -> str | None:
    try:
        import kronfluence  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure means: not usable here
        return f"{type(e).__name__}: {e}"
    return None


class _Rows:
    """A map-style dataset over encoded rows (kronfluence's DataLoader input)."""

    def __init__(self, enc):
        self.enc = enc

    def __len__(self):
        return len(self.enc)

    def __getitem__(self, i):
        return self.enc[i]


def make_task(module_names):
    from kronfluence.task import Task

    from gdig.influence.hooks import forward_loss

    class MeanTargetLoss(Task):
        """Per example: mean CE over target tokens; summed over the batch (as gdig's capture)."""

        def compute_train_loss(self, batch, model, sample=False):
            if sample:
                raise NotImplementedError("the comparison uses the empirical Fisher")
            return forward_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"], "mean")[0].sum()

        def compute_measurement(self, batch, model):
            return self.compute_train_loss(batch, model)

        def get_influence_tracked_modules(self):
            return list(module_names)

        def get_attention_mask(self, batch):
            return batch["attention_mask"]

    return MeanTargetLoss()


class Kronfluence:
    def __init__(self, model, module_names, pad_id, out_dir, cands, seeds, order: str = "sorted"):
        import torch
        from kronfluence.analyzer import Analyzer, prepare_model
        from kronfluence.utils.dataset import DataLoaderKwargs

        from gdig.data.prompts import collate

        self.torch = torch
        task = make_task(module_names)
        self.model = prepare_model(model, task)
        self.analyzer = Analyzer("compare", self.model, task, cpu=True, disable_tqdm=True, output_dir=out_dir)
        self.loader = DataLoaderKwargs(collate_fn=lambda rows: collate(rows, pad_id))
        # "sorted": rows handed over sorted by length, so kronfluence's sequential batches are
        # gdig's length buckets; "given": the rows in their own order, as a user's dataset arrives
        by_length = (lambda rows: sorted(range(len(rows)), key=lambda i: (len(rows[i].input_ids), i))) \
            if order == "sorted" else (lambda rows: list(range(len(rows))))
        self.order = by_length(cands)
        self.cands = _Rows([cands[i] for i in self.order])
        self.qorder = by_length(seeds)
        self.seeds = _Rows([seeds[i] for i in self.qorder])

    def fit(self, strategy: str, batch_size: int) -> None:
        from kronfluence.arguments import FactorArguments

        args = FactorArguments(strategy=strategy, use_empirical_fisher=True)
        self.analyzer.fit_all_factors(strategy, self.cands, per_device_batch_size=batch_size, factor_args=args,
                                      dataloader_kwargs=self.loader, overwrite_output_dir=True)

    def score(self, strategy: str, batch_size: int, query_batch_size: int = 8):
        """[candidates, seeds] in the input order, negated to gdig's sign convention."""
        import numpy as np
        from kronfluence.arguments import ScoreArguments

        args = ScoreArguments(damping_factor=None)  # δ = 0.1 × mean eigenvalue
        self.analyzer.compute_pairwise_scores(
            f"{strategy}-scores", strategy, self.seeds, self.cands, per_device_query_batch_size=query_batch_size,
            per_device_train_batch_size=batch_size, score_args=args, dataloader_kwargs=self.loader,
            overwrite_output_dir=True)
        s = self.analyzer.load_pairwise_scores(f"{strategy}-scores")["all_modules"].double().numpy()  # [Q, N]
        out = np.empty((len(self.order), len(self.qorder)))
        out[np.ix_(self.order, self.qorder)] = -s.T
        return out


class Gdig:
    SETTINGS = {"kfac": dict(strategy="kfac", eigen_average="auto", rule=("mean_eigenvalue", "absolute")),
                "ekfac": dict(strategy="ekfac", eigen_average="example", rule=("pi", "mean_eigenvalue")),
                # gdig's native token EK-FAC (per-token correction): agreement only
                "ekfac-token": dict(strategy="ekfac", eigen_average="token", rule=("pi", "mean_eigenvalue"))}

    def __init__(self, model, mods, pad_id, cands, seeds, fp64: bool):
        self.model, self.mods, self.pad_id, self.cands, self.seeds, self.fp64 = model, mods, pad_id, cands, seeds, fp64
        self.inverse = {}

    def fit(self, strategy: str, batch_size: int) -> None:
        from gdig.data.prompts import collate, length_batches
        from gdig.influence.curvature import fit_curvature
        from gdig.influence.inverse import InverseHessian

        st = self.SETTINGS[strategy]
        plan = length_batches([len(e.input_ids) for e in self.cands], batch_size)
        curv = fit_curvature(self.model, self.mods, lambda: (collate([self.cands[i] for i in b], self.pad_id) for b in plan),
                             strategy=st["strategy"], granularity="token", eigen_average=st["eigen_average"],
                             fp64=self.fp64)
        kfac_rule, ekfac_rule = st["rule"]
        self.inverse[strategy] = InverseHessian(curv, 0.1, ekfac_damping=ekfac_rule, kfac_damping=kfac_rule)

    def score(self, strategy: str, batch_size: int):
        from gdig.influence.scoring import Scorer
        from gdig.influence.seeds import seed_gradients, seed_products

        grads = seed_gradients(self.model, self.mods, self.seeds, pad_id=self.pad_id, batch_size=8)
        prods = seed_products(grads, self.inverse[strategy], self.mods, [str(i) for i in range(len(self.seeds))])
        del grads
        scorer = Scorer(self.model, self.mods, prods)
        del prods
        return scorer.score_encoded(self.cands, pad_id=self.pad_id, batch_size=batch_size).scores.astype("float64")


def rounds(fn_a, fn_b, n: int) -> tuple[list[float], list[float]]:
    """Seconds of fn_a and fn_b over n rounds, the two run back to back in each round and in
    alternating order (a first in even rounds), so both see the same machine load."""
    ta, tb = [], []
    for r in range(n):
        for which in ((0, 1) if r % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            (fn_a, fn_b)[which]()
            (ta, tb)[which].append(time.perf_counter() - t0)
    return ta, tb


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(num: list[float], den: list[float]) -> str:
    """Per-round ratios num[r] / den[r] (time of kronfluence over time of gdig = gdig's speed-up):
    median and range."""
    r = [a / b for a, b in zip(num, den)]
    return f"{statistics.median(r):.2f} [{min(r):.2f}-{max(r):.2f}]"


def gdig_only(gd: Gdig, strategies: list[str], args, score_bs: list[int], n: int) -> int:
    """gdig's side without kronfluence: fit and scoring throughput (median of --repeats), and the
    largest relative difference of the scores at each batch size from those at the first."""
    import numpy as np

    for strategy in strategies:
        fit = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            gd.fit(strategy, args.fit_batch_size)
            fit.append(time.perf_counter() - t0)
        first, line = None, []
        for bs in score_bs:
            sec = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                s = gd.score(strategy, bs)
                sec.append(time.perf_counter() - t0)
            first = s if first is None else first
            rel = float(np.abs(s - first).max() / np.abs(first).max())
            line.append(f"batch {bs} {n / median(sec):.1f} ex/s (max rel diff from batch {score_bs[0]} {rel:.1e})")
        print(f"gdig {strategy}: {s.shape[0]}x{s.shape[1]} scores, all finite: {bool(np.isfinite(s).all())}; "
              f"fit (batch {args.fit_batch_size}) {n / median(fit):.1f} ex/s; scoring " + ", ".join(line), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400, help="candidates (also the curvature data)")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--preset", default="bloom")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    ap.add_argument("--fit-batch-size", type=int, default=16)
    ap.add_argument("--score-batch-sizes", default="1,8,16,32")
    ap.add_argument("--strategies", default="kfac,ekfac")
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds per measurement (the tools alternate; per-round ratios: median and range)")
    ap.add_argument("--kronfluence-order", choices=("sorted", "given"), default="sorted",
                    help="rows handed to kronfluence sorted by length (its batches = gdig's length buckets; "
                         "default) or in their given order, as kronfluence is called on a dataset")
    ap.add_argument("--gdig-fp32", action="store_true",
                    help="gdig sums the factors over batches in float32 like kronfluence (default: gdig's float64)")
    ap.add_argument("--gdig-only", action="store_true",
                    help="run gdig's side alone (fit and scoring throughput, scores at each batch size against "
                         "the first): the CI smoke test, where kronfluence is not installed")
    args = ap.parse_args()

    why = kronfluence_available()
    if why is not None and not args.gdig_only:
        print(f"kronfluence is not installed ({why}); install the optional extra with\n"
              "  pip install --no-deps kronfluence==1.0.1 einops einconv opt_einsum\nskipping the comparison.")
        return 0
    import warnings

    import numpy as np
    import torch
    from scipy.stats import spearmanr

    from gdig.data.prompts import encode_examples
    from gdig.influence.modules import select_modules
    from gdig.modeling import build_tiny_model, load_model

    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    score_bs = [int(x) for x in args.score_batch_sizes.split(",")]
    strategies = args.strategies.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        build_tiny_model([" ".join(WORDS)] * 20 + [TEMPLATE], model_dir, arch="bloom", hidden=args.hidden,
                         layers=args.layers, heads=4, vocab_size=512)
        g_model, tok = load_model(str(model_dir))
        k_model, _ = load_model(str(model_dir))
        mods = select_modules(g_model, args.preset)
        cands, _ = encode_examples(tok, make_rows(args.n, 1), TEMPLATE, 256)
        seeds, _ = encode_examples(tok, make_rows(args.seeds, 2), TEMPLATE, 256)
        n_tok = sum(len(e.input_ids) for e in cands)
        print(f"model: bloom hidden={args.hidden} layers={args.layers}; torch {torch.__version__}, "
              f"threads={torch.get_num_threads()}; per-batch factor products in float32 in both, summed over "
              f"batches in {'float32' if args.gdig_fp32 else 'float64'} by gdig, in float32 by kronfluence")
        print(f"modules ({len(mods)}): {', '.join(m.name for m in mods)}")
        print(f"candidates: {len(cands)} ({n_tok / len(cands):.1f} tokens on average), seeds: {len(seeds)}; "
              f"rows handed to kronfluence {args.kronfluence_order}"
              + (" by length" if args.kronfluence_order == "sorted" else " (dataset order)"), flush=True)
        gd = Gdig(g_model, mods, tok.pad_token_id, cands, seeds, fp64=not args.gdig_fp32)
        if args.gdig_only:
            return gdig_only(gd, strategies, args, score_bs, len(cands))
        kf = Kronfluence(k_model, [m.name for m in mods], tok.pad_token_id, str(Path(tmp) / "kf"), cands, seeds,
                         args.kronfluence_order)
        summary = []
        for strategy in strategies:
            name = {"kfac": "token K-FAC", "ekfac": "EK-FAC (per-example correction)"}[strategy]
            print(f"\n== {name} ==", flush=True)
            fit_g, fit_k = rounds(lambda: gd.fit(strategy, args.fit_batch_size),
                                  lambda: kf.fit(strategy, args.fit_batch_size), args.repeats)
            sg, sk = gd.score(strategy, score_bs[0]), kf.score(strategy, score_bs[0])
            rho = spearmanr(sg.ravel(), sk.ravel())[0]
            rel = float(np.abs(sg - sk).max() / np.abs(sk).max())
            print(f"agreement over {sg.size} cells: Spearman {rho:.6f}, max relative difference {rel:.2e}")
            if strategy == "ekfac":  # gdig's own per-token correction against kronfluence's per-example one
                gd.fit("ekfac-token", args.fit_batch_size)
                st = gd.score("ekfac-token", score_bs[0])
                scale = float(np.median(np.abs(st) / np.maximum(np.abs(sk), 1e-30)))
                print(f"gdig's per-token EK-FAC correction vs kronfluence's: Spearman "
                      f"{spearmanr(st.ravel(), sk.ravel())[0]:.6f}, median |gdig / kf| {scale:.3g}")
            n = len(cands)
            print(f"fit (batch {args.fit_batch_size}): gdig {n / median(fit_g):.1f} ex/s, kronfluence "
                  f"{n / median(fit_k):.1f} ex/s, ratio {spread(fit_k, fit_g)}", flush=True)
            tg, tk = {}, {}
            print("batch  gdig ex/s  kronfluence ex/s  ratio (median, range over rounds)")
            for bs in score_bs:
                tg[bs], tk[bs] = rounds(lambda: gd.score(strategy, bs), lambda: kf.score(strategy, bs), args.repeats)
                print(f"{bs:5d}  {n / median(tg[bs]):9.1f}  {n / median(tk[bs]):16.1f}  {spread(tk[bs], tg[bs])}",
                      flush=True)
            bg = min(tg, key=lambda b: median(tg[b]))
            bk = min(tk, key=lambda b: median(tk[b]))
            b1 = score_bs[0]
            line = (f"{name}: Spearman {rho:.6f}, max rel diff {rel:.1e}; fit ratio {spread(fit_k, fit_g)}; scoring "
                    f"ratio at batch {b1} {spread(tk[b1], tg[b1])}, at the best batch (gdig {bg}, kronfluence {bk}) "
                    f"{spread(tk[bk], tg[bg])}")
            summary.append(line)
        print(f"\nsummary (ratios = gdig throughput / kronfluence throughput, per round of this run: median "
              f"[range] over {args.repeats} rounds; load average now {os.getloadavg()[0]:.1f}):")
        for line in summary:
            print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
