"""`select` under the paper preset's selection settings, for the tests that check the paper's
math (Eq. 4 at a fixed γ, its ranking, even turns, random within clusters) on hand-built tables;
gdig's own defaults are checked against the CLI's in tests/selection/test_defaults.py."""

from __future__ import annotations

from gdig.selection.select import SelectSettings
from gdig.selection.select import select as _select

PAPER = SelectSettings.preset("paper")


def select(strategy, budget, influence, sketches=None, settings=None, **kw):
    """gdig.selection.select with `settings` laid over the paper preset's."""
    return _select(strategy, budget, influence, sketches, SelectSettings.of(settings, base=PAPER), **kw)
