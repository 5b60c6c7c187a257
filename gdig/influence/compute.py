"""The influence engine's passes over the store and shard files, which the stages in
gdig/stages/influence.py call (no Prefect here):

    sum_curvature_shard      -> a partial-sums file (per shard; no store)
    fit_eigenbases           -> the EK-FAC eigenbases between the passes (no store)
    finish_curvature         -> curvature_id   ({dir}/curvature/{id}.safetensors + store row)
    compute_seed_products    -> products path  ({dir}/seeds/{id}.safetensors)
    score_rows               -> shard Parquet  (no store access: runs in worker processes)
    merge_score_files        -> scoring_id     (matrix: {dir}/scores/{id}.matrix.parquet + store tables)

Shards are half-open position ranges aligned to multiples of ``influence.scoring.shard_size``;
scoring buckets candidates by length only within such aligned blocks, so any set of shards,
merged, is bit-for-bit the unsharded result.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gdig.data.prompts import Encoded, PromptTooLong, collate, encode_examples, length_batches
from gdig.influence.strategies import curvature_strategy
from gdig.workspace import Workspace, atomic_file, ids_hash, intact

SHARD_COLUMNS = ["example_id", "position", "loss", "closing_loss", "grad_norm", "helped_fraction", "mean", "min",
                 "max", "scores", "sketch"]
AGGREGATES = ["example_id", "position", "loss", "closing_loss", "grad_norm", "helped_fraction", "mean", "min", "max"]


def pool_rows(store, dataset: str = "pool") -> pd.DataFrame:
    """The dataset's examples in position order: example_id, position, src, tgt, src_lang, tgt_lang, label."""
    df = store.dataset_examples(dataset).assign(dataset=dataset)
    return df[["example_id", "position", "src", "tgt", "src_lang", "tgt_lang", "label",
               "dataset", "source_file", "source_row"]].reset_index(drop=True)


def shard_ranges(n_rows: int, shard_size: int) -> list[tuple[int, int]]:
    """Half-open position ranges [k·size, min((k+1)·size, n)): appending rows leaves full shards unchanged."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows}")
    return [(s, min(s + shard_size, n_rows)) for s in range(0, n_rows, shard_size)]


def _load(cfg, checkpoint_path: str, device: str | None):
    """The checkpoint's model; with influence.modules.lora_only and a LoRA pool checkpoint (its
    unmerged `adapter/` beside the merged weights), the base model with that adapter on top, so
    the adapter's own weights are the modules influence is taken over (as LESS does)."""
    from gdig.modeling import load_from_config

    adapter = Path(checkpoint_path) / "adapter"
    if not (cfg.influence.modules.lora_only and (adapter / "adapter_config.json").exists()):
        return load_from_config(cfg.model, checkpoint_path, device)
    from peft import PeftModel

    model, tok = load_from_config(cfg.model, None, device)
    model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    return model, tok


ROW_COLUMNS = ("example_id", "position", "src", "tgt", "src_lang", "tgt_lang")


def _check_rows(rows: pd.DataFrame, what: str) -> None:
    missing = [c for c in ROW_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"{what}: rows lack column(s) {missing}; expected those of pool_rows()")


def row_origin(rows: pd.DataFrame, i: int | None) -> str:
    """Where row i of a pool_rows() frame comes from: dataset, file:line, example id."""
    if i is None:
        return "a row"
    r = rows.iloc[i]
    parts = [f"dataset {r['dataset']!r}"] if "dataset" in rows else []
    if "source_file" in rows and r["source_file"] is not None:
        parts.append(f"{r['source_file']}:{r['source_row']}")
    parts.append(f"example {r['example_id']} (position {r['position']})")
    return ", ".join(parts)


def _encode(cfg, tok, rows: pd.DataFrame, what: str) -> tuple[list[Encoded], pd.DataFrame, list[str]]:
    """Encoded rows (skipped ones removed, with a warning naming them), kept rows, skipped ids."""
    _check_rows(rows, what)
    tuples = list(zip(rows["src"], rows["tgt"], rows["src_lang"], rows["tgt_lang"]))
    try:
        enc, report = encode_examples(tok, tuples, cfg.prompt.template, cfg.prompt.max_length, cfg.prompt.too_long)
    except PromptTooLong as err:
        raise PromptTooLong(f"{what}: {row_origin(rows, err.row)}: {err.reason}; raise prompt.max_length or "
                            f"set prompt.too_long: skip (data.max_chars rejects long rows at ingest)",
                            row=err.row, reason=err.reason) from None
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

