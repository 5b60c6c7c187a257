"""Which linear modules enter the influence computation.

A module is picked by regexes over its qualified name (``re.search``), optionally
restricted to some transformer layers, from a preset per architecture family:

- ``llama``  (Llama, Qwen, Mistral, Gemma...): ``mlp.gate_proj``, ``mlp.up_proj``, ``mlp.down_proj``
- ``bloom``: ``mlp.dense_h_to_4h`` (as the G-DIG reference code)
- ``gpt2``: ``mlp.c_fc``, ``mlp.c_proj`` (HF ``Conv1D``: the weight is stored [in, out])
- ``auto``: from ``model.config.model_type``, else the first preset that matches anything
- ``official``: the G-DIG reference code's map, by family: BLOOM ``mlp.dense_h_to_4h`` of every
  layer; Llama family ``mlp.down_proj`` of every third layer, counted from the first (layer
  indices 0, 3, 6, ...); ``layers`` then keeps only those of its indices that the map has
- ``none``: only the ``include`` patterns

All gradients in gdig.influence use the ``nn.Linear`` layout [out, in]: for a ``Conv1D``
the weight gradient is the transpose of what we compute.  With ``lora_only`` (peft models)
the chosen modules are the ``lora_A``/``lora_B`` linears of the adapted modules matched by
the patterns; without it, an adapted module's frozen ``base_layer`` is matched under the
adapted module's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch.nn as nn

from gdig.errors import BadInput
from gdig.influence.strategies import MODULE_FAMILIES, MODULE_PRESETS

PRESETS: dict[str, list[str]] = MODULE_FAMILIES  # family -> regexes over module names

# model_type -> preset for ``auto``
MODEL_TYPE_PRESET = {
    "llama": "llama", "mistral": "llama", "mixtral": "llama", "qwen2": "llama", "qwen3": "llama",
    "gemma": "llama", "gemma2": "llama", "gemma3_text": "llama", "phi3": "llama", "olmo": "llama",
    "olmo2": "llama", "bloom": "bloom", "gpt2": "gpt2",
}

# family -> (patterns, layer stride) of the G-DIG reference code's module map
OFFICIAL: dict[str, tuple[list[str], int]] = {
    "llama": ([r"mlp\.down_proj$"], 3),
    "bloom": ([r"mlp\.dense_h_to_4h$"], 1),
}

_LORA_LEAF = re.compile(r"\.lora_[AB]\.[^.]+$")
_LAYER = re.compile(r"\.(\d+)\.")
_BASE_LAYER = re.compile(r"\.base_layer$")


class ModuleSelectionError(BadInput, ValueError):
    pass


@dataclass(frozen=True)
class ChosenModule:
    name: str
    module: nn.Module
    kind: str  # "linear" | "conv1d"
    in_features: int
    out_features: int
    has_bias: bool

    @property
    def in_dim(self) -> int:
        """Width of the captured input a: one extra ones column when the module has a bias."""
        return self.in_features + int(self.has_bias)

    @property
    def spec(self) -> dict:
        return {"name": self.name, "kind": self.kind, "in": self.in_features,
                "out": self.out_features, "bias": self.has_bias}


def _is_conv1d(m: nn.Module) -> bool:
    return type(m).__name__ == "Conv1D" and hasattr(m, "nf") and m.weight.dim() == 2


def _describe(name: str, m: nn.Module) -> ChosenModule | None:
    if isinstance(m, nn.Linear):
        return ChosenModule(name, m, "linear", m.in_features, m.out_features, m.bias is not None)
    if _is_conv1d(m):
        n_in, n_out = m.weight.shape  # Conv1D stores [in, out]
        return ChosenModule(name, m, "conv1d", n_in, n_out, m.bias is not None)
    return None


def layer_index(name: str) -> int | None:
    """The first integer path component (``model.layers.3.mlp.up_proj`` -> 3)."""
    m = _LAYER.search(f".{name}.")
    return int(m.group(1)) if m else None


def _family(model: nn.Module, preset: str) -> str:
    """The architecture family of ``auto`` and ``official``: from model_type, else by module names."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type in MODEL_TYPE_PRESET:
        return MODEL_TYPE_PRESET[model_type]
    names = [n for n, _ in model.named_modules()]
    for family, pats in PRESETS.items():
        if any(re.search(p, n) for p in pats for n in names):
            return family
    raise ModuleSelectionError(
        f"influence.modules.preset={preset}: no preset fits model_type {model_type!r}; "
        "set influence.modules.include to regexes over module names"
    )


