"""Finetuning: loss goes down, save/load round trip, exact resume, equal compute, stages."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from gdig.config import GdigConfig, ModelConfig, PromptConfig, TrainConfig
from gdig.data.prompts import IGNORE, collate
from gdig.modeling import checkpoint_hash, load_model
from gdig.train import (
    DONE_FILE, RESUME_DIR, BatchSchedule, TrainError, encode_frame, finetune, finetune_on_selection,
    load_training_frame, make_scheduler, pool_checkpoint, steps_for_budget, total_steps,
)

ROWS = [
    {"src": "der Hund lief", "tgt": "the dog ran", "src_lang": "de", "tgt_lang": "en"},
    {"src": "das Haus ist rot", "tgt": "the house is red", "src_lang": "de", "tgt_lang": "en"},
    {"src": "ein kleiner Satz", "tgt": "a small sentence", "src_lang": "de", "tgt_lang": "en"},
    {"src": "die Katze sass", "tgt": "the cat sat on the mat", "src_lang": "de", "tgt_lang": "en"},
    {"src": "gross und rot", "tgt": "big and red", "src_lang": "de", "tgt_lang": "en"},
]


def _state(path):
    model, _ = load_model(str(path))
    return {k: v.clone() for k, v in model.state_dict().items()}


def _target_loss(model, tok, rows):
    enc, _ = encode_frame(tok, load_training_frame(rows), PromptConfig())
    b = collate(enc, tok.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)), b["labels"][:, 1:].reshape(-1), ignore_index=IGNORE
    ).item()


def test_training_lowers_loss_and_saves_loadable_checkpoint(tiny_model_dir, tmp_path):
    mc = ModelConfig(name_or_path=str(tiny_model_dir))
    before = _target_loss(*load_model(str(tiny_model_dir)), ROWS)
    tc = TrainConfig(batch_size=2, grad_accum=2, lr=5e-3, epochs=6, warmup_ratio=0.1, save_every=1000)
    res = finetune(mc, PromptConfig(), tc, pd.DataFrame(ROWS), tmp_path / "out", progress=False)
    assert res.steps == total_steps(3, tc) == 9  # 3 length buckets, 6 epochs, 2 per step
    assert len(res.losses) == 9 and res.losses[-1] < res.losses[0]
    model, tok = load_model(res.path)  # a plain save_pretrained checkpoint
    after = _target_loss(model, tok, ROWS)
    assert after < before - 0.5
    info = json.loads((tmp_path / "out" / DONE_FILE).read_text())
    assert info["steps"] == 9 and not (tmp_path / "out" / RESUME_DIR).exists()
    # a second call with the same inputs reuses the finished run
    again = finetune(mc, PromptConfig(), tc, pd.DataFrame(ROWS), tmp_path / "out", progress=False)
    assert again.reused and again.losses == res.losses
    with pytest.raises(TrainError, match="finished run of different data"):
        finetune(mc, PromptConfig(), tc, pd.DataFrame(ROWS[:3]), tmp_path / "out", progress=False)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_resume_after_crash_gives_identical_weights(tiny_model_dir, tmp_path, method):
    mc = ModelConfig(name_or_path=str(tiny_model_dir))
    tc = TrainConfig(method=method, lora_r=4, lora_dropout=0.1, batch_size=2, grad_accum=2, lr=5e-3,
                     max_steps=7, save_every=3, warmup_ratio=0.2, scheduler="cosine", seed=3)
    ref = finetune(mc, PromptConfig(), tc, ROWS, tmp_path / "ref", progress=False)

    seen = []

    def crash(step, loss):
        seen.append(step)
        if step == 5:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        finetune(mc, PromptConfig(), tc, ROWS, tmp_path / "run", progress=False, on_step=crash)
    assert seen == [1, 2, 3, 4, 5]
    assert (tmp_path / "run" / RESUME_DIR / "state.pt").exists() and not (tmp_path / "run" / DONE_FILE).exists()
    resumed = finetune(mc, PromptConfig(), tc, ROWS, tmp_path / "run", progress=False,
                       on_step=lambda step, loss: seen.append(step))
    assert resumed.resumed_from == 3 and seen[5:] == [4, 5, 6, 7]  # continues after the last save
    assert resumed.losses == ref.losses
    a, b = _state(ref.path), _state(resumed.path)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    base = _state(tiny_model_dir)
    assert any(not torch.equal(a[k], base[k]) for k in a)  # training changed the (merged) weights
    if method == "lora":
        assert (tmp_path / "ref" / "adapter" / "adapter_config.json").exists()
        assert set(a) == set(base)  # merged: a plain model with the base's parameter names
    assert checkpoint_hash(ref.path) == checkpoint_hash(resumed.path)


def test_resume_state_of_other_settings_is_refused(tiny_model_dir, tmp_path):
    mc = ModelConfig(name_or_path=str(tiny_model_dir))
    tc = TrainConfig(batch_size=2, max_steps=4, save_every=2)
    with pytest.raises(RuntimeError):
        finetune(mc, PromptConfig(), tc, ROWS, tmp_path, progress=False,
                 on_step=lambda s, l: (_ for _ in ()).throw(RuntimeError("x")) if s == 3 else None)
    with pytest.raises(TrainError, match="resume state of a different run"):
        finetune(mc, PromptConfig(), tc.model_copy(update={"lr": 1e-3}), ROWS, tmp_path, progress=False)


class _Payload:
    """Unpickling it creates a file: the proof that a pickle ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_crafted_pickle_resume_state_runs_nothing_and_training_starts_over(tiny_model_dir, tmp_path):
    mc = ModelConfig(name_or_path=str(tiny_model_dir))
    tc = TrainConfig(batch_size=2, max_steps=4, save_every=2, seed=1)
    ref = finetune(mc, PromptConfig(), tc, ROWS, tmp_path / "ref", progress=False)
    state = tmp_path / "run" / RESUME_DIR / "state.pt"
    state.parent.mkdir(parents=True)
    marker = tmp_path / "pickle-ran"
    torch.save({"step": 2, "params": _Payload(str(marker))}, state)
    with pytest.warns(UserWarning, match=rf"{state}: not a resume state gdig reads .*finetuning from the start"):
        run = finetune(mc, PromptConfig(), tc, ROWS, tmp_path / "run", progress=False)
    assert not marker.exists()
    assert run.resumed_from == 0 and run.losses == ref.losses
    assert checkpoint_hash(ref.path) == checkpoint_hash(run.path)
    control = tmp_path / "control.pt"
    torch.save({"step": 2, "params": _Payload(str(marker))}, control)
    torch.load(control, weights_only=False)  # the control: what the old load would have run
    assert marker.exists()


