"""The one line that says what the demo's tiny model can show, and what it cannot.

A model this small, trained for seconds, barely translates: its BLEU and chrF sit near the floor
and move by less than their noise between selections, so they cannot rank them.  What it does
show: how clean each selection is (the pool's noise is labelled) and what finetuning on it
taught the model about the eval set, measured as the references' target NLL, which moves long
before the translations do.
"""

from __future__ import annotations


def what_it_shows(result: dict) -> str:
    """One line from a run's result (gdig run / the demo flow): per strategy at the first budget,
    the clean share and the eval NLL after finetuning, against the base model's NLL."""
    selections = result["summary"]["summary"]["selections"]
    budget = min(r["budget"] for r in selections)
    clean = {r["strategy"]: r["noise"]["selected_clean_fraction"] for r in selections
             if r["budget"] == budget and r.get("noise")}
    rows = {r["strategy"]: r for r in result["report"]["table"]}
    nll = {s: rows[s].get(f"NLL@{budget}") for s in rows if rows[s].get(f"NLL@{budget}") is not None}
    base = next((m["NLL"] for m in result.get("baseline", []) if m.get("NLL") is not None), None)
    order = [s for s in ("gdig", "quality", "loss", "diversity", "random", "full") if s in clean or s in nll]
    shares = ", ".join(f"{s} {clean[s]:.1%}" for s in order if s in clean)
    nlls = ", ".join(f"{s} {nll[s]:.3f}" for s in order if s in nll)
    parts = []
    if shares:
        parts.append(f"clean share of the {budget}-row selections: {shares}")
    if nlls:
        parts.append(f"eval NLL after finetuning on them: {nlls}" + (f" (base model {base:.3f}; lower is better)"
                                                                      if base is not None else " (lower is better)"))
    can = "; ".join(parts) or "nothing measured"
    return (f"what a tiny model can show: {can}. What it cannot: BLEU and chrF this close to the floor do "
            "not rank the selections; on real data they do (benchmarks/README.md).")