def curvature_rows(cfg, store, dataset: str = "pool", n_rows: int | None = None) -> pd.DataFrame:
    """The rows the curvature is fitted on: the whole dataset (or its first ``n_rows``: the
    reference pool, see gdig_flows/tasks/data.py) or a seeded sample of it, in position order."""
    rows = pool_rows(store, dataset)
    if n_rows is not None:
        if n_rows > len(rows):
            raise ValueError(f"dataset {dataset!r} has {len(rows)} rows, fewer than the reference's {n_rows}")
        rows = rows.iloc[:n_rows].reset_index(drop=True)
    n = cfg.influence.curvature.sample
    if n is not None and n < len(rows):
        rng = np.random.default_rng(cfg.influence.curvature.sample_seed)
        rows = rows.iloc[np.sort(rng.choice(len(rows), size=n, replace=False))].reset_index(drop=True)
    return rows


def curvature_id_for(cfg, checkpoint_id: str, example_ids, code: str = "") -> str:
    """The curvature's id: checkpoint + the ids it is fitted on (in order) + config."""
    return Workspace(cfg).curvature_id(checkpoint_id, example_ids, code)


def curvature_shards(cfg, n_rows: int) -> list[tuple[int, int]]:
    """Curvature rows are cut like the scoring pool: aligned blocks of influence.scoring.shard_size
    (indices into curvature_rows); batches are bucketed by length only within a block, so the
    sharded fit and the one-process fit sum the very same batches in the same order."""
    return shard_ranges(n_rows, cfg.influence.scoring.shard_size)


def curvature_partial_path(cfg, curvature_id: str, kind: str, start: int, end: int) -> str:
    return str(Workspace(cfg).curvature_partial(curvature_id, kind, start, end))


def curvature_bases_path(cfg, curvature_id: str) -> str:
    return str(Workspace(cfg).curvature_bases(curvature_id))


def _curvature_partial(cfg, model, tok, modules, rows: pd.DataFrame, what: str, bases=None, progress=True):
    from gdig.influence.curvature import curvature_partial

    ids = [str(i) for i in rows["example_id"]]
    enc, rows, skipped = _encode(cfg, tok, rows, what)
    c = cfg.influence.curvature
    plan = length_batches([len(e.input_ids) for e in enc], c.batch_size)
    part = curvature_partial(
        model, modules, (collate([enc[i] for i in b], tok.pad_token_id) for b in plan),
        granularity=c.granularity, loss_reduction=cfg.influence.loss, fp64=c.fp64,
        eigenbases=None if bases is None else bases.factors, progress=progress, n_batches=len(plan),
        sequence_bias=c.sequence_bias, eigen_average=c.eigen_average)
    part.meta.update({"example_ids": ids, "skipped": skipped})
    return part


def sum_curvature_shard(cfg, checkpoint_path: str, rows: pd.DataFrame, out_path: str, *,
                          bases_path: str | None = None, device: str | None = None, progress: bool = True) -> str:
    """One shard of curvature rows -> a partial-sums file (factor sums; with ``bases_path`` the
    EK-FAC eigenvalue sums in those bases).  No store access: runs in worker processes."""
    from gdig.influence.curvature import Curvature

    _check_rows(rows, f"curvature shard {out_path}")
    bases = Curvature.load(bases_path) if bases_path is not None else None
    model, tok = _load(cfg, checkpoint_path, device)
    modules = _modules(cfg, model)
    if bases is not None and [m.name for m in modules] != bases.module_names:
        raise ValueError(f"eigenbases {bases_path} cover modules {bases.module_names}, "
                         f"the config selects {[m.name for m in modules]}")
    # named like the rows' dataset: the error of a too-long row reads the same however it was fitted
    what = f"curvature on {rows['dataset'].iloc[0]!r}" if "dataset" in rows and len(rows) else f"curvature shard {out_path}"
    part = _curvature_partial(cfg, model, tok, modules, rows, what, bases, progress)
    part.save(out_path)
    return str(out_path)


def _load_partials(paths: list[str]):
    from gdig.influence.curvature import CurvaturePartial

    if not paths:
        raise ValueError("no curvature partials")
    return [CurvaturePartial.load(p) for p in paths]


