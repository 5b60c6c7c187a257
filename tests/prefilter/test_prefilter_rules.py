"""Prefilter rules on constructed pairs: each rule's edge cases, clean pairs in many scripts,
the entry point's contract (one verdict per row, first failing rule, figures, switches)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from gdig.config import PrefilterConfig
from gdig.prefilter import CHECK_NAMES, prefilter_rows, prefilter_signature, rule_counts
from gdig.prefilter.text import longest_token_run, non_alpha_fraction, normalise_for_copy


def judge(pairs, src_lang="cs", tgt_lang="en", **sections):
    """Verdicts for (src, tgt) pairs under the default config with `sections` overridden."""
    cfg = PrefilterConfig.model_validate(sections)
    rows = pd.DataFrame(pairs, columns=["src", "tgt"])
    rows.insert(0, "example_id", [f"e{i}" for i in range(len(rows))])
    return prefilter_rows(rows, cfg, src_lang, tgt_lang)


def one(src, tgt, src_lang="cs", tgt_lang="en", **sections):
    return judge([(src, tgt)], src_lang, tgt_lang, **sections).iloc[0]


CS = "Na zahradě za domem rostou jabloně a hrušně."
EN = "Apple and pear trees grow in the garden behind the house."

# one clean pair per script: every default rule must let it through
CLEAN = {
    "latin-diacritics cs-en": ("cs", "en", "Příliš žluťoučký kůň úpěl ďábelské ódy u starého mlýna.",
                               "A far too yellow horse moaned devilish odes by the old mill."),
    "latin de-fr": ("de", "fr", "Morgen früh fahren wir mit dem Zug nach München.",
                    "Demain matin, nous prendrons le train pour Munich."),
    "cyrillic ru-en": ("ru", "en", "Вчера вечером в нашем городе прошёл сильный дождь.",
                       "Heavy rain fell in our town yesterday evening."),
    "cyrillic target en-uk": ("en", "uk", "The children were playing football in the yard until dark.",
                              "Діти грали у футбол на подвір'ї до самої темряви."),
    "greek el-en": ("el", "en", "Το πρωί πήγαμε στη θάλασσα με τους φίλους μας.",
                    "In the morning we went to the sea with our friends."),
    "han zh-en": ("zh", "en", "我们明天早上要去图书馆看书，然后一起吃午饭。",
                  "Tomorrow morning we are going to the library to read, then we will have lunch together."),
    "kana+kanji ja-en": ("ja", "en", "昨日は友達と一緒に新しいレストランで晩ご飯を食べました。",
                         "Yesterday I had dinner with a friend at a new restaurant."),
    "hangul ko-en": ("ko", "en", "우리는 주말마다 가족과 함께 산에 올라갑니다.",
                     "Every weekend we climb the mountain with our family."),
    "arabic ar-en": ("ar", "en", "ذهبنا إلى السوق صباح اليوم لشراء الخضار والفواكه الطازجة.",
                     "This morning we went to the market to buy fresh vegetables and fruit."),
    "devanagari hi-en": ("hi", "en", "मैं हर सुबह अपने कुत्ते के साथ पार्क में टहलने जाता हूँ।",
                         "Every morning I go for a walk in the park with my dog."),
}


@pytest.mark.parametrize("name", list(CLEAN))
def test_a_clean_pair_in_each_script_passes(name):
    src_lang, tgt_lang, src, tgt = CLEAN[name]
    v = one(src, tgt, src_lang, tgt_lang)
    assert v["passed"], f"{name}: rejected by {v['rule']} (figure {v['figure']})"
    assert v["langid.src"] > 0.5 and v["langid.tgt"] > 0.5  # judged, and confidently right
    assert v["script.src"] == 1.0 and v["script.tgt"] == 1.0


# -- length -----------------------------------------------------------------------------------
def test_length_an_empty_side_fails_min_chars():
    v = one("   ", EN)
    assert (v["rule"], v["figure"]) == ("length.min_chars", 0.0)


def test_length_min_words_holds_the_longer_side():
    frag = one("jabloně rostou", "garden")  # both sides under 3 words: a fragment
    assert (frag["rule"], frag["figure"]) == ("length.min_words", 2.0)
    short_src = one("Díky.", "Thank you for that.")  # one short side is not a fragment
    assert short_src["length.min_words"] == 4.0 and short_src["rule"] != "length.min_words"
    assert one("Tři slova tady.", "Three words here.")["passed"]  # exactly at the bound


def test_length_upper_bounds():
    long_src = " ".join(["slovo"] * 260)
    v = one(long_src, " ".join(["word"] * 260))
    assert v["rule"] == "length.max_chars"  # 1,559 chars, checked before words
    v = one(long_src, " ".join(["word"] * 260), length={"max_chars": 5000})
    assert (v["rule"], v["figure"]) == ("length.max_words", 260.0)


def test_length_words_are_not_counted_for_languages_without_spaces():
    v = one("我们去图书馆。", "We go to the library.", "zh", "en")
    assert v["length.min_words"] == 5.0  # the English side's count alone
    assert math.isnan(v["ratio.words"]) and v["passed"]
    v = one("图书馆", "library", "zh", "en")
    assert v["rule"] == "length.min_words"
    v = one("我们去图书馆。", "私たちは図書館に行きます。", "zh", "ja")
    assert math.isnan(v["length.min_words"]) and math.isnan(v["ratio.words"])


# -- copies -----------------------------------------------------------------------------------
def test_copies_normalise_case_punctuation_and_digits():
    assert normalise_for_copy("Hello, World -- 2024!") == "hello world"
    v = one("Praha 4: Hlavní nádraží, 2019", "PRAHA 5 - hlavní nádraží (2021)")
    assert (v["rule"], v["figure"]) == ("copies", 1.0)


def test_copies_near_copy_fails_and_a_translation_passes():
    near = one("Vláda schválila nový rozpočet na příští rok.", "Vláda schválila novy rozpočet na příští rok")
    assert near["rule"] == "copies" and 0.9 <= near["figure"] < 1.0
    clean = one(CS, EN)
    assert clean["passed"] and clean["copies"] < 0.6


def test_copies_threshold_is_inclusive_and_configurable():
    pair = ("Vláda schválila nový rozpočet.", "Vláda schválila nový rozpočet?")
    assert one(*pair)["rule"] == "copies"
    assert one(*pair, copies={"enabled": False})["rule"] != "copies"
    assert one("abcd efgh ijkl", "abcd efgh ijkx", copies={"max_similarity": 1.0})["rule"] != "copies"


def test_copies_does_not_judge_pairs_without_words():
    v = one("2:1 (1:0)", "2:1 (1:0)")
    assert math.isnan(v["copies"])
    assert v["rule"] == "length.min_words"  # caught anyway, by another rule


# -- non-alphabetic share ----------------------------------------------------------------------
def test_non_alpha_fraction_counts_digits_punctuation_and_symbols_but_not_marks():
    frac = non_alpha_fraction(["ab12", "", "   ", "हिन्दी भाषा", "€€ ab"])
    assert frac.tolist()[:3] == [0.5, 0.0, 0.0]
    assert frac[3] == 0.0  # vowel signs and virama are combining marks: part of the word
    assert frac[4] == pytest.approx(0.5)


def test_non_alpha_rejects_tables_of_numbers():
    v = one("Výsledky: 12:3, 4:5, 6:7 (18:15)", "Results: 12:3, 4:5, 6:7 (18:15)")
    assert v["rule"] == "non_alpha" and v["figure"] > 0.5
    assert one(CS, EN)["non_alpha"] < 0.1


# -- repeated tokens ----------------------------------------------------------------------------
def test_longest_token_run_is_case_insensitive():
    assert longest_token_run(["a b a b", "Ha ha HA ha ha", "", "x"]).tolist() == [1.0, 5.0, 0.0, 1.0]


def test_repeats_rejects_a_run_above_max_run():
    v = one(CS, "Apple and pear trees grow very very very very very well.")
    assert (v["rule"], v["figure"]) == ("repeats", 5.0)
    assert one(CS, "Apple and pear trees grow very very very very well.")["passed"]  # run of 4
    assert one(CS, "Apple and pear trees grow very very very very very well.", repeats={"max_run": 5})["passed"]


# -- script ---------------------------------------------------------------------------------------
def test_script_cyrillic_where_latin_is_expected_fails():
    v = one(CS, "Яблони и груши растут в саду за домом.")
    assert (v["rule"], v["figure"]) == ("script.tgt", 0.0)
    v = one("Яблони и груши растут в саду за домом.", EN)
    assert v["rule"] == "script.src"


def test_script_allows_a_minority_of_foreign_letters():
    v = one("Москва и Kremlin стали символами города.", "Moscow and the Kremlin became symbols of the city.",
            "ru", "en")
    assert v["passed"] and 0.5 < v["script.src"] < 1.0


def test_script_serbian_in_either_alphabet_and_unknown_languages():
    assert one("Jučer je u gradu padala jaka kiša.", EN, "sr", "en")["script.src"] == 1.0
    assert one("Јуче је у граду падала јака киша.", EN, "sr", "en")["script.src"] == 1.0
    v = one("Aldric ven tora", "Borish kal mira", "xa", "xb")  # an invented pair: not judged
    assert math.isnan(v["script.src"]) and math.isnan(v["langid.tgt"])


def test_script_text_without_letters_is_not_contradicted():
    assert one("123 456 789", "123 456 789")["script.tgt"] == 1.0


# -- language identification ------------------------------------------------------------------------
def test_langid_catches_a_wrong_language_in_the_same_script():
    v = one(CS, "Im Garten hinter dem Haus wachsen Apfel- und Birnbäume.")
    assert v["rule"] == "langid.tgt" and v["figure"] < 0.1
    v = one("Apple and pear trees grow in the garden behind the house.", EN)  # source not Czech
    assert v["rule"] in ("copies", "langid.src")
    v = one("Im Garten hinter dem Haus wachsen Apfel- und Birnbäume.", EN)
    assert v["rule"] == "langid.src"


def test_langid_does_not_judge_short_sides():
    v = one(CS, "Das ist gut so.")  # 15 chars < min_chars 20: no verdict
    assert math.isnan(v["langid.tgt"])
    v = one(CS, "Das ist gut so.", langid={"min_chars": 0})
    assert v["rule"] == "langid.tgt"


def test_langid_equivalent_languages_share_their_probability():
    hr = "Jučer navečer u našem gradu padala je jaka kiša."
    grouped = one(hr, "Heavy rain fell in our town last night.", "hr", "en", langid={"min_prob": 0.2})
    assert grouped["passed"]
    alone = one(hr, "Heavy rain fell in our town last night.", "hr", "en",
                langid={"min_prob": 0.2, "equivalent": []})
    assert alone["rule"] == "langid.src" and alone["figure"] < grouped["langid.src"]


def test_langid_reads_all_caps_text():
    v = one(CS, "APPLE AND PEAR TREES GROW IN THE GARDEN BEHIND THE HOUSE.")
    assert v["passed"] and v["langid.tgt"] > 0.9


# -- length ratio -----------------------------------------------------------------------------------
def test_ratio_rejects_a_target_far_longer_than_its_source():
    v = one("Jabloně rostou na zahradě.",
            "Apple trees grow in the garden, and every autumn the whole family picks the fruit together.")
    assert v["rule"] == "ratio.chars" and v["figure"] > 2.0


def test_ratio_smoothing_spares_short_pairs():
    pair = ("Ano, je to.", "Yes, it is, it really is.")  # 11 and 25 chars: 2.27, smoothed 1.88
    v = one(*pair)
    assert v["passed"] and v["ratio.chars"] == pytest.approx(30 / 16)
    assert one(*pair, ratio={"smoothing_chars": 0})["rule"] == "ratio.chars"


def test_ratio_words_and_the_mixed_dense_script_exemption():
    v = one("Jabloně rostou tady a tam.", " ".join(["apple trees grow here and there"] * 3),
            ratio={"max_chars": 10})  # 5 and 18 words: (18 + 1) / (5 + 1) > 3
    assert (v["rule"], v["figure"]) == ("ratio.words", pytest.approx(19 / 6))
    v = one("우리는 주말마다 가족과 함께 산에 올라갑니다.", "Every weekend we climb the mountain with our family.", "ko", "en")
    assert math.isnan(v["ratio.chars"]) and not math.isnan(v["ratio.words"])


# -- the entry point ---------------------------------------------------------------------------------
def test_one_verdict_per_row_in_input_order_with_every_figure():
    pairs = [(CS, EN), (CS, CS), ("Jabloně", "Apple")]
    out = judge(pairs)
    assert list(out.columns) == ["example_id", "passed", "rule", "figure", *CHECK_NAMES]
    assert out["example_id"].tolist() == ["e0", "e1", "e2"]
    assert out["passed"].tolist() == [True, False, False]
    assert out["rule"].isna().tolist() == [True, False, False]
    assert out["rule"].tolist()[1:] == ["copies", "length.min_words"]
    assert math.isnan(out["figure"][0]) and out["figure"][1] == out["copies"][1]
    assert out["passed"].dtype == bool


def test_the_first_failing_check_is_reported():
    # a copy of a fragment: length comes before copies in the order
    v = one("Dobrý den", "Dobrý den")
    assert v["rule"] == "length.min_words" and v["copies"] == 1.0


def test_deterministic_and_row_independent():
    pairs = [(CS, EN), (CS, "Im Garten hinter dem Haus wachsen Apfel- und Birnbäume."), ("a b", "c d")]
    a, b = judge(pairs), judge(pairs[::-1])
    pd.testing.assert_frame_equal(a.drop(columns="example_id"), b[::-1].reset_index(drop=True).drop(columns="example_id"))


def test_disabled_prefilter_passes_everything_and_measures_nothing():
    out = judge([(CS, CS), ("", "x")], enabled=False)
    assert out["passed"].all() and out["rule"].isna().all()
    assert np.isnan(out[list(CHECK_NAMES)].to_numpy()).all()


def test_a_disabled_rule_neither_measures_nor_rejects():
    v = one(CS, CS, copies={"enabled": False}, langid={"enabled": False})
    assert math.isnan(v["copies"]) and math.isnan(v["langid.tgt"])
    assert v["passed"]


def test_empty_input_and_missing_columns():
    out = prefilter_rows(pd.DataFrame({"example_id": [], "src": [], "tgt": []}), PrefilterConfig(), "cs", "en")
    assert len(out) == 0 and list(out.columns)[:4] == ["example_id", "passed", "rule", "figure"]
    with pytest.raises(ValueError, match=r"missing column\(s\) \['tgt'\]"):
        prefilter_rows(pd.DataFrame({"example_id": ["a"], "src": ["x"]}), PrefilterConfig(), "cs", "en")


def test_rule_counts_in_check_order():
    out = judge([(CS, CS), ("a b", "c d"), (CS, EN), ("x y", "z w")])
    assert rule_counts(out).to_dict() == {"length.min_words": 2, "copies": 1}


def test_signature_follows_config_and_pair():
    base = prefilter_signature(PrefilterConfig(), "cs", "en")
    assert base == prefilter_signature(PrefilterConfig(), "cs", "en")
    assert base != prefilter_signature(PrefilterConfig.model_validate({"ratio": {"max_chars": 2.5}}), "cs", "en")
    assert base != prefilter_signature(PrefilterConfig(), "de", "en")
