"""The stage graph declared once (gdig.graph): both executors walk it, cache keys follow from
what each stage declares, and the docs show the declaration as it is."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from gdig import graph
from gdig.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
CACHED = [s for s in graph.STAGES if s.cached]


def _cfg(tmp_path, **sections):
    return parse_config({"workspace": {"db": str(tmp_path / "w.duckdb"), "dir": str(tmp_path / "art")},
                         "languages": {"src": "de", "tgt": "en"}, "model": {"name_or_path": "sshleifer/tiny-gpt2"},
                         **sections})


def keys(cfg, strategy: str = "gdig") -> dict[str, str]:
    """Every cached stage's key for the same (content-free) inputs: only its declaration differs."""
    from gdig_flows.tasks.keys import declared_key

    return {s.name: declared_key(s.name, cfg, {"cfg": cfg, "strategy": strategy}, source="def task(): ...")
            for s in CACHED}


def changed(a: dict, b: dict) -> set[str]:
    return {k for k in a if a[k] != b[k]}


@pytest.mark.parametrize("module", ["gdig.influence.scoring", "gdig.influence.curvature", "gdig.train",
                                    "gdig.selection.diversity", "gdig.stages.influence", "gdig.workspace",
                                    "gdig.data.readers.tsv", "gdig.selection.rules", "gdig.prefilter.rules",
                                    "gdig.evaluate", "gdig.store.results", "gdig.stages"])
def test_a_code_change_renews_exactly_the_stages_that_reach_the_module(tmp_path, monkeypatch, module):
    import gdig_flows.tasks.keys

    cfg = _cfg(tmp_path)
    before = keys(cfg)
    real = gdig_flows.tasks.keys.source_hash
    monkeypatch.setattr(gdig_flows.tasks.keys, "source_hash", lambda m: "edited" if m == module else real(m))
    expected = {s.name for s in CACHED if module in s.code_modules()}
    assert expected and changed(before, keys(cfg)) == expected


def test_a_stage_covers_the_code_its_function_reaches_and_no_more():
    """The code modules come from walking the source (gdig.reach), lazy imports inside functions
    and the helpers of the stage's own module included; a module only another stage's function
    reaches is not in its key."""
    reached = {s.name: set(s.code_modules()) for s in graph.STAGES}
    # reached through ingest_config -> read_rows -> the formats table, never declared by hand
    assert {"gdig.data.ingest", "gdig.data.readers.tsv", "gdig.data.readers.moses"} <= reached["ingest"]
    assert {"gdig.prefilter.rules", "gdig.prefilter.verdicts"} <= reached["prefilter"]
    # plan-shards reads the prefilter's verdicts; quality the D_hq rules; report the report module
    assert "gdig.prefilter.verdicts" in reached["plan-shards"]
    assert {"gdig.selection.rules", "gdig.selection.quality"} <= reached["quality"]
    assert {"gdig.report", "gdig.evaluate"} <= reached["report"]
    # what the context hands a stage: StageContext and the workspace; the store when it uses one
    assert all({"gdig.stages", "gdig.workspace"} <= r for r in reached.values())
    assert "gdig.store.schema" in reached["quality"] and "gdig.store.schema" not in reached["score-shard"]
    # function-level: export writes a selection, it does not cluster one
    assert "gdig.selection.outputs" in reached["export"] and "gdig.selection.diversity" not in reached["export"]
    assert "gdig.influence.scoring" in reached["score-shard"]
    assert "gdig.influence.scoring" not in reached["curvature-shard"]
    assert not any("gdig.graph" in r or "gdig.pipeline" in r for r in reached.values())


def test_the_walk_follows_names_through_modules_and_packages():
    from gdig.reach import modules_reached

    # ingest -> gdig.data.ingest (lazy import) -> gdig.data.readers (package) -> rows -> formats -> tsv
    ingest = modules_reached("gdig.stages.data", "ingest")
    assert {"gdig.data.readers", "gdig.data.readers.rows", "gdig.data.readers.formats",
            "gdig.data.readers.tsv"} <= set(ingest)
    # `from gdig.data import validate as V` then `V.split_lines`: the module is reached
    assert "gdig.data.validate" in modules_reached("gdig.data.readers.tsv", "read_tsv")
    # a type hint runs no code: GdigConfig in an annotation does not reach gdig.config
    assert "gdig.config" not in modules_reached("gdig.stages.selection", "export")


