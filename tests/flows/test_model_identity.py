"""One model identity (gdig.modeling.ModelRef): a model's key follows its weights, never only its
name.  A local directory is keyed by content; a hub id by the commit its revision resolves to,
here served offline from a hub-like cache (refs/<revision> -> snapshots/<commit>/) that holds two
commits of the tiny test model, as the hub would after `main` moved."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from test_failures import write_config
from test_flows import build_workspace

REPO = "gdig-test/tiny"
COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("identity"))


def perturbed_copy(src: Path, dst: Path, scale: float) -> Path:
    """src's model with every weight scaled: another 'revision' of it (same tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(src)
    for p in model.parameters():
        p.data.mul_(scale)
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


@pytest.fixture()
def hub_cache(workspace, tmp_path, monkeypatch):
    """A hub cache holding REPO at two commits; refs/main -> A, refs/v2 -> B."""
    from huggingface_hub import constants

    from gdig import modeling

    cache = tmp_path / "hub"
    repo = cache / f"models--{REPO.replace('/', '--')}"
    shutil.copytree(workspace.parent / "model", repo / "snapshots" / COMMIT_A)
    perturbed_copy(workspace.parent / "model", repo / "snapshots" / COMMIT_B, 0.5)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT_A)
    (repo / "refs" / "v2").write_text(COMMIT_B)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(modeling, "_COMMITS", {})
    return repo


def move_main(repo: Path, commit: str) -> None:
    """The hub's main branch moves to `commit` (and this process asks again)."""
    from gdig import modeling

    (repo / "refs" / "main").write_text(commit)
    modeling._COMMITS.clear()


def test_a_hub_id_is_keyed_and_loaded_at_the_commit_its_revision_resolves_to(hub_cache):
    from gdig.modeling import ModelRef, load_model

    main, v2, pinned = ModelRef(REPO), ModelRef(REPO, revision="v2"), ModelRef(REPO, revision=COMMIT_A)
    assert (main.commit(), v2.commit(), pinned.commit()) == (COMMIT_A, COMMIT_B, COMMIT_A)
    assert main.hash() == pinned.hash() != v2.hash()  # same commit, same identity; another, another
    assert ModelRef(REPO, revision="no-such-ref").commit() is None
    weights = {}
    for ref in (main, v2):
        model, _ = ref.load()
        weights[ref.commit()] = next(model.parameters()).detach().clone()
    assert (weights[COMMIT_A] * 0.5).equal(weights[COMMIT_B])  # loaded what it was keyed as
    move_main(hub_cache, COMMIT_B)
    assert ModelRef(REPO).hash() == v2.hash() and ModelRef(REPO).hash() != pinned.hash()
    model, _ = load_model(REPO)  # the plain loader goes through the same resolution
    assert next(model.parameters()).equal(weights[COMMIT_B])


def test_an_unresolvable_hub_id_keeps_the_id_of_earlier_versions(hub_cache):
    import hashlib

    from gdig.modeling import ModelRef

    legacy = hashlib.sha256(b"hub:org/not-cached:None").hexdigest()[:16]
    assert ModelRef("org/not-cached").hash() == legacy
    assert ModelRef("org/not-cached", revision="v1").hash() != legacy  # a revision alone still tells them apart


def test_the_main_branch_moving_never_reuses_a_result_of_the_old_commit(workspace, hub_cache, tmp_path):
    """gdig select on a hub id, main moves to another commit, gdig select again: every result
    that depends on the model is computed anew, and the store records the commit each loaded."""
    import json

    from gdig.config import load_config
    from gdig.pipeline import select_pipeline
    from gdig.report import model_line
    from gdig.store import Store

    cfg = load_config(write_config(tmp_path / "gdig.yaml", workspace, **{"model.name_or_path": REPO}))
    assert cfg.model.name_or_path == REPO  # a hub id, not resolved as a path
    first = select_pipeline(cfg, progress=False)
    move_main(hub_cache, COMMIT_B)
    second = select_pipeline(cfg, progress=False)

    with Store(cfg.workspace.db) as store:
        pools = store.table("checkpoints").query("kind == 'pool'").sort_values("created_at")
        curvature, scorings = store.table("curvature"), store.table("scorings")
        line = model_line(store)
    assert [json.loads(m)["model"]["commit"] for m in pools["meta"]] == [COMMIT_A, COMMIT_B]
    assert pools["checkpoint_id"].nunique() == 2 and pools["path"].nunique() == 2
    assert len(curvature) == 2 and len(scorings) == 2  # fitted and scored once per commit
    ws = Path(cfg.workspace.dir)
    assert len(list((ws / "seeds").glob("*.safetensors"))) == 2
    assert line is not None and f"commit {COMMIT_B}" in line
    assert first != second


def test_a_local_model_edited_in_place_renews_every_model_key(workspace, tmp_path):
    """A local directory keeps its content hash: the same path with other weights is another
    model for the plain executor's file names and for every Prefect key of a stage that reads
    the model, while the stages that do not read it keep their keys."""
    from gdig.config import load_config
    from gdig.train import checkpoint_hash_of_base, model_hash
    from gdig_flows.tasks.keys import declared_key

    model = shutil.copytree(workspace.parent / "model", tmp_path / "model")
    cfg = load_config(write_config(tmp_path / "gdig.yaml", workspace, **{"model.name_or_path": str(model)}))
    reference = {"n_rows": 96, "key": "ref"}

    def keys():
        return (checkpoint_hash_of_base(cfg), declared_key("finetune-pool", cfg, {"cfg": cfg, "reference": reference}),
                declared_key("base-model", cfg, {"cfg": cfg}),
                declared_key("export", cfg, {"cfg": cfg, "selection": {"selection_id": "s"}}))

    before = keys()
    assert before[0] == model_hash(str(workspace.parent / "model"))  # the id of earlier versions
    perturbed_copy(workspace.parent / "model", tmp_path / "v2", 0.5)
    shutil.copy(tmp_path / "v2" / "model.safetensors", model / "model.safetensors")
    after = keys()
    assert [b != a for b, a in zip(before, after)] == [True, True, True, False]
