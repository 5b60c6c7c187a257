"""Step 0 of the method: cheap rules that drop what needs no gradient to spot.

Copies of the source, the wrong language, absurd lengths, a length ratio far from the
pair's own (learned from the pool), the wrong script, text that is mostly digits or
symbols, runs of one repeated token; in any script (gdig.prefilter.lengths).  `prefilter_rows`
judges a dataset's pairs; the store keeps every verdict with its rule and figure.
"""

from gdig.prefilter.bounds import RatioBounds
from gdig.prefilter.decisions import RULES_VERSION, prefilter_rows, prefilter_signature, ratio_bounds_of, rule_counts
from gdig.prefilter.rules import CHECK_NAMES, CHECKS, EXTRA_FIGURES, LEARNED, RULES

__all__ = ["CHECKS", "CHECK_NAMES", "EXTRA_FIGURES", "LEARNED", "RULES", "RULES_VERSION", "RatioBounds", "prefilter_rows",
           "prefilter_signature", "ratio_bounds_of", "rule_counts"]
