"""Store-level stages of the influence engine (called by tasks/ and the CLI; no Prefect here).

    fit_curvature_stage  -> curvature_id   (factors: {dir}/curvature/{id}.safetensors)
    seed_products_stage  -> products path  ({dir}/seeds/{id}.safetensors)
    score_shard_stage    -> shard Parquet  (no store access: runs in worker processes)
    merge_scores_stage   -> scoring_id     (matrix: {dir}/scores/{id}.matrix.parquet + store tables)

Shards are half-open position ranges aligned to multiples of ``influence.scoring.shard_size``;
scoring buckets candidates by length only within such aligned blocks, so any set of shards,
merged, is bit-for-bit the unsharded result.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gdig.data.prompts import Encoded, collate, encode_examples, length_batches

SHARD_COLUMNS = ["example_id", "position", "loss", "helped_fraction", "mean", "min", "max", "scores", "sketch"]


def _sha(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _ids_hash(ids) -> str:
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:16]


def pool_rows(store, dataset: str = "pool") -> pd.DataFrame:
    """The dataset's examples in position order: example_id, position, src, tgt, src_lang, tgt_lang, label."""
    df = store.dataset_examples(dataset)
    return df[["example_id", "position", "src", "tgt", "src_lang", "tgt_lang", "label"]].reset_index(drop=True)


