"""Stages 2-4: curvature (planned, mapped over shards, combined), seed products, scoring
(planned, mapped over shards, merged).  The mapped stages never open the store: they get rows
and write files, so they run on any worker; the driver's stages load them into DuckDB.

Shard files are reused: a curvature partial or a score shard on disk is named by everything it
depends on (Workspace), the code key of the stages that write it included (ctx.code_key), so an
interrupted or repeated run computes only what is missing and edited code recomputes it.
"""

from __future__ import annotations

import json
from pathlib import Path

from gdig.stages import StageContext
from gdig.workspace import ids_hash, intact, seal_path


# -- curvature ------------------------------------------------------------------------------------

def plan_curvature(ctx: StageContext, checkpoint: dict, reference: dict) -> dict:
    """The curvature rows (the reference pool, or its sample: appended candidates never enter)
    cut in aligned shards, with the paths of their partial-sum files."""
    from gdig.influence.compute import curvature_rows, curvature_shards

    ws = ctx.workspace
    rows = curvature_rows(ctx.cfg, ctx.store, reference["name"], n_rows=reference["n_rows"])
    if len(rows) == 0:
        raise ValueError(f"dataset {reference['name']!r} is empty: nothing to fit the curvature on")
    cid = ws.curvature_id(checkpoint["checkpoint_id"], rows["example_id"])
    shards = [{"index": i, "start": a, "end": b, "rows": rows.iloc[a:b].reset_index(drop=True),
               "factors_path": str(ws.curvature_partial(cid, "factors", a, b)),
               "eigen_path": str(ws.curvature_partial(cid, "eigen", a, b))}
              for i, (a, b) in enumerate(curvature_shards(ctx.cfg, len(rows)))]
    return {"curvature_id": cid, "dataset": reference["name"], "strategy": ctx.cfg.influence.curvature.strategy,
            "shards": shards, "bases_path": str(ws.curvature_bases(cid))}


def curvature_shard(ctx: StageContext, checkpoint: dict, rows, out_path: str, bases: dict | None = None) -> dict:
    """Partial curvature sums of one shard -> safetensors: the factor sums, or with ``bases``
    (EK-FAC) the corrected-eigenvalue sums in those eigenbases.  A file already there (written
    atomically, named by curvature id, kind and range) is reused."""
    from gdig.influence.compute import sum_curvature_shard

    out_path = ctx.workspace.coded(out_path, ctx.code_key("curvature"))
    if not intact(out_path):  # missing, half-written or damaged: computed (again)
        sum_curvature_shard(ctx.cfg, checkpoint["path"], rows, str(out_path), device=ctx.device,
                              bases_path=bases["path"] if bases else None, progress=ctx.progress)
    return {"path": str(out_path), "n_rows": len(rows)}


def curvature_bases(ctx: StageContext, plan: dict, factors: list[dict]) -> dict:
    """EK-FAC between the two mapped passes: summed factors (shard order) and their eigenbases."""
    from gdig.influence.compute import fit_eigenbases

    out = ctx.workspace.coded(plan["bases_path"], ctx.code_key("curvature"))
    return {"path": fit_eigenbases(ctx.cfg, [f["path"] for f in factors], str(out))}


def fit_curvature(ctx: StageContext, checkpoint: dict, plan: dict, factors: list[dict],
                  bases: dict | None = None, eigen: list[dict] | None = None) -> dict:
    """The fitted curvature: the shards' partials summed in shard order, recorded in the store."""
    from gdig.influence.compute import finish_curvature

    cid = finish_curvature(ctx.cfg, ctx.store, checkpoint["checkpoint_id"], [f["path"] for f in factors],
                                 eigen_paths=[e["path"] for e in eigen] if eigen else None,
                                 bases_path=bases["path"] if bases else None, dataset=plan["dataset"],
                                 code=ctx.code_key("curvature"))
    return {"curvature_id": cid}


def seed_products(ctx: StageContext, checkpoint: dict, curvature: dict, seed: dict) -> dict:
    """H⁻¹ g_s per seed (or seed group); seed = the seed set's fingerprint."""
    from gdig.influence.compute import compute_seed_products

    return {"products_path": compute_seed_products(ctx.cfg, ctx.store, checkpoint["path"], checkpoint["checkpoint_id"],
                                                 curvature["curvature_id"], progress=ctx.progress,
                                                 code=ctx.code_key("seed-products"))}


# -- scoring --------------------------------------------------------------------------------------

def scoring_rows(cfg, store):
    """The pool rows that are scored (and so can be selected): those that pass the prefilter."""
    from gdig.influence.compute import pool_rows
    from gdig.prefilter.verdicts import passing_ids

    rows = pool_rows(store)
    keep = passing_ids(cfg, store)
    return rows if keep is None else rows[rows["example_id"].isin(keep)].reset_index(drop=True)


def scored_ids(cfg, store) -> set[str]:
    """The ids scoring_rows would give, without reading the pool's text."""
    from gdig.prefilter.verdicts import passing_ids

    keep = passing_ids(cfg, store)
    return set(store.dataset_ids("pool")) if keep is None else keep


def shard_rows(rows, start: int, end: int):
    """The scored rows whose pool position is in [start, end)."""
    return rows[(rows["position"] >= start) & (rows["position"] < end)].reset_index(drop=True)


