"""One call: every pair of a dataset measured by every enabled rule, and a verdict per pair."""

from __future__ import annotations


import numpy as np
import pandas as pd

from gdig.prefilter import bounds as rb
from gdig.prefilter.langid import backend_version
from gdig.prefilter.rules import CHECK_NAMES, CHECKS, EXTRA_FIGURES, RULES, Pairs
from gdig.workspace import json_hash

# part of every verdict's signature: bump it when a rule measures differently, so that verdicts
# stored under the old measure are stale
RULES_VERSION = 3


def prefilter_signature(cfg, src_lang: str, tgt_lang: str,
                        ratio_bounds: rb.RatioBounds | None = None) -> str:
    """Content hash of everything a verdict depends on besides the text itself (and, for a
    dataset judged by another's learned bounds, those bounds)."""
    return json_hash({"config": cfg.model_dump(mode="json"), "pair": [src_lang, tgt_lang],
                      "rules": RULES_VERSION, "langid": backend_version() if cfg.enabled and cfg.langid.enabled else None,
                      **({"ratio_bounds": ratio_bounds.as_dict()} if ratio_bounds is not None else {})})


def prefilter_rows(rows: pd.DataFrame, cfg, src_lang: str, tgt_lang: str,
                   ratio_bounds: rb.RatioBounds | None = None) -> pd.DataFrame:
    """One row per input row, in input order.

    rows: columns example_id, src, tgt; cfg: the `prefilter:` section (gdig.config.PrefilterConfig).
    Returns example_id, passed (bool), rule (the first failing check in rules.CHECKS order, or
    None), figure (that check's figure, NaN when passed), one float column per check (its
    figure; NaN where not judged) and the figures rules.EXTRA_FIGURES (the raw log length ratio;
    the ratio bounds used, the same on every row).  ratio_bounds: judge the length ratio by these instead of learning them from `rows`
    (a seed or eval set is judged by its pool's).  With cfg.enabled false every row passes and
    nothing is measured.
    """
    missing = [c for c in ("example_id", "src", "tgt") if c not in rows]
    if missing:
        raise ValueError(f"prefilter_rows: missing column(s) {missing} (columns: {list(rows.columns)})")
    n = len(rows)
    pairs = Pairs(rows["src"].astype(str).tolist(), rows["tgt"].astype(str).tolist(), src_lang, tgt_lang)
    figures = {name: np.full(n, np.nan) for name in (*CHECK_NAMES, *EXTRA_FIGURES)}
    on = [getattr(cfg, r.section) for r in RULES if cfg.enabled and getattr(cfg, r.section).enabled]
    for section_cfg in on if n else ():
        figures.update(section_cfg.measure(pairs))
    active = [c for c in CHECKS if cfg.enabled and getattr(cfg, c.section).enabled]
    for section_cfg in (s for s in on if s.judged_after_others):
        others = np.ones(n, dtype=bool)  # the rows every other active check passes
        for check in active:
            if check.section != section_cfg.section:
                others &= ~check.fails(figures[check.name], getattr(cfg, check.section))
        figures.update(section_cfg.after_others(pairs, figures, others, ratio_bounds))
    rule = np.full(n, None, dtype=object)
    figure = np.full(n, np.nan)
    undecided = np.ones(n, dtype=bool)
    for check in active:
        hit = undecided & check.fails(figures[check.name], getattr(cfg, check.section))
        rule[hit] = check.name
        figure[hit] = figures[check.name][hit]
        undecided &= ~hit
    out = pd.DataFrame({"example_id": rows["example_id"].to_numpy(), "passed": undecided, "rule": rule, "figure": figure})
    for name in (*CHECK_NAMES, *EXTRA_FIGURES):
        out[name] = figures[name]
    return out


def ratio_bounds_of(decisions: pd.DataFrame) -> rb.RatioBounds | None:
    """The ratio bounds a dataset's verdicts were judged by (None: the ratio check was off)."""
    if not len(decisions) or "ratio.center" not in decisions or decisions["ratio.center"].isna().all():
        return None
    return rb.RatioBounds(float(decisions["ratio.center"].iloc[0]), float(decisions["ratio.spread"].iloc[0]))


def rule_counts(decisions: pd.DataFrame) -> pd.Series:
    """Rejected rows per rule, in CHECKS order (rules that rejected nothing left out)."""
    counts = decisions.loc[~decisions["passed"], "rule"].value_counts()
    return counts.reindex([c for c in CHECK_NAMES if c in counts.index]).astype(int)
