"""A prefilter rule is one object (gdig.prefilter.rules): its config section, help, thresholds,
checks and measure come from its class, and PrefilterConfig and the check order from RULES."""

from __future__ import annotations

import numpy as np
import pytest

from gdig.config import PrefilterConfig
from gdig.prefilter.rules import CHECKS, EXTRA_FIGURES, LEARNED, RULES, Pairs, Rule, RatioRule, rule, threshold


def test_the_config_sections_are_the_registered_rules():
    fields = PrefilterConfig.model_fields
    assert list(fields) == ["enabled", *(r.section for r in RULES)]
    for r in RULES:
        assert fields[r.section].annotation is r
        assert fields[r.section].description == " ".join(r.__doc__.split())  # the class docstring, once
        for check in r.checks:
            assert check.section == r.section and check.threshold in r.model_fields
            assert f"`{check.name}`" in r.model_fields["enabled"].description
    assert PrefilterConfig.model_fields["script"].annotation.model_fields["enabled"].description == (
        "Run the checks `script.src` and `script.tgt`.")


def test_the_check_order_is_the_rules_with_the_ratio_last():
    assert [c.name for c in CHECKS] == [
        "length.min_chars", "length.min_words", "length.max_chars", "length.max_words", "copies", "near_duplicate",
        "non_alpha", "repeats", "script.src", "script.tgt", "langid.src", "langid.tgt", "ratio.length",
        "ratio.open_end"]
    assert [r.section for r in RULES if r.judged_after_others] == ["ratio"]
    assert EXTRA_FIGURES == ("ratio.log", "ratio.center", "ratio.spread") and LEARNED == RatioRule.learned


def test_a_new_rule_is_one_class():
    before = list(RULES)
    try:
        @rule("toy")
        class ToyRule(Rule):
            """Targets that are too exclamatory."""

            max_bangs: int = threshold(2, checks="toy.bangs", fails_when="above", ge=0, description=(
                "Reject a target with more than this many '!'."))

            def measure(self, p: Pairs) -> dict[str, np.ndarray]:
                return {"toy.bangs": np.array([t.count("!") for t in p.tgt], dtype=np.float64)}

        assert RULES[-1] is ToyRule and [(c.name, c.section, c.threshold, c.fails_when) for c in ToyRule.checks] == [
            ("toy.bangs", "toy", "max_bangs", "above")]
        assert ToyRule.model_fields["enabled"].description == "Run the check `toy.bangs`."
        cfg = ToyRule(max_bangs=1)
        figures = cfg.measure(Pairs(["a", "b", "c"], ["x!", "y!!", ""], "en", "de"))["toy.bangs"]
        assert ToyRule.checks[0].fails(figures, cfg).tolist() == [False, True, False]
        with pytest.raises(ValueError, match="max_bangs"):
            ToyRule(max_bangs=-1)
    finally:
        RULES[:] = before
