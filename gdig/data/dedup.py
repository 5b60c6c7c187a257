"""Exact-duplicate decisions for a batch of rows going into one dataset.

Pure: the store reads the ids the dataset already holds, this decides the fate of each
incoming row, and the store writes the new ones.  An example is kept once per dataset: the
first row of the batch with a new id is added; a later row with that id repeats it; a row
whose id the dataset already holds is stored (so every one of its rows counts as a duplicate).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

NEW, REPEATED, STORED = "new", "repeated", "stored"


@dataclass(frozen=True, eq=False)  # eq=False: numpy masks have no truth value to compare by
class RowFates:
    """One boolean mask per fate, aligned with the batch; each row has exactly one fate."""

    new: np.ndarray
    repeated: np.ndarray  # an earlier row of the batch has the same id
    stored: np.ndarray  # the dataset already holds the id

    @property
    def n_new(self) -> int:
        return int(self.new.sum())

    @property
    def n_duplicates(self) -> int:
        """Rows not added: what the dataset's n_duplicates counts."""
        return int(self.repeated.sum() + self.stored.sum())

    def labels(self) -> list[str]:
        """The fate of each row by name, in batch order (for reading and tests)."""
        return [STORED if s else REPEATED if r else NEW for s, r in zip(self.stored, self.repeated)]


def row_fates(example_ids: Sequence[str], stored_ids: Collection[str]) -> RowFates:
    """Decide, for each id of the batch in order, whether its row is new, repeats an earlier
    row of the batch, or is already stored.  Stored wins over repeated: the batch never adds
    an id the dataset holds, however often it occurs."""
    ids = pd.Series(list(example_ids), dtype=object)
    stored = ids.isin(set(stored_ids)).to_numpy(dtype=bool)
    repeated = ids.duplicated(keep="first").to_numpy(dtype=bool) & ~stored
    return RowFates(new=~(stored | repeated), repeated=repeated, stored=stored)