def fit_eigenbases(cfg, partial_paths: list[str], out_path: str) -> str:
    """EK-FAC between the passes: the factor partials summed (in the order given), divided and
    eigendecomposed -> a file with A, G, QA, QG per module.  No store access."""
    from gdig.influence.curvature import factors_from_partials

    factors_from_partials(_load_partials(partial_paths), eigenbases=True).save(out_path)
    return str(out_path)


def finish_curvature(cfg, store, checkpoint_id: str, partial_paths: list[str], *,
                           eigen_paths: list[str] | None = None, bases_path: str | None = None,
                           dataset: str = "pool", code: str = "") -> str:
    """Combine the shards' partials (in shard order) into the curvature; record it in the store.
    K-FAC: ``partial_paths`` (factor sums).  EK-FAC: also ``bases_path`` and ``eigen_paths``."""
    from gdig.influence.curvature import Curvature, fit_from_partials

    parts = _load_partials(partial_paths)
    ids = [i for p in parts for i in p.meta["example_ids"]]
    curvature_id = curvature_id_for(cfg, checkpoint_id, ids, code)
    path = Workspace(cfg).curvature(curvature_id)
    if store.get_curvature(curvature_id) is not None and intact(path):
        return curvature_id
    strategy = curvature_strategy(cfg)
    if strategy.eigen_pass and (bases_path is None or not eigen_paths):
        raise ValueError(f"{strategy.label} curvature needs the eigenbases file and the eigenvalue partials")
    curv = fit_from_partials(strategy, parts, Curvature.load(bases_path) if strategy.eigen_pass else None,
                             _load_partials(eigen_paths) if strategy.eigen_pass else None)
    skipped = [i for p in parts for i in p.meta["skipped"]]
    _record_curvature(cfg, store, curv, curvature_id, path, checkpoint_id, dataset, ids, skipped)
    return curvature_id


def _record_curvature(cfg, store, curv, curvature_id, path, checkpoint_id, dataset, ids, skipped) -> None:
    c = cfg.influence.curvature
    kept = [i for i in ids if i not in set(skipped)]
    curv.meta.update({"checkpoint_id": checkpoint_id, "dataset": dataset, "examples_hash": ids_hash(kept, 16),
                      "skipped": skipped})
    curv.save(path)
    store.add_curvature(
        curvature_id, checkpoint_id=checkpoint_id, strategy=c.strategy, granularity=c.granularity,
        modules=curv.module_names, n_examples=curv.n_examples, n_tokens=curv.n_tokens, path=str(path),
        meta={"granularity": c.granularity, "strategy": c.strategy, "n_tokens": curv.n_tokens,
              "modules": curv.modules, "loss": cfg.influence.loss, "fp64": c.fp64, "dataset": dataset,
              "n_skipped": len(skipped), "sample": c.sample},
    )


# -- seed products ---------------------------------------------------------------------------------