def test_batch_schedule_is_deterministic_and_covers_each_epoch():
    lengths = [5, 3, 9, 4, 7, 3, 8]
    s1, s2 = BatchSchedule(lengths, 2, seed=1), BatchSchedule(lengths, 2, seed=1)
    seq1 = [s1.micro_batch(k) for k in range(12)]
    assert seq1 == [s2.micro_batch(k) for k in range(12)]
    assert sorted(i for b in seq1[:4] for i in b) == list(range(7))  # one epoch = every row once
    assert seq1[:4] != seq1[4:8]  # reshuffled per epoch
    assert seq1 != [BatchSchedule(lengths, 2, seed=2).micro_batch(k) for k in range(12)]


def test_steps_for_budget_and_schedule():
    tc = TrainConfig(batch_size=8, grad_accum=2, epochs=3)
    assert steps_for_budget(100, tc) == 20  # ceil(3 * ceil(100/8) / 2) = ceil(19.5)
    assert steps_for_budget(1, tc) == 2
    assert steps_for_budget(100, tc.model_copy(update={"max_steps": 7})) == 7
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sch = make_scheduler(opt, "linear", warmup=2, total=10)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    assert lrs[:3] == pytest.approx([1 / 3, 2 / 3, 1.0]) and lrs[-1] == pytest.approx(1 / 8)


