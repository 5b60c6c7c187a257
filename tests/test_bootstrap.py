"""Paired bootstrap of margins: the statistics reproduce sacrebleu's corpus scores, the resampled
margins equal a direct recomputation, and the interval behaves on constructed systems."""

from __future__ import annotations

import numpy as np
import pytest

from gdig.bootstrap import metric_scorer, nll_score, nll_stats, paired_bootstrap, sentence_stats

REFS = ["The cat sat on the mat.", "It rained all day in the town.", "She reads a book every week.",
        "Prices rose by 3 percent.", "The river flooded the fields."]
GOOD = ["The cat sat on the mat.", "It rained all day in town.", "She reads one book each week.",
        "Prices rose by 3 percent.", "The river flooded fields."]
BAD = ["A cat is on a mat.", "Rain.", "She book.", "Prices went up.", "Water in the fields."]


@pytest.mark.parametrize("name", ["chrF", "BLEU"])
def test_summed_statistics_give_sacrebleus_corpus_score(name):
    from sacrebleu.metrics import BLEU, CHRF

    m = CHRF() if name == "chrF" else BLEU(tokenize="13a")
    for hyps in (GOOD, BAD):
        stats = sentence_stats(name, hyps, REFS, "en")
        assert stats.shape[0] == len(REFS)
        assert metric_scorer(name, "en")(stats.sum(0)) == pytest.approx(m.corpus_score(hyps, [REFS]).score, abs=1e-9)


def test_bootstrap_margins_equal_a_direct_recomputation():
    score = metric_scorer("chrF")
    a = [sentence_stats("chrF", BAD, REFS), sentence_stats("chrF", GOOD[:2] + BAD[2:], REFS)]
    b = [sentence_stats("chrF", GOOD, REFS), sentence_stats("chrF", GOOD[:4] + BAD[4:], REFS)]
    res = paired_bootstrap(a, b, score, n=50, seed=3)
    from sacrebleu.metrics import CHRF

    chrf = CHRF()
    systems_b = [GOOD, GOOD[:4] + BAD[4:]]
    systems_a = [BAD, GOOD[:2] + BAD[2:]]
    direct = lambda systems, rows: np.mean([chrf.corpus_score([h[i] for i in rows], [[REFS[i] for i in rows]]).score  # noqa: E731
                                            for h in systems])
    assert res["margin"] == pytest.approx(direct(systems_b, range(5)) - direct(systems_a, range(5)), abs=1e-9)
    idx = np.random.default_rng(3).integers(0, 5, size=(50, 5))
    diffs = [direct(systems_b, r) - direct(systems_a, r) for r in idx]
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    assert (res["lo"], res["hi"]) == (pytest.approx(lo, abs=1e-9), pytest.approx(hi, abs=1e-9))


def test_nll_margin_and_identical_systems():
    a = nll_stats([2.0, 4.0, 6.0], [2, 2, 2])  # 2.0 nats per token
    b = nll_stats([1.0, 2.0, 3.0], [2, 2, 2])  # 1.0
    assert nll_score(a.sum(0)) == 2.0
    res = paired_bootstrap([a], [b], nll_score, n=200)
    assert res["margin"] == pytest.approx(-1.0) and res["lo"] <= -1.0 + 1e-9 and res["hi"] < 0
    same = paired_bootstrap([a, b], [a, b], nll_score, n=200)
    assert (same["margin"], same["lo"], same["hi"]) == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same test rows"):
        paired_bootstrap([a], [a[:2]], nll_score)


def test_seed_resampling_equals_a_direct_recomputation_and_widens_with_the_seed_spread():
    """resample_seeds: each resample draws test rows (paired) and then each system's seeds with
    replacement; the interval then holds the seed-to-seed spread that row resampling alone hides."""
    a = [nll_stats([2.0, 2.0, 2.0, 2.0], [1, 1, 1, 1]), nll_stats([2.2, 2.1, 2.0, 2.3], [1, 1, 1, 1])]
    b = [nll_stats([1.0, 1.0, 1.0, 1.0], [1, 1, 1, 1]), nll_stats([3.0, 3.0, 3.0, 3.0], [1, 1, 1, 1]),
         nll_stats([1.5, 1.5, 1.5, 1.5], [1, 1, 1, 1])]
    res = paired_bootstrap(a, b, nll_score, n=40, seed=5, resample_seeds=True)
    rng = np.random.default_rng(5)
    rows = rng.integers(0, 4, size=(40, 4))
    picks_a, picks_b = rng.integers(0, 2, size=40 * 2).reshape(40, 2), rng.integers(0, 3, size=40 * 3).reshape(40, 3)

    def score(system, r, seeds):
        return np.mean([nll_score(system[k][r].sum(0)) for k in seeds])

    diffs = [score(b, r, pb) - score(a, r, pa) for r, pa, pb in zip(rows, picks_a, picks_b)]
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    assert (res["lo"], res["hi"]) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
    assert res["margin"] == pytest.approx(np.mean([1.0, 3.0, 1.5]) - np.mean([2.0, 2.15]))
    rows_only = paired_bootstrap(a, b, nll_score, n=40, seed=5)
    assert rows_only["margin"] == res["margin"]
    assert res["hi"] - res["lo"] > 5 * (rows_only["hi"] - rows_only["lo"])  # b's seeds differ by 2 nats
