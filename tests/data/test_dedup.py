"""Exact-duplicate decisions (gdig.data.dedup.row_fates) on constructed batches."""

from __future__ import annotations

import pandas as pd

from gdig.data.dedup import NEW, REPEATED, STORED, row_fates


def fates(ids, stored=()):
    f = row_fates(ids, stored)
    return f.labels(), f.n_new, f.n_duplicates


def test_empty_batch():
    assert fates([]) == ([], 0, 0)
    assert fates([], {"a"}) == ([], 0, 0)


def test_distinct_ids_into_an_empty_dataset_are_all_new():
    assert fates(["a", "b", "c"]) == ([NEW, NEW, NEW], 3, 0)


def test_repeats_within_the_batch_keep_the_first():
    assert fates(["a", "b", "a", "c", "b", "a"]) == (
        [NEW, NEW, REPEATED, NEW, REPEATED, REPEATED], 3, 3)


def test_ids_the_dataset_holds_are_stored():
    assert fates(["a", "b", "c"], {"b", "z"}) == ([NEW, STORED, NEW], 2, 1)
    assert fates(["a", "b"], {"a", "b"}) == ([STORED, STORED], 0, 2)


def test_stored_wins_over_repeated():
    # "b" is held already: both its rows are stored, none is the batch's first "b"
    assert fates(["b", "a", "b", "a"], ["b"]) == ([STORED, NEW, STORED, REPEATED], 1, 3)


def test_masks_are_positional_disjoint_and_cover_the_batch():
    ids = pd.Series(["x", "y", "x", "w"], index=[10, 3, 7, 0])  # index order is not batch order
    f = row_fates(ids, {"w"})
    assert f.new.tolist() == [True, True, False, False]
    assert f.repeated.tolist() == [False, False, True, False]
    assert f.stored.tolist() == [False, False, False, True]
    assert (f.new.astype(int) + f.repeated + f.stored).tolist() == [1, 1, 1, 1]
    assert isinstance(f.n_new, int) and isinstance(f.n_duplicates, int)