def compute_seed_products(cfg, store, checkpoint_path: str, checkpoint_id: str, curvature_id: str,
                        progress: bool = True, seed_dataset: str = "seed", device: str | None = None,
                        code: str = "") -> str:
    from gdig.influence.curvature import Curvature
    from gdig.influence.inverse import InverseHessian
    from gdig.influence.lowrank import GradientRank, cut_rank
    from gdig.influence.seeds import group_labels, kept_seeds, seed_gradients, seed_products, seed_weighting_for

    rec = store.get_curvature(curvature_id)
    if rec is None:
        raise ValueError(f"no curvature {curvature_id!r} in the store; run the curvature stage first")
    seeds = pool_rows(store, seed_dataset)
    if len(seeds) == 0:
        raise ValueError(f"seed dataset {seed_dataset!r} is empty")
    ws = Workspace(cfg)
    products_id = ws.products_id(curvature_id, checkpoint_id, seeds["example_id"], code)
    path = ws.seed_products(products_id)
    if intact(path):  # sealed and unchanged: a partial or damaged file is computed again
        return str(path)
    curv = Curvature.load(rec["path"])
    model, tok = _load(cfg, checkpoint_path, device)
    modules = _modules(cfg, model)
    if [m.name for m in modules] != curv.module_names:
        raise ValueError(f"curvature {curvature_id} covers modules {curv.module_names}, "
                         f"the config selects {[m.name for m in modules]}")
    enc, seeds, skipped = _encode(cfg, tok, seeds, f"seed dataset {seed_dataset!r}")
    s, c = cfg.influence.seed_set, cfg.influence.curvature
    n_kept = kept_seeds(len(enc), s.batch_size, s.last_group)
    dropped = list(seeds["example_id"].iloc[n_kept:])
    enc, seeds = enc[:n_kept], seeds.iloc[:n_kept]
    weighting = seed_weighting_for(c.granularity, s.weighting)
    grads = seed_gradients(model, modules, enc, pad_id=tok.pad_token_id, group_size=s.batch_size,
                           batch_size=cfg.influence.scoring.batch_size, loss_reduction=cfg.influence.loss,
                           weighting=weighting, progress=progress)
    rank = GradientRank.from_config(cfg.influence.gradient_rank)
    if rank is not None:
        grads = {k: cut_rank(v, rank, k) for k, v in grads.items()}
    inverse = InverseHessian(curv, c.damping, c.ekfac_damping, c.kfac_damping)
    grads = {k: v.to(curv.factors[k].A.device) for k, v in grads.items()}
    ids = list(seeds["example_id"])
    products = seed_products(
        grads, inverse, modules, group_labels(ids, s.batch_size), rank=s.low_rank, consume=True,
        meta={"products_id": products_id, "curvature_id": curvature_id, "checkpoint_id": checkpoint_id,
              "seed_dataset": seed_dataset, "group_size": s.batch_size, "low_rank": s.low_rank,
              "seed_example_ids": ids, "skipped": skipped, "dropped": dropped, "damping": inverse.damping,
              "weighting": weighting, "strategy": curv.strategy,
              "gradient_rank": cfg.influence.gradient_rank.model_dump() if rank is not None else None},
    )
    products.save(path)
    return str(path)


# -- scoring ------------------------------------------------------------------------------------------

def score_rows(cfg, checkpoint_path: str, products_path: str, rows: pd.DataFrame, out_path: str,
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
    from gdig.influence.lowrank import GradientRank

    scorer = Scorer(model, modules, SeedProducts.load(products_path), loss_reduction=cfg.influence.loss,
                    sketch=sketch, path=sc.path, gradient_rank=GradientRank.from_config(cfg.influence.gradient_rank))
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
        "closing_loss": pa.array(res.closing_loss.astype(np.float64)),
        "grad_norm": pa.array(res.grad_norm.astype(np.float64)),
        **{k: pa.array(agg[k]) for k in ("helped_fraction", "mean", "min", "max")},
        "scores": pa.array(list(res.scores), f32),
        "sketch": pa.array(list(res.sketch) if res.sketch is not None else [None] * len(rows), f32),
    })
    meta = {"seed_ids": products.seed_ids, "products_id": products.meta.get("products_id"),
            "skipped": skipped, "paths": {k: sorted(v) for k, v in scorer.paths_used.items()}}
    table = table.replace_schema_metadata({"gdig": json.dumps(meta)})
    with atomic_file(out_path, "parquet") as tmp:
        pq.write_table(table, str(tmp))
    return str(out_path)


def _products_meta(products_path: str) -> tuple[list[str], dict]:
    from safetensors import safe_open

    with safe_open(str(products_path), framework="pt") as fh:
        md = fh.metadata()
    return json.loads(md["seed_ids"]), json.loads(md.get("meta", "{}"))


def read_shards(shard_paths: list[str]) -> pa.Table:
    """Concatenate shard tables in position order; a position in two shards is an error."""
    groups = shard_groups(shard_paths)
    return pa.concat_tables([read_group(g) for g in groups]) if groups else _empty_shard_table(shard_paths[0])


def shard_groups(shard_paths: list[str]) -> list[list[str]]:
    """The shard files in position order, in groups whose position spans do not meet (a shard's
    file and its delta files share one), so a merge holds one group at a time.  Reads only the
    positions; a position in two files is an error that names every file."""
    if not shard_paths:
        raise ValueError("no score shards to merge")
    spans = []
    for p in shard_paths:
        if not Path(p).exists():
            raise FileNotFoundError(f"score shard {p} does not exist")
        pos = pq.read_table(p, columns=["position"]).column("position").to_numpy()
        if len(pos):
            spans.append((int(pos.min()), int(pos.max()), p, pos))
    groups: list[list[tuple]] = []
    for span in sorted(spans, key=lambda s: s[0]):  # stable: files of one start keep their given order
        if groups and span[0] <= max(s[1] for s in groups[-1]):
            groups[-1].append(span)
        else:
            groups.append([span])
    for g in groups:
        pos = np.sort(np.concatenate([s[3] for s in g]), kind="stable")
        dup = pos[1:][np.diff(pos) == 0]
        if len(dup):
            raise ValueError(f"score shards overlap: position(s) {dup[:5].tolist()} appear twice in {shard_paths}")
    order = {p: i for i, p in enumerate(shard_paths)}
    return [sorted((s[2] for s in g), key=order.get) for g in groups]


