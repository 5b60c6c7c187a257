"""Finetuning: the model on the pool (step 1) and the proof models on each selection."""

from __future__ import annotations

from prefect import task

from gdig.config import GdigConfig
from tasks.keys import own_key, stage_policy
from tasks.progress import watch
from tasks.runtime import progress_bars, open_store, stage


@task(name="finetune-pool", cache_policy=stage_policy(
    "finetune_pool", sections=("languages", "model", "prompt", "pool_finetune"),
    modules=("gdig.train", "gdig.data.prompts"),
))
def finetune_pool(cfg: GdigConfig, reference: dict) -> dict:
    """The checkpoint whose gradients drive selection (trained on the reference pool, or given)."""
    from gdig.pipeline import checkpoint_step

    with stage("finetune-pool"), watch(), open_store(cfg) as store:
        ckpt = checkpoint_step(cfg, store, progress=progress_bars())
    return {**ckpt, "key": own_key()}


@task(name="base-model", cache_policy=stage_policy(
    "base_model", sections=("model",), modules=("gdig.train",),
))
def base_model(cfg: GdigConfig) -> dict:
    """The base model itself as a store checkpoint: the before-finetuning reference row."""
    from gdig.train import base_checkpoint_stage

    with stage("base-model"), open_store(cfg) as store:
        ckpt = base_checkpoint_stage(cfg, store)
    return {**ckpt, "strategy": None, "budget": None, "selection_id": None, "key": own_key()}


@task(name="finetune-selection", cache_policy=stage_policy(
    "finetune_selection", sections=("languages", "model", "prompt", "finetune"),
    modules=("gdig.train", "gdig.data.prompts"),
))
def finetune_selection(cfg: GdigConfig, selection: dict) -> dict:
    """The base model finetuned on one selection, for the same number of steps at a budget."""
    from gdig.train import finetune_selection_stage, steps_for_budget

    with stage(f"finetune-selection {selection['strategy']}-{selection['budget']}"), watch(), open_store(cfg) as store:
        steps = steps_for_budget(selection["budget"], cfg.finetune)
        ckpt = finetune_selection_stage(cfg, store, selection["selection_id"], steps, progress=progress_bars())
    return {**ckpt, "strategy": selection["strategy"], "budget": selection["budget"],
            "selection_id": selection["selection_id"], "steps": steps, "key": own_key()}