def test_a_config_change_renews_exactly_the_stages_that_read_it(tmp_path):
    base = keys(_cfg(tmp_path))
    scoring = keys(_cfg(tmp_path, influence={"scoring": {"batch_size": 7}}))
    assert changed(base, scoring) == {"plan-shards", "score-shard", "merge-scores"}
    damping = keys(_cfg(tmp_path, influence={"curvature": {"damping": 0.1}}))
    assert changed(base, damping) == {"plan-curvature", "curvature-shard", "curvature-bases", "fit-curvature",
                                      "seed-products", "plan-shards"}
    gamma = _cfg(tmp_path, selection={"gamma": 0.3})
    assert changed(base, keys(gamma)) == {"quality", "cluster-resample", "summarize-selection"}
    # a strategy that does not read γ keeps its selection (cluster-resample's declared settings)
    assert changed(keys(_cfg(tmp_path), "random"), keys(gamma, "random")) == {"quality", "summarize-selection"}
    # the source-gain rule: the selections that read it, not the scoring (its forward is a stage of its own)
    gain = _cfg(tmp_path, selection={"source_gain_min": 0.25})
    assert changed(base, keys(gain)) == {"quality", "cluster-resample", "summarize-selection"}
    assert changed(keys(_cfg(tmp_path), "random"), keys(gain, "random")) == {"quality", "summarize-selection"}
    template = keys(_cfg(tmp_path, prompt={"template": "{src_lang}: {src}\n{tgt_lang}:"}))
    assert "source-free-loss" in changed(base, template)
    finetune = keys(_cfg(tmp_path, finetune={"lr": 1e-3}))
    assert changed(base, finetune) == {"finetune-selection"}


def test_every_stage_is_declared_once_with_a_task_of_its_name():
    from gdig_flows import tasks

    assert len(graph.BY_NAME) == len(graph.STAGES)
    assert set(tasks.TASKS) == set(graph.BY_NAME)
    for s in graph.STAGES:
        assert callable(s.function()), s.name
        fn_params = set(s.function().__code__.co_varnames[1:s.function().__code__.co_argcount])
        assert fn_params == set(s.inputs), (s.name, fn_params, s.inputs)  # what it takes is what it declares
        task_params = set(inspect.signature(tasks.TASKS[s.name].fn).parameters)
        assert task_params - {"cfg", "device"} == set(s.inputs), s.name


def test_executors_refuse_an_undeclared_input_or_a_wrong_mapping():
    with pytest.raises(TypeError, match="declares inputs"):
        graph.check_call(graph.stage("quality"), {"scoring": {}, "gamma": 1}, mapped=False)
    with pytest.raises(TypeError, match="is mapped over shards"):
        graph.check_call(graph.stage("score-shard"), {}, mapped=False)
    with pytest.raises(TypeError, match="is not mapped"):
        graph.check_call(graph.stage("quality"), {}, mapped=True)
    with pytest.raises(KeyError, match="no stage 'nope'"):
        graph.stage("nope")


def test_design_doc_shows_the_declared_graph():
    assert graph.describe() in (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")


def test_curvature_strategies_say_what_they_need():
    from gdig.influence.strategies import EKFAC, KFAC, curvature_strategy

    assert (KFAC.eigen_pass, EKFAC.eigen_pass) == (False, True)
    assert EKFAC.writes_bases and not KFAC.writes_bases
    assert curvature_strategy("kfac") is KFAC and curvature_strategy(parse_config({
        "languages": {"src": "de", "tgt": "en"}, "model": {"name_or_path": "x"}})) is EKFAC
    assert KFAC.damping_rule("pi", "absolute") == "pi" and EKFAC.damping_rule("pi", "absolute") == "absolute"
    with pytest.raises(ValueError, match="unknown curvature strategy 'shampoo'; known: kfac, ekfac"):
        curvature_strategy("shampoo")


def test_the_walk_follows_relative_and_literal_dynamic_imports_and_refuses_computed_ones(tmp_path, monkeypatch):
    import gdig.reach as reach

    pkg = tmp_path / "gdig"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "", "sub/__init__.py": "",
        "sub/stage.py": "from .helper import work\nfrom . import other\nfrom ..top import base\n"
                        "def run():\n    return work() + other.f() + base()\n",
        "sub/helper.py": "def work():\n    import importlib\n    return importlib.import_module('gdig.loaded').g()\n",
        "sub/other.py": "def f():\n    return 1\n",
        "top.py": "def base():\n    return 2\n",
        "loaded.py": "def g():\n    return 3\n",
        "sub/computed.py": "from importlib import import_module\ndef run(name):\n    return import_module(name)\n",
    }
    for name, text in files.items():
        (pkg / name).write_text(text, encoding="utf-8")
    monkeypatch.setattr(reach, "ROOT", pkg)
    reach._tree.cache_clear(), reach._top_level.cache_clear()
    try:
        assert set(reach.modules_reached("gdig.sub.stage", "run")) == {
            "gdig.sub", "gdig.sub.stage", "gdig.sub.helper", "gdig.sub.other", "gdig.top", "gdig.loaded"}
        with pytest.raises(reach.Unfollowable, match=r"computed.py:3: import_module\(\) with a name computed at run "
                                                     r"time; gdig cannot tell which code a stage runs through it"):
            reach.modules_reached("gdig.sub.computed", "run")
    finally:
        reach._tree.cache_clear(), reach._top_level.cache_clear()