def resolve_map(model: nn.Module, preset: str) -> tuple[list[str], int]:
    """(patterns, layer stride) of a preset: stride k keeps layer indices 0, k, 2k, ... only."""
    if preset == "none":
        return [], 1
    if preset == "official":
        family = _family(model, preset)
        if family not in OFFICIAL:
            raise ModuleSelectionError(
                f"influence.modules.preset=official: the G-DIG reference code maps only BLOOM and Llama-family "
                f"models, not this {family!r} model; use preset auto or name the modules with include")
        pats, stride = OFFICIAL[family]
        return list(pats), stride
    if preset == "auto":
        return PRESETS[_family(model, preset)], 1
    if preset not in PRESETS:
        raise ModuleSelectionError(f"unknown module preset {preset!r}; one of {', '.join(MODULE_PRESETS)}")
    return PRESETS[preset], 1


def resolve_preset(model: nn.Module, preset: str) -> list[str]:
    return resolve_map(model, preset)[0]


def select_modules(
    model: nn.Module,
    preset: str = "auto",
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    layers: list[int] | None = None,
    lora_only: bool = False,
) -> list[ChosenModule]:
    """The chosen linear modules, in model order.  Raises when nothing matches (naming examples)."""
    preset_pats, stride = resolve_map(model, preset)
    pats = preset_pats + list(include or [])
    if not pats:
        raise ModuleSelectionError("no module patterns: set influence.modules.preset or include")
    excl = list(exclude or [])
    candidates: list[tuple[str, str, nn.Module]] = []  # (name to match, real name, module)
    for name, m in model.named_modules():
        if lora_only:
            if not _LORA_LEAF.search(name):
                continue
            candidates.append((_LORA_LEAF.sub("", name), name, m))
        else:
            if ".lora_" in name:
                continue
            # peft wraps an adapted linear as <name>.base_layer: match it under <name>
            candidates.append((_BASE_LAYER.sub("", name), name, m))
    if lora_only and not candidates:
        raise ModuleSelectionError("influence.modules.lora_only: the model has no LoRA adapter modules")

    all_layers = [i for _, n, _ in candidates if (i := layer_index(n)) is not None]
    n_layers = max(all_layers) + 1 if all_layers else 0
    wanted = None
    if layers is not None:
        wanted = set()
        for i in layers:
            j = i + n_layers if i < 0 else i
            if not 0 <= j < n_layers:
                raise ModuleSelectionError(f"influence.modules.layers: index {i} out of range for {n_layers} layers")
            wanted.add(j)

    chosen: list[ChosenModule] = []
    for match_name, name, m in candidates:
        if not any(re.search(p, match_name) for p in pats):
            continue
        if any(re.search(p, match_name) or re.search(p, name) for p in excl):
            continue
        if wanted is not None and layer_index(name) not in wanted:
            continue
        # the preset's layer stride applies to its own patterns, not to `include`
        if stride > 1 and any(re.search(p, match_name) for p in preset_pats) \
                and not any(re.search(p, match_name) for p in include or []):
            idx = layer_index(name)
            if idx is None or idx % stride:
                continue
        desc = _describe(name, m)
        if desc is not None:
            chosen.append(desc)
    if not chosen:
        sample = [n for n, m in model.named_modules() if _describe(n, m) is not None][:8]
        raise ModuleSelectionError(
            f"no linear module matches patterns {pats} (exclude {excl}, layers {layers}); "
            f"linear modules look like: {sample}"
        )
    return chosen


def select_from_config(model: nn.Module, modules_cfg) -> list[ChosenModule]:
    return select_modules(model, modules_cfg.preset, modules_cfg.include, modules_cfg.exclude,
                          modules_cfg.layers, modules_cfg.lora_only)