def test_training_frame_errors_name_the_row(tmp_path):
    p = tmp_path / "train.jsonl"
    p.write_text('{"src": "a", "tgt": "b"}\n{"src": "c", "tgt": ""}\n')
    with pytest.raises(TrainError, match=r"train.jsonl:2: empty or missing 'tgt'"):
        load_training_frame(p, "de", "en")
    p.write_text('{"src": "a", "tgt": "b"}\nnot json\n')
    with pytest.raises(TrainError, match=r"train.jsonl:2: not valid JSON"):
        load_training_frame(p, "de", "en")
    df = load_training_frame([{"src": "a", "tgt": "b"}], "de", "en")
    assert (df["src_lang"].iloc[0], df["tgt_lang"].iloc[0]) == ("de", "en")


def _pool_store(store, n=6):
    df = pd.DataFrame({
        "example_id": [f"p{i}" for i in range(n)], "src_lang": "de", "tgt_lang": "en",
        "src": [ROWS[i % 5]["src"] + f" {i}" for i in range(n)], "tgt": [ROWS[i % 5]["tgt"] for i in range(n)],
        "source_file": "pool.jsonl", "source_row": range(n),
    })
    store.add_rows(dataset="pool", role="candidates", src_lang="de", tgt_lang="en", rows=df)
    return df


def test_pool_and_selection_stages(tiny_model_dir, store, tmp_path):
    pool = _pool_store(store)
    cfg = GdigConfig(
        workspace={"dir": str(tmp_path / "ws")}, languages={"src": "de", "tgt": "en"},
        model={"name_or_path": str(tiny_model_dir)},
        pool_finetune={"enabled": False}, finetune={"batch_size": 2, "save_every": 1000},
    )
    base = pool_checkpoint(cfg, store, progress=False)
    assert base["path"] == str(tiny_model_dir) and store.get_checkpoint(base["checkpoint_id"])["kind"] == "base"
    cfg.pool_finetune = cfg.pool_finetune.model_copy(update={"enabled": True, "max_steps": 2, "batch_size": 3})
    ck = pool_checkpoint(cfg, store, progress=False)
    assert "checkpoints/pool-" in ck["path"] and ck["checkpoint_id"] == checkpoint_hash(ck["path"])
    row = store.get_checkpoint(ck["checkpoint_id"])
    assert row["kind"] == "pool" and row["meta"]["steps"] == 2 and row["meta"]["n_examples"] == 6
    assert pool_checkpoint(cfg, store, progress=False) == ck  # idempotent
    sel = pd.DataFrame({"example_id": list(pool["example_id"][:3]), "rank": [0, 1, 2], "reason": "random"})
    store.add_selection("sel-r", strategy="random", budget=3, df=sel, scoring_id=None)
    out = finetune_on_selection(cfg, store, "sel-r", max_steps=steps_for_budget(3, cfg.finetune), progress=False)
    row = store.get_checkpoint(out["checkpoint_id"])
    assert row["kind"] == "finetune" and row["selection_id"] == "sel-r"
    assert row["meta"]["steps"] == 2 and row["meta"]["strategy"] == "random" and row["meta"]["budget"] == 3
    store.add_selection("sel-q", strategy="quality", budget=3, df=sel, scoring_id=None)  # the same rows
    other = finetune_on_selection(cfg, store, "sel-q", max_steps=2, progress=False)
    assert other["checkpoint_id"] != out["checkpoint_id"]  # metrics of the two strategies stay apart
    assert _state(other["path"]).keys() == _state(out["path"]).keys()
    with pytest.raises(TrainError, match="selection 'nope' is empty or unknown"):
        finetune_on_selection(cfg, store, "nope", max_steps=1, progress=False)


def test_prepare_demo_small(tmp_path):
    import yaml

    from gdig.config import load_config
    from gdig.demo import CONFIG_PATH, prepare_demo
    from gdig.store import Store
    from gdig.data.ingest import ingest_config

    small = {"n_pool": 40, "n_seed": 4, "n_eval": 5, "n_general": 30, "pretrain_steps": 2, "hidden": 32,
             "intermediate": 64, "vocab_size": 300}
    path = prepare_demo(tmp_path / "demo", progress=False, demo_overrides=small)
    # one source of the demo's sizes: the package's config file, with the overrides on top
    assert yaml.safe_load(path.read_text())["demo"] == {**yaml.safe_load(CONFIG_PATH.read_text())["demo"],
                                                        **small, "seed": 0}
    cfg = load_config(path)
    assert cfg.model.name_or_path == str(tmp_path / "demo" / "models" / "base") and cfg.pool_finetune.enabled
    assert json.loads((tmp_path / "demo" / "models" / "base" / DONE_FILE).read_text())["steps"] == 2
    with Store(cfg.workspace.db) as s:
        names = ingest_config(cfg, s, progress=False)
        pool = s.dataset_examples("pool")
        assert names["eval"] == ["eval"] and len(pool) == 40 and pool["label"].ne("clean").sum() == 12
    with pytest.raises(ValueError, match="unknown demo setting"):
        prepare_demo(tmp_path / "x", progress=False, demo_overrides={"n_pol": 3})


