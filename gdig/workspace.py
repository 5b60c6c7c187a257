"""The workspace: where a config's artifacts live and how results are named.

Every content hash gdig writes (example ids, curvature / products / scoring ids, checkpoint
directories, selection ids, cache keys) goes through `sha` / `ids_hash` / `json_hash`, and every
artifact path through `Workspace`, so the workspace's identity and layout are read in one place.
Names and lengths are those of the files already on disk: changing one orphans existing
workspaces' artifacts.  Ids and file names carry the code key of what computes them (`code`,
`coded`; gdig.graph.code_keys), so edited code or another torch/transformers never reuses a file.

    {dir}/curvature/{curvature_id}.safetensors             fitted factors
    {dir}/curvature/partials/{id}-{kind}-{a}-{b}-c{code}.safetensors  per-shard sums (kind: factors, eigen)
    {dir}/curvature/partials/{id}-bases-c{code}.safetensors  EK-FAC eigenbases between the passes
    {dir}/seeds/{products_id}.safetensors                   seed products
    {dir}/scores/shards/{cid}-{products}-{settings}-{a}-{b}-c{code}.parquet   score shards (+ deltas)
    {dir}/scores/{scoring_id}.matrix.parquet                candidate x seed matrix
    {dir}/checkpoints/{prefix}-{fingerprint}/               finetuned models
    {dir}/selections/{selection_id}.jsonl                   exports
    {dir}/reports/<run>/, reports/latest                    run reports
    {dir}/prefect-results/, prefect-runs/                   the Prefect executor's cache and run records
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from gdig.errors import disk_full


# -- content hashes -------------------------------------------------------------------------------

def sha(data: str | bytes, n: int | None = 32) -> str:
    """Hex sha256 of text (UTF-8) or bytes, cut to n characters (None: all 64)."""
    digest = hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()
    return digest if n is None else digest[:n]


def ids_hash(ids: Iterable[Any], n: int = 32) -> str:
    """Fingerprint of an ordered list of example ids (ids are content hashes already)."""
    return sha("\n".join(map(str, ids)), n)


def json_hash(value: Any, n: int | None = 16) -> str:
    """Hash of a JSON-able value, keys sorted (what is not JSON is hashed by its str)."""
    return sha(json.dumps(value, sort_keys=True, default=str), n)


def config_hash(cfg, sections: Iterable[str]) -> str:
    """Hash of config sections; dotted names pick sub-sections ("influence.curvature")."""
    dump = cfg.model_dump(mode="json")
    picked = {}
    for name in sections:
        node: Any = dump
        for part in name.split("."):
            node = node[part]
        picked[name] = node
    return json_hash(picked, 32)


def module_source_hash(module: str) -> str:
    """Hash of a module's source file, or of every source file of a package (any edit to a
    wrapped stage invalidates its cache, also one inside a package such as gdig.data.readers)."""
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return f"missing:{module}"
    if not spec.submodule_search_locations:
        return sha(Path(spec.origin).read_bytes())
    root = Path(spec.origin).parent
    files = sorted(root.rglob("*.py"))
    return sha(b"".join(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() for f in files))


def parts_hash(*parts: str, n: int = 16) -> str:
    """Hash of a few ids joined by '|' (the id of a result made from those inputs)."""
    return sha("|".join(parts), n)


def feed_file(h, path: str | Path) -> None:
    """Stream a file's bytes into a running hashlib hash."""
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


def file_digest(path: str | Path, n: int = 32) -> str:
    """Content hash of a file, or of every file under a directory (relative names included)."""
    p = Path(path)
    h = hashlib.sha256()
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    for f in files:
        h.update(str(f.relative_to(p) if p.is_dir() else f.name).encode())
        feed_file(h, f)
    return h.hexdigest()[:n]


# -- writing artifacts -----------------------------------------------------------------------------

def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    except OSError:  # a directory fsync some filesystems refuse: the rename is still atomic
        if not directory:
            raise
    finally:
        os.close(fd)


def seal_path(path: str | Path) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".sum")


