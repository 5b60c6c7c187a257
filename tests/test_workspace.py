"""The workspace object names artifacts and results exactly as the scattered helpers it
replaced did: the old formulas, written out here, give the same strings byte for byte (existing
workspaces, caches and exports depend on them)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from gdig.config import parse_config
from gdig.workspace import Workspace, file_digest, ids_hash, json_hash, sha


def old_sha(*parts: str) -> str:  # gdig/influence/compute.py _sha
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def old_ids_hash(ids) -> str:  # gdig/influence/compute.py _ids_hash
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:16]


def old_section_hash(cfg, *sections) -> str:  # gdig/config.py GdigConfig.section_hash
    dump = cfg.model_dump(mode="json")
    return hashlib.sha256(json.dumps({s: dump[s] for s in sections}, sort_keys=True).encode()).hexdigest()[:16]


def _cfg(tmp_path):
    return parse_config({"workspace": {"db": str(tmp_path / "w.duckdb"), "dir": str(tmp_path / "art")},
                         "languages": {"src": "de", "tgt": "en"}, "model": {"name_or_path": "sshleifer/tiny-gpt2"}})


def test_ids_and_paths_equal_the_old_formulas(tmp_path):
    cfg = _cfg(tmp_path)
    ws, d = Workspace(cfg), Path(cfg.workspace.dir)
    ids = ["a1", "b2", "c3"]
    ip = old_section_hash(cfg, "influence", "prompt")
    assert cfg.section_hash("influence", "prompt") == ws.settings_hash("influence", "prompt") == ip
    assert ws.curvature_id("ck", ids) == old_sha("ck", old_ids_hash(ids), ip)
    assert ws.products_id("cv", "ck", ids) == old_sha("cv", "ck", old_ids_hash(ids), ip)
    assert ws.scoring_id("cv", "None", "pool", ids) == old_sha("cv", "None", "pool", old_ids_hash(ids), ip)
    assert ws.curvature("x") == d / "curvature" / "x.safetensors"
    assert ws.curvature_partial("x", "eigen", 0, 4) == d / "curvature" / "partials" / "x-eigen-0-4.safetensors"
    assert ws.curvature_bases("x") == d / "curvature" / "partials" / "x-bases.safetensors"
    assert ws.seed_products("p") == d / "seeds" / "p.safetensors"
    assert ws.score_matrix("s") == d / "scores" / "s.matrix.parquet"
    scoring = old_section_hash(cfg, "influence")[:4] + old_section_hash(cfg, "prompt")[:4]
    assert ws.score_shard("cv", "/x/seeds/p.safetensors", 0, 32) == d / "scores" / "shards" / f"cv-p-{scoring}-0-32.parquet"
    assert ws.checkpoint("pool", "f") == d / "checkpoints" / "pool-f"
    assert ws.export("gdig-16-abc") == d / "selections" / "gdig-16-abc.jsonl"
    assert (ws.reports, ws.prefect_results, ws.prefect_runs) == (d / "reports", d / "prefect-results", d / "prefect-runs")


def test_content_hashes_equal_the_old_formulas(tmp_path):
    from gdig.data.ingest import example_id
    from gdig.modeling import checkpoint_hash
    from gdig.selection.outputs import selection_id

    cfg = _cfg(tmp_path)
    blob = "\x1f".join(("de", "en", "Grüße", "greetings"))
    assert example_id("de", "en", "Grüße", "greetings") == hashlib.sha256(blob.encode("utf-8")).hexdigest()[:20]
    key = {"scoring_id": "s", "strategy": "random", "budget": 16, "seed": cfg.selection.seed}
    assert selection_id("s", "random", 16, cfg.selection) == "random-16-" + hashlib.sha256(
        json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    assert checkpoint_hash("org/no-such-model", None) == hashlib.sha256(b"hub:org/no-such-model:None").hexdigest()[:16]
    parts = {"base": "b", "steps": 3, "path": Path("/x")}
    assert json_hash(parts) == hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert ids_hash(["a", "b"]) == hashlib.sha256(b"a\nb").hexdigest()[:32]
    assert sha(b"x", None) == hashlib.sha256(b"x").hexdigest()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "w.bin").write_bytes(b"weights")
    h = hashlib.sha256()
    h.update(b"w.bin")
    h.update(b"weights")
    assert file_digest(tmp_path / "m") == h.hexdigest()[:32]


def test_an_atomic_write_is_whole_and_sealed_or_absent(tmp_path):
    from gdig.workspace import atomic_file, intact, seal_path

    path = tmp_path / "a" / "x.bin"
    with atomic_file(path) as tmp:
        tmp.write_bytes(b"0123456789")
    assert path.read_bytes() == b"0123456789" and intact(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.bin", "x.bin.sum"]  # no temporary left
    with pytest.raises(RuntimeError):
        with atomic_file(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert path.read_bytes() == b"0123456789" and intact(path)  # the old file, still sealed
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.bin", "x.bin.sum"]
    path.write_bytes(b"0123456788")  # same size, one byte changed
    assert not intact(path)
    path.write_bytes(b"01234")  # truncated
    assert not intact(path)
    path.write_bytes(b"0123456789")
    assert intact(path)
    seal_path(path).unlink()  # renamed but killed before its seal: not trusted
    assert not intact(path) and not intact(tmp_path / "missing")


def test_a_full_disk_is_one_clear_bad_input_whatever_library_raised_it(tmp_path):
    """ENOSPC as an OSError, or inside a library's own error type (safetensors, DuckDB): a
    DiskFull (BadInput: never retried, exit 2) naming the file being written; other errors are
    not one; a write that hits it leaves neither the file nor its temporary."""
    import errno

    from gdig.errors import BadInput, DiskFull, disk_full
    from gdig.workspace import atomic_file

    class LibraryError(Exception):  # safetensors' SafetensorError is a plain Exception
        pass

    raw = OSError(errno.ENOSPC, "No space left on device", "/ws/x.parquet")
    assert "writing /ws/x.parquet" in str(disk_full(raw))
    wrapped = LibraryError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert isinstance(disk_full(wrapped), DiskFull) and isinstance(disk_full(wrapped), BadInput)
    try:
        try:
            raise raw
        except OSError as inner:
            raise RuntimeError("scoring failed") from inner
    except RuntimeError as outer:
        assert disk_full(outer) is not None  # found down the cause chain
    assert disk_full(OSError(errno.EACCES, "Permission denied")) is None
    assert disk_full(ValueError("no space for a seed")) is None

    target = tmp_path / "curvature" / "f.safetensors"
    with pytest.raises(DiskFull, match=f"no space left on the device writing {target}: free space"):
        with atomic_file(target, "tensor") as tmp:
            tmp.write_bytes(b"partial")
            raise wrapped
    assert sorted(p.name for p in target.parent.iterdir()) == []


def test_a_stage_that_fills_the_disk_is_not_retried():
    import errno

    from gdig_flows.tasks.runtime import BadInputError, describe_failure, stage

    with pytest.raises(BadInputError) as info:
        with stage("score-shard"):
            raise OSError(errno.ENOSPC, "No space left on device", "/ws/scores/s.parquet")
    bad, line = describe_failure(info.value)
    assert bad and line.startswith("no space left on the device writing /ws/scores/s.parquet: free space there")
