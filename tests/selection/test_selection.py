"""Selection math on hand-built score tables: Eq. 4, tie-breaks, resampling quotas, baselines, AUROC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gdig.selection.allocation import default_k
from gdig.selection.diversity import cluster_sketches, default_n_clusters, nearest_centroid, quotas, round_robin
from gdig.selection.metrics import auroc, noise_removal
from gdig.selection.quality import quality_key, rank_by_quality, select_top
from paper_selection import select


def influence_from_matrix(M: np.ndarray, labels=None) -> pd.DataFrame:
    """Aggregates as the engine defines them, from a candidate x seed matrix."""
    n = len(M)
    return pd.DataFrame({
        "example_id": [f"e{i}" for i in range(n)],
        "position": np.arange(n),
        "helped_fraction": (M < 0).mean(1),
        "mean": M.mean(1),
        "label": labels if labels is not None else [None] * n,
    })


# 6 candidates x 4 seeds
M = np.array([
    [-1.0, -1.0, -1.0, -1.0],  # e0: helps all, mean -1
    [-2.0, -2.0, -2.0, 0.5],  # e1: 3/4, mean -1.375
    [-0.5, -0.5, -0.5, -0.5],  # e2: helps all, mean -0.5
    [-1.0, -1.0, -1.0, -1.0],  # e3: ties e0 exactly -> position breaks the tie
    [1.0, 1.0, -0.1, 1.0],  # e4: 1/4
    [-3.0, -3.0, -3.0, -3.0],  # e5: helps all, mean -3 (best)
])


def test_gamma_threshold_and_tie_breaks_exact():
    ranked = rank_by_quality(influence_from_matrix(M), gamma=1.0)
    assert list(ranked["example_id"]) == ["e5", "e0", "e3", "e2", "e1", "e4"]
    assert list(ranked["high_quality"]) == [True, True, True, True, False, False]
    ranked = rank_by_quality(influence_from_matrix(M), gamma=0.75)  # 3/4 passes at gamma = 0.75 exactly
    assert ranked["high_quality"].sum() == 5
    ranked = rank_by_quality(influence_from_matrix(M), gamma=0.76)
    assert ranked["high_quality"].sum() == 4
    with pytest.raises(ValueError, match="gamma"):
        rank_by_quality(influence_from_matrix(M), gamma=1.5)


def test_gamma_exact_on_fractions_of_odd_seed_counts():
    # 7/10 computed as a mean of booleans must pass gamma=0.7 (float rounding)
    M10 = np.where(np.arange(10) < 7, -1.0, 1.0)[None, :].repeat(2, 0)
    assert rank_by_quality(influence_from_matrix(M10), gamma=0.7)["high_quality"].all()


def test_quality_fill_when_dhq_smaller_than_budget():
    ranked = rank_by_quality(influence_from_matrix(M), gamma=1.0)
    top, warnings = select_top(ranked, 5)
    assert list(top["example_id"]) == ["e5", "e0", "e3", "e2", "e1"]
    assert list(top["reason"]) == ["quality"] * 4 + ["filled"]
    assert "only 4 high-quality" in warnings[0]
    sel = select("quality", 5, influence_from_matrix(M))
    assert sel.counts() == {"quality": 4, "filled": 1}
    assert list(sel.rows["rank"]) == [0, 1, 2, 3, 4]


def test_missing_scores_are_an_error():
    df = influence_from_matrix(M)
    df.loc[2, "mean"] = np.nan
    with pytest.raises(ValueError, match="no influence score.*e2"):
        rank_by_quality(df)


def test_quality_key_orders_like_ranking_and_keeps_ties():
    df = influence_from_matrix(M)
    key = quality_key(df)
    assert key[0] == key[3]  # e0, e3 identical scores
    assert key[5] > key[0] > key[2] > key[1] > key[4]


@pytest.mark.parametrize("sizes,budget,expected", [
    ([4, 4, 4], 6, [2, 2, 2]),
    ([5, 3, 1], 7, [3, 3, 1]),  # cluster 2 exhausted after 1: its share goes round-robin to 0 and 1
    ([10, 3, 1, 6], 12, [4, 3, 1, 4]),
    ([3, 3, 3], 4, [2, 1, 1]),  # leftover slot goes to the first cluster in order
    ([2, 1], 10, [2, 1]),  # budget larger than everything: all of it
    ([1, 7], 5, [1, 4]),
])
def test_round_robin_quotas_exact(sizes, budget, expected):
    assert quotas(sizes, budget) == expected


def test_round_robin_pick_order_and_determinism():
    labels = np.array([1, 0, 1, 0, 2, 1])
    assert round_robin(labels, 6, within="quality").tolist() == [1, 0, 4, 3, 2, 5]
    a = round_robin(labels, 4, within="random", seed=3)
    assert a.tolist() == round_robin(labels, 4, within="random", seed=3).tolist()
    assert sorted(np.bincount(labels[a]).tolist()) == [1, 1, 2]
    assert len(set(a.tolist())) == 4


def test_default_n_clusters():
    assert default_n_clusters(100, 1000) == 10
    assert default_n_clusters(1, 1000) == 2
    assert default_n_clusters(10_000, 50) == 50
    assert default_n_clusters(10, 1) == 1
    assert default_k("drop_low", 100, 1000) == 10 and default_k("cover", 100, 1000) == 10
    assert default_k("cover_best", 100, 1000) == 100  # one cluster per pick
    assert default_k("cover_best", 100, 40) == 40 and default_k("cover_best", 0, 40) == 1


def test_nearest_centroid_blocks_agree_with_one_dense_argmin():
    rng = np.random.default_rng(0)
    X, C = rng.normal(size=(1000, 5)), rng.normal(size=(30, 5))
    dense = ((X[:, None, :] - C[None]) ** 2).sum(-1).argmin(1)
    assert np.array_equal(nearest_centroid(X, C, normalize=False), dense)
    assert np.array_equal(nearest_centroid(X, C, normalize=False, block=7), dense)


def blobs(n_per: list[int], d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.eye(d)[: len(n_per)] * 10
    X = np.concatenate([centers[i] + rng.normal(scale=0.1, size=(k, d)) for i, k in enumerate(n_per)])
    return X, np.repeat(np.arange(len(n_per)), n_per)


def test_clustering_recovers_blobs_numbered_by_first_appearance():
    X, truth = blobs([5, 8, 3])
    order = np.random.default_rng(1).permutation(len(X))
    c = cluster_sketches(X[order], 3, normalize=False, seed=0)
    # renumbered: the first point is in cluster 0, and the partition matches the truth
    assert c.labels[0] == 0
    t = truth[order]
    for k in range(3):
        assert len(set(t[c.labels == k])) == 1
    assert (c.assign(X[order]) == c.labels).all()
    np.testing.assert_allclose(c.distances, np.linalg.norm(X[order] - c.centroids[c.labels], axis=1))


def test_gdig_spreads_over_clusters_and_beats_quality_only_coverage():
    # D_hq: three gradient directions; the best 6 by mean influence all sit in blob 0
    X, truth = blobs([8, 4, 4, 4])
    n = len(X)
    M = -np.ones((n, 3)) * np.where(truth == 0, 5.0, 1.0)[:, None]
    M[truth == 3] = 1.0  # blob 3 hurts every seed: not in D_hq
    infl = influence_from_matrix(M)
    sel = select("gdig", 6, infl, X, {"n_clusters": 3, "normalize": False, "seed": 0})
    assert sel.n_high_quality == 16
    assert sel.counts() == {"quality": 6}
    picked = truth[sel.rows["position"].to_numpy()]
    assert np.bincount(picked, minlength=4).tolist() == [2, 2, 2, 0]
    q = select("quality", 6, infl)
    assert set(truth[q.rows["position"].to_numpy()]) == {0}
    # same seed -> same selection; different seed -> still 2/2/2
    again = select("gdig", 6, infl, X, {"n_clusters": 3, "normalize": False, "seed": 0})
    assert again.rows["example_id"].tolist() == sel.rows["example_id"].tolist()
    other = select("gdig", 6, infl, X, {"n_clusters": 3, "normalize": False, "seed": 7})
    assert np.bincount(truth[other.rows["position"].to_numpy()], minlength=4).tolist() == [2, 2, 2, 0]


def test_gdig_budget_larger_than_dhq_fills_in_rank_order():
    X, truth = blobs([3, 3, 3])
    M = np.where(truth[:, None] == 2, 1.0, -1.0) * np.ones((9, 2))
    M[6:, :] += np.arange(3)[:, None] * 0.1  # blob 2 ranked e6 (best) < e7 < e8 ... (less harmful first)
    infl = influence_from_matrix(M)
    sel = select("gdig", 8, infl, X, {"normalize": False})
    assert sel.n_high_quality == 6
    assert sel.counts() == {"quality": 6, "filled": 2}
    assert sel.rows["reason"].tolist()[-2:] == ["filled", "filled"]
    assert sel.rows["example_id"].tolist()[-2:] == ["e6", "e7"]
    assert sel.rows["cluster"].isna().sum() == 2
    assert any("only 6 high-quality" in w for w in sel.warnings)


def test_baselines_share_the_output_shape():
    X, truth = blobs([10, 10])
    infl = influence_from_matrix(-np.ones((20, 2)))
    r = select("random", 5, infl, None, {"seed": 1})
    assert len(set(r.rows["example_id"])) == 5 and set(r.rows["reason"]) == {"random"}
    assert r.rows["example_id"].tolist() == select("random", 5, infl, None, {"seed": 1}).rows["example_id"].tolist()
    assert select("random", 8, infl, None, {"seed": 1}).rows["example_id"].tolist()[:5] == r.rows["example_id"].tolist()
    d = select("diversity", 4, infl, X, {"n_clusters": 2, "normalize": False})
    assert np.bincount(truth[d.rows["position"].to_numpy()]).tolist() == [2, 2]
    f = select("full", 5, infl)
    assert f.budget == 20 and f.rows["position"].tolist() == list(range(20))
    for s in (r, d, f):
        assert list(s.rows.columns) == list(select("quality", 3, infl).rows.columns)
    with pytest.raises(ValueError, match="needs one gradient sketch"):
        select("gdig", 4, infl)
    with pytest.raises(ValueError, match="unknown strategy"):
        select("best", 4, infl)


def test_auroc_matches_hand_count():
    scores = [0.9, 0.8, 0.8, 0.3, 0.1]
    pos = [True, False, True, False, False]
    # positives 0.9, 0.8 vs negatives 0.8, 0.3, 0.1: pairs won 3 + (0.5 + 1 + 1) = 5.5 of 6
    assert auroc(scores, pos) == pytest.approx(5.5 / 6)
    assert auroc([1, 2, 3], [False, False, True]) == 1.0
    assert auroc([1, 1, 1], [True, False, True]) == 0.5
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=200).round(1), rng.random(200) < 0.3
    from sklearn.metrics import roc_auc_score

    assert auroc(s, y) == pytest.approx(roc_auc_score(y, s))
    with pytest.raises(ValueError, match="both classes"):
        auroc([1, 2], [True, True])


def test_noise_removal_counts():
    labels = [None, "clean", "misaligned", "misaligned", "copy", None]
    selected = [True, True, False, True, False, False]
    r = noise_removal(labels, selected)
    assert r["n_noisy"] == 3
    assert r["removal_precision"] == pytest.approx(2 / 3)  # removed: misaligned, copy, clean
    assert r["removal_recall"] == pytest.approx(2 / 3)
    assert r["selected_clean_fraction"] == pytest.approx(2 / 3)
    assert r["per_type"]["misaligned"] == {"n_pool": 2, "n_selected": 1, "removal_rate": 0.5,
                                           "removal_precision": pytest.approx(1 / 3)}
    assert r["per_type"]["copy"]["removal_rate"] == 1.0


def test_random_streams_are_salted_apart_from_plain_default_rng():
    # the demo injects noise with default_rng(seed).permutation: the random baseline must not
    # reproduce that permutation, or at seed 0 it would select exactly the noisy rows
    infl = influence_from_matrix(-np.ones((400, 2)))
    picked = select("random", 100, infl, None, {"seed": 0}).rows["position"].to_numpy()
    plain = np.random.default_rng(0).permutation(400)[:100]
    assert len(set(picked) & set(plain)) < 50  # ~25 expected by chance; equal sets before the fix


def test_gdig_within_cluster_by_quality_takes_each_clusters_best():
    X, truth = blobs([4, 4, 4])
    M = -np.arange(1, 13, dtype=float)[:, None] * np.ones((12, 2))  # e11 best, e0 worst; all in D_hq
    sel = select("gdig", 3, influence_from_matrix(M), X,
        {"n_clusters": 3, "normalize": False, "within_cluster": "quality"})
    # cluster 0 holds the best candidate (e11, blob 2), then clusters in first-appearance order
    assert sel.rows["example_id"].tolist() == ["e11", "e7", "e3"]
    assert sel.rows["cluster"].tolist() == [0, 1, 2]


def test_closing_rule_puts_rows_outside_dhq_and_last():
    infl = influence_from_matrix(M).assign(closing_loss=[3.0, 9.0, 8.0, 12.0, 1.0, np.nan])
    # e3 (12 nats) and e1 (9) fail at 8; e2 at exactly 8 and e5 without a closing loss pass
    ranked = rank_by_quality(infl, gamma=1.0, rules={"closing_loss_max": 8.0})
    assert list(ranked["example_id"]) == ["e5", "e0", "e2", "e4", "e3", "e1"]  # the failed ones in paper order
    assert list(ranked["high_quality"]) == [True, True, True, False, False, False]
    assert list(ranked["closing_ok"]) == [True] * 4 + [False] * 2
    by_loss = rank_by_quality(infl.assign(loss=[0.5, 0.1, 0.2, 0.3, 0.4, 0.6]), gamma=1.0, score="loss", rules={"closing_loss_max": 8.0})
    assert list(by_loss["example_id"]) == ["e2", "e0", "e5", "e4", "e1", "e3"]  # D_hq by loss, e4, then failed
    off = rank_by_quality(infl, gamma=1.0)  # the rule off: the order without it
    assert list(off["example_id"]) == ["e5", "e0", "e3", "e2", "e1", "e4"]
    with pytest.raises(ValueError, match="closing-token loss, which this scoring lacks"):
        rank_by_quality(influence_from_matrix(M), rules={"closing_loss_max": 8.0})


def test_closing_rule_in_select_gamma_auto_counts_only_passing_rows():
    infl = influence_from_matrix(M).assign(closing_loss=[3.0, 9.0, 8.0, 12.0, 1.0, 2.0])
    # helped fractions 1, .75, 1, 1, .25, 1; passing rows e0 e2 e4 e5: 3 at γ = 1, so budget 2 x 2 -> γ 0.25
    sel = select("quality", 2, infl, None,
        {"gamma": "auto", "hq_multiple": 2.0, "closing_loss_max": 8.0}, n_seed_groups=4)
    assert sel.gamma == 0.25 and sel.n_high_quality == 4 and sel.n_closing_rejected == 2
    assert sel.rows["example_id"].tolist() == ["e5", "e0"]
    full = select("quality", 6, infl, None, {"gamma": 1.0, "closing_loss_max": 8.0}, n_seed_groups=4)
    assert full.rows["example_id"].tolist() == ["e5", "e0", "e2", "e4", "e3", "e1"]
    assert full.rows["reason"].tolist() == ["quality"] * 3 + ["filled"] * 3
    assert select("quality", 2, infl, None, {"gamma": 1.0}).n_closing_rejected is None  # off: not counted
    X, truth = blobs([3, 3])
    g = select("gdig", 3, influence_from_matrix(-np.ones((6, 2))).assign(closing_loss=[1, 9, 1, 9, 1, 9.0]), X,
        {"n_clusters": 2, "normalize": False, "closing_loss_max": 8.0})
    assert sorted(g.rows["example_id"]) == ["e0", "e2", "e4"] and g.n_high_quality == 3


LOSS = [0.5, 0.1, 0.2, 0.3, 0.4, 0.6]


def test_source_gain_rule_puts_rows_outside_dhq_and_last_with_the_closing_rejects():
    # gains (source-free loss - loss): e0 1.5, e1 0.0, e2 0.3, e3 1.0, e4 2.0, e5 0.2
    infl = influence_from_matrix(M).assign(loss=LOSS, source_free_loss=[2.0, 0.1, 0.5, 1.3, 2.4, 0.8],
                                           closing_loss=[3.0, 1.0, 1.0, 12.0, 1.0, 1.0])
    ranked = rank_by_quality(infl, gamma=1.0, score="loss", rules={"source_gain_min": 0.3})
    # e1 (0.0) and e5 (0.2) fail; e2 at exactly 0.3 passes; D_hq = e0 e2 e3 by loss, then e4, then e1 e5 by loss
    assert list(ranked["example_id"]) == ["e2", "e3", "e0", "e4", "e1", "e5"]
    assert list(ranked["gain_ok"]) == [True] * 4 + [False] * 2
    assert list(ranked["high_quality"]) == [True] * 3 + [False] * 3
    both = rank_by_quality(infl, gamma=1.0, score="loss", rules={"closing_loss_max": 8.0, "source_gain_min": 0.3})
    assert list(both["example_id"]) == ["e2", "e0", "e4", "e1", "e3", "e5"]  # e3 fails the closing rule
    assert list(both["rules_ok"]) == [True] * 3 + [False] * 3
    off = rank_by_quality(infl, gamma=1.0, score="loss")
    assert list(off["example_id"]) == ["e2", "e3", "e0", "e5", "e1", "e4"] and off["gain_ok"].all()
    with pytest.raises(ValueError, match="source-free loss .*1 candidate\\(s\\) lack it"):
        rank_by_quality(infl.assign(source_free_loss=[2.0, np.nan, 0.5, 1.3, 2.4, 0.8]), rules={"source_gain_min": 0.3})
    with pytest.raises(ValueError, match="needs every candidate's source-free loss"):
        rank_by_quality(influence_from_matrix(M).assign(loss=LOSS), rules={"source_gain_min": 0.3})


def test_source_gain_rule_in_select_gamma_auto_counts_only_passing_rows():
    infl = influence_from_matrix(M).assign(loss=LOSS, source_free_loss=[2.0, 0.1, 0.5, 1.3, 2.4, 0.8])
    # passing rows e0 e2 e3 e4 (helped fractions 1, 1, 1, .25): 3 at γ = 1 < 2 x 2 -> γ 0.25
    sel = select("quality", 2, infl, None,
        {"gamma": "auto", "hq_multiple": 2.0, "quality": "loss", "source_gain_min": 0.3}, n_seed_groups=4)
    assert sel.gamma == 0.25 and sel.n_high_quality == 4 and sel.n_gain_rejected == 2
    assert sel.rows["example_id"].tolist() == ["e2", "e3"]
    assert select("quality", 2, infl, None,
        {"gamma": 1.0, "quality": "loss"}).n_gain_rejected is None  # off: not counted
    X, _ = blobs([3, 3])
    g = select("gdig", 3, influence_from_matrix(-np.ones((6, 2))).assign(
        loss=[1.0] * 6, source_free_loss=[3, 1, 3, 1, 3, 1.0]), X,
            {"n_clusters": 2, "normalize": False, "source_gain_min": 0.5})
    assert sorted(g.rows["example_id"]) == ["e0", "e2", "e4"] and g.n_high_quality == 3
    most = select("quality", 2, infl.assign(source_free_loss=LOSS), None, {"gamma": 1.0, "source_gain_min": 0.3})
    assert any("ranks 6 of 6 candidates last" in w and "source_gain_min: null" in w for w in most.warnings)


def test_closing_rule_that_rejects_most_of_the_pool_warns():
    infl = influence_from_matrix(M).assign(closing_loss=[9.0] * 5 + [1.0])
    sel = select("quality", 2, infl, None, {"gamma": 1.0, "closing_loss_max": 8.0})
    assert sel.n_closing_rejected == 5
    assert any("ranks 5 of 6 candidates last" in w and "closing_loss_max: null" in w for w in sel.warnings)


def test_auroc_by_type_and_composition_count_against_each_type_alone():
    from gdig.selection.metrics import auroc_by_type, composition

    labels = ["clean", "clean", "clean", "mt", "mt", "truncated", None]
    s = np.array([0.9, 0.8, 0.1, 0.95, 0.05, 0.0, 0.7])
    t = auroc_by_type({"s": s}, labels)
    assert list(t.columns) == ["overall", "mt", "truncated"]
    # clean (None counts as clean): 0.9, 0.8, 0.1, 0.7; mt: 0.95 beats all four, 0.05 none -> 4/8
    assert t.loc["s", "mt"] == pytest.approx(4 / 8)
    assert t.loc["s", "truncated"] == 1.0
    assert t.loc["s", "overall"] == pytest.approx((4 + 4) / 12)
    kept = auroc_by_type({"s": s}, labels, keep=np.array([1, 1, 1, 1, 1, 0, 1], bool))
    assert np.isnan(kept.loc["s", "truncated"])
    assert composition(["clean", "mt", None, "mt"], ["mt", "omission"]) == {"size": 4, "clean%": 50.0, "mt": 2,
                                                                            "omission": 0}
