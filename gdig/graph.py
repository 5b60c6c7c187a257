"""The stage graph of `gdig select` and `gdig run`, declared once.

`STAGES` declares every stage: its name (the Prefect task's name and the StageError prefix), the
gdig function that computes it, the inputs it takes (upstream results by parameter name), what
it returns, the config sections its result depends on, what one call works on (its label), and
whether it is mapped over shards.  Its Prefect task is generated from the declaration, and the
code its key covers is walked from its function's source (gdig.reach): nothing is listed twice.
`select`, `score`, `fit_curvature` and `prove` below are the stage order, written once: they
walk the graph through an executor,

    gdig.pipeline.PlainExecutor   every stage in this process (`--no-prefect`, notebooks)
    gdig_flows.tasks.executor.PrefectExecutor  one Prefect task per stage, mapped shards on a task runner

so both run the same stages with the same inputs in the same order.  No Prefect here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import import_module
from typing import Any, Callable, Protocol

from gdig.config import require_budgets_fit
from gdig.influence.strategies import curvature_strategy
from gdig.selection.rules import HQ_RULES, columns_read, thresholds


@dataclass(frozen=True)
class Stage:
    name: str
    run: str  # "module:function" of fn(ctx: StageContext, **inputs) -> result
    inputs: tuple[str, ...] = ()  # parameter names: upstream results and per-call values
    output: str = ""
    sections: tuple[str, ...] = ()  # config sections its result depends on ("a.b": a sub-section)
    modules: tuple[str, ...] = ()  # code its result depends on that its function's imports do not show
    maps: str | None = None  # mapped over shards: what one mapped pass is called
    uses_store: bool = True  # False: never opens the store, so it can run on any worker
    cached: bool = True  # False: recomputed every run (the report)
    settings: str | None = None  # "module:function" (cfg, inputs) -> settings read beyond `sections`
    reports_progress: bool = False  # its loops send progress events (tasks forward them to the run)
    label: Callable[[dict], str] | None = None  # (call parameters, cfg included) -> what this call works on
    names_run: bool = False  # its result is named and headed by the run (the report)
    repeats: bool = False  # runs once per shard, selection or eval set: its errors name the call (`label`)

    def function(self) -> Callable[..., Any]:
        module, name = self.run.split(":")
        return getattr(import_module(module), name)  # looked up per call: a patched function is used

    def code_modules(self) -> tuple[str, ...]:
        """Every gdig module its function can reach (gdig.reach: walked from the source), what
        its context hands it (StageContext, and the Store when it uses one) and `modules`."""
        return _code_modules(self)

    def settings_read(self, cfg, inputs: dict) -> Any:
        if self.settings is None:
            return None
        module, name = self.settings.split(":")
        return getattr(import_module(module), name)(cfg, inputs)

    def run_name(self, params: dict) -> str:
        """`<stage> <what>`: the task run's name (never raises)."""
        try:
            detail = self.label(params) if self.label else ""
        except Exception:
            detail = ""
        return f"{self.name} {detail}".strip()

    def error_name(self, params: dict) -> str:
        """What its errors start with: the run name for a stage that runs many times in one run
        (mapped, or per selection or eval set), else the stage's name."""
        return self.run_name(params) if self.maps or self.repeats else self.name


@lru_cache(maxsize=None)
def _code_modules(spec: Stage) -> tuple[str, ...]:
    from gdig.reach import modules_reached

    module, name = spec.run.split(":")
    found = set(modules_reached(module, name)) | set(modules_reached("gdig.stages", "StageContext"))
    if spec.uses_store:
        found |= set(modules_reached("gdig.store", "Store"))
    return tuple(sorted(found | set(spec.modules)))


def settings_key(spec: Stage, cfg) -> str:
    """What a stage's result was made with, less its inputs: its config sections, the source
    of its code and the libraries' versions (a stage that keeps results in the store keys them
    by it: translations)."""
    from gdig.reach import library_versions, source_hash
    from gdig.workspace import config_hash, json_hash

    return json_hash({"config": config_hash(cfg, spec.sections),
                      "code": [source_hash(m) for m in spec.code_modules()],
                      "libraries": library_versions()}, 16)


