"""One call: every pair of a dataset measured by every enabled rule, and a verdict per pair."""

from __future__ import annotations


import numpy as np
import pandas as pd

from gdig.config import PrefilterConfig
from gdig.prefilter.langid import backend_version
from gdig.prefilter.rules import CHECK_NAMES, CHECKS, MEASURES, Pairs
from gdig.workspace import json_hash

# bump when a rule measures differently: decisions stored under an older signature are then stale
RULES_VERSION = 2  # 2: a side without word counts (zh, ja...) leaves length.min_words to the other


def prefilter_signature(cfg: PrefilterConfig, src_lang: str, tgt_lang: str) -> str:
    """Content hash of everything a verdict depends on besides the text itself."""
    return json_hash({"config": cfg.model_dump(mode="json"), "pair": [src_lang, tgt_lang],
                      "rules": RULES_VERSION, "langid": backend_version() if cfg.enabled and cfg.langid.enabled else None})


def prefilter_rows(rows: pd.DataFrame, cfg: PrefilterConfig, src_lang: str, tgt_lang: str) -> pd.DataFrame:
    """One row per input row, in input order.

    rows: columns example_id, src, tgt.  Returns example_id, passed (bool), rule (the first
    failing check in rules.CHECKS order, or None), figure (that check's figure, NaN when
    passed) and one float column per check (its figure; NaN where not judged).  With
    cfg.enabled false every row passes and nothing is measured.
    """
    missing = [c for c in ("example_id", "src", "tgt") if c not in rows]
    if missing:
        raise ValueError(f"prefilter_rows: missing column(s) {missing} (columns: {list(rows.columns)})")
    n = len(rows)
    pairs = Pairs(rows["src"].astype(str).tolist(), rows["tgt"].astype(str).tolist(), src_lang, tgt_lang)
    figures = {name: np.full(n, np.nan) for name in CHECK_NAMES}
    if cfg.enabled:
        for section, measure in MEASURES.items():
            section_cfg = getattr(cfg, section)
            if section_cfg.enabled and n:
                figures.update(measure(pairs, section_cfg))
    rule = np.full(n, None, dtype=object)
    figure = np.full(n, np.nan)
    undecided = np.ones(n, dtype=bool)
    if cfg.enabled:
        for check in CHECKS:
            section_cfg = getattr(cfg, check.section)
            if not section_cfg.enabled:
                continue
            hit = undecided & check.fails(figures[check.name], section_cfg)
            rule[hit] = check.name
            figure[hit] = figures[check.name][hit]
            undecided &= ~hit
    out = pd.DataFrame({"example_id": rows["example_id"].to_numpy(), "passed": undecided, "rule": rule, "figure": figure})
    for name in CHECK_NAMES:
        out[name] = figures[name]
    return out


def rule_counts(decisions: pd.DataFrame) -> pd.Series:
    """Rejected rows per rule, in CHECKS order (rules that rejected nothing left out)."""
    counts = decisions.loc[~decisions["passed"], "rule"].value_counts()
    return counts.reindex([c for c in CHECK_NAMES if c in counts.index]).astype(int)
