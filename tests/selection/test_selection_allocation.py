"""γ "auto", quality scores, cluster allocations and the loss strategy on constructed cases with
known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gdig.config import SelectionConfig
from gdig.selection.allocation import allocate, cluster_quotas, interleave, proportional_quotas
from gdig.selection.diversity import quotas as round_robin_quotas
from gdig.selection.outputs import selection_id
from gdig.selection.quality import auto_gamma, gamma_grid, hq_target, percentile_rank, quality_score, rank_by_quality
from paper_selection import select


def test_gamma_grid_and_auto_gamma_pick_the_largest_that_holds_the_target():
    assert gamma_grid(4).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]
    hf = np.array([1.0, 0.75, 0.75, 0.5, 0.25, 0.0])
    assert auto_gamma(hf, 4, 1) == 1.0
    assert auto_gamma(hf, 4, 2) == 0.75 and auto_gamma(hf, 4, 3) == 0.75
    assert auto_gamma(hf, 4, 4) == 0.5
    assert auto_gamma(hf, 4, 6) == 0.0 and auto_gamma(hf, 4, 7) == 0.0  # the whole pool, even if short
    assert auto_gamma(np.array([2 / 3, 1 / 3]), 3, 1) == pytest.approx(2 / 3)  # k/n == γ survives rounding
    assert hq_target(1000, 2.0) == 2000 and hq_target(3, 1.5) == 5
    with pytest.raises(ValueError, match="seed group"):
        gamma_grid(0)


def test_proportional_quotas_largest_remainder_caps_and_zero_weights():
    assert proportional_quotas([6, 3, 1], [6, 3, 1], 5).tolist() == [3, 2, 0]  # 3, 1.5, .5: tie -> lower index
    assert proportional_quotas([6, 3, 1], [6, 3, 1], 10).tolist() == [6, 3, 1]
    assert proportional_quotas([6, 3, 1], [6, 3, 1], 99).tolist() == [6, 3, 1]  # never above the caps
    assert proportional_quotas([1, 1], [1, 10], 6).tolist() == [1, 5]  # a binding cap re-shares the rest
    assert proportional_quotas([0, 1], [5, 2], 4).tolist() == [2, 2]  # zero weight fills only a shortfall
    assert proportional_quotas([1, 1, 1], [3, 3, 3], 0).tolist() == [0, 0, 0]
    with pytest.raises(ValueError):
        proportional_quotas([1, -1], [1, 1], 1)


def test_cluster_quotas_per_allocation():
    labels = np.array([0] * 5 + [1] + [2])  # a large cluster and two singletons
    assert cluster_quotas(labels, 3, "even").tolist() == [1, 1, 1] == round_robin_quotas([5, 1, 1], 3)
    assert cluster_quotas(labels, 3, "size").tolist() == [2, 1, 0]  # 2.14, .43, .43
    assert cluster_quotas(labels, 6, "even").tolist() == [4, 1, 1]
    # quality: the large cluster is good, singleton 1 is the worst row, singleton 2 the best
    q = np.array([5.0, 6.0, 4.0, 3.0, 7.0, 1.0, 8.0])
    # percentile ranks: cluster 0 mean (5+6+4+3+7)/5 / 7 = 5/7, cluster 1: 1/7, cluster 2: 8/7 -> 1.0
    assert cluster_quotas(labels, 4, "size_quality", q).tolist() == [3, 0, 1]  # weights 25/7, 1/7, 1
    assert cluster_quotas(labels, 6, "drop_low", q).tolist() == [5, 0, 1]  # 1/7 < 4/7 - 0.15: dropped
    assert cluster_quotas(labels, 7, "drop_low", q).tolist() == [5, 1, 1]  # ... until it is needed
    assert cluster_quotas(labels, 6, "drop_low", q, drop_margin=1.0).tolist() == [4, 1, 1]  # nothing dropped
    # cover: drop_low's clusters, each touched before any takes a second pick
    assert cluster_quotas(labels, 2, "drop_low", q).tolist() == [2, 0, 0]  # 5/6 x 2 and 1/6 x 2
    assert cluster_quotas(labels, 2, "cover", q).tolist() == [1, 0, 1]
    assert cluster_quotas(labels, 1, "cover", q).tolist() == [0, 0, 1]  # the best cluster first
    assert cluster_quotas(labels, 4, "cover", q).tolist() == [3, 0, 1]  # the rest by size, capped
    assert cluster_quotas(labels, 7, "cover", q).tolist() == [5, 1, 1]  # dropped ones fill a shortfall
    assert cluster_quotas(labels, 3, "cover", q, drop_margin=1.0).tolist() == [1, 1, 1]
    # cover_best: the same floors; the rest to the best remaining members, not by size
    assert cluster_quotas(labels, 2, "cover_best", q).tolist() == [1, 0, 1]
    assert cluster_quotas(labels, 1, "cover_best", q).tolist() == [0, 0, 1]
    assert cluster_quotas(labels, 7, "cover_best", q).tolist() == [5, 1, 1]
    two = np.array([0] * 4 + [1] * 4)  # equal sizes; cluster 0 holds the four best rows
    q2 = np.array([10.0, 9, 8, 7, 6, 5, 4, 3])
    assert cluster_quotas(two, 4, "cover", q2, drop_margin=1.0).tolist() == [2, 2]  # the rest by size
    assert cluster_quotas(two, 4, "cover_best", q2, drop_margin=1.0).tolist() == [3, 1]  # by quality
    assert allocate(two, 4, allocation="cover_best", quality=q2, within="quality", drop_margin=1.0).tolist() == \
        [0, 4, 1, 2]
    with pytest.raises(ValueError, match="quality score"):
        cluster_quotas(labels, 3, "size_quality")
    with pytest.raises(ValueError, match="unknown allocation"):
        cluster_quotas(labels, 3, "uniform")


def test_cover_best_is_the_quality_ranking_with_a_floor_of_one_per_kept_cluster():
    rng = np.random.default_rng(7)
    for trial in range(50):
        k = int(rng.integers(1, 8))
        labels = rng.integers(0, k, size=int(rng.integers(k, 40)))
        labels = np.unique(labels, return_inverse=True)[1]  # every id 0..K-1 present
        quality = rng.permutation(len(labels)).astype(float)  # distinct scores
        order = np.argsort(-quality, kind="stable")  # callers pass members best first
        labels, quality = labels[order], quality[order]
        budget = int(rng.integers(0, len(labels) + 2))
        margin = float(rng.choice([0.15, 1.0]))
        picks = allocate(labels, budget, allocation="cover_best", quality=quality, within="quality",
                         drop_margin=margin)
        pr = percentile_rank(quality)
        sizes = np.bincount(labels)
        mean_q = np.bincount(labels, weights=pr) / sizes
        kept = mean_q >= pr.mean() - margin
        n_kept_rows = int(sizes[kept].sum())
        want = min(budget, len(labels))
        assert len(picks) == want and len(set(picks.tolist())) == want
        firsts = [int(np.flatnonzero(labels == c)[0]) for c in np.argsort(-mean_q, kind="stable") if kept[c]]
        if budget <= n_kept_rows:
            floors = firsts[:budget]
            rest = [i for i in range(len(labels)) if kept[labels[i]] and i not in firsts][: budget - len(floors)]
            assert sorted(picks.tolist()) == sorted(floors + rest)
        else:  # every kept row, then the dropped clusters fill the shortfall
            assert set(np.flatnonzero(kept[labels]).tolist()) <= set(picks.tolist())


def test_interleave_takes_rounds_in_cluster_order_and_even_equals_round_robin():
    from gdig.selection.diversity import round_robin

    labels = np.array([0, 0, 0, 1, 1, 2])
    assert interleave(labels, [2, 1, 1], within="quality").tolist() == [0, 3, 5, 1]
    for budget in range(7):
        assert allocate(labels, budget, allocation="even", within="quality").tolist() == \
            round_robin(labels, budget, within="quality").tolist()
        assert allocate(labels, budget, allocation="even", within="random", seed=3).tolist() == \
            round_robin(labels, budget, within="random", seed=3).tolist()


def _pool(n_clean=40, n_noisy=8):
    """Two gradient directions: many clean rows, a small tight cluster of noisy rows that still
    pass the helped-fraction filter but have a high loss."""
    rng = np.random.default_rng(0)
    n = n_clean + n_noisy
    X = np.concatenate([rng.normal([5, 0, 0], 0.3, (n_clean, 3)), rng.normal([0, 5, 0], 0.3, (n_noisy, 3))])
    return pd.DataFrame({
        "example_id": [f"e{i}" for i in range(n)], "position": np.arange(n),
        "helped_fraction": np.r_[np.full(n_clean, 0.75), np.full(n_noisy, 1.0)],
        "mean": np.r_[-np.linspace(1, 2, n_clean), np.full(n_noisy, -3.0)],
        "loss": np.r_[np.linspace(1.0, 2.0, n_clean), np.full(n_noisy, 6.0)],
        "grad_norm": np.ones(n), "label": ["clean"] * n_clean + ["untranslated"] * n_noisy,
    }), X


def test_gdig_auto_gamma_and_size_allocation_keep_small_noisy_clusters_small():
    pool, X = _pool()
    even = select("gdig", 16, pool, X,
        {"gamma": "auto", "hq_multiple": 2.0, "n_clusters": 2, "normalize": False, "allocation": "even",
        "quality": "loss", "within_cluster": "quality"}, n_seed_groups=4)
    # D_hq must hold 32: hf 1.0 has 8 rows, 0.75 has all 48 -> gamma 0.75
    assert even.gamma == 0.75 and even.n_high_quality == 48
    assert (even.rows["label"] == "untranslated").sum() == 8  # the even share: 8 of 16
    size = select("gdig", 16, pool, X,
        {"gamma": "auto", "n_clusters": 2, "normalize": False, "allocation": "size", "quality": "loss",
        "within_cluster": "quality"}, n_seed_groups=4)
    assert (size.rows["label"] == "untranslated").sum() == round(16 * 8 / 48)  # proportional: 3 (2.67)
    drop = select("gdig", 16, pool, X,
        {"gamma": "auto", "n_clusters": 2, "normalize": False, "allocation": "drop_low", "quality": "loss",
        "within_cluster": "quality"}, n_seed_groups=4)
    assert (drop.rows["label"] == "untranslated").sum() == 0
    assert drop.rows["example_id"].tolist()[:2] == ["e0", "e1"]  # within cluster: lowest loss first
    with pytest.raises(ValueError, match="n_seed_groups"):
        select("gdig", 16, pool, X, {"gamma": "auto"})


def test_fixed_gamma_too_high_names_the_gamma_that_fits():
    pool, X = _pool()
    sel = select("quality", 16, pool, X, {"gamma": 1.0}, n_seed_groups=4)
    assert sel.n_high_quality == 8 and sel.gamma == 1.0
    assert any("gamma 0.75 would have held it" in w for w in sel.warnings)


def test_quality_scores_and_loss_strategy():
    pool, _ = _pool()
    assert np.array_equal(quality_score(pool, "loss"), -pool["loss"].to_numpy())
    pool2 = pool.assign(grad_norm=np.r_[np.full(40, 2.0), np.full(8, 0.5)])
    assert np.allclose(quality_score(pool2, "normalized"), -pool2["mean"] / pool2["grad_norm"])
    small = pd.DataFrame({"example_id": list("abcd"), "position": range(4), "helped_fraction": [0.5] * 4,
                          "mean": [-4.0, -1.0, -3.0, -2.0], "grad_norm": [2.0, 1.0, 1.0, 1.0],
                          "loss": [0.5, 2.0, 1.0, 3.0]})
    # normalized: 2, 1, 3, 2 -> ranks 2.5, 1, 4, 2.5; -loss: -.5, -2, -1, -3 -> ranks 4, 2, 3, 1
    assert quality_score(small, "combined").tolist() == [(2.5 + 4) / 8, (1 + 2) / 8, (4 + 3) / 8, (2.5 + 1) / 8]
    ranked = rank_by_quality(pool, 0.75, "loss")
    assert ranked["example_id"].tolist()[:3] == ["e0", "e1", "e2"] and ranked["high_quality"].all()
    with pytest.raises(ValueError, match="grad_norm"):
        quality_score(pool.drop(columns=["grad_norm"]), "normalized")
    tie = pool.assign(loss=np.r_[np.full(40, 1.0), np.full(8, 0.5)])
    sel = select("loss", 10, tie, None)
    assert sel.rows["example_id"].tolist() == [f"e{i}" for i in range(40, 48)] + ["e0", "e1"]  # ties: position
    assert set(sel.rows["reason"]) == {"loss"}


def test_a_gamma_change_leaves_the_ids_of_strategies_that_do_not_read_it():
    a, b = SelectionConfig(gamma=0.5), SelectionConfig(gamma=0.6)
    for strategy in ("random", "diversity", "loss", "full"):
        assert selection_id("sc", strategy, 10, a) == selection_id("sc", strategy, 10, b)
    for strategy in ("gdig", "quality"):
        assert selection_id("sc", strategy, 10, a) != selection_id("sc", strategy, 10, b)
    c = SelectionConfig(gamma=0.5, allocation="size")
    assert selection_id("sc", "gdig", 10, a) != selection_id("sc", "gdig", 10, c)
    assert selection_id("sc", "quality", 10, a) == selection_id("sc", "quality", 10, c)
    # hq_multiple matters only to "auto"
    assert selection_id("sc", "gdig", 10, a) == selection_id("sc", "gdig", 10, SelectionConfig(gamma=0.5, hq_multiple=3))
    assert selection_id("sc", "gdig", 10, SelectionConfig()) != selection_id("sc", "gdig", 10, SelectionConfig(hq_multiple=3))
