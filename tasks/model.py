"""Finetuning: the model on the pool (stage 1) and the proof models (gdig.stages.model)."""

from __future__ import annotations

from prefect import task

from gdig.config import GdigConfig
from tasks.executor import call_stage
from tasks.keys import stage_policy


@task(name="finetune-pool", cache_policy=stage_policy("finetune-pool"))
def finetune_pool(cfg: GdigConfig, reference: dict) -> dict:
    """The checkpoint whose gradients drive selection (trained on the reference pool, or given)."""
    return call_stage("finetune-pool", cfg, reference=reference)


@task(name="base-model", cache_policy=stage_policy("base-model"))
def base_model(cfg: GdigConfig) -> dict:
    """The base model itself as a store checkpoint: the before-finetuning reference row."""
    return call_stage("base-model", cfg)


@task(name="finetune-selection", cache_policy=stage_policy("finetune-selection"))
def finetune_selection(cfg: GdigConfig, selection: dict) -> dict:
    """The base model finetuned on one selection, for the same number of steps at a budget."""
    return call_stage("finetune-selection", cfg, f"finetune-selection {selection['strategy']}-{selection['budget']}",
                      selection=selection)
