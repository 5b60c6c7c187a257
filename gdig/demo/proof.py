"""The one line that says what the demo's tiny model can show, and what it cannot.

What it shows: how clean each selection is (the pool's noise is labelled), and what finetuning
on it taught the model about the eval set, as the references' target NLL (nats per token, which
moves before the translations do) beside chrF, both against the base model.  What it cannot
show: which selection makes the better translator.  A 2-layer model trained for seconds on an
invented language, one seed and 200 eval rows, ranks selections by what it memorises; its NLL
and chrF can even disagree (an easy, clean selection can raise chrF more and lower NLL less).
The real-data benchmark measures that (benchmarks/README.md).
"""

from __future__ import annotations

from gdig.selection.select import STRATEGIES


def what_it_shows(result: dict) -> str:
    """One line from a run's result (gdig run / the demo flow): per strategy at the first budget,
    the clean share and the eval NLL and chrF after finetuning, against the base model's."""
    selections = result["summary"]["summary"]["selections"]
    budget = min(r["budget"] for r in selections)
    clean = {r["strategy"]: r["noise"]["selected_clean_fraction"] for r in selections
             if r["budget"] == budget and r.get("noise")}
    rows = {r["strategy"]: r for r in result["report"]["table"]}
    base = next((m for m in result.get("baseline", []) if m.get("NLL") is not None), None)
    order = [s for s in STRATEGIES if s in clean or s in rows]  # the strategies' table order
    parts = []
    shares = ", ".join(f"{s} {clean[s]:.1%}" for s in order if s in clean)
    if shares:
        parts.append(f"clean share of the {budget}-row selections {shares}")
    after = ", ".join(f"{s} {_num(rows[s].get(f'NLL@{budget}'), 3)} / {_num(rows[s].get(f'chrF@{budget}'), 1)}"
                      for s in order if s in rows)
    if after:
        before = f"base model {base['NLL']:.3f} / {base['chrF']:.1f}" if base else "base model not scored"
        parts.append(f"eval NLL / chrF after finetuning on them {after} ({before}; NLL: lower is better)")
    can = "; ".join(parts) or "nothing measured"
    return (f"what a tiny model can show: {can}. What it cannot: which selection makes the better translator "
            "(one seed, 200 rows of an invented language); the real-data benchmark measures that "
            "(benchmarks/README.md).")


def _num(value, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