@contextmanager
def atomic_file(path: str | Path, kind: str = "file", seal: bool = True) -> Iterator[Path]:
    """Write `path` whole or not at all.  The block writes the temporary path it is given; then
    it is synced to disk, renamed over `path`, the directory synced, and a seal (size + sha256)
    written beside it, last.  A crash leaves the old file, or a new file without its seal, which
    `intact` rejects; an exception removes the temporary.  `seal=False`: for what gdig writes for
    people and never reads back (exports, reports), whole or absent without a seal beside it.
    Kill points (gdig.faults) `<kind> write` (the temporary written, not yet renamed) and `<kind>
    seal` (renamed, not sealed)."""
    from gdig import faults

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.tmp"):  # what a killed earlier write left
        stale.unlink(missing_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    sealed = seal_path(target)
    try:
        yield tmp
        faults.reached(f"{kind} write")
        _fsync(tmp)
        sealed.unlink(missing_ok=True)  # the old seal must not vouch for the new bytes
        os.replace(tmp, target)
        _fsync(target.parent, directory=True)
        if seal:
            faults.reached(f"{kind} seal")
            write_seal(target)
    except Exception as err:
        full = disk_full(err, writing=target)
        if full is not None and full is not err:
            raise full from err
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """A text file for people (a report, a table), whole or absent: never half-written."""
    with atomic_file(path, "report", seal=False) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_seal(path: str | Path) -> None:
    """Record `path`'s size and sha256 beside it (atomically)."""
    p = Path(path)
    h = hashlib.sha256()
    feed_file(h, p)
    seal, tmp = seal_path(p), p.with_name(f".{p.name}.sum.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"size": p.stat().st_size, "sha256": h.hexdigest()}), encoding="utf-8")
    os.replace(tmp, seal)


def intact(path: str | Path) -> bool:
    """Is `path` a file as atomic_file finished it: sealed, its size and sha256 as recorded?  A
    truncated, bit-flipped, half-written or unsealed file is not (rebuild it)."""
    p = Path(path)
    try:
        seal = json.loads(seal_path(p).read_text(encoding="utf-8"))
        if p.stat().st_size != seal["size"]:
            return False
        h = hashlib.sha256()
        feed_file(h, p)
        return h.hexdigest() == seal["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


# -- the workspace --------------------------------------------------------------------------------

class Workspace:
    """Paths and identities of one config's workspace (`workspace.dir`, `workspace.db`)."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.dir = Path(cfg.workspace.dir)
        self.db = cfg.workspace.db

    # identities
    def settings_hash(self, *sections: str) -> str:
        """Content hash of whole config sections: the settings signature of a result."""
        dump = self.cfg.model_dump(mode="json")
        return json_hash({s: dump[s] for s in sections})

    # `code`: the code key of the artifact's kind (gdig.graph.code_keys; empty: none given)
    def curvature_id(self, checkpoint_id: str, example_ids, code: str = "") -> str:
        """Checkpoint + the ids it is fitted on (in order) + the influence and prompt settings."""
        return parts_hash(checkpoint_id, ids_hash(example_ids, 16), self.settings_hash("influence", "prompt"),
                          *[code] if code else [])

    def products_id(self, curvature_id: str, checkpoint_id: str, seed_ids, code: str = "") -> str:
        return parts_hash(curvature_id, checkpoint_id, ids_hash(seed_ids, 16),
                          self.settings_hash("influence", "prompt"), *[code] if code else [])

    def scoring_id(self, curvature_id: str, products_id: str, dataset: str, example_ids, code: str = "") -> str:
        return parts_hash(curvature_id, products_id, dataset, ids_hash(example_ids, 16),
                          self.settings_hash("influence", "prompt"), *[code] if code else [])

    @staticmethod
    def coded(path: str | Path, code: str) -> Path:
        """`path` with the code key of what writes it in its name (`...-c<key>.<suffix>`): a file
        made by other code, or under other library versions, is never found under it."""
        p = Path(path)
        return p.with_name(f"{p.stem}-c{code}{p.suffix}") if code else p

    # artifact paths
    def curvature(self, curvature_id: str) -> Path:
        return self.dir / "curvature" / f"{curvature_id}.safetensors"

    def curvature_partial(self, curvature_id: str, kind: str, start: int, end: int) -> Path:
        return self.dir / "curvature" / "partials" / f"{curvature_id}-{kind}-{start}-{end}.safetensors"

    def curvature_bases(self, curvature_id: str) -> Path:
        return self.dir / "curvature" / "partials" / f"{curvature_id}-bases.safetensors"

    def seed_products(self, products_id: str) -> Path:
        return self.dir / "seeds" / f"{products_id}.safetensors"

    def score_shard(self, curvature_id: str, products_path: str, start: int, end: int) -> Path:
        """The name carries everything the scores depend on: curvature, seed products (named by
        their content-hash id) and the scoring settings, so a file is reused only for the very
        settings that wrote it."""
        settings = self.settings_hash("influence")[:4] + self.settings_hash("prompt")[:4]
        return self.dir / "scores" / "shards" / f"{curvature_id}-{Path(products_path).stem}-{settings}-{start}-{end}.parquet"

    def score_matrix(self, scoring_id: str) -> Path:
        return self.dir / "scores" / f"{scoring_id}.matrix.parquet"

    def checkpoint(self, prefix: str, fingerprint: str) -> Path:
        return self.dir / "checkpoints" / f"{prefix}-{fingerprint}"

    def export(self, selection_id: str) -> Path:
        return self.dir / "selections" / f"{selection_id}.jsonl"

    @property
    def reports(self) -> Path:
        return self.dir / "reports"

    @property
    def prefect_results(self) -> Path:
        return self.dir / "prefect-results"

    @property
    def prefect_runs(self) -> Path:
        """One record per flow run this workspace started (gdig_flows.tasks.ghosts marks dead ones Crashed)."""
        return self.dir / "prefect-runs"