# The files on disk and the stages whose code makes them: an artifact's name carries the code key
# of its kind (the source of every module those stages reach + the libraries' versions), so after
# an edit of that code, or a library upgrade, the file is rebuilt under a new name, never reused.
# Each kind's ids chain the kinds before it (products name their curvature, shards their products).
ARTIFACT_CODE = {
    "curvature": ("curvature-shard", "curvature-bases", "fit-curvature"),  # partials, bases, the fit, its id
    "seed-products": ("seed-products",),  # the products file and id (which name their curvature)
    "score-shards": ("score-shard",),  # shard files (named by curvature and products too)
    "scoring": ("score-shard", "merge-scores"),  # the scoring id and its candidate x seed matrix
    "finetune": ("finetune-pool", "finetune-selection"),  # checkpoint directories
}


def code_keys() -> dict[str, str]:
    """The code key of every kind of ARTIFACT_CODE (what StageContext.code_key hands a stage)."""
    from gdig.reach import library_versions, source_hash
    from gdig.workspace import json_hash

    libraries = library_versions()
    out = {}
    for kind, names in ARTIFACT_CODE.items():
        modules = sorted({m for n in names for m in stage(n).code_modules()})
        out[kind] = json_hash({"code": {m: source_hash(m) for m in modules}, "libraries": libraries}, 12)
    return out


# -- what each call works on (task run names, error prefixes) --------------------------------------

def _span(p: dict) -> str:
    rows = p["rows"]
    return f"[{int(rows['position'].min())}, {int(rows['position'].max()) + 1})" if len(rows) else "[0, 0)"


def _model(checkpoint: dict) -> str:
    return "base" if checkpoint.get("strategy") is None else f"{checkpoint['strategy']}@{checkpoint.get('budget')}"


def _workspace(p: dict) -> str:
    from gdig.runinfo import workspace_label

    return f"ws={workspace_label(p['cfg'])}"


def _curvature(p: dict) -> str:
    return p["cfg"].influence.curvature.strategy


def _selection(p: dict) -> str:
    return f"{p['selection']['strategy']}@{p['selection']['budget']}"


# what the model sees: every stage that runs it depends on these
MODEL_INPUT = ("languages", "model", "prompt", "influence.modules", "influence.loss")
CURVATURE = MODEL_INPUT + ("influence.curvature",)
EVALUATE = ("evaluate.batch_size", "evaluate.num_beams", "evaluate.max_new_tokens", "evaluate.length_ratio")

