"""The vanishing-gradient lab as a job of the job manager: events, result file, cap, Stop, the Internals page."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from rnn_demo import explain, jobs
from rnn_demo.data import DatasetSpec
from rnn_demo.experiment import default_configs
from rnn_demo.explain import lab
from rnn_demo.jobs import JobError, JobManager

TINY = explain.LabSettings(cells=("rnn", "gru"), distractors=(3, 5), n=200, epochs=1, hidden_size=8,
                           embedding_dim=8, gradient_examples=4)  # fmt: skip
TIMEOUT = 180


@pytest.fixture
def manager(tmp_path: Path):
    mgr = JobManager(max_jobs=2, cores=2, runs_dir=tmp_path / "runs")
    yield mgr
    mgr.shutdown(timeout=10)


def test_a_tiny_lab_runs_as_a_job_streams_progress_and_writes_its_result(manager, tmp_path):
    cache = tmp_path / "lab"
    job = manager.start_lab("alice", TINY, cache_dir=cache)
    assert job.kind == "lab" and job.owner == "alice" and manager.job_of("alice") is job
    with pytest.raises(JobError, match="already have a job running"):  # one job per owner, like a training
        manager.start_training("alice", DatasetSpec(name="negation", params={"n": 600}), *default_configs("negation"))
    with pytest.raises(JobError, match="already have a job running"):
        manager.start_lab("alice", TINY, cache_dir=cache)
    assert job.wait(TIMEOUT), "the lab did not finish"
    assert job.status == jobs.FINISHED, job.error
    events = job.events()
    progress = [e for e in events if e["type"] == "lab"]
    total = len(TINY.cells) * len(TINY.distractors) + 1
    assert progress[0]["done"] == 0 and progress[-1]["done"] == progress[-1]["total"] == total
    assert events[-1]["type"] == "finished" and job.summaries == [] and job.summary is None
    assert job.progress().fraction == 1.0
    saved = explain.load_vanishing_lab(TINY, cache_dir=cache)
    assert saved is not None and saved.accuracy == job.lab_result["accuracy"]
    assert set(saved.accuracy) == {"rnn", "gru"} and len(saved.gradients["gru"]["trained"]) == 6


def test_a_lab_beyond_the_cap_waits_in_the_queue(tmp_path):
    manager = JobManager(max_jobs=1, cores=1, runs_dir=tmp_path / "runs")
    try:
        job = manager.start_lab("alice", TINY, cache_dir=tmp_path / "lab")
        waiting = manager.start_lab("bob", TINY, cache_dir=tmp_path / "lab")
        assert waiting.status == jobs.QUEUED and manager.queue_position(waiting) == 1
        job.request_stop()
        assert job.wait(TIMEOUT)
        assert waiting.wait(TIMEOUT) and waiting.status == jobs.FINISHED
    finally:
        manager.shutdown(timeout=10)


def test_stop_ends_the_lab_without_a_result(manager, tmp_path):
    cache = tmp_path / "lab"
    slow = explain.LabSettings(cells=("rnn", "lstm"), distractors=(20, 40), n=2000, epochs=20, gradient_examples=4)
    job = manager.start_lab("alice", slow, cache_dir=cache)
    deadline = time.time() + TIMEOUT
    while not any(e["type"] == "lab" and e["done"] == 0 and "training" in e["text"] for e in job.events()):
        assert time.time() < deadline and not job.done, job.error
        time.sleep(0.05)
    job.request_stop()
    assert job.status == jobs.STOPPING
    assert job.wait(60), "the lab did not stop"
    assert job.status == jobs.FINISHED and job.lab_result is None
    assert explain.load_vanishing_lab(slow, cache_dir=cache) is None
    assert manager.active_jobs() == []


# Stand-ins for the page's sizes: TINY as "quick", and a "full" that no test runs.
TINY_FULL = dataclasses.replace(TINY, distractors=(3, 5, 7))
PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "internals.py")


@pytest.fixture
def lab_page(tmp_path, monkeypatch):
    """The Internals page with tiny lab sizes, an empty cache and a job manager of its own. Its workers
    train on the plain torch path: an empty home has no compiled kernels, and building them (~25 s)
    would take far longer than the tiny sweep."""
    from rnn_demo.jobs import manager as manager_module

    monkeypatch.setenv("RNN_DEMO_HOME", str(tmp_path))
    monkeypatch.setenv("RNN_DEMO_FUSED", "0")
    monkeypatch.setitem(lab.LAB_SIZES, "quick", TINY)
    monkeypatch.setitem(lab.LAB_SIZES, "full", TINY_FULL)
    mgr = JobManager(max_jobs=2, cores=2, runs_dir=tmp_path / "runs")
    monkeypatch.setattr(manager_module, "_shared", mgr)
    yield mgr
    mgr.shutdown(timeout=10)


def _fake_result(settings: explain.LabSettings) -> explain.LabResult:
    return explain.LabResult(
        settings=dataclasses.asdict(settings), distractors=list(settings.distractors),
        accuracy={c: [0.5] * len(settings.distractors) for c in settings.cells},
        gradient_distractors=max(settings.distractors),
        gradients={c: {"untrained": [0.1] * 8, "trained": [0.5] * 8} for c in settings.cells},
        seconds=1.0, created="fake",
    )  # fmt: skip


def _captions(at) -> str:
    return " ".join(c.value for c in at.caption)


def test_quick_is_offered_first_and_a_cached_full_result_is_preferred(tmp_path):
    quick, full = lab.LAB_SIZES["quick"], lab.LAB_SIZES["full"]
    assert full == explain.LabSettings()  # the full sweep's cached results keep their file
    assert set(quick.cells) == {"rnn", "gru", "lstm"} and len(quick.distractors) >= 2
    assert quick.key() != full.key() and quick.n * len(quick.distractors) < full.n * len(full.distractors)
    assert lab.preferred_lab_size(tmp_path) == "quick"  # nothing computed yet: the one that finishes soonest
    lab._write_json_atomic(lab.lab_result_path(quick, tmp_path), _fake_result(quick).to_dict())
    assert lab.preferred_lab_size(tmp_path) == "quick"
    lab.lab_result_path(full, tmp_path).write_text("{not json")  # a damaged file counts as no result
    assert lab.preferred_lab_size(tmp_path) == "quick"
    lab._write_json_atomic(lab.lab_result_path(full, tmp_path), _fake_result(full).to_dict())
    assert lab.preferred_lab_size(tmp_path) == "full"


def test_internals_page_runs_the_chosen_size_as_a_job_and_shows_its_result(lab_page):
    from streamlit.testing.v1 import AppTest

    lab._write_json_atomic(explain.lab_result_path(TINY_FULL), _fake_result(TINY_FULL).to_dict())
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception
    size = at.radio(key="internals.lab_size")
    assert size.value == "full" and [o.split(" (")[0] for o in size.options] == ["Quick", "Full"]
    assert "Full runs" in _captions(at) and "fake" in _captions(at)  # the cached full result is shown first
    size.set_value("quick").run()
    assert not at.exception and not at.error
    assert any("No Quick results yet" in i.value for i in at.info) and "Full runs" not in _captions(at)
    next(b for b in at.button if b.label == "Run the quick runs").click().run()
    assert not at.exception and not at.error
    job = at.session_state["app.job"]
    assert job.kind == "lab" and lab_page.active_jobs() == [job]
    assert any(b.label == "Stop" for b in at.button)  # the progress fragment, while the job runs
    assert at.radio(key="internals.lab_size").disabled  # locked to the size that runs
    # While it runs the page says what it is doing, not "No results yet: press the button".
    assert not [i for i in at.info if "No Quick results yet" in i.value], [i.value for i in at.info]
    assert job.wait(TIMEOUT), "the lab did not finish"
    assert job.lab_result["settings"] == dataclasses.asdict(TINY)  # the quick settings ran
    at.run()
    assert not at.exception and not at.error
    assert [b.label for b in at.button] == ["Run them again"] and not at.radio(key="internals.lab_size").disabled
    assert len(at.get("plotly_chart")) >= 2
    assert "Quick runs" in _captions(at) and "fake" not in _captions(at)  # the quick result, not the full one
    assert explain.load_vanishing_lab(TINY).accuracy == job.lab_result["accuracy"]
    at.radio(key="internals.lab_size").set_value("full").run()  # each size keeps its own result
    assert not at.exception and "Full runs" in _captions(at) and "fake" in _captions(at)


DAMAGED = ['{"distractors": [3]}',  # fields missing
           json.dumps({**_fake_result(TINY).to_dict(), "accuracy": {"rnn": [0.5]}}),  # one length, one cell
           json.dumps({**_fake_result(TINY).to_dict(), "distractors": None})]


@pytest.mark.parametrize("stale,damaged", [
    ({"internals.lab_size": "medium", "internals.lab_running_size": "medium"}, DAMAGED[0]),
    ({"internals.lab_size": None, "internals.lab_running_size": "full"}, DAMAGED[1]),
    ({"internals.lab_size": ["quick"]}, DAMAGED[2]),
])  # fmt: skip
def test_internals_page_survives_stale_lab_state_and_damaged_results(lab_page, stale, damaged):
    from streamlit.testing.v1 import AppTest

    lab.lab_result_path(TINY).parent.mkdir(parents=True)
    lab.lab_result_path(TINY).write_text(damaged)
    assert explain.load_vanishing_lab(TINY) is None  # run again, never drawn
    at = AppTest.from_file(PAGE, default_timeout=120)
    for key, value in stale.items():
        at.session_state[key] = value  # e.g. left by an older version of the page
    at.run()
    assert not at.exception and not at.error
    assert at.radio(key="internals.lab_size").value == "quick"
    assert any("No Quick results yet" in i.value for i in at.info)
    assert [b.label for b in at.button] == ["Run the quick runs"]


def test_lab_progress_counts_runs_and_extrapolates_their_pace():
    events = [{"type": "lab", "done": 0, "total": 5, "text": "preparing the data", "time": 100.0},
              {"type": "lab", "done": 2, "total": 5, "text": "training GRU with 3 distractors", "time": 120.0}]
    progress = jobs.summarize_progress(events, started_at=98.0, now=120.0)
    assert progress.stage == "training GRU with 3 distractors" and progress.fraction == pytest.approx(0.4)
    assert progress.eta_seconds == pytest.approx(30.0)