def plan_shards(ctx: StageContext, pool: dict, prefilter: dict | None, curvature: dict, products: dict) -> list[dict]:
    """The pool as ingest fingerprinted it, cut in aligned position ranges, each with its rows
    that pass the prefilter (`prefilter`: the pool's verdict counts, None when it is off):
    appended rows only add (or complete) the last shards."""
    from gdig.influence.compute import shard_ranges

    n = pool["n_rows"]  # rows another run appended since ingest are not this config's
    if ids_hash(ctx.store.dataset_ids(pool["name"])[:n]) != pool["ids_hash"]:
        raise RuntimeError(f"dataset {pool['name']!r} changed in the store since it was ingested; run again")
    rows = scoring_rows(ctx.cfg, ctx.store)
    rows = rows[rows["position"] < n]
    out = []
    for i, (start, end) in enumerate(shard_ranges(n, ctx.cfg.influence.scoring.shard_size)):
        part = shard_rows(rows, start, end)
        path = ctx.workspace.score_shard(curvature["curvature_id"], products["products_path"], start, end)
        out.append({"index": i, "start": start, "end": end, "ids_hash": ids_hash(part["example_id"]),
                    "rows": part, "out_path": str(path)})
    return out


def score_shard(ctx: StageContext, checkpoint: dict, products: dict, rows, out_path: str) -> dict:
    """Scores + sketches of one shard of candidates -> Parquet files.

    Rows already scored are reused: the file at out_path, plus "delta" files
    ``<stem>+<hash>.parquet`` holding rows added to the range later (rows that pass a loosened
    prefilter), so a changed rule scores at most the rows that newly pass.  A file whose rows
    disagree with the pool (another example at a position), or that is not intact (its seal:
    size and sha256), is recomputed.  Files are written atomically and sealed.
    """
    start, end = (int(rows["position"].min()), int(rows["position"].max()) + 1) if len(rows) else (0, 0)
    out = ctx.workspace.coded(out_path, ctx.code_key("score-shards"))
    files, have, skipped = _reusable(out, rows)
    done = {pos for _, pos in have}
    wanted = zip(map(int, rows["position"]), map(str, rows["example_id"]))
    missing = rows[[p not in done and e not in skipped for p, e in wanted]]
    paths = [str(f) for f in files]
    if not files or len(missing):
        target = out if not files else out.with_name(f"{out.stem}+{ids_hash(missing['example_id'], 16)}.parquet")
        _score_into(ctx, checkpoint["path"], products["products_path"], missing.reset_index(drop=True), target)
        paths.append(str(target))
    return {"paths": paths, "start": start, "end": end, "n_rows": len(rows)}


def _reusable(out: Path, rows) -> tuple[list[Path], set[tuple[str, int]], set[str]]:
    """The shard's files that can be kept, the (example_id, position) pairs they hold and the ids
    the engine skipped as too long; stale or unreadable files are deleted."""
    files = _shard_files(out)
    have, skipped = _scored(files)
    wanted = dict(zip(map(int, rows["position"]), map(str, rows["example_id"])))
    if files is None or any(wanted.get(pos, eid) != eid for eid, pos in have):
        for f in [out, *out.parent.glob(f"{out.stem}+*.parquet")]:  # unreadable or stale: start over
            f.unlink(missing_ok=True)
            seal_path(f).unlink(missing_ok=True)
        return [], set(), set()
    return files, have, skipped


def _score_into(ctx: StageContext, checkpoint_path: str, products_path: str, rows, target: Path) -> None:
    from gdig.influence.compute import score_rows

    # written atomically and sealed (gdig.workspace.atomic_file): a crash never leaves a partial file
    score_rows(ctx.cfg, checkpoint_path, products_path, rows, str(target), progress=ctx.progress, device=ctx.device)


def _shard_files(out: Path) -> list[Path] | None:
    """The files of a shard (out_path first, then its deltas); None when one is unreadable."""
    import pyarrow.parquet as pq

    files = ([out] if out.exists() else []) + sorted(out.parent.glob(f"{out.stem}+*.parquet"))
    if not all(intact(f) for f in files):  # unsealed, truncated or changed since: recompute
        return None
    try:
        for f in files:
            pq.read_schema(f)
    except Exception:
        return None
    return files


def _scored(files: list[Path] | None) -> tuple[set[tuple[str, int]], set[str]]:
    """(example_id, position) pairs in the files, and the ids the engine skipped as too long."""
    import pyarrow.parquet as pq

    have, skipped = set(), set()
    for f in files or []:
        t = pq.read_table(f, columns=["example_id", "position"])
        have |= set(zip(t.column("example_id").to_pylist(), t.column("position").to_pylist()))
        meta = t.schema.metadata or {}
        skipped |= set(json.loads(meta.get(b"gdig", b"{}")).get("skipped", []))
    return have, skipped


def merge_scores(ctx: StageContext, shards: list[dict], curvature: dict, products: dict) -> dict:
    """Load the shards' files into the store (aggregates, sketches, candidate x seed matrix),
    keeping the rows that are scored now (a row a tightened prefilter rejects drops out)."""
    from gdig.influence.compute import merge_score_files

    paths = [p for s in shards for p in s["paths"]]
    sid = merge_score_files(ctx.cfg, ctx.store, paths, curvature["curvature_id"], products["products_path"],
                             keep=scored_ids(ctx.cfg, ctx.store), code=ctx.code_key("scoring"))
    return {"scoring_id": sid, "n_shards": len(shards)}


def source_free_loss(ctx: StageContext, checkpoint: dict, scoring: dict) -> dict:
    """The scored candidates' target loss with the source left out of the prompt, in the store
    (the source-gain rule, selection.source_gain_min); rows already stored for this checkpoint
    and prompt are not recomputed, and a pass that dies resumes from its last stored batch."""
    from gdig.influence.source_free import store_source_free_losses

    return store_source_free_losses(ctx.cfg, ctx.store, checkpoint["path"], checkpoint["checkpoint_id"],
                             scoring["scoring_id"], device=ctx.device, progress=ctx.progress)
