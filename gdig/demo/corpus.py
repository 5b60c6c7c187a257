"""A deterministic parallel corpus in an invented language pair: Aldric (xa) -> Borish (xb).

The lexicon is a list of concepts (nouns, verbs, adjectives, adverbs, places, names,
numbers) whose word forms are coined once by each language's sound rules from a fixed
internal seed, so the vocabulary never changes between runs.  Sentences are built as
small clause trees and rendered by two grammars that differ the way real pairs do:

  Aldric  SVO; articles before the noun that agree in number and definiteness
          (le/lis/an/sim); adjectives before the noun; plural -en (-n after a vowel);
          verbs agree with the subject (-a sg / -an pl), past -et, future "vel" + stem;
          negation "no" before the verb; prepositions; yes/no questions start with "ke".
  Borish  SOV; adjectives after the noun and agreeing in number (-i); the definite
          article after the noun phrase (ta/tar), plural indefinite "kem" before it;
          plural -ok; the object marked by "bo"; postpositions; the verb last with
          tense suffixes (-ish present, -ath past, -um future) and negation -ne;
          questions end with the particle "ka"; numerals follow the noun.

The pool/seed/eval files written by `write_demo_data` are disjoint; the pool carries
injected noise with a `label` per row (gdig.data.noise).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pandas as pd

from gdig.data.noise import inject_noise
from gdig.demo.settings import demo_defaults

SRC_LANG, TGT_LANG = "xa", "xb"

# -- the lexicon: concepts (English glosses, for reading the code) --------------------------------

ANIMATES = (
    "cat dog horse bird fish wolf bear fox owl crow goat sheep cow pig mouse rabbit frog snake "
    "child woman man girl boy farmer baker hunter sailor soldier teacher healer merchant king "
    "queen priest smith weaver miller fisher shepherd singer thief guard"
).split()
THINGS = (
    "house door window table chair bed cup bowl plate knife spoon bread apple pear cheese milk "
    "water wine soup egg stone tree flower leaf root seed field road bridge river lake sea ship "
    "boat cart wheel rope basket box book letter song story gift coin ring hat coat shoe "
    "shirt cloak sword shield bow arrow lamp candle fire smoke cloud rain snow wind sun moon "
    "star sky hill mountain valley forest garden wall tower gate roof floor key map bell drum "
    "flute pot jar blanket pillow nest feather horn tail egg-shell honey salt grain"
).split()
PLACES = (
    "market village city castle harbour mill church school inn farm well cave island "
    "meadow kitchen cellar library square temple shore"
).split()
NAMES = "Mira Tobin Ansel Edda Corin Liv Oskar Rhea Soren Tamsin Ivo Nela Piet Wren Alma Bram".split()
TRANSITIVE = (
    "see take give find carry open close eat drink bring sell buy build break wash hold "
    "paint write read sing cut cook hide lose keep throw catch follow call visit love fear "
    "help carve mend fill burn watch greet feed pull push chase count clean guard sew plant "
    "pick fetch trade"
).split()
INTRANSITIVE = (
    "sleep run walk swim fly sing laugh cry wait sit stand dance work rest fall shout "
    "listen travel hunt pray smile grow hide arrive"
).split()
ADJECTIVES = (
    "big small old young red blue green white black yellow warm cold wet dry heavy light "
    "long short tall low fast slow loud quiet happy sad brave shy clever strange new "
    "broken clean dirty full empty sharp soft hard sweet bitter bright dark rich poor "
    "kind proud lazy busy hungry tired wild tame round flat thin thick golden silver "
    "wooden"
).split()
ADVERBS = (
    "today yesterday tomorrow often never always quickly slowly quietly again here there "
    "together alone early late soon gladly carefully"
).split()
PREPOSITIONS = ("in", "on", "with", "to", "near", "under", "behind", "from")

# numerals and function words, written by hand
NUMBERS_XA = {2: "du", 3: "tre", 4: "katra", 5: "sinc", 6: "ses", 7: "sepet", 8: "okt", 9: "nef", 10: "dek",
              11: "undek", 12: "dodek"}
NUMBERS_XB = {2: "bak", 3: "gosh", 4: "zurk", 5: "pash", 6: "kov", 7: "dren", 8: "ugor", 9: "zeb", 10: "tok",
              11: "tokbak", 12: "tokgosh"}
PREP_XA = dict(zip(PREPOSITIONS, ("en", "sur", "kon", "ad", "pres", "sub", "dor", "ex")))
PREP_XB = dict(zip(PREPOSITIONS, ("dal", "gor", "mit", "ver", "zok", "unt", "bakh", "ush")))


@dataclass(frozen=True)
class Lexicon:
    xa: dict[str, str]  # concept -> Aldric stem
    xb: dict[str, str]  # concept -> Borish stem


_XA_ONSETS = ["l", "r", "d", "v", "m", "n", "s", "f", "t", "th", "br", "dr", "gl", "c", "h"]
_XA_VOWELS = ["a", "e", "i", "o", "a", "e", "ie"]
_XA_CODAS = ["", "", "", "n", "r", "l", "s"]
_XB_ONSETS = ["k", "b", "g", "z", "sh", "kh", "gr", "zr", "p", "t", "dr", "v", "ch", "j"]
_XB_VOWELS = ["o", "u", "a", "y", "o", "u", "ou"]
_XB_CODAS = ["", "", "k", "z", "g", "sh", "rk", "m"]


def _coin(rng: random.Random, onsets, vowels, codas, syllables: int) -> str:
    word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(syllables))
    return word + rng.choice(codas)


@lru_cache(maxsize=1)
def lexicon() -> Lexicon:
    """Coin one Aldric and one Borish form per concept; fixed seed, distinct forms."""
    rng = random.Random(20240511)
    concepts = [*ANIMATES, *THINGS, *PLACES, *TRANSITIVE, *INTRANSITIVE, *ADJECTIVES, *ADVERBS]
    reserved = set(NUMBERS_XA.values()) | set(NUMBERS_XB.values()) | set(PREP_XA.values()) | set(PREP_XB.values())
    reserved |= {"le", "lis", "an", "sim", "no", "vel", "ke", "e", "es", "son", "era", "eran",
                 "ta", "tar", "kem", "bo", "ka", "ja", "d"}
    xa, xb = {}, {}
    for kind, concept_list in (("n", [*ANIMATES, *THINGS, *PLACES]), ("v", [*TRANSITIVE, *INTRANSITIVE]),
                               ("a", ADJECTIVES), ("r", ADVERBS)):
        for c in concept_list:
            key = f"{kind}:{c}"
            if key in xa:
                continue  # a gloss used twice (e.g. "sing", "hide" transitive and intransitive)
            for lang, table, parts in (("xa", xa, (_XA_ONSETS, _XA_VOWELS, _XA_CODAS)),
                                       ("xb", xb, (_XB_ONSETS, _XB_VOWELS, _XB_CODAS))):
                while True:
                    form = _coin(rng, *parts, rng.choice((1, 2, 2, 2, 3)))
                    if form not in reserved and len(form) > 2:
                        break
                reserved.add(form)
                table[key] = form
    assert len(concepts) > 300
    return Lexicon(xa, xb)


# -- clause trees ------------------------------------------------------------------------------


@dataclass
class NP:
    noun: str | None  # concept (None for a name)
    name: str | None = None
    plural: bool = False
    definite: bool = True
    number: int | None = None
    adjectives: tuple[str, ...] = ()


@dataclass
class Clause:
    subject: NP
    verb: str | None  # concept; None = copula
    obj: NP | None = None
    predicate_adj: str | None = None
    pp: tuple[str, NP] | None = None
    adverb: str | None = None
    tense: str = "present"  # present | past | future
    negated: bool = False


def _np(rng: random.Random, nouns: list[str], allow_name: bool) -> NP:
    if allow_name and rng.random() < 0.2:
        return NP(None, name=rng.choice(NAMES))
    noun = rng.choice(nouns)
    plural = rng.random() < 0.35
    number = rng.choice(list(NUMBERS_XA)) if plural and rng.random() < 0.3 else None
    n_adj = rng.choice((0, 0, 1, 1, 2))
    adjs = tuple(rng.sample(ADJECTIVES, n_adj))
    return NP(noun, plural=plural, definite=rng.random() < 0.6, number=number, adjectives=adjs)


def _clause(rng: random.Random) -> Clause:
    subject = _np(rng, ANIMATES, allow_name=True)
    tense = rng.choice(("present", "present", "past", "future"))
    kind = rng.random()
    c = Clause(subject, None, tense=tense, negated=rng.random() < 0.15)
    if kind < 0.55:
        c.verb = "v:" + rng.choice(TRANSITIVE)
        c.obj = _np(rng, THINGS + ANIMATES, allow_name=True)
    elif kind < 0.8:
        c.verb = "v:" + rng.choice(INTRANSITIVE)
    else:
        c.predicate_adj = rng.choice(ADJECTIVES)
    if c.predicate_adj is None and rng.random() < 0.4:
        c.pp = (rng.choice(PREPOSITIONS), _np(rng, PLACES + THINGS, allow_name=False))
    if rng.random() < 0.3:
        c.adverb = rng.choice(ADVERBS)
    return c


# -- rendering: Aldric ---------------------------------------------------------------------------


def _xa_plural(stem: str) -> str:
    return stem + ("n" if stem[-1] in "aeiou" else "en")


def _xa_np(np_: NP, lex: Lexicon) -> list[str]:
    if np_.name:
        return [np_.name]
    words = []
    if np_.number:
        words += ["lis"] if np_.definite else []
        words.append(NUMBERS_XA[np_.number])
    else:
        words.append({(True, False): "le", (True, True): "lis", (False, False): "an",
                      (False, True): "sim"}[(np_.definite, np_.plural)])
    words += [lex.xa["a:" + a] for a in np_.adjectives]
    stem = lex.xa["n:" + np_.noun]
    words.append(_xa_plural(stem) if np_.plural else stem)
    return words


def _xa_clause(c: Clause, lex: Lexicon) -> list[str]:
    words = _xa_np(c.subject, lex)
    pl = c.subject.plural
    if c.negated:
        words.append("no")
    if c.verb is None:
        words.append({("present", False): "es", ("present", True): "son", ("past", False): "era",
                      ("past", True): "eran", ("future", False): "vel es",
                      ("future", True): "vel son"}[(c.tense, pl)])
        words.append(lex.xa["a:" + c.predicate_adj])
    else:
        stem = lex.xa[c.verb]
        if c.tense == "past":
            words.append(stem + "et")
        elif c.tense == "future":
            words += ["vel", stem]
        else:
            words.append(stem + ("an" if pl else "a"))
    if c.obj is not None:
        words += _xa_np(c.obj, lex)
    if c.pp is not None:
        words += [PREP_XA[c.pp[0]], *_xa_np(c.pp[1], lex)]
    if c.adverb:
        words.append(lex.xa["r:" + c.adverb])
    return words


# -- rendering: Borish ---------------------------------------------------------------------------


def _xb_np(np_: NP, lex: Lexicon) -> list[str]:
    if np_.name:
        return [np_.name]
    words = []
    if np_.plural and not np_.definite and not np_.number:
        words.append("kem")
    stem = lex.xb["n:" + np_.noun]
    words.append(stem + "ok" if np_.plural else stem)
    words += [lex.xb["a:" + a] + ("i" if np_.plural else "") for a in np_.adjectives]
    if np_.number:
        words.append(NUMBERS_XB[np_.number])
    if np_.definite:
        words.append("tar" if np_.plural else "ta")
    return words


_XB_TENSE = {"present": "ish", "past": "ath", "future": "um"}


def _xb_clause(c: Clause, lex: Lexicon) -> list[str]:
    words = _xb_np(c.subject, lex)
    if c.pp is not None:
        words += [*_xb_np(c.pp[1], lex), PREP_XB[c.pp[0]]]
    if c.obj is not None:
        words += [*_xb_np(c.obj, lex), "bo"]
    if c.adverb:
        words.append(lex.xb["r:" + c.adverb])
    if c.verb is None:
        words.append(lex.xb["a:" + c.predicate_adj] + ("i" if c.subject.plural else ""))
        stem = "d"
    else:
        stem = lex.xb[c.verb]
    words.append(stem + _XB_TENSE[c.tense] + ("ne" if c.negated else ""))
    return words


def _sentence(words: list[str], end: str) -> str:
    text = " ".join(words)
    return text[0].upper() + text[1:] + end


def render(clauses: list[Clause], question: bool = False) -> tuple[str, str]:
    """(Aldric, Borish) for one sentence of one or two coordinated clauses."""
    lex = lexicon()
    xa, xb = [], []
    for k, c in enumerate(clauses):
        if k:
            xa.append("e")
            xb.append("ja")
        xa += _xa_clause(c, lex)
        xb += _xb_clause(c, lex)
    if question:
        return _sentence(["ke", *xa], "?"), _sentence([*xb, "ka"], "?")
    return _sentence(xa, "."), _sentence(xb, ".")


def _random_sentence(rng: random.Random) -> tuple[str, str]:
    clauses = [_clause(rng)]
    if rng.random() < 0.2:
        clauses.append(_clause(rng))
    return render(clauses, question=len(clauses) == 1 and rng.random() < 0.1)


def generate_pairs(n: int, seed: int = 0) -> pd.DataFrame:
    """n distinct (src, tgt) pairs, Aldric -> Borish, deterministic for a seed."""
    rng = random.Random(seed)
    seen: dict[str, str] = {}
    tries = 0
    while len(seen) < n:
        src, tgt = _random_sentence(rng)
        seen.setdefault(src, tgt)
        tries += 1
        if tries > 20 * n + 1000:
            raise RuntimeError(f"could not generate {n} distinct pairs")
    return pd.DataFrame({"src": list(seen), "tgt": list(seen.values())})


def _write_jsonl(path: Path, df: pd.DataFrame) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for rec in df.to_dict("records"):
            fh.write(json.dumps({"src_lang": SRC_LANG, "tgt_lang": TGT_LANG, **rec}, ensure_ascii=False) + "\n")
    return path


def write_demo_data(
    out_dir: str | Path,
    n_pool: int | None = None,
    n_seed: int | None = None,
    n_eval: int | None = None,
    n_general: int | None = None,
    noise_rate: float | None = None,
    seed: int = 0,
) -> dict[str, Path]:
    """Write disjoint JSONL files: pool (noisy, with `label`), seed, eval, general (clean text
    for pretraining a tiny base model).  Returns name -> path.  A size left out (None) is the
    demo's (gdig/demo/config.yaml, `demo:`)."""
    given = {"n_pool": n_pool, "n_seed": n_seed, "n_eval": n_eval, "n_general": n_general, "noise_rate": noise_rate}
    knobs = {**demo_defaults(), **{k: v for k, v in given.items() if v is not None}}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sizes = {name: knobs[f"n_{name}"] for name in ("pool", "seed", "eval", "general")}
    df = generate_pairs(sum(sizes.values()), seed=seed)
    parts, start = {}, 0
    for name, size in sizes.items():
        parts[name] = df.iloc[start:start + size].reset_index(drop=True)
        start += size
    parts["pool"] = inject_noise(parts["pool"], knobs["noise_rate"], seed=seed)
    return {name: _write_jsonl(out / f"{name}.jsonl", part) for name, part in parts.items()}
