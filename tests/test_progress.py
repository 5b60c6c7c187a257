"""gdig.progress: the reporter interface the Prefect tasks plug into (no Prefect here)."""

from __future__ import annotations

import pytest

from gdig.progress import ProgressEvent, Tracker, reporting, track


def test_reporters_get_start_every_step_and_a_final_event():
    events: list[ProgressEvent] = []
    with reporting(events.append, interval=0):
        assert list(track(range(3), "scoring", unit="batch", enabled=False)) == [0, 1, 2]
    assert [(e.done, e.total, e.final) for e in events] == [(0, 3, False), (1, 3, False), (2, 3, False), (3, 3, True)]
    assert events[0].line() == "scoring: 0/3 batch (0%)"
    assert events[1].line().startswith("scoring: 1/3 batch (33%), ") and " batch/s, ETA " in events[1].line()
    assert "done in" in events[-1].line()


def test_interval_throttles_to_first_and_last_and_nothing_leaks_outside_the_block():
    events: list[ProgressEvent] = []
    with reporting(events.append, interval=3600):
        for _ in track(range(50), "translate", enabled=False):
            pass
    for _ in track(range(5), "outside", enabled=False):  # no reporter installed here
        pass
    assert [(e.stage, e.done, e.final) for e in events] == [("translate", 0, False), ("translate", 50, True)]


def test_resumed_tracker_reports_its_rate_from_this_run_and_extra_values():
    events: list[ProgressEvent] = []
    with reporting(events.append, interval=0):
        with Tracker("pretrain", total=10, initial=8, unit="step", enabled=False) as bar:
            bar.set_postfix(loss="2.500")
            bar.update()
    assert events[0].line() == "pretrain: 8/10 step (80%)"  # no rate before a step of this run
    assert events[1].done == 9 and events[1].rate is not None and events[1].eta is not None
    assert events[1].line().endswith("loss 2.500")


def test_a_failing_reporter_never_stops_the_stage_and_a_failed_stage_sends_no_final_event():
    events: list[ProgressEvent] = []

    def broken(event):
        raise RuntimeError("the UI is down")

    with reporting(broken, events.append, interval=0):
        with pytest.raises(ValueError):
            for i in track(range(4), "finetune", enabled=False):
                if i == 2:
                    raise ValueError("diverged")
    assert [e.done for e in events] == [0, 1, 2] and not any(e.final for e in events)


def test_stage_names_and_artifact_keys():
    from gdig.config import parse_config
    from gdig_flows.tasks.naming import artifact_key, stage_of

    assert stage_of("translate wmt22 by gdig@1000") == "translate"
    assert stage_of("curvature-shard factors [0, 32)") == "curvature-shard"
    assert stage_of("quality-a1b") == "quality" and stage_of("summarize-selection") == "summarize-selection"
    cfg = parse_config({"languages": {"src": "de", "tgt": "en"}, "model": {"name_or_path": "m"},
                        "workspace": {"db": "/srv/WMT De-En/gdig.duckdb"}})
    assert artifact_key(cfg, "export", "gdig", 1000) == "gdig-wmt-de-en-export-gdig-1000"
    cfg.workspace.name = "Night_Shift"
    assert artifact_key(cfg, "selection") == "gdig-night-shift-selection"