def test_lora_pool_checkpoint_gives_influence_its_adapter(tiny_model_dir, tmp_path):
    """influence.modules.lora_only on a LoRA pool checkpoint: the base model with the unmerged
    adapter on top (the same function as the merged checkpoint), its adapter linears chosen."""
    from gdig.influence.modules import select_from_config
    from gdig.influence.compute import _load

    mc = ModelConfig(name_or_path=str(tiny_model_dir))
    tc = TrainConfig(method="lora", lora_r=4, batch_size=2, lr=5e-2, epochs=2, save_every=1000)
    res = finetune(mc, PromptConfig(), tc, pd.DataFrame(ROWS), tmp_path / "pool", progress=False)
    data = {"languages": {"src": "de", "tgt": "en"}, "model": {"name_or_path": str(tiny_model_dir)}}
    merged_cfg = GdigConfig.model_validate(data)
    adapter_cfg = GdigConfig.model_validate({**data, "influence": {"modules": {"lora_only": True}}})
    merged, tok = _load(merged_cfg, res.path, None)
    adapted, _ = _load(adapter_cfg, res.path, None)
    enc, _ = encode_frame(tok, load_training_frame(ROWS), PromptConfig())
    b = collate(enc, tok.pad_token_id)
    with torch.no_grad():
        a = merged(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        c = adapted(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    torch.testing.assert_close(a, c, atol=1e-5, rtol=1e-5)
    base, _ = load_model(str(tiny_model_dir))
    with torch.no_grad():  # the adapter moved the model: the equality above is not the base's twice
        assert (base(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits - a).abs().max() > 1e-3
    assert not select_from_config(merged, merged_cfg.influence.modules)[0].name.count("lora_")
    names = [m.name for m in select_from_config(adapted, adapter_cfg.influence.modules)]
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    assert any(".mlp." in n and ".lora_A." in n for n in names)
    with pytest.raises(Exception, match="no LoRA adapter modules"):  # a merged model has none
        select_from_config(merged, adapter_cfg.influence.modules)


def test_packed_rows_and_their_hash_are_those_of_the_lists(tiny_model_dir, monkeypatch):
    """encode_frame packs rows chunk by chunk (here 3 rows a chunk): every row comes back as
    encode_examples gave it, indices in the report count from the frame's start, and the
    streamed tokens hash is json_hash of the lists."""
    import gdig.train as train
    from gdig.data.prompts import encode_examples
    from gdig.workspace import json_hash

    _, tok = load_model(str(tiny_model_dir))
    rows = [{"src": f"source {i} " * (1 + i % 3), "tgt": f"target {i} " * (1 + 60 * (i == 4)), "src_lang": "de",
             "tgt_lang": "en"} for i in range(8)]
    df = load_training_frame(rows)
    prompt = PromptConfig(max_length=48)
    monkeypatch.setattr(train, "ENCODE_CHUNK", 3)
    with pytest.warns(UserWarning, match=r"3 target\(s\) truncated to fit max_length \(rows \[2, 4, 5\]"):
        packed, summary = encode_frame(tok, df, prompt)
    lists, _ = encode_examples(tok, zip(df["src"], df["tgt"], df["src_lang"], df["tgt_lang"]), prompt.template,
                               prompt.max_length, prompt.too_long)
    assert len(packed) == 8 and list(packed) == lists and packed[-1] == lists[-1]
    assert packed.lengths() == [len(e.input_ids) for e in lists] and packed[4].truncated
    assert train.tokens_hash(packed) == json_hash([e.input_ids + e.labels for e in lists], None)
    assert train.tokens_hash([]) == json_hash([], None)