def shard_ranges(n_rows: int, shard_size: int) -> list[tuple[int, int]]:
    """Half-open position ranges [k·size, min((k+1)·size, n)): appending rows leaves full shards unchanged."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    return [(s, min(s + shard_size, n_rows)) for s in range(0, n_rows, shard_size)]


def _load(cfg, checkpoint_path: str, device: str | None):
    from gdig.modeling import load_model

    return load_model(checkpoint_path, dtype=cfg.model.dtype, device=device or cfg.model.device,
                      trust_remote_code=cfg.model.trust_remote_code)


ROW_COLUMNS = ("example_id", "position", "src", "tgt", "src_lang", "tgt_lang")


def _check_rows(rows: pd.DataFrame, what: str) -> None:
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"{what}: rows lack column(s) {missing}; expected those of pool_rows()")


def _encode(cfg, tok, rows: pd.DataFrame, what: str) -> tuple[list[Encoded], pd.DataFrame, list[str]]:
    """Encoded rows (skipped ones removed, with a warning naming them), kept rows, skipped ids."""
    _check_rows(rows, what)
    tuples = list(zip(rows["src"], rows["tgt"], rows["src_lang"], rows["tgt_lang"]))
    enc, report = encode_examples(tok, tuples, cfg.prompt.template, cfg.prompt.max_length, cfg.prompt.too_long)
    keep = [i for i, e in enumerate(enc) if e is not None]
    skipped = [str(rows["example_id"].iloc[i]) for i, e in enumerate(enc) if e is None]
    if skipped:
        warnings.warn(f"{what}: {len(skipped)} example(s) longer than prompt.max_length skipped "
                      f"(prompt.too_long=skip): {skipped[:5]}", stacklevel=3)
    return [enc[i] for i in keep], rows.iloc[keep].reset_index(drop=True), skipped


def _modules(cfg, model):
    from gdig.influence.modules import select_from_config

    return select_from_config(model, cfg.influence.modules)


# -- curvature ---------------------------------------------------------------------------------------

def curvature_rows(cfg, store, dataset: str = "pool") -> pd.DataFrame:
    """The rows the curvature is fitted on: the whole dataset or a seeded sample (position order)."""
    rows = pool_rows(store, dataset)
    n = cfg.influence.curvature.sample
    if n is not None and n < len(rows):
        rng = np.random.default_rng(cfg.influence.curvature.sample_seed)
        rows = rows.iloc[np.sort(rng.choice(len(rows), size=n, replace=False))].reset_index(drop=True)
    return rows


def fit_curvature_stage(cfg, store, checkpoint_path: str, checkpoint_id: str, progress: bool = True,
                        dataset: str = "pool", device: str | None = None) -> str:
    from gdig.influence.curvature import fit_curvature

    rows = curvature_rows(cfg, store, dataset)
    if len(rows) == 0:
        raise ValueError(f"dataset {dataset!r} is empty: nothing to fit the curvature on")
    curvature_id = _sha(checkpoint_id, _ids_hash(rows["example_id"]), cfg.section_hash("influence", "prompt"))
    path = Path(cfg.workspace.dir) / "curvature" / f"{curvature_id}.safetensors"
    if store.get_curvature(curvature_id) is not None and path.exists():
        return curvature_id
    model, tok = _load(cfg, checkpoint_path, device)
    modules = _modules(cfg, model)
    enc, rows, skipped = _encode(cfg, tok, rows, f"curvature on {dataset!r}")
    c = cfg.influence.curvature
    plan = length_batches([len(e.input_ids) for e in enc], c.batch_size)
    curv = fit_curvature(
        model, modules, lambda: (collate([enc[i] for i in b], tok.pad_token_id) for b in plan),
        strategy=c.strategy, granularity=c.granularity, loss_reduction=cfg.influence.loss, fp64=c.fp64,
        progress=progress, n_batches=len(plan),
    )
    curv.meta.update({"checkpoint_id": checkpoint_id, "dataset": dataset, "examples_hash": _ids_hash(rows["example_id"]),
                      "skipped": skipped})
    curv.save(path)
    store.add_curvature(
        curvature_id, checkpoint_id=checkpoint_id, strategy=c.strategy, granularity=c.granularity,
        modules=curv.module_names, n_examples=curv.n_examples, n_tokens=curv.n_tokens, path=str(path),
        meta={"granularity": c.granularity, "strategy": c.strategy, "n_tokens": curv.n_tokens,
              "modules": curv.modules, "loss": cfg.influence.loss, "fp64": c.fp64, "dataset": dataset,
              "n_skipped": len(skipped), "sample": c.sample},
    )
    return curvature_id


# -- seed products ---------------------------------------------------------------------------------

def seed_products_stage(cfg, store, checkpoint_path: str, checkpoint_id: str, curvature_id: str,
                        progress: bool = True, seed_dataset: str = "seed", device: str | None = None) -> str:
    from gdig.influence.curvature import Curvature
    from gdig.influence.inverse import InverseHessian
    from gdig.influence.seeds import group_labels, seed_gradients, seed_products

    rec = store.get_curvature(curvature_id)
    if rec is None:
        raise ValueError(f"no curvature {curvature_id!r} in the store; run the curvature stage first")
    seeds = pool_rows(store, seed_dataset)
    if len(seeds) == 0:
        raise ValueError(f"seed dataset {seed_dataset!r} is empty")
    products_id = _sha(curvature_id, checkpoint_id, _ids_hash(seeds["example_id"]),
                       cfg.section_hash("influence", "prompt"))
    path = Path(cfg.workspace.dir) / "seeds" / f"{products_id}.safetensors"
    if path.exists():
        return str(path)
    curv = Curvature.load(rec["path"])
    model, tok = _load(cfg, checkpoint_path, device)
    modules = _modules(cfg, model)
    if [m.name for m in modules] != curv.module_names:
        raise ValueError(f"curvature {curvature_id} covers modules {curv.module_names}, "
                         f"the config selects {[m.name for m in modules]}")
    enc, seeds, skipped = _encode(cfg, tok, seeds, f"seed dataset {seed_dataset!r}")
    s = cfg.influence.seed
    grads = seed_gradients(model, modules, enc, pad_id=tok.pad_token_id, group_size=s.batch_size,
                           batch_size=cfg.influence.scoring.batch_size, loss_reduction=cfg.influence.loss,
                           progress=progress)
    inverse = InverseHessian(curv, cfg.influence.curvature.damping, cfg.influence.curvature.ekfac_damping)
    grads = {k: v.to(curv.factors[k].A.device) for k, v in grads.items()}
    ids = list(seeds["example_id"])
    products = seed_products(
        grads, inverse, modules, group_labels(ids, s.batch_size), rank=s.low_rank,
        meta={"products_id": products_id, "curvature_id": curvature_id, "checkpoint_id": checkpoint_id,
              "seed_dataset": seed_dataset, "group_size": s.batch_size, "low_rank": s.low_rank,
              "seed_example_ids": ids, "skipped": skipped, "damping": cfg.influence.curvature.damping,
              "strategy": curv.strategy},
    )
    products.save(path)
    return str(path)


# -- scoring ------------------------------------------------------------------------------------------

def score_shard_stage(cfg, checkpoint_path: str, products_path: str, rows: pd.DataFrame, out_path: str,
                      progress: bool = True, device: str | None = None) -> str:
    """Score the candidate rows (one shard) against all seed products; write Parquet.  No store access."""
    from gdig.influence.scoring import Scorer, SketchSpec
    from gdig.influence.seeds import SeedProducts

    _check_rows(rows, f"scoring shard {out_path}")  # fail before loading anything
    sc = cfg.influence.scoring
    model, tok = _load(cfg, checkpoint_path, device)
    modules = _modules(cfg, model)
    sketch = SketchSpec(sc.sketch_dim_g, sc.sketch_dim_a, sc.sketch_seed) if sc.sketch else None
    # no other reference to the loaded products: the scorer keeps the only (GEMM-ready) copy
    scorer = Scorer(model, modules, SeedProducts.load(products_path), loss_reduction=cfg.influence.loss,
                    sketch=sketch, path=sc.path)
    products = scorer.products
    enc, rows, skipped = _encode(cfg, tok, rows, f"scoring shard {out_path}")
    res = scorer.score_encoded(enc, pad_id=tok.pad_token_id, batch_size=sc.batch_size,
                               positions=list(rows["position"]), block_size=sc.shard_size, progress=progress)
    agg = res.aggregates()
    f32 = pa.list_(pa.float32())
    table = pa.table({
        "example_id": pa.array(rows["example_id"].astype(str), pa.string()),
        "position": pa.array(rows["position"].astype("int64"), pa.int64()),
        "loss": pa.array(res.loss.astype(np.float64)),
        **{k: pa.array(agg[k]) for k in ("helped_fraction", "mean", "min", "max")},
        "scores": pa.array(list(res.scores), f32),
        "sketch": pa.array(list(res.sketch) if res.sketch is not None else [None] * len(rows), f32),
    })
    meta = {"seed_ids": products.seed_ids, "products_id": products.meta.get("products_id"),
            "skipped": skipped, "paths": {k: sorted(v) for k, v in scorer.paths_used.items()}}
    table = table.replace_schema_metadata({"gdig": json.dumps(meta)})
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{out_path}.tmp"
    pq.write_table(table, tmp)
    Path(tmp).replace(out_path)
    return str(out_path)


def _products_meta(products_path: str) -> tuple[list[str], dict]:
    from safetensors import safe_open

    with safe_open(str(products_path), framework="pt") as fh:
        md = fh.metadata()
    return json.loads(md["seed_ids"]), json.loads(md.get("meta", "{}"))


def read_shards(shard_paths: list[str]) -> pa.Table:
    """Concatenate shard tables in position order; a position in two shards is an error."""
    if not shard_paths:
        raise ValueError("no score shards to merge")
    tables = []
    for p in shard_paths:
        if not Path(p).exists():
            raise FileNotFoundError(f"score shard {p} does not exist")
        tables.append(pq.read_table(p).select(SHARD_COLUMNS).replace_schema_metadata(None))
    table = pa.concat_tables(tables)
    pos = table.column("position").to_numpy()
    order = np.argsort(pos, kind="stable")
    dup = pos[order][1:][np.diff(pos[order]) == 0]
    if len(dup):
        raise ValueError(f"score shards overlap: position(s) {dup[:5].tolist()} appear twice in {shard_paths}")
    return table.take(pa.array(order))


def read_score_matrix(path: str) -> tuple[list[str], list[str], np.ndarray]:
    """(candidate example_ids in position order, seed ids, float32 matrix [candidates, seeds])."""
    t = pq.read_table(path)
    seeds = json.loads(t.schema.metadata[b"gdig"])["seed_ids"]
    col = t.column("scores").combine_chunks()
    mat = col.values.to_numpy(zero_copy_only=False).reshape(len(t), len(seeds))
    return t.column("example_id").to_pylist(), seeds, mat.astype(np.float32, copy=False)


def merge_scores_stage(cfg, store, shard_paths: list[str], curvature_id: str, products_path: str,
                       candidate_dataset: str = "pool") -> str:
    seed_ids, pmeta = _products_meta(products_path)
    table = read_shards(shard_paths)
    ids = table.column("example_id").to_pylist()
    scoring_id = _sha(curvature_id, str(pmeta.get("products_id")), candidate_dataset, _ids_hash(ids),
                      cfg.section_hash("influence", "prompt"))
    matrix_path = Path(cfg.workspace.dir) / "scores" / f"{scoring_id}.matrix.parquet"
    matrix_path.parent.mkdir(parents=True, exist_ok=True)
    matrix = table.select(["example_id", "position", "scores"]).replace_schema_metadata(
        {"gdig": json.dumps({"seed_ids": seed_ids, "scoring_id": scoring_id, "curvature_id": curvature_id})})
    pq.write_table(matrix, str(matrix_path))
    df = table.select(["example_id", "position", "loss", "helped_fraction", "mean", "min", "max"]).to_pandas()
    sk = table.column("sketch")
    sketches = None
    if sk.null_count < len(table):
        sketches = pd.DataFrame({"example_id": ids, "sketch": sk.to_pylist()})
        sketches = sketches[sketches["sketch"].notna()]
    store.add_scoring(
        scoring_id, curvature_id=curvature_id, seed_dataset=pmeta.get("seed_dataset", "seed"),
        candidate_dataset=candidate_dataset, aggregates=df, sketches=sketches, matrix_path=str(matrix_path),
        n_seeds=len(seed_ids),
        meta={"products_path": str(products_path), "products_id": pmeta.get("products_id"),
              "n_shards": len(shard_paths), "seed_ids": seed_ids},
    )
    return scoring_id
