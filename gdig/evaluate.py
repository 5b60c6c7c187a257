"""Translate evaluation sets and score them: BLEU and chrF (sacrebleu), COMET when available,
and the references' target NLL under the model (nats per token, lower is better).

Generation is batched with LEFT padding (the new tokens of every row start at the same
column), greedy or beam search, and stops at EOS or at the first newline (the prompt puts
the translation on one line).  Each row may generate at most
``min(max_new_tokens, ceil(length_ratio * source_tokens) + 8)`` tokens; a batch generates
up to its longest cap and every row is then cut to its own cap, so greedy output does not
depend on which rows share a batch.

COMET is never faked: when ``evaluate.comet.model`` is unset, unbabel-comet is not
installed or the model cannot be loaded, the metric row holds NULL and its signature says
``COMET: not available (<reason>)``; the run goes on.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection

import pandas as pd
import torch

from gdig.config import CometConfig, GdigConfig
from gdig.data.prompts import build_prompt, length_batches
from gdig.selection.select import STRATEGIES
from gdig.workspace import atomic_file, write_text_atomic

log = logging.getLogger(__name__)

METRICS = ("BLEU", "chrF", "COMET", "NLL")


# -- generation -------------------------------------------------------------------------------

def new_token_cap(n_src_tokens: int, max_new_tokens: int, length_ratio: float) -> int:
    return max(1, min(max_new_tokens, math.ceil(length_ratio * n_src_tokens) + 8))


def _left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids, mask


def _finish(tokens: list[int], cap: int, tokenizer) -> tuple[str, int, str]:
    """Cut generated tokens at the row's cap, EOS, then the first newline: (text, n_tokens, why)."""
    tokens = tokens[:cap]
    why = "length"
    if tokenizer.eos_token_id in tokens:
        tokens = tokens[: tokens.index(tokenizer.eos_token_id)]
        why = "eos"
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    if "\n" in text:
        text, why = text[: text.index("\n")], "newline"
    return text.strip(), len(tokens), why


