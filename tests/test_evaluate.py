"""Generation (stopping, caps, left padding), sacrebleu parity with its CLI, COMET absence, the table."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from gdig.config import CometConfig, GdigConfig, ModelConfig, PromptConfig, TrainConfig
from gdig.evaluate import (
    bleu_tokenizer, comet_score, comparison_markdown, comparison_table, corpus_bleu_chrf,
    new_token_cap, score_eval_set, translate, write_comparison,
)
from gdig.modeling import load_model
from gdig.train import finetune

TEMPLATE = "{src_lang_name}: {src}\n{tgt_lang_name}: "  # short prompt: a cheap memorisation
MEMO = [  # targets the tiny model memorises: one ends at a newline, one at EOS
    {"src": "der Hund", "tgt": "the dog\nsat on the mat", "src_lang": "de", "tgt_lang": "en"},
    {"src": "das Haus ist rot", "tgt": "the house is red", "src_lang": "de", "tgt_lang": "en"},
    {"src": "ein kleiner Satz zum Testen", "tgt": "a small test sentence", "src_lang": "de", "tgt_lang": "en"},
    {"src": "der Hund lief schnell nach Hause", "tgt": "the cat sat", "src_lang": "de", "tgt_lang": "en"},
]


@pytest.fixture(scope="module")
def memorised(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("memo")
    tc = TrainConfig(batch_size=4, max_steps=60, lr=1e-2, warmup_ratio=0.0, scheduler="constant", save_every=1000)
    finetune(ModelConfig(name_or_path=str(tiny_model_dir)), PromptConfig(template=TEMPLATE), tc, MEMO, out,
             progress=False)
    return load_model(str(out))


def test_generation_stops_at_newline_and_eos(memorised):
    model, tok = memorised
    rows = pd.DataFrame(MEMO)
    out = translate(model, tok, rows, TEMPLATE, batch_size=4, max_new_tokens=64, progress=False)
    assert list(out["hypothesis"]) == ["the dog", "the house is red", "a small test sentence", "the cat sat"]
    assert list(out["stopped"]) == ["newline", "eos", "eos", "eos"]
    # the newline row stopped generating right after the newline token, not at the cap
    assert out["n_new_tokens"].iloc[0] < new_token_cap(len(tok("der Hund", add_special_tokens=False)["input_ids"]), 64, 2.0)


def test_length_cap_cuts_each_row(memorised):
    model, tok = memorised
    assert new_token_cap(10, 256, 2.0) == 28 and new_token_cap(10, 5, 2.0) == 5 and new_token_cap(3, 256, 0.5) == 10
    out = translate(model, tok, pd.DataFrame(MEMO[1:3]), TEMPLATE, max_new_tokens=2, progress=False)
    assert list(out["stopped"]) == ["length", "length"]
    assert list(out["n_new_tokens"]) == [2, 2]
    beams = translate(model, tok, pd.DataFrame(MEMO), TEMPLATE, num_beams=3, max_new_tokens=64, progress=False)
    assert list(beams["hypothesis"]) == ["the dog", "the house is red", "a small test sentence", "the cat sat"]


def test_left_padding_equals_unbatched(memorised):
    model, tok = memorised
    rows = pd.DataFrame(MEMO + [{"src": "ein Satz", "tgt": "x", "src_lang": "de", "tgt_lang": "en"}])
    lengths = {len(tok(s)["input_ids"]) for s in rows["src"]}
    assert len(lengths) > 2  # the batch really mixes prompt lengths
    batched = translate(model, tok, rows, TEMPLATE, batch_size=8, max_new_tokens=20, progress=False)
    single = translate(model, tok, rows, TEMPLATE, batch_size=1, max_new_tokens=20, progress=False)
    pd.testing.assert_frame_equal(batched, single)


HYPS = ["The cat sat on a mat.", "A small tests", "the house is big and red", "", "Hello, world!"]
REFS = ["The cat sat on the mat.", "A small test.", "The house is red and big.", "nothing here", "Hello world!"]


def test_bleu_chrf_equal_sacrebleu_cli(tmp_path):
    (tmp_path / "hyp.txt").write_text("\n".join(HYPS) + "\n", encoding="utf-8")
    (tmp_path / "ref.txt").write_text("\n".join(REFS) + "\n", encoding="utf-8")
    cli = subprocess.run(
        [sys.executable, "-m", "sacrebleu", str(tmp_path / "ref.txt"), "-i", str(tmp_path / "hyp.txt"),
         "-m", "bleu", "chrf", "-w", "4"],
        capture_output=True, text=True, check=True,
    )
    printed = json.loads(cli.stdout)
    ours = corpus_bleu_chrf(HYPS, REFS, "en")
    for mine, theirs in zip(ours, printed):
        assert f"{mine.value:.4f}" == f"{theirs['score']:.4f}"
        assert mine.signature == theirs["signature"]
    assert ours[0].value > 0 and ours[1].value > 0


def test_bleu_tokenizer_per_language():
    assert bleu_tokenizer("zh") == ("zh", None)
    assert bleu_tokenizer("de") == ("13a", None)
    try:
        import MeCab  # noqa: F401
        pytest.skip("MeCab is installed here")
    except ImportError:
        pass
    tok, note = bleu_tokenizer("ja")
    assert tok == "13a" and "ja-mecab is not installed" in note
    zh = corpus_bleu_chrf(["我爱你"], ["我爱你们"], "zh")[0]
    assert "tok:zh" in zh.signature


def test_comet_absence_is_reported_not_faked():
    r = comet_score(["a"], ["b"], ["c"], CometConfig(model="Unbabel/wmt22-comet-da"))
    assert r.value is None
    assert r.signature.startswith("COMET: not available (unbabel-comet is not installed")
    r = comet_score(["a"], ["b"], ["c"], CometConfig(model=None))
    assert r.value is None and "evaluate.comet.model is not set" in r.signature


def _eval_set(store, name="dev"):
    df = pd.DataFrame({
        "example_id": [f"{name}{i}" for i in range(len(REFS))], "src_lang": "de", "tgt_lang": "en",
        "src": [f"quelle {i}" for i in range(len(REFS))], "tgt": REFS,
        "source_file": "dev.jsonl", "source_row": range(len(REFS)),
    })
    store.add_rows(dataset=name, role="eval", src_lang="de", tgt_lang="en", rows=df)
    return df


def test_metrics_stage_writes_rows_and_table(store, tmp_path):
    df = _eval_set(store)
    cfg = GdigConfig(languages={"src": "de", "tgt": "en"}, model={"name_or_path": "unused"},
                     evaluate={"comet": {"model": "Unbabel/wmt22-comet-da"}})
    expected = corpus_bleu_chrf(HYPS, REFS, "en")
    for strategy, budget, shift in [("random", 100, 0), ("gdig", 100, 1), ("gdig", 200, 2)]:
        ck = {"checkpoint_id": f"ck-{strategy}-{budget}", "path": "x"}
        hyps = HYPS[shift:] + HYPS[:shift] if shift else HYPS
        store.add_translations(ck["checkpoint_id"], "dev", pd.DataFrame({"example_id": df["example_id"], "hypothesis": hyps}))
        res = score_eval_set(cfg, store, ck, "dev", strategy=strategy, budget=budget, selection_id=f"s{shift}")
        if shift == 0:
            assert res["BLEU"] == pytest.approx(expected[0].value) and res["chrF"] == pytest.approx(expected[1].value)
        assert res["COMET"] is None and any("not available" in n for n in res["notes"])
    m = store.metrics()
    assert len(m) == 12 and m.loc[m["metric"].isin(["COMET", "NLL"]), "value"].isna().all()  # no NLL kept here
    table = comparison_table(store)
    assert list(table.index) == ["gdig", "random"]
    assert list(table.columns) == ["BLEU@100", "chrF@100", "BLEU@200", "chrF@200"]
    assert table.loc["random", "BLEU@100"] == round(expected[0].value, 2)
    assert pd.isna(table.loc["random", "BLEU@200"])
    assert any("COMET: not available (unbabel-comet is not installed" in n for n in table.attrs["notes"])
    md = comparison_markdown(table)
    assert "COMET: not available" in md and "| gdig" in md
    paths = write_comparison(store, tmp_path / "cmp")
    back = pd.read_csv(paths["csv"], index_col=0)
    assert back.loc["random", "chrF@100"] == pytest.approx(round(expected[1].value, 2))


def test_comparison_table_several_eval_sets_and_empty(store):
    assert comparison_table(store).empty
    for name in ("dev", "test"):
        store.add_metric(f"ck-{name}", name, "BLEU", 10.0, "sig", strategy="gdig", budget=50)
    assert list(comparison_table(store).columns) == ["dev:BLEU@50", "test:BLEU@50"]


def _key(cfg) -> str:
    """The translate stage's settings key, as the executors hand it to the stage."""
    from gdig import graph

    return graph.settings_key(graph.stage("translate"), cfg)


