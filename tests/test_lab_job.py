"""The vanishing-gradient lab as a job of the job manager: events, result file, cap, Stop, the Internals page."""

from __future__ import annotations

import dataclasses
import functools
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


def _fake_result(settings: explain.LabSettings) -> explain.LabResult:
    return explain.LabResult(
        settings=dataclasses.asdict(settings), distractors=list(settings.distractors),
        accuracy={c: [0.5] * len(settings.distractors) for c in settings.cells},
        gradient_distractors=max(settings.distractors),
        gradients={c: {"untrained": [0.1] * 8, "trained": [0.5] * 8} for c in settings.cells},
        seconds=1.0, created="fake",
    )  # fmt: skip


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


def test_internals_page_runs_the_lab_as_a_job_and_shows_its_result(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from rnn_demo.jobs import manager as manager_module

    monkeypatch.setenv("RNN_DEMO_HOME", str(tmp_path))
    monkeypatch.setattr(explain, "LabSettings", functools.partial(explain.LabSettings, **{
        f: getattr(TINY, f) for f in ("cells", "distractors", "n", "epochs", "hidden_size", "embedding_dim",
                                      "gradient_examples")}))  # fmt: skip
    mgr = JobManager(max_jobs=2, cores=2, runs_dir=tmp_path / "runs")
    monkeypatch.setattr(manager_module, "_shared", mgr)
    try:
        page = str(Path(__file__).resolve().parent.parent / "pages" / "internals.py")
        at = AppTest.from_file(page, default_timeout=120).run()
        assert not at.exception
        next(b for b in at.button if b.label == "Run the quick runs").click().run()
        assert not at.exception and not at.error
        job = at.session_state["app.job"]
        assert job.kind == "lab" and mgr.active_jobs() == [job]
        assert any(b.label == "Stop" for b in at.button)  # the progress fragment, while the job runs
        # While it runs the page says what it is doing, not "No results yet: press the button".
        assert not [i for i in at.info if "No results yet" in i.value], [i.value for i in at.info]
        assert job.wait(TIMEOUT), "the lab did not finish"
        at.run()
        assert not at.exception and not at.error
        assert [b.label for b in at.button] == ["Run them again"]
        assert len(at.get("plotly_chart")) >= 2
        assert explain.lab_result_path(TINY).exists()
    finally:
        mgr.shutdown(timeout=10)


def test_lab_progress_counts_runs_and_extrapolates_their_pace():
    events = [{"type": "lab", "done": 0, "total": 5, "text": "preparing the data", "time": 100.0},
              {"type": "lab", "done": 2, "total": 5, "text": "training GRU with 3 distractors", "time": 120.0}]
    progress = jobs.summarize_progress(events, started_at=98.0, now=120.0)
    assert progress.stage == "training GRU with 3 distractors" and progress.fraction == pytest.approx(0.4)
    assert progress.eta_seconds == pytest.approx(30.0)
