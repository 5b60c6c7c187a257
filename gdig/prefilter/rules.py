"""The prefilter's rules: what each one measures per pair, and the threshold it holds it to.

A rule (a config section under `prefilter:`) measures one or more *checks*; each check
yields one figure per pair and fails the pair when the figure crosses the section's
threshold.  A figure of NaN means "not judged" (rule disabled, language unknown to the
check, text too short for it) and never fails.  CHECKS is in the order that decides which
rule a rejected pair is reported under: the cheapest, least ambiguous first.

No rule assumes spaces or Latin letters: lengths are script-normalised (gdig.prefilter.lengths),
and the length ratio is judged against the pair's own, learned from the pool
(gdig.prefilter.bounds).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable, Literal

import numpy as np
from rapidfuzz import fuzz
from rapidfuzz.process import cpdist

from gdig.prefilter import text as tx
from gdig.prefilter.charclass import Codepoints
from gdig.prefilter.langid import identifier
from gdig.prefilter.lengths import LETTERS_PER_WORD, normalised_length
from gdig.prefilter.scripts import NO_SPACES, script_fraction, script_says


@dataclass
class Pairs:
    src: list[str]
    tgt: list[str]
    src_lang: str
    tgt_lang: str

    def __len__(self) -> int:
        return len(self.src)

    @cached_property
    def codepoints(self) -> tuple[Codepoints, Codepoints]:
        return Codepoints(self.src), Codepoints(self.tgt)

    @cached_property
    def chars(self) -> tuple[np.ndarray, np.ndarray]:
        return tx.char_lengths(self.src), tx.char_lengths(self.tgt)

    @cached_property
    def normalised(self) -> tuple[np.ndarray, np.ndarray]:
        """Script-normalised lengths per side (letters, marks, digits weighed in Latin letters)."""
        cs, ct = self.codepoints
        return normalised_length(self.src, cs), normalised_length(self.tgt, ct)

    @cached_property
    def words(self) -> tuple[np.ndarray, np.ndarray]:
        """Word counts per side; for a language written without spaces, its normalised length
        in words (gdig.prefilter.lengths.LETTERS_PER_WORD)."""
        ns, nt = self.normalised
        return (ns / LETTERS_PER_WORD if self.src_lang in NO_SPACES else tx.word_counts(self.src),
                nt / LETTERS_PER_WORD if self.tgt_lang in NO_SPACES else tx.word_counts(self.tgt))

    @cached_property
    def words_only(self) -> tuple[list[str], list[str]]:
        """Each side casefolded, without punctuation, symbols or digits (gdig.prefilter.text)."""
        return [tx.normalise_for_copy(t) for t in self.src], [tx.normalise_for_copy(t) for t in self.tgt]

    @cached_property
    def open_end(self) -> np.ndarray:
        """True where the source ends a sentence (. ! ? 。 । ؟ ...) and the target does not."""
        return np.array([tx.closes(a) and not tx.closes(b) for a, b in zip(self.src, self.tgt)], dtype=bool)

    def nan(self) -> np.ndarray:
        return np.full(len(self), np.nan)


def _length(p: Pairs, cfg) -> dict[str, np.ndarray]:
    (cs, ct), (ws, wt) = p.chars, p.words
    longer = np.maximum(ws, wt)
    return {
        "length.min_chars": np.minimum(cs, ct), "length.max_chars": np.maximum(cs, ct),
        # min_words holds the longer side to it: one short side is for the ratio rule
        "length.min_words": longer, "length.max_words": longer,
    }


def _copies(p: Pairs, cfg) -> dict[str, np.ndarray]:
    src, tgt = p.words_only
    sim = cpdist(src, tgt, scorer=fuzz.ratio, dtype=np.float64, workers=1) / 100.0
    # two sides with no words at all ("2:1" / "2:1") are the non-alphabetic rule's business
    empty = np.array([not (a or b) for a, b in zip(src, tgt)], dtype=bool)
    return {"copies": np.where(empty, np.nan, sim)}


def _near_duplicates(p: Pairs, cfg) -> dict[str, np.ndarray]:
    # how many earlier rows share the pair once both sides are reduced to casefolded words
    seen: dict[tuple[str, str], int] = {}
    out = np.full(len(p), np.nan)
    for i, key in enumerate(zip(*p.words_only)):
        if key == ("", ""):  # no words on either side: the non-alphabetic rule's business
            continue
        out[i] = seen.get(key, 0)
        seen[key] = seen.get(key, 0) + 1
    return {"near_duplicate": out}


def _non_alpha(p: Pairs, cfg) -> dict[str, np.ndarray]:
    cs, ct = p.codepoints
    return {"non_alpha": np.maximum(tx.non_alpha_fraction(p.src, cs), tx.non_alpha_fraction(p.tgt, ct))}


def _repeats(p: Pairs, cfg) -> dict[str, np.ndarray]:
    return {"repeats": np.maximum(tx.longest_token_run(p.src), tx.longest_token_run(p.tgt))}


def _script(p: Pairs, cfg) -> dict[str, np.ndarray]:
    cs, ct = p.codepoints
    return {"script.src": script_fraction(p.src, p.src_lang, cs), "script.tgt": script_fraction(p.tgt, p.tgt_lang, ct)}


def _group(lang: str, cfg) -> frozenset[str]:
    for group in cfg.equivalent:
        if lang in group:
            return frozenset(group)
    return frozenset({lang})


def _langid_side(texts: list[str], lang: str, cps: Codepoints, lengths: np.ndarray, cfg) -> np.ndarray:
    ident = identifier()
    langs = _group(lang, cfg)
    if not langs & ident.labels:  # a language the model does not know: no verdict
        return np.full(len(texts), np.nan)
    # a side whose scripts alone show its language (Hangul for Korean...) needs no model, which
    # is weak on short CJK segments; the rest is judged when long enough (normalised letters)
    by_script = script_says(texts, lang, cps)
    out = ident.prob_of(texts, langs, judge=~by_script & (lengths >= cfg.min_chars))
    out[by_script] = 1.0
    return out


def _langid(p: Pairs, cfg) -> dict[str, np.ndarray]:
    (cs, ct), (ns, nt) = p.codepoints, p.normalised
    return {"langid.src": _langid_side(p.src, p.src_lang, cs, ns, cfg),
            "langid.tgt": _langid_side(p.tgt, p.tgt_lang, ct, nt, cfg)}


def _ratio(p: Pairs, cfg) -> dict[str, np.ndarray]:
    # the log of the target's normalised length over the source's; the check's figure is its
    # distance from the pair's own ratio (gdig.prefilter.bounds), known once the pool is measured
    ns, nt = p.normalised
    with np.errstate(divide="ignore", invalid="ignore"):  # smoothing 0 and an empty side: +-inf, fails
        return {"ratio.log": np.log((nt + cfg.smoothing) / (ns + cfg.smoothing))}


Measure = Callable[[Pairs, object], dict[str, np.ndarray]]
MEASURES: dict[str, Measure] = {
    "length": _length, "copies": _copies, "near_duplicates": _near_duplicates, "non_alpha": _non_alpha, "repeats": _repeats,
    "script": _script, "langid": _langid, "ratio": _ratio,
}


@dataclass(frozen=True)
class Check:
    name: str  # the rule reported for a pair it fails, e.g. "langid.tgt"
    section: str  # its config section under prefilter: (and the measure that computes it)
    threshold: str  # the key of that section holding its threshold
    fails_when: Literal["below", "above", "at_least", "outside"]  # outside: |figure| above

    def fails(self, figure: np.ndarray, section_cfg) -> np.ndarray:
        limit = getattr(section_cfg, self.threshold)
        with np.errstate(invalid="ignore"):  # NaN compares False: not judged, not failed
            if self.fails_when == "below":
                return figure < limit
            if self.fails_when == "above":
                return figure > limit
            if self.fails_when == "outside":
                return np.abs(figure) > limit
            return figure >= limit


CHECKS: tuple[Check, ...] = (
    Check("length.min_chars", "length", "min_chars", "below"),
    Check("length.min_words", "length", "min_words", "below"),
    Check("length.max_chars", "length", "max_chars", "above"),
    Check("length.max_words", "length", "max_words", "above"),
    Check("copies", "copies", "max_similarity", "at_least"),
    Check("near_duplicate", "near_duplicates", "max_earlier", "above"),
    Check("non_alpha", "non_alpha", "max_fraction", "above"),
    Check("repeats", "repeats", "max_run", "above"),
    Check("script.src", "script", "min_fraction", "below"),
    Check("script.tgt", "script", "min_fraction", "below"),
    Check("langid.src", "langid", "min_prob", "below"),
    Check("langid.tgt", "langid", "min_prob", "below"),
    # signed: robust standard deviations of the log length ratio above (target long) or below
    # (target short: truncated) the pair's own
    Check("ratio.length", "ratio", "max_deviation", "outside"),
    # spreads short, for a target that stops where its source closes a sentence (truncated)
    Check("ratio.open_end", "ratio", "max_open_shortfall", "above"),
)
CHECK_NAMES = tuple(c.name for c in CHECKS)
# figures that are no check's: the raw log length ratio and the bounds learned for it
EXTRA_FIGURES = ("ratio.log", "ratio.center", "ratio.spread")
