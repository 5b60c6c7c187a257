"""Quality (Eq. 4 of G-DIG): candidates that lower the loss of (almost) every seed.

A candidate z is high-quality when its helped fraction — the share of seeds s with
I(z, s) < 0 — is at least γ (γ = 1.0: it helps every seed).  Candidates are ranked by
helped fraction (descending), then mean influence (ascending: more negative = more
helpful), then pool position (ascending) so that ties break deterministically.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# helped fractions are k / n_seeds; the tolerance keeps k/n == γ from failing on float rounding
GAMMA_TOL = 1e-9

REQUIRED = ("example_id", "position", "helped_fraction", "mean")


def _check_columns(influence: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED if c not in influence.columns]
    if missing:
        raise ValueError(f"influence table lacks column(s) {', '.join(missing)}; has {list(influence.columns)}")
    bad = influence["helped_fraction"].isna() | influence["mean"].isna()
    if bad.any():
        first = influence.loc[bad, "example_id"].iloc[0]
        raise ValueError(f"{int(bad.sum())} candidate(s) have no influence score (first: {first})")


def rank_by_quality(influence: pd.DataFrame, gamma: float = 1.0) -> pd.DataFrame:
    """The pool in quality order, with `high_quality` (Eq. 4) and `quality_rank` (0 = best).

    The input index is kept as column `row` so callers can align sketches with it.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    _check_columns(influence)
    df = influence.reset_index(drop=True).copy()
    df["row"] = np.arange(len(df))
    df = df.sort_values(
        ["helped_fraction", "mean", "position"], ascending=[False, True, True], kind="mergesort"
    ).reset_index(drop=True)
    df["high_quality"] = df["helped_fraction"] >= gamma - GAMMA_TOL
    df["quality_rank"] = np.arange(len(df))
    return df


def quality_key(influence: pd.DataFrame) -> np.ndarray:
    """One scalar per row that orders like the quality ranking (higher = better), ties kept as ties.

    Used for AUROC: (helped fraction desc, mean asc) collapsed into a dense rank.
    """
    _check_columns(influence)
    pairs = pd.DataFrame({"hf": influence["helped_fraction"].to_numpy(), "neg_mean": -influence["mean"].to_numpy()})
    order = pairs.drop_duplicates().sort_values(["hf", "neg_mean"], kind="mergesort").reset_index(drop=True)
    order["key"] = np.arange(len(order), dtype=np.float64)
    return pairs.merge(order, on=["hf", "neg_mean"], how="left")["key"].to_numpy()


def select_top(ranked: pd.DataFrame, budget: int) -> tuple[pd.DataFrame, list[str]]:
    """Top-`budget` rows of a quality ranking; reason "quality" inside D_hq, "filled" beyond it.

    Returns (rows with columns of `ranked` + reason, warnings).
    """
    if budget < 1:
        raise ValueError(f"budget must be positive, got {budget}")
    warnings = []
    n_hq = int(ranked["high_quality"].sum())
    if n_hq < budget:
        n_fill = min(budget, len(ranked)) - n_hq
        msg = (f"only {n_hq} high-quality candidates (gamma threshold) for budget {budget}: "
               f"filling {n_fill} from the next-ranked candidates (reason 'filled')")
        warnings.append(msg)
        log.warning(msg)
    if budget > len(ranked):
        msg = f"budget {budget} exceeds the pool ({len(ranked)} candidates): selecting the whole pool"
        warnings.append(msg)
        log.warning(msg)
    top = ranked.head(budget).copy()
    top["reason"] = np.where(top["high_quality"], "quality", "filled")
    return top, warnings
