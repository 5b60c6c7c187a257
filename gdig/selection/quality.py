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

The closing-token rule (``closing_loss_max``, nats): a candidate whose last target token (the
EOS that encode_examples appends) costs the model more than that is outside D_hq and ranks
after every other candidate.  A truncated target stops mid-sentence; the mean loss over its
tokens does not see it (a prefix of a good translation is cheap), the loss of stopping there
does (benchmarks/closing_token_loss.py: AUROC clean vs truncated 0.993 against the mean loss's
0.787 on the Gemma benchmark).

The source-gain rule (``source_gain_min``, nats per target token; off by default): a candidate
whose target loss falls by less than that when the model sees the source (``source_free_loss``
− ``loss``: column ``source_free_loss`` from the source-free-loss stage) is outside D_hq and
ranks with the closing-token rule's rejects.  A misaligned or wrong-language target gains
nothing from the source; a right translation, hard or easy, gains (benchmarks/source_gain.py:
AUROC clean vs misaligned 0.997 against the loss's 0.898).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# helped fractions are k / n_seeds; the tolerance keeps k/n == γ from failing on float rounding
GAMMA_TOL = 1e-9

REQUIRED = ("example_id", "position", "helped_fraction", "mean")
QUALITY_SCORES = ("paper", "influence", "normalized", "loss", "combined")
_NEEDS = {"normalized": ("grad_norm",), "loss": ("loss",), "combined": ("grad_norm", "loss")}


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
    missing = [c for c in _NEEDS.get(score, ()) if c not in influence or influence[c].isna().any()]
    if missing:
        raise ValueError(f"quality score {score!r} needs {missing} for every candidate; this scoring lacks it "
                         "(scored by an older gdig? re-run the scoring stage)")
    if score == "paper":
        return quality_key(influence)
    mean = influence["mean"].to_numpy(np.float64)
    if score == "influence":
        return -mean
    if score == "loss":
        return -influence["loss"].to_numpy(np.float64)
    norm = influence["grad_norm"].to_numpy(np.float64)
    normalized = -np.divide(mean, norm, out=np.zeros_like(mean), where=norm > 0)
    if score == "normalized":
        return normalized
    return (percentile_rank(normalized) + percentile_rank(-influence["loss"].to_numpy(np.float64))) / 2


def passes_closing_rule(influence: pd.DataFrame, closing_loss_max: float | None) -> np.ndarray:
    """True where the candidate's closing-token loss is at most `closing_loss_max` (all True
    when the rule is off; a row without a closing loss, e.g. no target token, passes)."""
    n = len(influence)
    if closing_loss_max is None:
        return np.ones(n, dtype=bool)
    if "closing_loss" not in influence or (n and influence["closing_loss"].isna().all()):
        raise ValueError("selection.closing_loss_max needs the candidates' closing-token loss, which this scoring "
                         "lacks (scored by an older gdig? re-run the scoring stage), or set it to null")
    return ~(influence["closing_loss"].to_numpy(np.float64) > closing_loss_max)


def source_gain(influence: pd.DataFrame) -> np.ndarray:
    """Loss without the source minus loss with it, per row (nats per target token)."""
    if "source_free_loss" not in influence or influence["source_free_loss"].isna().any():
        n = 0 if "source_free_loss" not in influence else int(influence["source_free_loss"].isna().sum())
        raise ValueError("selection.source_gain_min needs every candidate's source-free loss (the source-free-loss "
                         f"stage){f'; {n} candidate(s) lack it' if n else ''}, or set it to null")
    return influence["source_free_loss"].to_numpy(np.float64) - influence["loss"].to_numpy(np.float64)


def passes_rules(influence: pd.DataFrame, closing_loss_max: float | None,
                 source_gain_min: float | None = None) -> np.ndarray:
    """True where a candidate passes the closing-token and the source-gain rules (those that are on)."""
    ok = passes_closing_rule(influence, closing_loss_max)
    if source_gain_min is not None:
        ok &= source_gain(influence) >= source_gain_min
    return ok


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
                    closing_loss_max: float | None = None, source_gain_min: float | None = None) -> pd.DataFrame:
    """The pool in quality order, with `high_quality` (Eq. 4, and the closing-token and
    source-gain rules), `closing_ok`, `gain_ok`, `rules_ok` (both), `quality` (the score) and
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
    df["closing_ok"] = passes_closing_rule(df, closing_loss_max)
    df["gain_ok"] = passes_rules(df, None, source_gain_min)
    df["rules_ok"] = df["closing_ok"] & df["gain_ok"]
    df["high_quality"] = (df["helped_fraction"] >= gamma - GAMMA_TOL) & df["rules_ok"]
    if score == "paper":  # the paper's order already puts D_hq first
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
