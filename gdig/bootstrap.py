"""Paired bootstrap intervals for margins between systems on one test set (Koehn, 2004).

A corpus metric is a function of per-sentence statistics summed over the corpus (BLEU: n-gram
matches and lengths; chrF: character and word n-gram matches; target NLL: summed token loss and
token count), so a resample of the test rows is a resample of those rows' statistics.  Each
system may come in several finetune seeds: its score on a resample is the mean over its seeds,
and the same resampled rows are used for every system and seed (that is the pairing).  With
`resample_seeds`, each resample also draws each system's seeds with replacement, so the interval
holds the finetune-seed spread as well as the test rows'.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

Stats = np.ndarray  # [n_rows, n_stats] per-sentence statistics of one system (one seed)
Scorer = Callable[[np.ndarray], np.ndarray]  # summed statistics [..., n_stats] -> scores [...]


def _sacrebleu_metric(name: str, tgt_lang: str | None):
    from sacrebleu.metrics import BLEU, CHRF

    if name == "chrF":
        return CHRF()
    if name == "BLEU":
        from gdig.evaluate import bleu_tokenizer

        return BLEU(tokenize=bleu_tokenizer(tgt_lang)[0])
    raise ValueError(f"unknown metric {name!r}; one of BLEU, chrF")


def sentence_stats(name: str, hyps: Sequence[str], refs: Sequence[str], tgt_lang: str | None = None) -> Stats:
    """Per-sentence sufficient statistics of sacrebleu's BLEU or chrF (summed: the corpus score)."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    m = _sacrebleu_metric(name, tgt_lang)
    return np.asarray(m._extract_corpus_statistics(list(hyps), [list(refs)]), dtype=np.float64)


def metric_scorer(name: str, tgt_lang: str | None = None) -> Scorer:
    """Summed statistics -> corpus score, as sacrebleu's corpus_score computes it."""
    m = _sacrebleu_metric(name, tgt_lang)

    def score(summed: np.ndarray) -> np.ndarray:
        flat = summed.reshape(-1, summed.shape[-1])
        return np.array([m._compute_score_from_stats(list(row)).score for row in flat]).reshape(summed.shape[:-1])

    return score


def nll_stats(nll_sums: Sequence[float], n_tokens: Sequence[int]) -> Stats:
    """Per-sentence (summed target NLL, target tokens)."""
    return np.stack([np.asarray(nll_sums, np.float64), np.asarray(n_tokens, np.float64)], axis=1)


def nll_score(summed: np.ndarray) -> np.ndarray:
    """Mean NLL per target token of summed (NLL, tokens)."""
    return summed[..., 0] / summed[..., 1]


def paired_bootstrap(base: Sequence[Stats], other: Sequence[Stats], score: Scorer, *, n: int = 1000,
                     seed: int = 0, level: float = 0.95, resample_seeds: bool = False) -> dict:
    """The margin other − base (each the mean of its seeds' corpus scores) and its `level`
    percentile interval over `n` paired resamples of the test rows (`resample_seeds`: and of each
    system's finetune seeds, drawn with replacement and independently per system)."""
    systems = [np.stack(list(s)) for s in (base, other)]  # [seeds, rows, stats]
    n_rows = systems[0].shape[1]
    if any(s.ndim != 3 or s.shape[1] != n_rows for s in systems):
        raise ValueError("every seed of both systems needs statistics for the same test rows")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_rows, size=(n, n_rows))
    # counts of each row in each resample: summed stats = counts @ stats (no [n, rows, stats] copy)
    counts = np.zeros((n, n_rows))
    np.add.at(counts, (np.repeat(np.arange(n), n_rows), idx.ravel()), 1.0)

    seed_weights = [np.ones((n, len(s))) for s in systems]  # [resamples, seeds]: how often each seed is drawn
    if resample_seeds:
        for w, s in zip(seed_weights, systems):
            k = len(s)
            w[:] = 0.0
            np.add.at(w, (np.repeat(np.arange(n), k), rng.integers(0, k, size=n * k)), 1.0)

    def mean_score(s: np.ndarray, weights: np.ndarray, per_seed: np.ndarray) -> np.ndarray:
        summed = np.einsum("br,krs->bks", weights, s)  # [resamples, seeds, stats]
        return (score(summed) * per_seed).sum(axis=1) / per_seed.sum(axis=1)

    full, one = np.ones((1, n_rows)), [np.ones((1, len(s))) for s in systems]
    point = float(mean_score(systems[1], full, one[1])[0] - mean_score(systems[0], full, one[0])[0])
    diffs = mean_score(systems[1], counts, seed_weights[1]) - mean_score(systems[0], counts, seed_weights[0])
    a = (1.0 - level) / 2
    lo, hi = np.quantile(diffs, [a, 1.0 - a])
    return {"margin": point, "lo": float(lo), "hi": float(hi), "n": n}
