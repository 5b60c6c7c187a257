"""The noise types the loss cannot see: constructed inputs, exact expectations."""

from __future__ import annotations

import pandas as pd
import pytest

from gdig.data.noise import (
    COPIES_PER_PAIR, HIDDEN_NOISE_TYPES, drop_clause, inject_noise, most_similar, split_clauses, trivial_edit,
)


def _corpus(n: int) -> pd.DataFrame:
    return pd.DataFrame({"src": [f"zdroj věta číslo {i}, první část, druhá část, konec." for i in range(n)],
                         "tgt": [f"Source sentence number {i}, first part, second part, end." for i in range(n)]})


def test_split_and_drop_clause():
    text = "When it rained, the river rose, and the town flooded."
    assert split_clauses(text) == ["When it rained,", " the river rose,", " and the town flooded."]
    assert "".join(split_clauses("下雨了，河水上涨；镇子被淹了。")) == "下雨了，河水上涨；镇子被淹了。"
    assert drop_clause(text, 1) == "When it rained, and the town flooded."
    assert drop_clause("下雨了，河水上涨；镇子被淹了。", 1) == "下雨了，镇子被淹了。"
    for k in (0, 2):  # neither the first nor the last clause
        with pytest.raises(ValueError, match="only an inner clause"):
            drop_clause(text, k)


def test_trivial_edit_each_kind():
    t = "The 3 cats slept."
    assert trivial_edit(t, 1) == "the 3 cats slept."  # case
    assert trivial_edit(t, 2) == "The 3 cats slept"  # final punctuation removed
    assert trivial_edit(t, 4) == "The 3 cats slept!"  # replaced
    assert trivial_edit(t, 6) == "The 4 cats slept."  # the first number raised by 1
    assert trivial_edit(t, 9) == "the 4 cats slept"  # all three
    assert trivial_edit("No number here.", 6) == "No number here. 1"
    assert len({trivial_edit(t, v) for v in range(1, 30)} | {t}) == 30  # every edit differs


def test_most_similar_pairs_on_constructed_rows():
    src = ["the red house by the lake", "the red house near the lake", "quantum field theory", "quantum field theories"]
    tgt = ["das rote Haus am See", "das rote Haus nahe dem See", "Quantenfeldtheorie", "Quantenfeldtheorien"]
    assert most_similar(src, tgt).tolist() == [1, 0, 3, 2]
    # an identical target is never the one taken (the row would not change)
    assert most_similar(["a b c", "a b c", "x y z"], ["same", "same", "other"]).tolist() == [2, 2, 0]


def test_inject_hidden_types_exact_rows():
    df = _corpus(40)
    mt = {i: f"Machine output {i}, first part, end." for i in range(10)}
    mt[0] = df["tgt"][0]  # a translation equal to the reference cannot make the row noisy
    out = inject_noise(df, 0.4, seed=1, types=HIDDEN_NOISE_TYPES, machine_translations=mt)
    counts = out["label"].value_counts().to_dict()
    assert counts == {"clean": 24, "machine_translated": 4, "near_duplicate": 4, "hard_misaligned": 4, "omission": 4}
    for i, r in out.iterrows():
        orig_src, orig_tgt = df["src"][i], df["tgt"][i]
        if r["label"] == "machine_translated":
            assert 1 <= i < 10 and r["src"] == orig_src and r["tgt"] == mt[i]
        elif r["label"] == "hard_misaligned":
            assert r["src"] == orig_src and r["tgt"] in set(df["tgt"]) - {orig_tgt}
        elif r["label"] == "omission":
            parts = split_clauses(orig_tgt)
            assert r["src"] == orig_src and r["tgt"] in {drop_clause(orig_tgt, k) for k in range(1, len(parts) - 1)}
    dups = out[out["label"] == "near_duplicate"]
    # copies of ONE clean pair (4 < COPIES_PER_PAIR), each its edit 1, 2, 3, 4 on both sides, all distinct
    assert COPIES_PER_PAIR > 4
    donors = [j for j in range(40) if out["label"][j] == "clean"
              and {trivial_edit(df["tgt"][j], v) for v in range(1, 5)} == set(dups["tgt"])]
    assert len(donors) == 1
    j = donors[0]
    assert (out["src"][j], out["tgt"][j]) == (df["src"][j], df["tgt"][j])  # the pair copied stays clean
    assert set(zip(dups["src"], dups["tgt"])) == {(trivial_edit(df["src"][j], v), trivial_edit(df["tgt"][j], v))
                                                  for v in range(1, 5)}
    assert not out.duplicated(["src", "tgt"]).any()  # exact deduplication finds nothing


def test_near_duplicates_spread_over_a_few_pairs():
    name = lambda i: "".join("abcdefghij"[int(d)] for d in str(i))  # noqa: E731 (no digits: one edit, one pair)
    df = pd.DataFrame({"src": [f"Věta {name(i)}, konec." for i in range(200)],
                       "tgt": [f"Sentence {name(i)}, end." for i in range(200)]})
    out = inject_noise(df, 0.2, seed=0, types=["near_duplicate"])
    dups = out[out["label"] == "near_duplicate"]
    assert len(dups) == 40
    # 40 copies, COPIES_PER_PAIR per pair: 4 pairs copied, each an edit of a row left clean
    copied = {j for s in dups["src"] for j in range(200) for v in range(1, 30) if trivial_edit(df["src"][j], v) == s
              and out["label"][j] == "clean" and out["src"][j] == df["src"][j]}
    assert len(copied) == 40 // COPIES_PER_PAIR


def test_machine_translated_needs_translations():
    with pytest.raises(ValueError, match="needs machine_translations"):
        inject_noise(_corpus(10), 0.2, types=["machine_translated"])
    with pytest.raises(ValueError, match="only 1 of 2 rows"):
        inject_noise(_corpus(10), 0.2, types=["machine_translated"], machine_translations={3: "Other text."})


def test_a_copy_of_the_source_is_never_labelled_machine_translated():
    df = _corpus(10)
    copies = {i: df["src"][i].upper() + " " for i in range(10)}  # the source again, case and spacing aside
    with pytest.raises(ValueError, match="only 0 of 2 rows"):
        inject_noise(df, 0.2, types=["machine_translated"], machine_translations=copies)
    mt = {**copies, 4: "A wholly different rendering of it."}
    with pytest.raises(ValueError, match="only 1 of 2 rows"):
        inject_noise(df, 0.2, types=["machine_translated"], machine_translations=mt)


def test_own_translation_is_its_own_type_beside_machine_translated():
    df = _corpus(20)
    mt = {i: f"System output number {i}." for i in range(20)}
    own = {i: f"The scorer's own rendering {i}." for i in range(20)}
    out = inject_noise(df, 0.2, seed=2, types=["machine_translated", "own_translation"], machine_translations=mt,
                       own_translations=own)
    assert out["label"].value_counts().to_dict() == {"clean": 16, "machine_translated": 2, "own_translation": 2}
    for i, r in out.iterrows():
        expected = {"machine_translated": mt, "own_translation": own}.get(r["label"])
        assert r["tgt"] == (expected[i] if expected else df["tgt"][i])
    with pytest.raises(ValueError, match="needs own_translations"):
        inject_noise(df, 0.2, types=["own_translation"])
