"""Module selection: presets per architecture, Conv1D, layers, include/exclude, LoRA-only."""

from __future__ import annotations

import pytest

from gdig.influence.modules import ModuleSelectionError, layer_index, select_modules
from gdig.modeling import load_model


def names(mods):
    return [m.name for m in mods]


def test_gpt2_preset_picks_conv1d_mlp(tiny_gpt2_dir):
    model, _ = load_model(str(tiny_gpt2_dir))
    mods = select_modules(model, "auto")
    assert names(mods) == [f"transformer.h.{i}.mlp.c_{k}" for i in (0, 1) for k in ("fc", "proj")]
    fc = mods[0]
    assert (fc.kind, fc.in_features, fc.out_features, fc.has_bias, fc.in_dim) == ("conv1d", 64, 128, True, 65)
    assert fc.module.weight.shape == (64, 128)  # Conv1D stores [in, out]


def test_bloom_preset_and_layers(tiny_bloom_dir):
    model, _ = load_model(str(tiny_bloom_dir))
    assert names(select_modules(model, "auto")) == ["transformer.h.0.mlp.dense_h_to_4h", "transformer.h.1.mlp.dense_h_to_4h"]
    mods = select_modules(model, "bloom", layers=[-1])
    assert names(mods) == ["transformer.h.1.mlp.dense_h_to_4h"]
    assert (mods[0].kind, mods[0].out_features, mods[0].has_bias) == ("linear", 256, True)


def test_llama_preset_include_exclude_and_errors(tiny_model_dir):
    model, _ = load_model(str(tiny_model_dir))
    assert names(select_modules(model, "auto", layers=[0])) == [
        "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj", "model.layers.0.mlp.down_proj"]
    got = names(select_modules(model, "none", include=[r"self_attn\.o_proj$"], exclude=[r"layers\.0\."]))
    assert got == ["model.layers.1.self_attn.o_proj"]
    with pytest.raises(ModuleSelectionError, match="no linear module matches"):
        select_modules(model, "none", include=["nothing_like_this"])
    with pytest.raises(ModuleSelectionError, match="out of range"):
        select_modules(model, "llama", layers=[5])
    with pytest.raises(ModuleSelectionError, match="unknown module preset"):
        select_modules(model, "opt")
    with pytest.raises(ModuleSelectionError, match="no LoRA adapter"):
        select_modules(model, "llama", lora_only=True)
    assert layer_index("model.layers.12.mlp.up_proj") == 12 and layer_index("lm_head") is None


def test_lora_only_selects_adapter_linears(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    model, _ = load_model(str(tiny_model_dir))
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["up_proj", "q_proj"]))
    mods = select_modules(peft_model, "llama", lora_only=True, layers=[1])
    assert [n.split("model.layers.")[1] for n in names(mods)] == [
        "1.mlp.up_proj.lora_A.default", "1.mlp.up_proj.lora_B.default"]
    assert [(m.in_features, m.out_features) for m in mods] == [(64, 4), (4, 128)]
    # without lora_only the adapted base layer is chosen, never the adapter pieces
    base = select_modules(peft_model, "llama", layers=[1], exclude=["gate", "down"])
    assert [n.split("model.layers.")[1] for n in names(base)] == ["1.mlp.up_proj.base_layer"]