def test_translate_stage_reuses_a_complete_set_made_with_the_same_settings(store, monkeypatch):
    import gdig.evaluate as ev

    df = _eval_set(store)
    calls = []

    def fake_translate(model, tok, rows, template, **kw):
        calls.append((template, kw["num_beams"]))
        return pd.DataFrame({"hypothesis": [f"h{len(calls)}-{i}" for i in range(len(rows))],
                             "n_new_tokens": 3, "stopped": "newline"})

    monkeypatch.setattr(ev, "translate", fake_translate)
    monkeypatch.setattr(ev, "target_nll", lambda model, tok, rows, template, **kw: pd.DataFrame(
        {"nll": [1.0] * len(rows), "target_tokens": [2] * len(rows)}))
    monkeypatch.setattr(ev, "load_checkpoint_model", lambda cfg, path: (None, None))
    ck = {"checkpoint_id": "ck", "path": "x"}
    cfg = GdigConfig(languages={"src": "de", "tgt": "en"}, model={"name_or_path": "unused"})
    assert ev.translate_eval_set(cfg, store, ck, "dev", _key(cfg)) == len(df) and len(calls) == 1
    assert ev.translate_eval_set(cfg, store, ck, "dev", _key(cfg)) == len(df) and len(calls) == 1  # reused
    assert store.translations("ck", "dev")["hypothesis"].tolist()[0] == "h1-0"
    beams = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update={"num_beams": 4})})
    ev.translate_eval_set(beams, store, ck, "dev", _key(beams))  # a generation setting changed: translated again
    assert len(calls) == 2 and calls[-1][1] == 4
    ev.translate_eval_set(cfg, store, ck, "dev", _key(cfg))  # and back: the stored set is the 4-beam one
    assert len(calls) == 3
    other = cfg.model_copy(update={"prompt": cfg.prompt.model_copy(update={"template": TEMPLATE})})
    ev.translate_eval_set(other, store, ck, "dev", _key(other))
    assert len(calls) == 4 and calls[-1][0] == TEMPLATE
    # a set stored without a key (before keys were kept), or missing a row, is translated again
    store.add_translations("ck", "dev", pd.DataFrame({"example_id": df["example_id"], "hypothesis": "old"}))
    ev.translate_eval_set(other, store, ck, "dev", _key(other))
    assert len(calls) == 5
    store.add_translations("ck", "dev", store.translations("ck", "dev").iloc[1:].assign(meta=[{"key": _key(other)}] * (len(df) - 1)))
    ev.translate_eval_set(other, store, ck, "dev", _key(other))
    assert len(calls) == 6
    ev.translate_eval_set(other, store, ck, "dev", _key(other))
    assert len(calls) == 6


