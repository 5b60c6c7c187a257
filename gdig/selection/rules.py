"""The D_hq rules: tests beyond Eq. 4 that keep a candidate out of D_hq and rank it last.

Each rule is one entry of `HQ_RULES`: the `selection.<key>` that sets its threshold (None
switches it off), the column of the quality ranking that says who passes, the count it
reports, the test, and the column beyond the scoring's that the test reads.  The quality
ranking, γ "auto", the selection ids and the stage's key read this table; what the rule is
called in words lives with its readers, keyed by the rule: its clause in the summary
(gdig.selection.summary.SUMMARY_CLAUSES) and in the selection artifact
(gdig_flows.tasks.artifacts.ARTIFACT_CLAUSES), the stage that computes its column (gdig.graph).  A new
rule is one entry here, its config key, its two clauses and its tests.

- closing-token (``closing_loss_max``, nats): a candidate whose last target token (the EOS
  that encode_examples appends) costs the model more than that.  A truncated target stops
  mid-sentence; the mean loss over its tokens does not see it (a prefix of a good translation
  is cheap), the loss of stopping there does (benchmarks/closing_token_loss.py).
- source-gain (``source_gain_min``, nats per target token; off by default): a candidate whose
  target loss falls by less than that when the model sees the source (``source_free_loss`` −
  ``loss``, the source-free-loss stage).  A misaligned or wrong-language target gains nothing
  from the source (benchmarks/source_gain.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import pandas as pd


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


@dataclass(frozen=True)
class HqRule:
    key: str  # selection.<key>: the threshold; None switches the rule off
    ok_column: str  # column of the quality ranking: True where a candidate passes
    count: str  # what a selection reports: candidates the rule ranks last
    test: Callable[[pd.DataFrame, float], np.ndarray]  # (pool, threshold) -> passes
    in_id_when_off: bool  # False: off leaves selection ids as they were before the rule existed
    default: float | None = None  # gdig's default threshold (selection.<key>; None: off)
    reads: str | None = None  # a column its test reads that the scoring lacks (another stage computes it)
    too_many: str = ""  # the warning when it ranks more than half the pool last ({n} of {total})

    def passes(self, influence: pd.DataFrame, threshold: float | None) -> np.ndarray:
        return np.ones(len(influence), dtype=bool) if threshold is None else self.test(influence, threshold)


HQ_RULES: dict[str, HqRule] = {r.key: r for r in (
    HqRule("closing_loss_max", "closing_ok", "n_closing_rejected", passes_closing_rule, in_id_when_off=True,
           default=8.0,  # chosen on benchmarks/selection_quality.py (benchmarks/README.md)
           too_many="the closing-token rule (closing loss > {t:g} nats) ranks {n} of {total} candidates last: the "
                    "model may not have learnt where a target ends (pool finetuning?); selection.closing_loss_max: "
                    "null switches the rule off"),
    HqRule("source_gain_min", "gain_ok", "n_gain_rejected", lambda df, t: source_gain(df) >= t,
           in_id_when_off=False, reads="source_free_loss",
           too_many="the source-gain rule (gain < {t:g} nats per target token) ranks {n} of {total} candidates "
                    "last: does the prompt template show the model the source? selection.source_gain_min: null "
                    "switches the rule off"),
)}


def default_thresholds() -> dict[str, float | None]:
    """Every rule's default threshold (None: off by default)."""
    return {key: rule.default for key, rule in HQ_RULES.items()}


def rejected_names() -> tuple[str, ...]:
    """The count every rule reports (n_closing_rejected, ...), in table order."""
    return tuple(r.count for r in HQ_RULES.values())


def thresholds(sel_cfg) -> dict[str, float | None]:
    """Every rule's threshold from a selection config (None: off)."""
    return {key: getattr(sel_cfg, key) for key in HQ_RULES}


def checked(rules: Mapping[str, float | None] | None) -> dict[str, float | None]:
    """Every rule's threshold (a rule not named is off); an unknown name is an error."""
    rules = dict(rules or {})
    unknown = sorted(set(rules) - set(HQ_RULES))
    if unknown:
        raise ValueError(f"unknown D_hq rule(s) {unknown}; known: {', '.join(HQ_RULES)}")
    return {key: rules.get(key) for key in HQ_RULES}


def passes_rules(influence: pd.DataFrame, rules: Mapping[str, float | None] | None) -> np.ndarray:
    """True where a candidate passes every rule that is on."""
    ok = np.ones(len(influence), dtype=bool)
    for key, t in checked(rules).items():
        ok &= HQ_RULES[key].passes(influence, t)
    return ok


def rejected_counts(ranked: pd.DataFrame, rules: Mapping[str, float | None] | None) -> dict[str, int]:
    """The count each rule that is on reports, from a quality ranking (its ok columns)."""
    return {HQ_RULES[k].count: int((~ranked[HQ_RULES[k].ok_column]).sum())
            for k, t in checked(rules).items() if t is not None}


def columns_read(rules: Mapping[str, float | None] | None) -> set[str]:
    """The columns beyond the scoring's that the rules that are on read."""
    return {HQ_RULES[k].reads for k, t in checked(rules).items() if t is not None and HQ_RULES[k].reads}


def clauses(templates: Mapping[str, str], rules: Mapping[str, float | None],
            counts: Mapping[str, int | None]) -> list[str]:
    """Each rule's clause from `templates` (by rule key; {n}: its count, {t}: its threshold),
    where the rule is on and counted."""
    out = []
    for key, t in checked(rules).items():
        n = counts.get(HQ_RULES[key].count)
        if t is not None and n is not None:
            out.append(templates[key].format(n=n, t=t))
    return out
