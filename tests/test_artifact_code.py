"""Files on disk follow the code: an artifact is named by the code key of the stages that write it
(gdig.graph.code_keys: the source of every module they reach, library versions included), so an
edit of the scoring code gives a new influence table on the rerun, and unchanged code a rerun
that writes no new file and changes none."""

from __future__ import annotations

import hashlib

import numpy as np
from file_bytes import content
from tiny_workspace import demo_config, demo_model_dir  # noqa: F401  (fixture)

from gdig import graph
from gdig.config import parse_config
from gdig.store import Store


def _files(root) -> dict[str, str]:
    """Every artifact's content hash (seals aside: a seal holds the raw bytes' hash)."""
    return {str(p.relative_to(root)): hashlib.sha256(content(p)).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "reports" not in p.parts and p.suffix != ".sum"}


def _influence(db, scoring_id):
    with Store(db, read_only=True) as store:
        return store.influence(scoring_id).sort_values("position").reset_index(drop=True)


def test_edited_scoring_code_renews_the_scores_and_nothing_before_them(tmp_path, demo_model_dir, monkeypatch):  # noqa: F811
    import gdig.influence.scoring as scoring
    import gdig.reach
    from gdig.pipeline import select_pipeline

    data = demo_config(tmp_path, demo_model_dir)
    data["selection"]["strategies"] = ["gdig", "random"]
    cfg, art, db = parse_config(data), tmp_path / "artifacts", data["workspace"]["db"]
    first = select_pipeline(cfg, progress=False)
    before, table = _files(art), _influence(db, first.scoring_id)

    again = select_pipeline(cfg, progress=False)  # unchanged code: every file reused as it is
    assert again.scoring_id == first.scoring_id and _files(art) == before
    assert _influence(db, again.scoring_id).equals(table)

    # an edit of gdig/influence/scoring.py: its source hash changes, and so do its scores (doubled)
    real_hash, real_score = gdig.reach.source_hash, scoring.Scorer.score_encoded
    monkeypatch.setattr(gdig.reach, "source_hash", lambda m: "edited" if m == "gdig.influence.scoring" else real_hash(m))

    def doubled(self, *args, **kwargs):
        res = real_score(self, *args, **kwargs)
        res.scores = res.scores * 2
        return res

    monkeypatch.setattr(scoring.Scorer, "score_encoded", doubled)
    edited = select_pipeline(cfg, progress=False)
    assert edited.scoring_id != first.scoring_id
    new = _influence(db, edited.scoring_id)
    assert new["example_id"].tolist() == table["example_id"].tolist()
    assert np.allclose(new["mean"], 2 * table["mean"]) and not np.allclose(new["mean"], table["mean"])
    after = _files(art)
    kept = {k: v for k, v in before.items() if k.startswith(("curvature/", "seeds/", "checkpoints/"))}
    assert kept and {k: after[k] for k in kept} == kept  # the curvature, seed products and pool model stay
    shards = {k for k in after if k.startswith("scores/shards/") and k.endswith(".parquet")} - set(before)
    assert len(shards) == 2  # 120 rows / shard_size 80: both shards scored again, under new names


def test_a_code_key_moves_with_the_code_of_its_kind_and_with_library_versions(monkeypatch):
    import gdig.reach

    base = graph.code_keys()
    assert set(base) == set(graph.ARTIFACT_CODE) and all(len(k) == 12 for k in base.values())
    real_hash, real_versions = gdig.reach.source_hash, gdig.reach.library_versions
    monkeypatch.setattr(gdig.reach, "source_hash",
                        lambda m: "edited" if m == "gdig.influence.curvature" else real_hash(m))
    moved = {k for k, v in graph.code_keys().items() if v != base[k]}
    assert moved == {"curvature", "seed-products"}  # the products invert the curvature; scoring reads neither
    monkeypatch.setattr(gdig.reach, "source_hash", real_hash)
    monkeypatch.setattr(gdig.reach, "library_versions", lambda: {**real_versions(), "torch": "99.0"})
    assert all(v != base[k] for k, v in graph.code_keys().items())


def test_a_damaged_or_unsealed_artifact_is_rebuilt_never_reused(tmp_path, demo_model_dir):  # noqa: F811
    from gdig.pipeline import select_pipeline
    from gdig.workspace import intact, seal_path

    data = demo_config(tmp_path, demo_model_dir)
    data["selection"]["strategies"] = ["gdig"]
    cfg, art, db = parse_config(data), tmp_path / "artifacts", data["workspace"]["db"]
    first = select_pipeline(cfg, progress=False)
    before, table = _files(art), _influence(db, first.scoring_id)
    partial = sorted((art / "curvature" / "partials").glob("*.safetensors"))[0]
    shard = sorted((art / "scores" / "shards").glob("*.parquet"))[0]
    products = sorted((art / "seeds").glob("*.safetensors"))[0]
    partial.write_bytes(partial.read_bytes()[:100])  # truncated
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 1  # one bit flipped
    shard.write_bytes(bytes(raw))
    seal_path(products).unlink()  # written, killed before its seal
    assert not any(intact(p) for p in (partial, shard, products))
    again = select_pipeline(cfg, progress=False)
    assert all(intact(p) for p in (partial, shard, products))
    assert _files(art) == before and again.scoring_id == first.scoring_id  # rebuilt to the same bytes
    assert _influence(db, again.scoring_id).equals(table)
