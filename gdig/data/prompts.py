"""Translation prompts and target-only loss masks.

An example becomes  prompt(src) + target + EOS.  The prompt and the target are
tokenised separately and concatenated, so the label mask is exact: labels are
-100 on every prompt token and equal the input id on target and EOS tokens.
Too-long rows are never cut silently: the prompt is never truncated; the policy
decides whether to truncate the target (reported), skip the row (reported) or stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch

from gdig.data.languages import lang_name
from gdig.errors import BadInput

IGNORE = -100


class PromptTooLong(BadInput, ValueError):
    """A row that cannot fit prompt.max_length; `row` is its index in the encoded batch and
    `reason` the bare cause, so a caller can say which dataset, file, line and example it is."""

    def __init__(self, message: str, row: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.row, self.reason = row, reason or message


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE on prompt tokens
    prompt_len: int
    truncated: bool = False

    @property
    def n_target(self) -> int:
        return len(self.input_ids) - self.prompt_len


@dataclass
class EncodeReport:
    """What the truncation policy did; nothing is cut or skipped without a line here."""

    truncated: list[int] = field(default_factory=list)  # row indices whose target was cut
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (row index, reason)

    def summary(self) -> str:
        parts = []
        if self.truncated:
            parts.append(f"{len(self.truncated)} target(s) truncated to fit max_length (rows {self.truncated[:5]}...)")
        if self.skipped:
            parts.append(f"{len(self.skipped)} row(s) skipped: {self.skipped[:3]}")
        return "; ".join(parts) or "all rows fit"


def build_prompt(template: str, src: str, src_lang: str, tgt_lang: str) -> str:
    return template.format(
        src=src, src_lang=src_lang, tgt_lang=tgt_lang,
        src_lang_name=lang_name(src_lang), tgt_lang_name=lang_name(tgt_lang),
    )


def ensure_pad_token(tokenizer) -> None:
    """Tokenizers without a pad token (Llama, GPT-2) pad with EOS; the attention mask hides it."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is None:
            raise ValueError("tokenizer has neither a pad nor an EOS token; set one before use")
        tokenizer.pad_token = tokenizer.eos_token


def encode_pair(
    tokenizer, prompt: str, target: str, max_length: int, too_long: str = "truncate_target"
) -> Encoded:
    """Tokenise prompt + target + EOS with an exact target-only label mask.

    too_long: "truncate_target" keeps at least one target token; "error"/"skip"
    raise PromptTooLong (the caller decides whether a raised row is skipped).
    """
    p_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    t_ids = tokenizer(target, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("tokenizer has no EOS token: the model could never learn to stop")
    t_ids = list(t_ids) + [eos]
    truncated = False
    if len(p_ids) + len(t_ids) > max_length:
        if too_long != "truncate_target":
            raise PromptTooLong(
                f"{len(p_ids)} prompt + {len(t_ids)} target tokens > max_length {max_length}"
            )
        room = max_length - len(p_ids)
        if room < 1:
            raise PromptTooLong(f"the prompt alone is {len(p_ids)} tokens > max_length {max_length}")
        t_ids, truncated = t_ids[:room], True
    ids = list(p_ids) + t_ids
    labels = [IGNORE] * len(p_ids) + t_ids
    return Encoded(ids, labels, len(p_ids), truncated)


def encode_examples(
    tokenizer,
    rows: Iterable[tuple[str, str, str, str]],
    template: str,
    max_length: int,
    too_long: str = "truncate_target",
) -> tuple[list[Encoded | None], EncodeReport]:
    """Encode (src, tgt, src_lang, tgt_lang) rows.  A skipped row gives None at its index."""
    out: list[Encoded | None] = []
    report = EncodeReport()
    for i, (src, tgt, sl, tl) in enumerate(rows):
        prompt = build_prompt(template, src, sl, tl)
        try:
            enc = encode_pair(tokenizer, prompt, tgt, max_length, too_long)
        except PromptTooLong as err:
            if too_long == "error" or "prompt alone" in str(err):
                raise PromptTooLong(f"row {i}: {err}", row=i, reason=str(err)) from None
            report.skipped.append((i, str(err)))
            out.append(None)
            continue
        if enc.truncated:
            report.truncated.append(i)
        out.append(enc)
    return out, report


def collate(batch: Sequence[Encoded], pad_id: int, padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Pad to the longest row; padded positions get attention 0 and label IGNORE."""
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        sl = slice(0, n) if padding_side == "right" else slice(width - n, width)
        ids[i, sl] = torch.tensor(e.input_ids)
        labels[i, sl] = torch.tensor(e.labels)
        mask[i, sl] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (bucketing), so padding stays small.

    Deterministic: sorted by (length, index); batch order follows that sort.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