@torch.no_grad()
def translate(
    model,
    tokenizer,
    rows: pd.DataFrame,
    template: str,
    *,
    batch_size: int = 8,
    num_beams: int = 1,
    max_new_tokens: int = 256,
    length_ratio: float = 2.0,
    device: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Translate rows (src, src_lang, tgt_lang); returns hypothesis, n_new_tokens, stopped in row order."""
    from transformers import GenerationConfig, StoppingCriteriaList
    from transformers.generation.stopping_criteria import StopStringCriteria

    from gdig.progress import track

    if len(rows) == 0:
        return pd.DataFrame({"hypothesis": [], "n_new_tokens": [], "stopped": []})
    device = device or str(next(model.parameters()).device)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos is None:
        raise ValueError("tokenizer has no EOS token: generation could not stop")
    pad = eos if pad is None else pad
    prompts = [
        tokenizer(build_prompt(template, s, sl, tl), add_special_tokens=True)["input_ids"]
        for s, sl, tl in zip(rows["src"], rows["src_lang"], rows["tgt_lang"])
    ]
    caps = [
        new_token_cap(len(tokenizer(s, add_special_tokens=False)["input_ids"]), max_new_tokens, length_ratio)
        for s in rows["src"]
    ]
    out: list[tuple[str, int, str] | None] = [None] * len(rows)
    model.eval()
    # built once: it indexes the whole vocabulary (about a second for Gemma's 262k tokens), which
    # `stop_strings` in the generation config would redo for every batch
    stop_at_newline = StoppingCriteriaList([StopStringCriteria(tokenizer, ["\n"])])
    batches = length_batches([len(p) for p in prompts], batch_size)
    for idx in track(batches, "translate", unit="batch", enabled=progress):
        ids, mask = _left_pad([prompts[i] for i in idx], pad)
        gen_cfg = GenerationConfig(
            max_new_tokens=max(caps[i] for i in idx), num_beams=num_beams, do_sample=False,
            eos_token_id=eos, pad_token_id=pad, bos_token_id=tokenizer.bos_token_id,
        )
        gen = model.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=gen_cfg,
            stopping_criteria=stop_at_newline,
        )
        new = gen[:, ids.shape[1]:].tolist()
        for row, i in enumerate(idx):
            out[i] = _finish(new[row], caps[i], tokenizer)
    return pd.DataFrame(out, columns=["hypothesis", "n_new_tokens", "stopped"])


def target_nll(model, tokenizer, rows: pd.DataFrame, template: str, *, max_length: int, too_long: str,
               batch_size: int = 8, device: str | None = None) -> pd.DataFrame:
    """Per row (src, tgt, src_lang, tgt_lang): the summed cross-entropy of its reference target
    tokens (+ EOS) after the prompt, and their count; NaN / 0 for a row the encoding skips.

    The eval set's NLL is where a model that cannot yet translate still shows what finetuning
    taught it: it moves long before BLEU and chrF do."""
    from gdig.data.prompts import collate, encode_examples
    from gdig.influence.hooks import forward_loss

    device = device or str(next(model.parameters()).device)
    tuples = list(zip(rows["src"], rows["tgt"], rows["src_lang"], rows["tgt_lang"]))
    enc, _ = encode_examples(tokenizer, tuples, template, max_length,
                             "truncate_target" if too_long == "truncate_target" else "skip")
    nll, n_tok = [math.nan] * len(enc), [0] * len(enc)
    kept = [i for i, e in enumerate(enc) if e is not None]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.eval()
    with torch.no_grad():
        for b in length_batches([len(enc[i].input_ids) for i in kept], batch_size):
            idx = [kept[j] for j in b]
            batch = {k: v.to(device) for k, v in collate([enc[i] for i in idx], pad).items()}
            out = forward_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"], "sum")
            for i, loss, n in zip(idx, out.loss.float().tolist(), out.n_target.tolist()):
                nll[i], n_tok[i] = loss, int(n)
    return pd.DataFrame({"nll": nll, "target_tokens": n_tok})


def load_checkpoint_model(cfg: GdigConfig, path: str):
    """The base model of the config (its path) or a finetuned checkpoint dir, on cfg.model.device."""
    from gdig.modeling import load_from_config

    return load_from_config(cfg.model, checkpoint=path)


def translate_eval_set(cfg: GdigConfig, store, checkpoint: dict, eval_set: str, key: str,
                       progress: bool = True) -> int:
    """Translate one eval set with one checkpoint; hypotheses go to the store under `key` (what
    they are made with: the translate stage's settings key, gdig.graph.settings_key).  Returns
    the row count.  A complete set stored under the same key is reused, so a re-run in one
    process (the plain executor has no task cache) translates only what is new or what changed."""
    ex = store.dataset_examples(eval_set)
    stored = store.translation_keys(checkpoint["checkpoint_id"], eval_set)
    if len(ex) and set(stored["example_id"]) == set(ex["example_id"]) and (stored["key"] == key).all():
        log.info("translations of %s by %s reused (same settings and code)", eval_set, checkpoint["checkpoint_id"])
        return len(ex)
    model, tok = load_checkpoint_model(cfg, checkpoint["path"])
    ev = cfg.evaluate
    hyp = translate(
        model, tok, ex, cfg.prompt.template, batch_size=ev.batch_size, num_beams=ev.num_beams,
        max_new_tokens=ev.max_new_tokens, length_ratio=ev.length_ratio, device=cfg.model.device,
        progress=progress,
    )
    nll = target_nll(model, tok, ex, cfg.prompt.template, max_length=cfg.prompt.max_length,
                     too_long=cfg.prompt.too_long, batch_size=ev.batch_size, device=cfg.model.device)
    meta = [{"n_new_tokens": int(n), "stopped": s, "key": key, "nll": None if math.isnan(x) else x, "target_tokens": t}
            for n, s, x, t in zip(hyp["n_new_tokens"], hyp["stopped"], nll["nll"], nll["target_tokens"])]
    store.add_translations(
        checkpoint["checkpoint_id"], eval_set,
        pd.DataFrame({"example_id": ex["example_id"], "hypothesis": hyp["hypothesis"], "meta": meta}),
    )
    return len(hyp)


# -- metrics ----------------------------------------------------------------------------------

@dataclass
class MetricResult:
    name: str
    value: float | None  # None: not available (never a made-up number)
    signature: str
    notes: list[str] = field(default_factory=list)


_MECAB = {"ja": "ja-mecab", "ko": "ko-mecab"}


def bleu_tokenizer(tgt_lang: str | None) -> tuple[str, str | None]:
    """sacrebleu tokenizer for a target language: (name, note when a better one is missing)."""
    from sacrebleu.metrics import BLEU

    if tgt_lang == "zh":
        return "zh", None
    if tgt_lang in _MECAB:
        try:
            BLEU(tokenize=_MECAB[tgt_lang])
            return _MECAB[tgt_lang], None
        except (RuntimeError, ImportError, SystemExit) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            return "13a", f"{_MECAB[tgt_lang]} is not installed ({first}; pip install 'sacrebleu[{tgt_lang}]'): BLEU used tok 13a"
    return "13a", None


def corpus_bleu_chrf(hyps: list[str], refs: list[str], tgt_lang: str | None) -> list[MetricResult]:
    from sacrebleu.metrics import BLEU, CHRF

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    tok, note = bleu_tokenizer(tgt_lang)
    bleu, chrf = BLEU(tokenize=tok), CHRF()
    b = bleu.corpus_score(hyps, [refs])
    c = chrf.corpus_score(hyps, [refs])
    return [
        MetricResult("BLEU", float(b.score), str(bleu.get_signature()), [note] if note else []),
        MetricResult("chrF", float(c.score), str(chrf.get_signature())),
    ]


def comet_score(srcs: list[str], hyps: list[str], refs: list[str], comet_cfg: CometConfig,
                device: str = "cpu") -> MetricResult:
    """COMET system score x100, or value None with the reason it is not available."""
    def unavailable(reason: str) -> MetricResult:
        return MetricResult("COMET", None, f"COMET: not available ({reason})")

    if not comet_cfg.model:
        return unavailable("evaluate.comet.model is not set")
    try:
        import comet  # unbabel-comet
    except ImportError as err:
        return unavailable(f"unbabel-comet is not installed: {err}; pip install 'gdig[comet]'")
    try:
        path = comet_cfg.model if Path(comet_cfg.model).exists() else comet.download_model(comet_cfg.model)
        model = comet.load_from_checkpoint(path)
    except Exception as err:  # noqa: BLE001 - any load failure means "not available", with its reason
        return unavailable(f"cannot load {comet_cfg.model}: {type(err).__name__}: {err}")
    data = [{"src": s, "mt": h, "ref": r} for s, h, r in zip(srcs, hyps, refs)]
    gpus = 1 if torch.device(device).type == "cuda" else 0
    pred = model.predict(data, batch_size=comet_cfg.batch_size, gpus=gpus, progress_bar=False)
    return MetricResult("COMET", 100.0 * float(pred.system_score),
                        f"COMET|model:{comet_cfg.model}|scale:x100|comet:{getattr(comet, '__version__', '?')}")


def reference_nll(tr: pd.DataFrame) -> MetricResult:
    """The eval set's target NLL: nats per reference target token (lower is better), from the
    per-row sums the translate stage stored; None when they are missing (older translations)."""
    if "nll" not in tr or tr["nll"].isna().all():
        return MetricResult("NLL", None, "NLL: not available (translations stored before it was kept)")
    ok = tr["nll"].notna()
    value = float(tr.loc[ok, "nll"].sum() / max(int(tr.loc[ok, "target_tokens"].sum()), 1))
    notes = [f"NLL over {int(ok.sum())} of {len(tr)} rows (the rest did not fit prompt.max_length)"] if not ok.all() else []
    return MetricResult("NLL", value, "NLL|reference target tokens + EOS|nats per token|lower is better", notes)


def score_eval_set(
    cfg: GdigConfig, store, checkpoint: dict, eval_set: str,
    strategy: str | None = None, budget: int | None = None, selection_id: str | None = None,
) -> dict[str, Any]:
    """Score the stored translations of (checkpoint, eval set); write one metric row per metric.

    Returns {"checkpoint_id", "eval_set", "BLEU", "chrF", "COMET", "signatures", "notes"}.
    """
    tr = store.translations(checkpoint["checkpoint_id"], eval_set)
    if len(tr) == 0:
        raise ValueError(f"no translations of {eval_set!r} by checkpoint {checkpoint['checkpoint_id']}; "
                         "run the translate stage first")
    ds = store.get_dataset(eval_set) or {}
    hyps, refs, srcs = list(tr["hypothesis"].fillna("")), list(tr["tgt"]), list(tr["src"])
    results = corpus_bleu_chrf(hyps, refs, ds.get("tgt_lang", cfg.languages.tgt))
    results.append(comet_score(srcs, hyps, refs, cfg.evaluate.comet, cfg.model.device))
    results.append(reference_nll(tr))
    out: dict[str, Any] = {"checkpoint_id": checkpoint["checkpoint_id"], "eval_set": eval_set,
                           "signatures": {}, "notes": []}
    for r in results:
        sig = r.signature + "".join(f" # note: {n}" for n in r.notes)
        store.add_metric(checkpoint["checkpoint_id"], eval_set, r.name, r.value, sig,
                         strategy=strategy, budget=budget, selection_id=selection_id)
        out[r.name] = r.value
        out["signatures"][r.name] = sig
        out["notes"].extend(r.notes)
        if r.value is None:
            out["notes"].append(r.signature)
    return out


# -- the paper's table ------------------------------------------------------------------------

_ORDER = {s: i for i, s in enumerate(STRATEGIES)}  # rows in the strategies' table order


def comparison_table(store, checkpoints: Collection[str] | None = None) -> pd.DataFrame:
    """Rows: strategy; columns: "<metric>@<budget>" (prefixed "<eval_set>:" when there are several
    eval sets).  Metrics that are unavailable everywhere (COMET without a model) are dropped and
    listed in ``df.attrs["notes"]``.  Empty DataFrame when no metrics are stored.

    checkpoints: only these checkpoints' metrics (one run's); a workspace keeps every run's, and
    a strategy finetuned again under other settings has a row per checkpoint."""
    m = store.metrics()
    if len(m) and checkpoints is not None:
        m = m[m["checkpoint_id"].isin(set(checkpoints))]
    m = m[m["strategy"].notna()] if len(m) else m
    if len(m) == 0:
        out = pd.DataFrame()
        out.attrs["notes"] = ["no metrics in the store yet"]
        return out
    notes = []
    for metric, grp in m.groupby("metric"):
        if grp["value"].isna().all():
            notes.append(f"{grp['signature'].dropna().iloc[0] if grp['signature'].notna().any() else metric + ': not available'}")
    m = m[m["value"].notna()]
    many = m["eval_set"].nunique() > 1
    metric_rank = {n: i for i, n in enumerate(METRICS)}
    m = m.assign(
        column=[(f"{e}:" if many else "") + f"{me}@{int(b) if pd.notna(b) else 'all'}"
                for e, me, b in zip(m["eval_set"], m["metric"], m["budget"])],
        _key=[(e, int(b) if pd.notna(b) else 1 << 40, metric_rank.get(me, 9), me)
              for e, me, b in zip(m["eval_set"], m["metric"], m["budget"])],
    )
    cols = [c for _, c in sorted(set(zip(m["_key"], m["column"])))]
    # without `checkpoints`, a strategy scored by several runs shows its newest checkpoint's figures
    m = m.sort_values("created_at", kind="stable")
    table = m.pivot_table(index="strategy", columns="column", values="value", aggfunc="last")
    table = table.reindex(columns=cols)
    table = table.loc[sorted(table.index, key=lambda s: (_ORDER.get(s, 9), s))]
    table.columns.name = None
    table.attrs["notes"] = notes
    for sig in sorted(set(m["signature"].dropna())):
        table.attrs.setdefault("signatures", []).append(sig)
    return table.round({c: 3 if "NLL" in c else 2 for c in table.columns})  # NLL moves in the 2nd-3rd decimal


def comparison_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "_No metrics yet._\n" + "".join(f"\n- {n}" for n in table.attrs.get("notes", []))
    body = table.reset_index().to_markdown(index=False, floatfmt=".2f")
    extra = [f"- {n}" for n in table.attrs.get("notes", [])]
    extra += [f"- signature: `{s}`" for s in table.attrs.get("signatures", [])]
    return body + ("\n\n" + "\n".join(extra) if extra else "") + "\n"


def write_comparison(store, out_dir: str | Path, checkpoints: Collection[str] | None = None) -> dict[str, Path]:
    """comparison.csv and comparison.md in out_dir (of `checkpoints` only, when given); returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(store, checkpoints)
    paths = {"csv": out / "comparison.csv", "markdown": out / "comparison.md"}
    with atomic_file(paths["csv"], "report", seal=False) as tmp:
        table.to_csv(tmp)
    write_text_atomic(paths["markdown"], comparison_markdown(table))
    return paths