STAGES: tuple[Stage, ...] = (
    # 0. data
    Stage("ingest", "gdig.stages.data:ingest", (), "fingerprints of pool, seed, eval sets; the reference pool",
          ("languages", "data", "prompt", "orchestration.refit_on_append"),
          settings="gdig.stages.data:source_fingerprints", reports_progress=True, label=_workspace),
    Stage("prefilter", "gdig.stages.data:prefilter", ("data",), "verdict counts per rule per dataset",
          ("prefilter", "languages")),
    # 1. the model on the pool
    Stage("finetune-pool", "gdig.stages.model:finetune_pool", ("reference",), "checkpoint id + path",
          ("languages", "model", "prompt", "pool_finetune"), reports_progress=True, label=_workspace),
    # 2. curvature, mapped over shards of the reference pool
    Stage("plan-curvature", "gdig.stages.influence:plan_curvature", ("checkpoint", "reference"),
          "curvature id, aligned shards of rows, partial-file paths",
          CURVATURE + ("influence.scoring.shard_size",), label=_curvature),
    Stage("curvature-shard", "gdig.stages.influence:curvature_shard", ("checkpoint", "rows", "out_path", "bases"),
          "path of one shard's partial sums", CURVATURE, maps="curvature shards", uses_store=False,
          reports_progress=True, label=lambda p: ("eigenvalues " if p.get("bases") else "factors ") + _span(p)),
    Stage("curvature-bases", "gdig.stages.influence:curvature_bases", ("plan", "factors"),
          "path of the eigenbases (EK-FAC, between the passes)", CURVATURE, uses_store=False, label=_curvature),
    Stage("fit-curvature", "gdig.stages.influence:fit_curvature", ("checkpoint", "plan", "factors", "bases", "eigen"),
          "curvature id", CURVATURE, label=_curvature),
    # 3. seed side
    Stage("seed-products", "gdig.stages.influence:seed_products", ("checkpoint", "curvature", "seed"),
          "products path", CURVATURE + ("influence.seed_set", "influence.gradient_rank"), reports_progress=True,
          label=lambda p: f"{p['seed']['n_rows']} seeds"),
    # 4. influence, mapped over shards of the rows that pass the prefilter
    Stage("plan-shards", "gdig.stages.influence:plan_shards", ("pool", "prefilter", "curvature", "products"),
          "aligned shards of rows, Parquet paths", ("influence", "prompt"),
          label=lambda p: f"{p['pool']['n_rows']} candidates"),
    Stage("score-shard", "gdig.stages.influence:score_shard", ("checkpoint", "products", "rows", "out_path"),
          "paths of one shard's score files", MODEL_INPUT + ("influence.scoring", "influence.gradient_rank"),
          maps="score shards",
          uses_store=False, reports_progress=True, label=_span),
    Stage("merge-scores", "gdig.stages.influence:merge_scores", ("shards", "curvature", "products"), "scoring id",
          ("influence.scoring",), label=lambda p: f"{len(p.get('shards') or [])} shards"),
    # the source-gain rule's input (selection.source_gain_min; not run when it is off)
    Stage("source-free-loss", "gdig.stages.influence:source_free_loss", ("checkpoint", "scoring"),
          "the candidates' target loss without the source (in the store)",
          ("languages", "model", "prompt", "influence.loss"),  # rows already stored are kept: no batch size
          reports_progress=True),
    # 5-6. quality, diversity, per strategy x budget
    Stage("quality", "gdig.stages.selection:quality", ("scoring", "source_free"), "γ used and D_hq size per budget",
          ("selection.gamma", "selection.hq_multiple", "selection.quality",
           *(f"selection.{key}" for key in HQ_RULES), "selection.budgets"),
          label=lambda p: f"gamma={p['cfg'].selection.gamma}"),
    Stage("cluster-resample", "gdig.stages.selection:cluster_resample",
          ("scoring", "source_free", "strategy", "budget"), "selection id, size",
          settings="gdig.stages.selection:settings_read", repeats=True,
          label=lambda p: f"{p['strategy']}@{p['budget']}"),
    Stage("export", "gdig.stages.selection:export", ("selection",), "JSONL path", repeats=True, label=_selection),
    Stage("summarize-selection", "gdig.stages.selection:summarize", ("scoring", "prefilter", "exports"),
          "summary (dict + text)", ("selection",), label=_workspace),
    # 7. the proof: finetune on each selection, translate, score, report
    Stage("base-model", "gdig.stages.model:base_model", (), "the base model as a checkpoint", ("model",),
          label=_workspace),
    Stage("finetune-selection", "gdig.stages.model:finetune_selection", ("selection",), "checkpoint, steps",
          ("languages", "model", "prompt", "finetune"), reports_progress=True, repeats=True, label=_selection),
    Stage("translate", "gdig.stages.proof:translate", ("checkpoint", "eval_set"), "row count",
          ("languages", "model", "prompt") + EVALUATE, reports_progress=True,
          repeats=True, label=lambda p: f"{p['eval_set']['name']} by {_model(p['checkpoint'])}"),
    Stage("metrics", "gdig.stages.proof:metrics", ("checkpoint", "translation"),
          "BLEU, chrF, COMET (or why not), the references' NLL", ("languages", "evaluate.comet"),
          repeats=True, label=lambda p: f"{p['translation']['eval_set']} by {_model(p['checkpoint'])}"),
    Stage("report", "gdig.stages.proof:report", ("summary", "metrics"), "report paths, comparison table",
          cached=False, label=_workspace, names_run=True),
)
BY_NAME = {s.name: s for s in STAGES}

# the stage that computes a column a D_hq rule reads beyond the scoring's (gdig.selection.rules.HqRule.reads);
# it runs only while a rule that reads it is on
COLUMN_STAGES = {"source_free_loss": "source-free-loss"}


def needed_stages(rules) -> set[str]:
    """The stages the D_hq rules that are on need (`rules`: threshold by rule key)."""
    return {COLUMN_STAGES[column] for column in columns_read(rules)}


def stage(name: str) -> Stage:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no stage {name!r} in the graph; stages: {', '.join(BY_NAME)}") from None


def check_call(spec: Stage, inputs: dict, mapped: bool) -> None:
    """An executor's guard: the walk passes only declared inputs, and maps only mapped stages."""
    unknown = sorted(set(inputs) - set(spec.inputs))
    if unknown:
        raise TypeError(f"stage {spec.name!r} declares inputs {list(spec.inputs)}, was given {unknown}")
    if mapped != (spec.maps is not None):
        raise TypeError(f"stage {spec.name!r} is {'' if spec.maps else 'not '}mapped over shards")


class Executor(Protocol):
    cfg: Any

    def run(self, name: str, **inputs) -> Any: ...

    def map(self, name: str, calls: list[dict], what: str | None = None) -> list[Any]: ...


# -- the stage order ------------------------------------------------------------------------------

