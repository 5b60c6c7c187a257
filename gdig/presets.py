"""Named presets: a config's `preset: <name>` fills in a whole setting; keys the config gives
itself win over the preset's.  One place for every preset gdig ships.

``paper``: G-DIG as the official code runs it (Pan et al., ACL 2024, and its reference
implementation): finetune the model on the candidate pool first (full finetuning;
``pool_finetune.method: lora`` by choice) and take every gradient at that checkpoint, with the
curvature fitted on that same pool; the reference code's module map (``official``: BLOOM
``dense_h_to_4h`` of every layer, Llama family ``down_proj`` of layers 0, 3, 6, ...); K-FAC with
per-example (sequence) factors and the π-damping of the reference code at λ = 0.5; seeds in
pairs, an odd last seed dropped; candidate and seed gradients cut to rank 32 (the randomized
low-rank step of ``torch.svd_lowrank``, seeded); a candidate is high-quality when it helps every
seed pair (γ = 1), ranked by helped fraction then mean influence; K-means on gradient sketches
with even turns across clusters; no prefilter and none of gdig's rules.
"""

from __future__ import annotations

import copy
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "prefilter": {"enabled": False},
        "pool_finetune": {"enabled": True, "method": "full", "epochs": 1.0},
        "influence": {
            "modules": {"preset": "official", "layers": None, "lora_only": False},
            "loss": "mean",
            "curvature": {"strategy": "kfac", "granularity": "sequence", "kfac_damping": "pi", "damping": 0.5,
                          "sample": None},
            "seed_set": {"batch_size": 2, "last_group": "drop", "weighting": "tokens", "low_rank": None},
            "gradient_rank": {"rank": 32, "method": "randomized", "niter": 2},
        },
        "selection": {"gamma": 1.0, "quality": "paper", "allocation": "even", "within_cluster": "random",
                      "closing_loss_max": None, "source_gain_min": None},
    },
}


def preset_section(name: str, section: str) -> dict[str, Any]:
    """One section of a preset's overlay (empty where the preset leaves it alone)."""
    if name not in PRESETS:
        raise ValueError(f"preset: unknown {name!r}; one of {', '.join(sorted(PRESETS))}")
    return copy.deepcopy(PRESETS[name].get(section, {}))


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def apply_preset(data: dict[str, Any]) -> dict[str, Any]:
    """The config dict with its preset's settings under the keys it sets itself (no preset: as is)."""
    name = data.get("preset")
    if name is None:
        return data
    if name not in PRESETS:
        raise ValueError(f"preset: unknown {name!r}; one of {', '.join(sorted(PRESETS))}")
    return _merge(PRESETS[name], data)
