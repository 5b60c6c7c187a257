"""Why a candidate scored as it did: the seeds it helps and hurts most.

I(z, s) < 0 means training on z lowers seed s's loss (helps); the most negative entries of
z's row in the candidate x seed matrix are the seeds it helps most, the most positive the
seeds it hurts most.  With seed batches (influence.seed_set.batch_size > 1) a "seed" is a group
whose id joins its members' ids with "+"; the text shown is its first member's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SeedEffect:
    seed_id: str
    influence: float
    src: str | None
    tgt: str | None


@dataclass
class Explanation:
    example_id: str
    src: str
    tgt: str
    label: str | None
    helped_fraction: float
    mean_influence: float
    n_seeds: int
    helps: list[SeedEffect] = field(default_factory=list)  # most negative first
    hurts: list[SeedEffect] = field(default_factory=list)  # most positive first

    def render(self) -> str:
        lines = [
            f"candidate {self.example_id}" + (f" (label: {self.label})" if self.label else ""),
            f"  src: {self.src}", f"  tgt: {self.tgt}",
            f"  helps {self.helped_fraction:.1%} of {self.n_seeds} seeds; mean influence {self.mean_influence:.4g}",
        ]
        for title, effects in (("helps most", self.helps), ("hurts most", self.hurts)):
            lines.append(f"  {title}:")
            if not effects:
                lines.append("    (none)")
            for e in effects:
                lines.append(f"    {e.influence:+.4g}  {e.seed_id}: {e.src!r} -> {e.tgt!r}")
        return "\n".join(lines)


def _matrix_row(matrix_path: str, example_id: str) -> tuple[np.ndarray, list[str] | None]:
    import pyarrow.parquet as pq

    t = pq.read_table(matrix_path, columns=["example_id", "scores"], filters=[("example_id", "=", example_id)])
    if len(t) == 0:
        raise ValueError(f"candidate {example_id!r} is not in the score matrix {matrix_path}")
    md = pq.read_schema(matrix_path).metadata or {}
    seeds = json.loads(md[b"gdig"]).get("seed_ids") if b"gdig" in md else None
    return np.asarray(t.column("scores")[0].as_py(), dtype=np.float64), seeds


def explain(store, scoring_id: str, example_id: str, k: int = 5) -> Explanation:
    """The k seeds candidate `example_id` helps most (I < 0) and hurts most (I > 0)."""
    sc = store.get_scoring(scoring_id)
    if sc is None:
        raise ValueError(f"no scoring {scoring_id!r} in {store.path}")
    if not sc.get("matrix_path"):
        raise ValueError(f"scoring {scoring_id!r} has no candidate x seed matrix")
    infl = store.influence(scoring_id)
    hit = infl[infl["example_id"] == example_id]
    if len(hit) == 0:
        raise ValueError(f"candidate {example_id!r} is not in scoring {scoring_id!r}")
    row, seeds = _matrix_row(sc["matrix_path"], example_id)
    seeds = (sc.get("meta") or {}).get("seed_ids") or seeds or [f"seed#{i}" for i in range(len(row))]
    if len(seeds) != len(row):
        raise ValueError(f"score matrix row has {len(row)} entries but the scoring names {len(seeds)} seeds")
    first_member = [s.split("+")[0] for s in seeds]
    text = store.examples_by_id(first_member).set_index("example_id")

    def effect(i: int) -> SeedEffect:
        m = first_member[i]
        src, tgt = (text.loc[m, "src"], text.loc[m, "tgt"]) if m in text.index else (None, None)
        return SeedEffect(seeds[i], float(row[i]), src, tgt)

    order = np.argsort(row, kind="stable")  # ascending: most helpful first
    helps = [effect(i) for i in order[:k] if row[i] < 0]
    hurts = [effect(i) for i in order[::-1][:k] if row[i] > 0]
    ex = store.examples_by_id([example_id]).iloc[0]
    h = hit.iloc[0]
    label = h["label"] if isinstance(h["label"], str) else None
    return Explanation(example_id, ex["src"], ex["tgt"], label, float(h["helped_fraction"]), float(h["mean"]),
                       len(row), helps, hurts)


def latest_scoring(store) -> str:
    """The most recently merged scoring in the store."""
    t = store.table("scorings")
    if len(t) == 0:
        raise ValueError(f"{store.path}: no scoring yet; run `gdig select` first")
    return str(t.sort_values("created_at")["scoring_id"].iloc[-1])