def fit_curvature(ex: Executor, checkpoint: dict, reference: dict) -> dict:
    """Step 2: partial sums per shard of the reference pool, summed in shard order (EK-FAC: then
    eigenbases and a second mapped pass for the corrected eigenvalues)."""
    plan = ex.run("plan-curvature", checkpoint=checkpoint, reference=reference)
    factors = ex.map("curvature-shard", [{"checkpoint": checkpoint, "rows": s["rows"], "out_path": s["factors_path"]}
                                         for s in plan["shards"]])
    bases = eigen = None
    if curvature_strategy(ex.cfg).eigen_pass:
        bases = ex.run("curvature-bases", plan=plan, factors=factors)
        eigen = ex.map("curvature-shard", [{"checkpoint": checkpoint, "rows": s["rows"], "out_path": s["eigen_path"],
                                            "bases": bases} for s in plan["shards"]], "curvature eigenvalue shards")
    return ex.run("fit-curvature", checkpoint=checkpoint, plan=plan, factors=factors, bases=bases, eigen=eigen)


def score(ex: Executor) -> dict:
    """Steps 0-4: data, prefilter, pool model, curvature, seed products, scores of the pool."""
    data = ex.run("ingest")
    require_budgets_fit(ex.cfg, data["pool"]["n_rows"])
    screened = ex.run("prefilter", data=data)
    checkpoint = ex.run("finetune-pool", reference=data["reference"])
    curvature = fit_curvature(ex, checkpoint, data["reference"])
    products = ex.run("seed-products", checkpoint=checkpoint, curvature=curvature, seed=data["seed"])
    shards = ex.run("plan-shards", pool=data["pool"], prefilter=screened["datasets"].get("pool"),
                    curvature=curvature, products=products)
    scored = ex.map("score-shard", [{"checkpoint": checkpoint, "products": products, "rows": s["rows"],
                                     "out_path": s["out_path"]} for s in shards])
    scoring = ex.run("merge-scores", shards=scored, curvature=curvature, products=products)
    return {"data": data, "prefilter": screened, "checkpoint": checkpoint, "curvature": curvature,
            "products": products, "scoring": scoring}


def select(ex: Executor) -> dict:
    """`gdig select`: the scores, then quality, cluster + resample and export per strategy x budget."""
    from gdig.stages.selection import reads_quality, selection_jobs

    scored = score(ex)
    scoring = scored["scoring"]
    source_free = None
    if "source-free-loss" in needed_stages(thresholds(ex.cfg.selection)):  # one more forward per row
        source_free = ex.run("source-free-loss", checkpoint=scored["checkpoint"], scoring=scoring)
    high_quality = ex.run("quality", scoring=scoring, source_free=source_free)
    selections = [ex.run("cluster-resample", scoring=scoring, source_free=source_free if reads_quality(s) else None,
                         strategy=s, budget=b)
                  for s, b in selection_jobs(ex.cfg)]
    exports = [ex.run("export", selection=selection) for selection in selections]
    # the verdict counts, not the prefilter's result: a new eval set judged leaves an unfiltered summary alone
    summary = ex.run("summarize-selection", scoring=scoring, prefilter=scored["prefilter"]["datasets"],
                     exports=exports)
    return {**scored, "source_free": source_free, "quality": high_quality, "selections": exports, "summary": summary}


def prove(ex: Executor, selected: dict, evaluate_base: bool = True) -> dict:
    """`gdig run` after the selection: the base model and a model finetuned on every selection
    (same steps per budget), each eval set translated and scored, then the report."""
    eval_sets = selected["data"]["eval"]

    def evaluate(model: dict) -> list[dict]:
        return [ex.run("metrics", checkpoint=model, translation=ex.run("translate", checkpoint=model, eval_set=e))
                for e in eval_sets]

    baseline = evaluate(ex.run("base-model")) if evaluate_base else []
    models, scores = [], []
    for selection in selected["selections"]:
        models.append(ex.run("finetune-selection", selection=selection))
        scores += evaluate(models[-1])
    report = ex.run("report", summary=selected["summary"], metrics=scores)
    return {**selected, "models": models, "metrics": scores, "baseline": baseline, "report": report}


def describe() -> str:
    """The declaration as a markdown table (docs/DESIGN.md shows it; a test keeps them equal)."""
    rows = ["| stage | inputs | returns | config sections | mapped |", "|---|---|---|---|---|"]
    for s in STAGES:
        rows.append(f"| `{s.name}` | {', '.join(s.inputs) or '—'} | {s.output} | "
                    f"{', '.join(s.sections) or ('settings it reads' if s.settings else '—')} | {s.maps or ''} |")
    return "\n".join(rows)
