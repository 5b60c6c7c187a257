"""The pair's own length ratio, learned from the pool: the bounds of the ratio checks.

How long a translation is against its source depends on the pair (a Chinese sentence is
shorter than its English translation even in script-normalised letters, a German one longer),
so the ratio checks hold each row to the pool's own: the median of the log length ratio
r = log((target + s) / (source + s)) (script-normalised letters, smoothing s) over the rows
every other check passes, and its spread, 1.4826 x their median absolute deviation (the
standard deviation of a normal distribution with that MAD).  Both are estimated again on the
rows within the bounds (twice), so the noise the other checks leave (misaligned, truncated
targets) hardly widens them.  The bounds are stored with the verdicts (figures `ratio.center`
and `ratio.spread` of every row), and the seed and eval sets of the pair are judged by the
pool's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAD_TO_SD = 1.4826
REFINE = 2  # estimates again on the rows within the bounds
MIN_SPREAD = 0.05  # a pool of near-identical lengths must not make every ordinary row an outlier
# fewer reference rows than ratio.min_rows: the median and MAD say little, these are used
PRIOR_CENTER = 0.0  # normalised lengths make a translation about as long as its source
PRIOR_SPREAD = 0.25  # about the widest of the pairs measured (zh-en; benchmarks/README.md)


@dataclass(frozen=True)
class RatioBounds:
    center: float  # expected log(target length / source length)
    spread: float  # robust standard deviation of it
    n_reference: int = 0  # rows it was learned from (0: given or fallback)

    def deviation(self, log_ratio: np.ndarray) -> np.ndarray:
        return (log_ratio - self.center) / self.spread

    def as_dict(self) -> dict:
        return {"center": self.center, "spread": self.spread}


def learn(log_ratio: np.ndarray, reference: np.ndarray, cfg) -> RatioBounds:
    """Bounds from the rows `reference` marks (those every other check passes); a number set in
    the config (`ratio.center`, `ratio.spread`) wins over what is learned."""
    ref = log_ratio[reference & np.isfinite(log_ratio)]
    if len(ref) < cfg.min_rows:
        return RatioBounds(_given(cfg.center, PRIOR_CENTER), _given(cfg.spread, PRIOR_SPREAD), 0)
    inside = ref
    for _ in range(1 + REFINE):
        center = _given(cfg.center, float(np.median(inside)))
        spread = _given(cfg.spread, max(float(np.median(np.abs(inside - center))) * MAD_TO_SD, MIN_SPREAD))
        inside = ref[np.abs(ref - center) <= cfg.max_deviation * spread]
    return RatioBounds(center, spread, len(ref))


def _given(value, learned: float) -> float:
    return learned if value == "auto" else float(value)
