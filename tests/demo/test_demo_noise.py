"""The demo corpus (determinism, grammar, disjoint files) and noise injection (exact counts)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from gdig.demo.corpus import NP, Clause, generate_pairs, lexicon, render, write_demo_data
from gdig.data.noise import NOISE_TYPES, inject_noise, noise_counts

# -- demo ------------------------------------------------------------------------------------


def test_generate_pairs_is_deterministic_and_distinct():
    a, b, c = generate_pairs(2000, seed=0), generate_pairs(2000, seed=0), generate_pairs(2000, seed=1)
    assert list(a.columns) == ["src", "tgt"]
    pd.testing.assert_frame_equal(a, b)
    assert a["src"].is_unique and a["tgt"].is_unique and len(a) == 2000
    assert len(set(a["src"]) & set(c["src"])) < 200  # another seed: mostly other sentences


def test_lexicon_size_and_distinct_forms():
    lex = lexicon()
    assert len(lex.xa) == len(lex.xb) >= 300
    assert len(set(lex.xa.values())) == len(lex.xa) and len(set(lex.xb.values())) == len(lex.xb)
    assert not set(lex.xa.values()) & set(lex.xb.values())


def test_grammar_word_order_agreement_and_tense():
    lex = lexicon()
    xa, xb = lex.xa, lex.xb
    c = Clause(NP("cat", plural=True, definite=True, adjectives=("big",)), "v:see",
               obj=NP("house", definite=False), tense="past", negated=True)
    src, tgt = render([c])
    # Aldric: SVO, article + adjective before the noun, plural -en/-n, negation before the verb
    cat_pl = xa["n:cat"] + ("n" if xa["n:cat"][-1] in "aeiou" else "en")
    assert src == f"Lis {xa['a:big']} {cat_pl} no {xa['v:see']}et an {xa['n:house']}."
    # Borish: SOV, adjective after the noun agreeing in number, article after, object marker, verb last
    expected = f"{xb['n:cat']}ok {xb['a:big']}i tar {xb['n:house']} bo {xb['v:see']}athne."
    assert tgt == expected[0].upper() + expected[1:]
    q = Clause(NP(None, name="Mira"), None, predicate_adj="happy", tense="future",
               pp=None, adverb="today")
    src, tgt = render([q], question=True)
    assert src == f"Ke Mira vel es {xa['a:happy']} {xa['r:today']}?"
    assert tgt == f"Mira {xb['r:today']} {xb['a:happy']} dum ka?"
    two = render([Clause(NP(None, name="Liv"), "v:sleep"), Clause(NP(None, name="Ivo"), "v:run", tense="future")])
    assert two == (f"Liv {xa['v:sleep']}a e Ivo vel {xa['v:run']}.",
                   f"Liv {xb['v:sleep']}ish ja Ivo {xb['v:run']}um.")


def test_write_demo_data_files_are_disjoint_and_labelled(tmp_path):
    paths = write_demo_data(tmp_path, n_pool=600, n_seed=50, n_eval=60, n_general=100, noise_rate=0.3, seed=3)
    assert set(paths) == {"pool", "seed", "eval", "general"}
    dfs = {k: pd.read_json(p, lines=True) for k, p in paths.items()}
    assert {k: len(v) for k, v in dfs.items()} == {"pool": 600, "seed": 50, "eval": 60, "general": 100}
    first = json.loads(paths["seed"].read_text(encoding="utf-8").splitlines()[0])
    assert (first["src_lang"], first["tgt_lang"]) == ("xa", "xb") and set(first) == {"src_lang", "tgt_lang", "src", "tgt"}
    srcs = {k: set(v["src"]) for k, v in dfs.items()}
    clean_pool = set(dfs["pool"].loc[dfs["pool"]["label"] == "clean", "src"])
    for a in ("seed", "eval", "general"):
        assert not srcs[a] & clean_pool
        for b in ("seed", "eval", "general"):
            assert a == b or not srcs[a] & srcs[b]
    labels = dfs["pool"]["label"].value_counts().to_dict()
    assert labels == {"clean": 420, **{t: 30 for t in NOISE_TYPES}}
    again = write_demo_data(tmp_path / "again", n_pool=600, n_seed=50, n_eval=60, n_general=100, noise_rate=0.3, seed=3)
    assert all(paths[k].read_bytes() == again[k].read_bytes() for k in paths)


# -- noise -----------------------------------------------------------------------------------

EN_DE = [
    ("The weather is nice today.", "Das Wetter ist heute schön."),
    ("I would like a cup of coffee.", "Ich hätte gern eine Tasse Kaffee."),
    ("Where is the train station?", "Wo ist der Bahnhof?"),
    ("We are going to the cinema tonight.", "Wir gehen heute Abend ins Kino."),
    ("My brother lives in Berlin.", "Mein Bruder wohnt in Berlin."),
    ("This book is very interesting.", "Dieses Buch ist sehr interessant."),
    ("Please close the window.", "Bitte schließ das Fenster."),
    ("The children play in the garden.", "Die Kinder spielen im Garten."),
]


def corpus(n):
    rows = [(f"{s} ({i})", f"{t} ({i})") for i in range(n // len(EN_DE) + 1) for s, t in EN_DE][:n]
    return pd.DataFrame(rows, columns=["src", "tgt"])


@pytest.mark.parametrize("n,rate,expected", [
    (1000, 0.3, {t: 50 for t in NOISE_TYPES}),
    (100, 0.25, dict(zip(NOISE_TYPES, (5, 4, 4, 4, 4, 4)))),
    (50, 0.1, dict(zip(NOISE_TYPES, (1, 1, 1, 1, 1, 0)))),
    (40, 0.0, {t: 0 for t in NOISE_TYPES}),
])
def test_noise_counts_exact(n, rate, expected):
    assert noise_counts(n, rate) == expected
    out = inject_noise(corpus(n), rate, seed=7)
    got = out["label"].value_counts().to_dict()
    assert got.get("clean", 0) == n - round(rate * n)
    assert {t: got.get(t, 0) for t in NOISE_TYPES} == expected


def test_noise_is_deterministic_and_seed_dependent():
    df = corpus(300)
    a, b, c = inject_noise(df, 0.4, seed=1), inject_noise(df, 0.4, seed=1), inject_noise(df, 0.4, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a["label"].equals(c["label"])


def test_each_noise_type_does_what_it_says():
    df = corpus(600)
    out = inject_noise(df, 0.5, seed=0)
    srcs, tgts = set(df["src"]), set(df["tgt"])
    for i, row in out.iterrows():
        s0, t0 = df.at[i, "src"], df.at[i, "tgt"]
        kind = row["label"]
        if kind == "clean":
            assert (row["src"], row["tgt"]) == (s0, t0)
            continue
        assert (row["src"], row["tgt"]) != (s0, t0), kind  # a noisy row always differs
        if kind != "fragment":
            assert row["src"] == s0
        if kind == "misaligned":
            assert row["tgt"] in tgts and row["tgt"] != t0
        elif kind == "untranslated":
            assert row["tgt"] == s0
        elif kind == "wrong_language":
            assert row["tgt"] in srcs and row["tgt"] != s0
        elif kind == "truncated":
            words = t0.split()
            assert row["tgt"].split() == words[: len(row["tgt"].split())] and len(row["tgt"].split()) < len(words)
        elif kind == "shuffled":
            assert sorted(row["tgt"].split()) == sorted(t0.split()) and row["tgt"] != t0
        elif kind == "fragment":
            for new, old in ((row["src"], s0), (row["tgt"], t0)):
                assert 1 <= len(new.split()) <= 2 and f" {new} " in f" {old} "


def test_noise_other_language_pool_custom_columns_and_cjk():
    df = pd.DataFrame({"en": [f"line number {i} here" for i in range(20)],
                       "zh": [f"这是第{i}行文字" for i in range(20)], "keep": range(20)})
    other = ["Ceci est une phrase.", "Une autre phrase."]
    out = inject_noise(df, 1.0, seed=0, types=("wrong_language", "truncated", "shuffled"),
                       src_col="en", tgt_col="zh", other_lang=other)
    assert list(out["keep"]) == list(range(20))
    assert out["label"].value_counts().to_dict() == {"wrong_language": 7, "truncated": 7, "shuffled": 6}
    wl = out[out["label"] == "wrong_language"]
    assert set(wl["zh"]) <= set(other)
    tr = out[out["label"] == "truncated"]
    assert all(df.at[i, "zh"].startswith(t) and len(t) < len(df.at[i, "zh"]) for i, t in tr["zh"].items())


def test_noise_errors():
    one_word = pd.DataFrame({"src": ["a", "b", "c"], "tgt": ["x", "y", "z"]})
    with pytest.raises(ValueError, match="'shuffled': only 0 of 3 rows"):
        inject_noise(one_word, 1.0, types=("shuffled",))
    with pytest.raises(ValueError, match="rate"):
        inject_noise(one_word, 1.5)
    with pytest.raises(ValueError, match="noise types"):
        inject_noise(one_word, 0.5, types=("typo",))
    with pytest.raises(ValueError, match="no column 'tgt'"):
        inject_noise(one_word.rename(columns={"tgt": "t"}), 0.5)