def test_target_nll_is_the_references_summed_cross_entropy(tiny_model_dir, store):
    """Per row: the cross-entropy of the reference's target tokens (+ EOS) after the prompt,
    summed, against a dense computation one row at a time; the metric is sum over sum."""
    from gdig.data.prompts import build_prompt
    from gdig.evaluate import reference_nll, target_nll
    import torch

    model, tok = load_model(str(tiny_model_dir))
    template = "German: {src}\nEnglish: "
    rows = pd.DataFrame({"src": ["das Haus ist rot", "der Hund", "ein kleiner Satz zum Testen"],
                         "tgt": ["the house is red", "the dog", "a small test sentence"], "src_lang": "de",
                         "tgt_lang": "en"})
    got = target_nll(model, tok, rows, template, max_length=64, too_long="truncate_target", batch_size=2)
    for i, r in rows.iterrows():
        prompt = tok(build_prompt(template, r["src"], "de", "en"), add_special_tokens=True)["input_ids"]
        target = tok(r["tgt"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = torch.tensor([prompt + target])
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
        dense = -sum(float(logp[len(prompt) + j - 1, t]) for j, t in enumerate(target))
        assert got.loc[i, "target_tokens"] == len(target)
        assert got.loc[i, "nll"] == pytest.approx(dense, rel=1e-5)
    metric = reference_nll(got)
    assert metric.value == pytest.approx(got["nll"].sum() / got["target_tokens"].sum())
    assert "lower is better" in metric.signature
    assert reference_nll(pd.DataFrame({"nll": [None], "target_tokens": [None]})).value is None


def test_comparison_table_of_one_run_and_newest_otherwise(store):
    # the same strategy finetuned by three runs (other finetune settings): three checkpoints;
    # the newest is stored first under an id that sorts first, so neither order hides the bug
    for ck, value in [("ck-c", 30.0), ("ck-a", 10.0), ("ck-b", 20.0)]:
        store.add_metric(ck, "dev", "BLEU", value, "sig", strategy="gdig", budget=50)
    store.con.execute("UPDATE metrics SET created_at = created_at + INTERVAL 1 HOUR WHERE checkpoint_id = 'ck-a'")
    assert comparison_table(store, {"ck-b"}).loc["gdig", "BLEU@50"] == 20.0
    assert comparison_table(store, {"ck-c"}).loc["gdig", "BLEU@50"] == 30.0
    assert comparison_table(store).loc["gdig", "BLEU@50"] == 10.0  # no run named: the newest
    assert comparison_table(store, set()).empty
