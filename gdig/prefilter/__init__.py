"""Step 0 of the method: cheap rules that drop what needs no gradient to spot.

Copies of the source, the wrong language, absurd lengths and ratios, the wrong script,
text that is mostly digits or symbols, runs of one repeated token.  `prefilter_rows`
judges a dataset's pairs; the store keeps every verdict with its rule and figure.
"""

from gdig.prefilter.decisions import RULES_VERSION, prefilter_rows, prefilter_signature, rule_counts
from gdig.prefilter.rules import CHECK_NAMES, CHECKS

__all__ = ["CHECKS", "CHECK_NAMES", "RULES_VERSION", "prefilter_rows", "prefilter_signature", "rule_counts"]
