"""merge-scores and the reads after it on a pool that does not fit a small memory limit.

A child process with a capped address space (RLIMIT_AS) merges score shards of a synthetic
pool into the store and reads the sketches and aggregates back, as clustering and the summary
do.  The cap leaves CAP_MB above the child's own footprint once everything is imported.  The
merge that held the whole pool (its sketches as Python lists) ran out of it at this size (and
needed between 700 and 2,000 MB at 120,000 rows); the streaming merge holds one shard at a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

N_ROWS, SHARD, N_SEEDS, SKETCH = 300_000, 10_000, 64, 64
CAP_MB = 1000  # headroom above the footprint after imports
ROOT = Path(__file__).resolve().parents[2]  # the child imports this checkout's gdig


def _write_shards(out, n_rows: int, shard: int, n_seeds: int, sketch: int) -> list[str]:
    rng = np.random.default_rng(0)
    f32 = pa.list_(pa.float32())
    paths = []
    for start in range(0, n_rows, shard):
        pos = np.arange(start, min(start + shard, n_rows))
        n = len(pos)
        scores = rng.standard_normal((n, n_seeds)).astype(np.float32)
        sk = rng.standard_normal((n, sketch)).astype(np.float32)
        table = pa.table({
            "example_id": pa.array([f"ex{p:09d}" for p in pos], pa.string()),
            "position": pa.array(pos, pa.int64()),
            "loss": rng.random(n), "closing_loss": rng.random(n), "grad_norm": rng.random(n),
            "helped_fraction": (scores < 0).mean(1).astype(np.float64), "mean": scores.mean(1).astype(np.float64),
            "min": scores.min(1).astype(np.float64), "max": scores.max(1).astype(np.float64),
            "scores": pa.FixedSizeListArray.from_arrays(scores.ravel(), n_seeds).cast(f32),
            "sketch": pa.FixedSizeListArray.from_arrays(sk.ravel(), sketch).cast(f32),
        }).replace_schema_metadata({"gdig": json.dumps({"seed_ids": [f"s{i}" for i in range(n_seeds)], "skipped": []})})
        path = out / f"shard-{start}.parquet"
        pq.write_table(table, path)
        paths.append(str(path))
    return paths


CHILD = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from gdig.config import parse_config
    from gdig.influence.compute import merge_score_files, read_score_matrix
    from gdig.store import Store

    work, products, cap_mb, n_rows = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    paths = json.loads((work / "shards.json").read_text())
    cfg = parse_config({"workspace": {"db": str(work / "w.duckdb"), "dir": str(work / "art")},
                        "languages": {"src": "en", "tgt": "de"}, "model": {"name_or_path": "unused"}})
    with Store(cfg.workspace.db) as store:
        store.con.execute("SET threads = 1")
        pa.set_cpu_count(1)  # one arena per thread: fewer threads, a steadier address space
        # everything imported and opened: cap the address space this far above what is mapped now
        size_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize:"))
        cap = (size_kb // 1024 + cap_mb) * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        sid = merge_score_files(cfg, store, paths, "cv", products)
        ids, X = store.sketches(sid)
        infl = store.influence(sid)
        first = pq.read_table(paths[0])
        expect = np.stack(first.column("sketch").to_numpy(zero_copy_only=False)[:3])
        assert len(ids) == len(infl) == n_rows and X.shape == (n_rows, first.column("sketch")[0].values.__len__())
        assert ids[:2] == first.column("example_id").to_pylist()[:2] and np.array_equal(X[:3], expect)
        assert infl["position"].tolist() == list(range(n_rows))
        sc = store.get_scoring(sid)
        assert sc["n_candidates"] == n_rows
    print("merged", n_rows, "rows under", cap // 2**20, "MB of address space")
""")


def _products(path, n_seeds: int) -> str:
    import torch
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(path), metadata={
        "seed_ids": json.dumps([f"s{i}" for i in range(n_seeds)]),
        "meta": json.dumps({"products_id": "p1", "seed_dataset": "seed"})})
    return str(path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_merge_streams_a_pool_that_does_not_fit(tmp_path):
    paths = _write_shards(tmp_path, N_ROWS, SHARD, N_SEEDS, SKETCH)
    (tmp_path / "shards.json").write_text(json.dumps(paths))
    products = _products(tmp_path / "products.safetensors", N_SEEDS)
    proc = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), products, str(CAP_MB), str(N_ROWS)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"merged {N_ROWS} rows" in proc.stdout
    # the matrix file holds every row, in position order, bit for bit what the shards hold
    from gdig.influence.compute import read_score_matrix

    matrix = next((tmp_path / "art" / "scores").glob("*.matrix.parquet"))
    ids, seeds, mat = read_score_matrix(str(matrix))
    assert len(ids) == N_ROWS and seeds == [f"s{i}" for i in range(N_SEEDS)]
    last = pq.read_table(paths[-1])
    tail = np.stack(last.column("scores").to_numpy(zero_copy_only=False))
    assert mat[-len(tail):].tobytes() == tail.tobytes()
