"""A tiny demo-pair workspace shared by tests in several folders: a tiny llama that knows the
demo language pair and a small noisy pool config."""

from __future__ import annotations

import pytest

@pytest.fixture(scope="module")
def demo_model_dir(tmp_path_factory):
    """A tiny llama whose tokenizer knows the demo language pair (so prompts stay short)."""
    from gdig.demo import generate_pairs
    from gdig.modeling import build_tiny_model

    pairs = generate_pairs(400, seed=5)
    texts = list(pairs["src"]) + list(pairs["tgt"]) + ["Translate the following Aldric text into Borish. Aldric: Borish:"] * 20
    return build_tiny_model(texts, tmp_path_factory.mktemp("tiny-demo"), arch="llama", pad_token=False, hidden=32, layers=1, intermediate=64, vocab_size=384)


def demo_config(tmp_path, model_dir, **selection) -> dict:
    from gdig.demo import write_demo_data

    files = write_demo_data(tmp_path / "data", n_pool=120, n_seed=6, n_eval=4, n_general=4, noise_rate=0.3, seed=1)
    return {
        "workspace": {"db": str(tmp_path / "ws.duckdb"), "dir": str(tmp_path / "artifacts")},
        "languages": {"src": "xa", "tgt": "xb"},
        "data": {"candidates": [{"path": str(files["pool"])}], "seed": [{"path": str(files["seed"])}]},
        "model": {"name_or_path": str(model_dir)},
        "prompt": {"max_length": 192},
        "prefilter": {"enabled": False},  # the paper's pipeline: every pool row is scored
        "influence": {
            "curvature": {"strategy": "kfac", "batch_size": 16, "sample": 32},
            "scoring": {"batch_size": 32, "shard_size": 80, "sketch_dim_g": 4, "sketch_dim_a": 4},
        },
        "selection": {"budgets": [20, 60], "strategies": ["gdig", "quality", "random", "diversity", "full"],
                      "gamma": 0.5, **selection},
    }
