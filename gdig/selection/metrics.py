"""How well a selection removes known noise (demo corpora carry a noise label per row).

A row is clean when its label is missing, empty or "clean"; any other label names its
noise type.  "Removal" = the pool rows NOT selected.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CLEAN_LABELS = {"", "clean", "none"}


def is_noisy(labels) -> np.ndarray:
    return np.array([not (lab is None or (isinstance(lab, float) and np.isnan(lab)) or str(lab).strip().lower()
                          in CLEAN_LABELS) for lab in labels], dtype=bool)


def has_noise_labels(labels) -> bool:
    return bool(is_noisy(labels).any())


def auroc(scores, positive) -> float:
    """Area under the ROC curve: P(score of a random positive > score of a random negative),
    ties counting one half (the Mann-Whitney U statistic with average ranks)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs both classes; got {n_pos} positive and {n_neg} negative")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average rank (1-based) over each run of tied scores
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    for a, b in zip(starts, ends):
        ranks[order[a:b]] = (a + b + 1) / 2.0
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def noise_removal(pool_labels, selected_mask) -> dict:
    """Precision/recall of noise removal plus, per noise type, pool count, kept count and
    removal rate (= recall for that type) and precision (its share among the removed rows)."""
    labels = np.asarray([None if lab is None or (isinstance(lab, float) and np.isnan(lab)) else str(lab)
                         for lab in pool_labels], dtype=object)
    noisy = is_noisy(labels)
    sel = np.asarray(selected_mask, dtype=bool)
    removed = ~sel
    n_removed = int(removed.sum())
    out = {
        "n_pool": len(labels), "n_noisy": int(noisy.sum()), "n_selected": int(sel.sum()),
        "selected_clean_fraction": float((~noisy & sel).sum() / sel.sum()) if sel.any() else float("nan"),
        "removal_precision": float((noisy & removed).sum() / n_removed) if n_removed else float("nan"),
        "removal_recall": float((noisy & removed).sum() / noisy.sum()) if noisy.any() else float("nan"),
        "per_type": {},
    }
    for kind in sorted({lab for lab, bad in zip(labels, noisy) if bad}):
        of_kind = labels == kind
        out["per_type"][kind] = {
            "n_pool": int(of_kind.sum()),
            "n_selected": int((of_kind & sel).sum()),
            "removal_rate": float((of_kind & removed).sum() / of_kind.sum()),
            "removal_precision": float((of_kind & removed).sum() / n_removed) if n_removed else float("nan"),
        }
    return out


def ranked_last(score: np.ndarray, last: np.ndarray) -> np.ndarray:
    """`score` with the rows of `last` (e.g. what the prefilter rejects) below every other row."""
    return np.where(np.asarray(last, dtype=bool), -np.inf, np.asarray(score, dtype=np.float64))


def auroc_by_type(scores: dict[str, np.ndarray], labels, keep: np.ndarray | None = None) -> pd.DataFrame:
    """AUROC of clean (positive) vs noisy for each score (higher = cleaner), overall and against
    each noise type alone (clean rows vs that type's rows); `keep`: over those rows only.  A type
    with no row left is NaN."""
    labels = np.asarray(["clean" if not bad else str(lab) for lab, bad in zip(labels, is_noisy(labels))], dtype=object)
    keep = np.ones(len(labels), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    clean = labels == "clean"
    kinds = sorted(set(labels[~clean]))
    out = {}
    for name, s in scores.items():
        s = np.asarray(s, dtype=np.float64)
        row = {"overall": auroc(s[keep], clean[keep]) if (keep & clean).any() and (keep & ~clean).any() else np.nan}
        for k in kinds:
            m = keep & (clean | (labels == k))
            row[k] = auroc(s[m], clean[m]) if (m & clean).any() and (m & ~clean).any() else np.nan
        out[name] = row
    return pd.DataFrame(out).T[["overall", *kinds]]


def composition(selected_labels, types) -> dict:
    """Clean share (%) and rows of each noise type in `types` of one selection's labels."""
    labels = ["clean" if not bad else str(lab) for lab, bad in zip(selected_labels, is_noisy(selected_labels))]
    n = len(labels)
    return {"size": n, "clean%": 100.0 * labels.count("clean") / n if n else float("nan"),
            **{t: labels.count(t) for t in types}}