def read_group(paths: list[str]) -> pa.Table:
    """One group of shard_groups: its files' rows in position order."""
    table = pa.concat_tables([pq.read_table(p).select(SHARD_COLUMNS).replace_schema_metadata(None) for p in paths])
    order = np.argsort(table.column("position").to_numpy(), kind="stable")
    return table.take(pa.array(order))


def _empty_shard_table(path: str) -> pa.Table:
    return pq.read_table(path).select(SHARD_COLUMNS).replace_schema_metadata(None).slice(0, 0)


def read_score_matrix(path: str) -> tuple[list[str], list[str], np.ndarray]:
    """(candidate example_ids in position order, seed ids, float32 matrix [candidates, seeds])."""
    t = pq.read_table(path)
    seeds = json.loads(t.schema.metadata[b"gdig"])["seed_ids"]
    col = t.column("scores").combine_chunks()
    mat = col.values.to_numpy(zero_copy_only=False).reshape(len(t), len(seeds))
    return t.column("example_id").to_pylist(), seeds, mat.astype(np.float32, copy=False)


def merge_score_files(cfg, store, shard_paths: list[str], curvature_id: str, products_path: str,
                       candidate_dataset: str = "pool", keep: set[str] | None = None, code: str = "") -> str:
    """Shards -> one scoring in the store; `keep`: only these example ids (the rows scored now).

    Streams: the ids are read first (they name the scoring), then one group of shard files at a
    time goes to the matrix file and the store, so memory holds one shard, not the pool."""
    seed_ids, pmeta = _products_meta(products_path)
    groups = shard_groups(shard_paths)

    def kept(table: pa.Table) -> pa.Table:
        if keep is None:
            return table
        return table.filter(pa.array([e in keep for e in table.column("example_id").to_pylist()], pa.bool_()))

    ids: list[str] = []
    for g in groups:
        ids += kept(read_group_columns(g, ["example_id", "position"])).column("example_id").to_pylist()
    ws = Workspace(cfg)
    scoring_id = ws.scoring_id(curvature_id, str(pmeta.get("products_id")), candidate_dataset, ids, code)
    n_rows = len(ids)
    del ids
    matrix_path = ws.score_matrix(scoring_id)
    matrix_schema = _empty_shard_table(shard_paths[0]).select(["example_id", "position", "scores"]).schema \
        .with_metadata({"gdig": json.dumps({"seed_ids": seed_ids, "scoring_id": scoring_id,
                                            "curvature_id": curvature_id})})

    def chunks():
        # a reader never sees half a matrix, and it is complete before the store's row that names it commits
        with atomic_file(matrix_path, "parquet") as tmp:
            with pq.ParquetWriter(str(tmp), matrix_schema) as writer:
                for g in groups:
                    table = kept(read_group(g))
                    writer.write_table(table.select(["example_id", "position", "scores"]))
                    sk = table.select(["example_id", "sketch"])
                    yield table.select(AGGREGATES).to_pandas(), sk.filter(pc.is_valid(sk.column("sketch")))

    store.add_scoring_chunks(
        scoring_id, curvature_id=curvature_id, seed_dataset=pmeta.get("seed_dataset", "seed"),
        candidate_dataset=candidate_dataset, chunks=chunks(), n_candidates=n_rows,
        matrix_path=str(matrix_path), n_seeds=len(seed_ids),
        meta={"products_path": str(products_path), "products_id": pmeta.get("products_id"),
              "n_shards": len(shard_paths), "seed_ids": seed_ids},
    )
    return scoring_id


def read_group_columns(paths: list[str], columns: list[str]) -> pa.Table:
    """Some columns of one group of shard_groups, in position order."""
    table = pa.concat_tables([pq.read_table(p, columns=columns).replace_schema_metadata(None) for p in paths])
    order = np.argsort(table.column("position").to_numpy(), kind="stable")
    return table.take(pa.array(order))
