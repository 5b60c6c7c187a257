"""docs/config.md, rendered from the config models in gdig/config.py (the `prefilter:` sections
are the rules of gdig.prefilter.rules).

Each key's type, default and help come from its pydantic field (`Field(description=...)`), the
one source of a key's help: the file is never edited by hand.  Regenerate it with
`python -m gdig.configdoc > docs/config.md`; tests/test_configdoc.py fails when the file and the
models disagree.
"""

from __future__ import annotations

import json
import typing
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from gdig.config import GdigConfig

HEADER = """\
# Config reference

<!-- generated from gdig/config.py by `python -m gdig.configdoc > docs/config.md`; do not edit -->

One YAML file describes a workspace. `gdig/demo/config.yaml` (the demo, shipped in the package)
and `configs/wmt-de-en.yaml` (a commented real setup: WMT de-en, a 1.5B model on GPUs) are complete
examples. Every section and key is optional except `languages` and `model`; an unknown key or a
wrong type is an error that names the key (`model.dtpye: Extra inputs are not permitted`).
Relative paths resolve against the YAML file's directory. `--set key=value` overrides a key on
the command line (the value is parsed as YAML: `--set selection.budgets=[100,200]`).
"""


FOOTER = """\
## What the keys add up to

- **Equal compute.** Every strategy of a budget trains for `steps_for_budget(budget, finetune)`
  optimizer steps: `max_steps` if set, else `ceil(epochs * ceil(budget / batch_size) / grad_accum)`,
  the same for gdig, random, quality, diversity and full (so `full` is the whole pool at the
  budget's compute). The loss is on target tokens only (prompt masked); the LM head runs only
  on the positions that predict a target token, in chunks (`gdig/target_loss.py`: the same loss
  and gradients as full logits; a model that changes its logits after the head in a way gdig
  does not know trains with full logits, with a warning).
- **Checkpoints.** `{workspace.dir}/checkpoints/sel-<selection_id>-<hash>/` (a `save_pretrained`
  model + tokenizer; `gdig_train.json` is the done marker, with the losses), recorded in the
  store's `checkpoints` table; re-running with the same inputs reuses a finished checkpoint.
- **Metrics.** Generation stops at EOS or at the first newline. BLEU (sacrebleu, with the target
  language's tokenizer: `zh` for Chinese, `ja-mecab`/`ko-mecab` when installed, else `13a`) and
  chrF2 at corpus level, with the signature stored beside the value; COMET x100 when
  `evaluate.comet.model` loads, else its row holds NULL and says why.
"""


def _constraints(field: FieldInfo) -> str:
    signs = {annotated_types.Ge: "≥", annotated_types.Gt: ">", annotated_types.Le: "≤", annotated_types.Lt: "<"}
    parts = []
    for item in field.metadata:
        for kind, sign in signs.items():
            if isinstance(item, kind):
                parts.append(f"{sign} {_value(getattr(item, kind.__name__.lower()))}")
    return ", ".join(parts)


def _type(annotation: Any) -> str:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(f"`{_value(a)}`" for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join("null" if a is type(None) else _type(a) for a in args)
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _value(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False) if ("\n" in v or v == "") else v
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return str(v)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return ""
    return f"`{_value(value)}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(model: type[BaseModel], prefix: str, skip: set[str] = frozenset(),
          items: dict[type, str] | None = None) -> list[str]:
    """One row per key, nested sections flattened (`a.b.c`); the keys of a list's items are listed
    once (`data.candidates[].path`) and later lists of the same items point there."""
    rows, items = [], {} if items is None else items
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        key, ann = f"{prefix}.{name}", field.annotation
        kind = _type(ann)
        limits = _constraints(field)
        item = typing.get_args(ann)[0] if typing.get_origin(ann) is list else None
        listed = isinstance(item, type) and issubclass(item, BaseModel)
        if listed and item in items:
            kind += f" (keys as `{items[item]}[]`)"
        rows.append(f"| `{key}` | {_cell(kind + (f' ({limits})' if limits else ''))} | {_cell(_default(field))} "
                    f"| {_cell(field.description or '')} |")
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows += _rows(ann, key, items=items)
        elif listed and item not in items:
            items[item] = key
            rows += _rows(item, f"{key}[]", items=items)
    return rows


def render() -> str:
    """The whole of docs/config.md."""
    out = [HEADER]
    sections = {f.annotation: n for n, f in GdigConfig.model_fields.items()}
    for name, field in GdigConfig.model_fields.items():
        out.append(f"## `{name}`\n")
        ann = field.annotation
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            out.append("| key | type | default | meaning |\n|---|---|---|---|")
            out.append(f"| `{name}` | {_cell(_type(ann))} | {_cell(_default(field))} | {_cell(field.description or '')} |\n")
            continue
        out.append(f"{field.description}\n")
        skip: set[str] = set()
        for base in ann.__mro__[1:]:  # a section that extends another lists only its own keys
            if base in sections:
                skip = set(base.model_fields)
                out.append(f"Every key of `{sections[base]}` (same defaults), plus:\n")
                break
        out.append("| key | type | default | meaning |\n|---|---|---|---|")
        out.append("\n".join(_rows(ann, name, skip)) + "\n")
    out.append(FOOTER)
    return "\n".join(out)


if __name__ == "__main__":  # pragma: no cover
    print(render(), end="")
