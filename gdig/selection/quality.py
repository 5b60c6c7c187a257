"""Quality (Eq. 4 of G-DIG): candidates that lower the loss of (almost) every seed.

A candidate z is high-quality when its helped fraction — the share of seeds s with
I(z, s) < 0 — is at least γ (γ = 1.0: it helps every seed); D_hq is the set of them.
`gamma="auto"` picks the largest γ on the grid k / n_seed_groups at which D_hq holds at least
`hq_multiple × budget` candidates (whether a fixed γ empties D_hq or keeps half the pool
depends on the model and the number of seed groups).

The order of candidates (inside D_hq first, then the rest) is a quality score, higher = better:

- ``paper``: helped fraction (desc), then mean influence (asc) — the paper's ranking;
- ``influence``: −mean influence;
- ``normalized``: −mean influence / ||g_z||, influence on the unit-normalised candidate
  gradient (raw inner products favour short, high-norm rows such as fragments);
- ``loss``: −own target loss at the same checkpoint (from the scoring pass);
- ``combined``: the mean of the percentile ranks of ``normalized`` and ``loss``.

Ties break by pool position (ascending), so every order is deterministic.

The D_hq rules beyond Eq. 4 (the closing-token and source-gain rules) are the entries of
gdig.selection.rules: a candidate that fails one is outside D_hq and ranks after every
candidate that passes them all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from gdig.selection.rules import HQ_RULES, checked

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


def percentile_rank(x: np.ndarray) -> np.ndarray:
    """Average rank / n in (0, 1], ties sharing their mean rank (scale-free, for combining scores)."""
    return pd.Series(np.asarray(x, dtype=np.float64)).rank(method="average").to_numpy() / max(len(x), 1)


def quality_score(influence: pd.DataFrame, score: str = "paper") -> np.ndarray:
    """One scalar per row, higher = better (see the module doc for the scores)."""
    if score not in QUALITY_SCORES:
        raise ValueError(f"unknown quality score {score!r}; one of {', '.join(QUALITY_SCORES)}")
    _check_columns(influence)
    entry = QUALITY_SCORES[score]
    missing = [c for c in entry.needs if c not in influence or influence[c].isna().any()]
    if missing:
        raise ValueError(f"quality score {score!r} needs {missing} for every candidate; this scoring lacks it "
                         "(scored by an older gdig? re-run the scoring stage)")
    return entry.score(influence)


def _normalized(influence: pd.DataFrame) -> np.ndarray:
    mean = influence["mean"].to_numpy(np.float64)
    norm = influence["grad_norm"].to_numpy(np.float64)
    return -np.divide(mean, norm, out=np.zeros_like(mean), where=norm > 0)


def _neg_loss(influence: pd.DataFrame) -> np.ndarray:
    return -influence["loss"].to_numpy(np.float64)


@dataclass(frozen=True)
class QualityScore:
    name: str  # the selection.quality value
    score: Callable[[pd.DataFrame], np.ndarray]  # the influence frame -> one value per row, higher = better
    needs: tuple[str, ...] = ()  # columns beyond REQUIRED it reads (none of them may be missing)
    paper_order: bool = False  # rank by (helped fraction desc, mean asc) itself, which puts D_hq first


QUALITY_SCORES: dict[str, QualityScore] = {q.name: q for q in (
    QualityScore("paper", lambda df: quality_key(df), paper_order=True),
    QualityScore("influence", lambda df: -df["mean"].to_numpy(np.float64)),
    QualityScore("normalized", _normalized, ("grad_norm",)),
    QualityScore("loss", _neg_loss, ("loss",)),
    QualityScore("combined", lambda df: (percentile_rank(_normalized(df)) + percentile_rank(_neg_loss(df))) / 2,
                 ("grad_norm", "loss")),
)}


def gamma_grid(n_groups: int) -> np.ndarray:
    """The γ values that can make a difference: k / n_groups, descending (1.0 first)."""
    if n_groups < 1:
        raise ValueError(f"need at least one seed group, got {n_groups}")
    return np.arange(n_groups, -1, -1) / n_groups


def hq_target(budget: int, hq_multiple: float) -> int:
    """|D_hq| that gamma "auto" asks for: ceil(hq_multiple x budget)."""
    return int(np.ceil(hq_multiple * budget - 1e-9))


def auto_gamma(helped_fraction: np.ndarray, n_groups: int, target: int) -> float:
    """The largest γ on the grid at which D_hq = {helped fraction >= γ} holds >= target rows
    (0.0, i.e. the whole pool, when even that is smaller than the target)."""
    hf = np.asarray(helped_fraction, dtype=np.float64)
    for g in gamma_grid(n_groups):
        if int((hf >= g - GAMMA_TOL).sum()) >= target:
            return float(g)
    return 0.0


def rank_by_quality(influence: pd.DataFrame, gamma: float = 1.0, score: str = "paper",
                    rules: Mapping[str, float | None] | None = None) -> pd.DataFrame:
    """The pool in quality order, with `high_quality` (Eq. 4 and the D_hq rules that are on,
    `rules`: threshold by key of gdig.selection.rules.HQ_RULES), each rule's ok column
    (`closing_ok`, `gain_ok`), `rules_ok` (all of them), `quality` (the score) and
    `quality_rank` (0 = best): D_hq first, then the other candidates that pass the rules, then
    those that do not; each part ordered by the score.

    The input index is kept as column `row` so callers can align sketches with it.
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    q = quality_score(influence, score)
    df = influence.reset_index(drop=True).copy()
    df["row"] = np.arange(len(df))
    df["quality"] = q
    for key, threshold in checked(rules).items():
        df[HQ_RULES[key].ok_column] = HQ_RULES[key].passes(df, threshold)
    df["rules_ok"] = df[[r.ok_column for r in HQ_RULES.values()]].all(axis=1)
    df["high_quality"] = (df["helped_fraction"] >= gamma - GAMMA_TOL) & df["rules_ok"]
    if QUALITY_SCORES[score].paper_order:  # the paper's order already puts D_hq first
        keys, asc = ["rules_ok", "helped_fraction", "mean", "position"], [False, False, True, True]
    else:
        keys, asc = ["rules_ok", "high_quality", "quality", "position"], [False, False, False, True]
    df = df.sort_values(keys, ascending=asc, kind="mergesort").reset_index(drop=True)
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


def select_top(ranked: pd.DataFrame, budget: int, fitting: float | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Top-`budget` rows of a quality ranking; reason "quality" inside D_hq, "filled" beyond it.

    fitting: the γ that would have held the budget (named in the warning).
    Returns (rows with columns of `ranked` + reason, warnings).
    """
    if budget < 1:
        raise ValueError(f"budget must be positive, got {budget}")
    warnings = []
    n_hq = int(ranked["high_quality"].sum())
    if n_hq < budget:
        n_fill = min(budget, len(ranked)) - n_hq
        hint = f"; gamma {fitting:.4g} would have held it" if fitting is not None else ""
        msg = (f"only {n_hq} high-quality candidates (gamma threshold) for budget {budget}: "
               f"filling {n_fill} from the next-ranked candidates (reason 'filled'){hint}")
        warnings.append(msg)
        log.warning(msg)
    if budget > len(ranked):
        msg = f"budget {budget} exceeds the pool ({len(ranked)} candidates): selecting the whole pool"
        warnings.append(msg)
        log.warning(msg)
    top = ranked.head(budget).copy()
    top["reason"] = np.where(top["high_quality"], "quality", "filled")
    return top, warnings
