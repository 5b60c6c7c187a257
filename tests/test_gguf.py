"""Loading a GGUF file through transformers (`gguf_file=`), offline.

The tiny Llama of the fixtures is written as GGUF the way llama.cpp's converter does it
(F32 tensors under llama.cpp names, q/k rows permuted for its rotary layout, the
byte-level BPE vocabulary as a "gpt2" tokenizer), then loaded back by gdig's own
`load_model(dir, gguf_file=...)` from a directory that holds nothing but that file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

_LAYER_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
}
_TOP_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
              "lm_head.weight": "output.weight"}


def _permute_for_llama_cpp(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp stores q/k rows interleaved per head (its rotary layout); transformers undoes this."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_llama_gguf(model, tokenizer_dir: Path, out_file: Path) -> Path:
    cfg = model.config
    w = gguf.GGUFWriter(str(out_file), "llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(float(cfg.rope_parameters["rope_theta"]))
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    tj = json.loads((tokenizer_dir / "tokenizer.json").read_text(encoding="utf-8"))
    tokens = [""] * cfg.vocab_size
    for token, i in tj["model"]["vocab"].items():
        tokens[i] = token
    special = {a["id"] for a in tj["added_tokens"] if a.get("special")}
    for a in tj["added_tokens"]:
        tokens[a["id"]] = a["content"]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]])
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    w.add_unk_token_id(tokens.index("<unk>"))
    w.add_add_bos_token(True)

    for key, value in model.state_dict().items():
        arr = value.detach().float().numpy()
        if key in _TOP_NAMES:
            w.add_tensor(_TOP_NAMES[key], arr)
            continue
        _, _, layer, *rest = key.split(".")  # model.layers.{i}.{module}.weight
        module = ".".join(rest[:-1])
        if module == "self_attn.q_proj":
            arr = _permute_for_llama_cpp(arr, cfg.num_attention_heads)
        elif module == "self_attn.k_proj":
            arr = _permute_for_llama_cpp(arr, cfg.num_key_value_heads)
        w.add_tensor(f"blk.{layer}.{_LAYER_NAMES[module]}.weight", np.ascontiguousarray(arr))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out_file


def test_gguf_file_loads_with_same_logits_and_tokens(tiny_model_dir, tmp_path):
    from gdig.modeling import checkpoint_hash, load_model

    ref_model, ref_tok = load_model(str(tiny_model_dir))
    gguf_dir = tmp_path / "gguf"
    gguf_dir.mkdir()
    write_llama_gguf(ref_model, Path(tiny_model_dir), gguf_dir / "tiny-f32.gguf")
    assert sorted(p.name for p in gguf_dir.iterdir()) == ["tiny-f32.gguf"]  # no config.json, no tokenizer.json

    model, tok = load_model(str(gguf_dir), gguf_file="tiny-f32.gguf")
    assert model.config.num_hidden_layers == ref_model.config.num_hidden_layers
    texts = ["the cat sat on the mat", "Translate the following German text into English.\nGerman: das Haus"]
    for text in texts:
        assert tok(text)["input_ids"] == ref_tok(text)["input_ids"]
    assert tok.eos_token_id == ref_tok.eos_token_id and tok.pad_token_id == tok.eos_token_id  # padded with EOS
    ids = torch.tensor([ref_tok(texts[1])["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref_model(ids).logits, rtol=0, atol=1e-5)
    h = checkpoint_hash(gguf_dir, gguf_file="tiny-f32.gguf")
    assert h == checkpoint_hash(gguf_dir, gguf_file="tiny-f32.gguf") and h != checkpoint_hash(tiny_model_dir)


@pytest.fixture(scope="module")
def gguf_demo(tmp_path_factory):
    """The demo-language tiny Llama of the pipeline tests, as a directory holding only a GGUF file."""
    from gdig.demo import generate_pairs
    from gdig.modeling import build_tiny_model, load_model

    pairs = generate_pairs(400, seed=5)
    texts = list(pairs["src"]) + list(pairs["tgt"]) + ["Translate the following Aldric text into Borish. Aldric: Borish:"] * 20
    src = build_tiny_model(texts, tmp_path_factory.mktemp("tiny-demo-hf"), arch="llama", hidden=32, layers=2,
                           intermediate=64, vocab_size=384)
    model, _ = load_model(str(src))
    out = tmp_path_factory.mktemp("tiny-demo-gguf")
    write_llama_gguf(model, Path(src), out / "tiny.gguf")
    return out


def test_gguf_model_saves_as_dense_safetensors(gguf_demo, tmp_path):
    from gdig.modeling import load_model

    model, tok = load_model(str(gguf_demo), gguf_file="tiny.gguf")
    assert getattr(model, "hf_quantizer", None) is None and not hasattr(model.config, "quantization_config")
    model.save_pretrained(tmp_path / "saved")  # transformers refuses this for a GGUF-marked model
    tok.save_pretrained(tmp_path / "saved")
    again, tok2 = load_model(str(tmp_path / "saved"))
    ids = torch.tensor([tok("Aldric: Borish:")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(again(ids).logits, model(ids).logits)
    assert tok2("Aldric: Borish:")["input_ids"] == ids[0].tolist()


def test_select_and_lora_finetune_run_on_the_gguf_file_itself(gguf_demo, tmp_path):
    """`model.gguf_file` reaches every stage that loads the model: pool finetune (LoRA on the top
    layer, saved as a merged dense checkpoint), curvature, seeds, scoring; then a selection finetune."""
    from tiny_workspace import demo_config

    from gdig.config import parse_config
    from gdig.pipeline import select_pipeline
    from gdig.store import Store
    from gdig.train import finetune_on_selection

    data = demo_config(tmp_path, gguf_demo)
    data["model"] = {"name_or_path": str(gguf_demo), "gguf_file": "tiny.gguf"}
    data["selection"]["strategies"] = ["gdig", "random"]
    data["pool_finetune"] = {"enabled": True, "method": "lora", "lora_layers": [-1], "lora_r": 2, "max_steps": 2,
                             "batch_size": 16, "lr": 1e-3}
    cfg = parse_config(data)
    summary = select_pipeline(cfg, progress=False)
    assert {(r.strategy, r.budget) for r in summary.selections} == {("gdig", 20), ("gdig", 60), ("random", 20), ("random", 60)}
    with Store(cfg.workspace.db) as store:
        pool = store.table("checkpoints")
        pool = pool[pool["kind"] == "pool"].iloc[0]
        adapter = json.loads((Path(pool["path"]) / "adapter" / "adapter_config.json").read_text())
        assert adapter["target_modules"] and all(".layers.1." in m for m in adapter["target_modules"])  # top of two
        sid = summary.selections[0].selection_id
        ck = finetune_on_selection(cfg, store, sid, max_steps=1, progress=False)
    assert (Path(ck["path"]) / "model.safetensors").exists()
