"""Stage 1 (the model on the pool) and the proof's models: the base and one per selection."""

from __future__ import annotations

from gdig.stages import StageContext


def finetune_pool(ctx: StageContext, reference: dict) -> dict:
    """The checkpoint whose gradients drive selection: finetuned on the reference pool (so
    appended candidates never refit it), given (pool_finetune.checkpoint), or the base model."""
    from gdig.train import pool_checkpoint

    return pool_checkpoint(ctx.cfg, ctx.store, progress=ctx.progress, n_rows=reference["n_rows"],
                           code=ctx.code_key("finetune"))


def base_model(ctx: StageContext) -> dict:
    """The base model itself as a store checkpoint: the before-finetuning reference row."""
    from gdig.train import base_checkpoint

    ckpt = base_checkpoint(ctx.cfg, ctx.store)
    return {**ckpt, "strategy": None, "budget": None, "selection_id": None}


def finetune_selection(ctx: StageContext, selection: dict) -> dict:
    """The BASE model finetuned on one selection, for the same number of steps at a budget."""
    from gdig.train import finetune_on_selection, steps_for_budget

    steps = steps_for_budget(selection["budget"], ctx.cfg.finetune)
    ckpt = finetune_on_selection(ctx.cfg, ctx.store, selection["selection_id"], steps, progress=ctx.progress,
                                 code=ctx.code_key("finetune"))
    return {**ckpt, "strategy": selection["strategy"], "budget": selection["budget"],
            "selection_id": selection["selection_id"], "steps": steps}
