"""Background jobs and the race, without Streamlit: real worker processes on the tiny `negation` task."""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import queue
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from rnn_demo import jobs
from rnn_demo.checkpoints import CheckpointError, load_run
from rnn_demo.data import DatasetSpec
from rnn_demo.experiment import default_configs
from rnn_demo.checkpoints import rename_run
from rnn_demo.jobs import JobError, JobManager, summarize_progress
from rnn_demo.jobs.worker import worker_main

SPEC = DatasetSpec(name="negation", params={"n": 600})
TIMEOUT = 120


def configs(**train_overrides):
    text, model, train = default_configs("negation")
    model = dataclasses.replace(model, hidden_size=16, embedding_dim=16)
    return text, model, dataclasses.replace(train, epochs=1, **train_overrides)


@pytest.fixture
def manager(tmp_path: Path):
    mgr = JobManager(max_jobs=2, cores=2, runs_dir=tmp_path)
    yield mgr
    mgr.shutdown(timeout=10)


def wait_for(predicate, timeout=TIMEOUT, every=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


def test_job_trains_in_a_worker_and_streams_ordered_events(manager, tmp_path):
    job = manager.start_training("alice", SPEC, *configs(), run_name="first run")
    assert job.status in (jobs.STARTING, jobs.RUNNING)
    polled = []
    while not job.done:
        polled.extend(job.poll())
        time.sleep(0.05)
        assert time.time() - job.started_at < TIMEOUT
    polled.extend(job.poll())

    assert job.status == jobs.FINISHED and job.error is None
    events = job.events()
    assert polled == events  # every event is polled exactly once, in order
    kinds = [e["type"] for e in events]
    assert kinds[0] == "stage" and kinds[-1] == "finished"
    assert kinds.index("start") < kinds.index("step") < kinds.index("epoch") < kinds.index("eval") < kinds.index("done")
    steps = [e["step"] for e in events if e["type"] == "step"]
    assert steps == sorted(steps) and len(steps) >= 2
    assert all("time" in e for e in events)

    run_dir = Path(job.summary["run_dir"])
    assert run_dir == tmp_path / "first-run"  # sanitised name inside the manager's runs folder
    assert (run_dir / "model.safetensors").is_file()
    progress = job.progress()
    assert progress.fraction == 1.0 and progress.eta_seconds == 0.0 and progress.epochs == 1
    assert manager.active_jobs() == [] and manager.job_of("alice") is job


def test_stop_keeps_and_saves_the_best_weights(manager):
    text, model, train = configs(eval_every=4, log_every=1)
    train = dataclasses.replace(train, epochs=30, patience=0)
    job = manager.start_training("bob", SPEC, text, model, train)
    # Stop once the worker has evaluated twice, i.e. mid-training.
    assert wait_for(lambda: sum(e["type"] == "eval" for e in job.events()) >= 2)
    job.request_stop()
    assert job.status in (jobs.STOPPING, jobs.FINISHED)
    assert job.wait(TIMEOUT)

    assert job.status == jobs.FINISHED, job.error
    summary = job.summary
    assert summary["stop_reason"] == "stopped" and summary["epochs_run"] < 30
    done = next(e for e in job.events() if e["type"] == "done")
    saved = json.loads((Path(summary["run_dir"]) / "metrics.json").read_text())
    # The saved model is the best one seen: its validation loss is the best evaluation's.
    assert saved["validation"]["loss"] == pytest.approx(done["best_val_loss"], rel=1e-4)
    best_evals = [e["val_loss"] for e in job.events() if e["type"] == "eval"]
    assert done["best_val_loss"] == pytest.approx(min(best_evals))
    load_run(summary["run_dir"])  # loadable


def test_a_full_server_queues_the_next_job_and_starts_it_when_the_slot_frees(tmp_path):
    manager = JobManager(max_jobs=1, cores=1, runs_dir=tmp_path)
    try:
        text, model, train = configs()
        # Long enough that its estimated end stays well beyond "a slot is freeing up now" (epochs are capped at 200).
        long_job = manager.start_training("carol", DatasetSpec(name="negation", params={"n": 4000}), text, model,
                                          dataclasses.replace(train, epochs=200, patience=0))
        waiting = manager.start_training("dave", SPEC, *configs(), run_name="dave run")
        assert waiting.status == jobs.QUEUED and manager.queue_position(waiting) == 1 and waiting.pid is None
        assert manager.queue_status(waiting) == "Queued: you are next in line; no estimate yet"
        # Once the running job has made some steps, the waiting one knows when it should start.
        assert wait_for(lambda: long_job.progress().eta_seconds is not None)
        assert manager.estimated_start(waiting) > 3
        assert re.fullmatch(r"Queued: you are next in line; expected to start in about \d+.*",
                            manager.queue_status(waiting))
        with pytest.raises(JobError, match="already have a job running"):
            manager.start_training("carol", SPEC, *configs())
        with pytest.raises(JobError, match="already have a job waiting in the queue"):
            manager.start_training("dave", SPEC, *configs())
        assert manager.threads_per_job == 1
        long_job.request_stop()
        assert waiting.wait(TIMEOUT) and waiting.status == jobs.FINISHED, waiting.error
        assert long_job.status == jobs.FINISHED and waiting.started_at >= long_job.finished_at
        assert Path(waiting.summary["run_dir"]) == tmp_path / "dave-run"  # reserved when it joined the line
        assert manager.active_jobs() == [] and manager.queued_jobs() == []
    finally:
        manager.shutdown()


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="no process priorities here")
@pytest.mark.parametrize("spare", [False, True])
def test_training_runs_at_a_lower_cpu_priority_than_the_server(tmp_path, spare):
    """Two jobs on a 2-core machine must not starve the server (and a browser beside it) of CPU."""
    mgr = JobManager(max_jobs=2, cores=2, runs_dir=tmp_path, spare=spare)
    try:
        if spare:
            assert mgr.wait_for_spare(TIMEOUT)
        text, model, train = configs(patience=0)
        job = mgr.start_training("alice", SPEC, text, model, dataclasses.replace(train, epochs=200))
        assert wait_for(lambda: any(e.get("type") == "step" for e in job.events()) or job.done)
        assert not job.done
        nice = os.getpriority(os.PRIO_PROCESS, job.pid)
        assert nice == min(os.getpriority(os.PRIO_PROCESS, 0) + jobs.WORKER_NICENESS, 19) > os.getpriority(os.PRIO_PROCESS, 0)
        job.request_stop()
        assert wait_for(lambda: job.done)
    finally:
        mgr.shutdown(timeout=10)


def test_a_spare_worker_with_torch_loaded_takes_the_next_job_and_is_replaced(tmp_path):
    manager = JobManager(max_jobs=2, cores=2, runs_dir=tmp_path, spare=True)
    try:
        assert manager.wait_for_spare(TIMEOUT)  # torch and the trainer are imported before any job
        spare_pid = manager.spare_pid()
        job = manager.start_training("ivy", SPEC, *configs())
        assert job.pid == spare_pid  # the job runs in the warm process
        assert manager.wait_for_spare(TIMEOUT) and manager.spare_pid() not in (None, spare_pid)
        assert job.wait(TIMEOUT) and job.status == jobs.FINISHED, job.error
        assert [e["type"] for e in job.events()][0] == "stage"  # no stray event from the spare's warm-up

        # No spare while every slot is busy; a dead spare is replaced by a fresh process.
        busy = manager.start_training("jan", SPEC, *configs())
        other = manager.start_training("kim", SPEC, *configs())
        assert manager.spare_pid() is None
        assert busy.wait(TIMEOUT) and other.wait(TIMEOUT)
        assert manager.wait_for_spare(TIMEOUT)
        killed = manager.spare_pid()
        os.kill(killed, signal.SIGKILL)
        # Seen dead, or already replaced: the refill timer set when "jan" took the spare may fire right after.
        assert wait_for(lambda: not manager.spare_alive() or manager.spare_pid() != killed)
        job = manager.start_training("lee", SPEC, *configs())
        assert job.wait(TIMEOUT) and job.status == jobs.FINISHED, job.error
        assert job.pid != killed
    finally:
        manager.shutdown()
    assert manager.spare_pid() is None  # shutdown ends the spare too


def test_while_jobs_wait_a_spare_warms_up_for_the_next_in_line(tmp_path):
    manager = JobManager(max_jobs=1, cores=1, runs_dir=tmp_path, spare=True)
    try:
        text, model, train = configs(patience=0)
        first = manager.start_training("nia", SPEC, text, model, dataclasses.replace(train, epochs=200))
        waiting = manager.start_training("oli", SPEC, *configs())
        assert waiting.status == jobs.QUEUED
        assert manager.wait_for_spare(TIMEOUT)  # warmed up beside the running job, not after it
        spare_pid = manager.spare_pid()
        first.request_stop()
        assert waiting.wait(TIMEOUT) and waiting.status == jobs.FINISHED, waiting.error
        assert waiting.pid == spare_pid  # the next in line started in the warm process
    finally:
        manager.shutdown()


def test_a_job_handed_to_a_spare_that_is_still_starting_runs(tmp_path):
    # The spare's channels must outlive the hand-over: a spawned child that has not yet
    # unpickled them fails if the parent has already dropped (and unlinked) them.
    manager = JobManager(max_jobs=1, cores=1, runs_dir=tmp_path, spare=True)
    try:
        job = manager.start_training("mia", SPEC, *configs())
        gc.collect()
        assert job.wait(TIMEOUT) and job.status == jobs.FINISHED, job.error
    finally:
        manager.shutdown()


def test_spare_worker_can_be_turned_off(monkeypatch, tmp_path):
    monkeypatch.setenv("RNN_DEMO_SPARE_WORKER", "0")
    assert not jobs.spare_from_env()
    monkeypatch.setenv("RNN_DEMO_SPARE_WORKER", "1")
    assert jobs.spare_from_env()
    manager = JobManager(max_jobs=1, cores=1, runs_dir=tmp_path, spare=False)
    assert manager.spare_pid() is None and not manager.wait_for_spare(0.1)


def test_failing_job_reports_a_user_facing_message(manager, tmp_path):
    missing = tmp_path / "missing.csv"
    spec = DatasetSpec(csv=str(missing), text_cols=["text"], label_col="label")
    job = manager.start_training("erin", spec, *configs())
    assert job.wait(TIMEOUT)
    assert job.status == jobs.FAILED and job.summary is None
    assert "missing.csv" in job.error and "Traceback" not in job.error
    assert job.events()[-1]["type"] == "error"


def test_internal_errors_become_a_generic_message(monkeypatch):
    # The worker body, run in-process with a plain queue: an unexpected exception is
    # logged with its traceback and reported to the user without one.
    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr("rnn_demo.experiment.run_experiment", broken)
    events: queue.Queue = queue.Queue()
    text, model, train = configs()
    payload = {"spec": SPEC.to_dict(), "text": text.to_dict(), "model": model.to_dict(), "train": train.to_dict(),
               "out_dir": None}
    worker_main("train", payload, events, threading.Event(), 1, "abc123")
    error = events.get_nowait()
    assert error["type"] == "error" and "internal error" in error["message"] and "abc123" in error["message"]
    assert "secret" not in error["message"]


def test_closed_session_stops_its_job_after_the_grace_period(manager):
    text, model, train = configs()
    job = manager.start_training("frank", SPEC, text, model, dataclasses.replace(train, epochs=40))
    cleaned = threading.Event()
    manager.release_owner("frank", grace=30, on_expire=cleaned.set)
    manager.claim_owner("frank")  # a reconnect cancels the release
    time.sleep(0.3)
    assert not job.stop_requested and not cleaned.is_set()
    manager.release_owner("frank", grace=0.1, on_expire=cleaned.set)
    assert job.wait(TIMEOUT)
    assert cleaned.is_set() and job.stop_requested
    assert job.status == jobs.FINISHED and job.summary["stop_reason"] == "stopped"


def test_race_trains_every_cell_in_one_job(manager):
    text, model, train = configs()
    job = manager.start_training("gina", SPEC, text, model, train, cells=("rnn", "gru", "lstm"), run_name="race")
    assert len(manager.active_jobs()) == 1  # one slot for three models
    assert job.wait(TIMEOUT) and job.status == jobs.FINISHED, job.error
    events = job.events()
    steps = [e["cell"] for e in events if e["type"] == "step"]
    assert set(steps) == {"rnn", "gru", "lstm"}
    # Interleaved: the cells take turns instead of one finishing before the next starts.
    assert steps[:3] == ["rnn", "gru", "lstm"]
    first_done = next(i for i, e in enumerate(events) if e["type"] == "done")
    assert {e["cell"] for e in events[:first_done] if e["type"] == "step"} == {"rnn", "gru", "lstm"}
    names = sorted(Path(s["run_dir"]).name for s in job.summaries)
    assert names == ["race-gru", "race-lstm", "race-rnn"]
    for summary in job.summaries:
        assert load_run(summary["run_dir"]).model.config.cell in summary["run_dir"]
        assert 0.0 <= summary["test"]["accuracy"] <= 1.0
    progress = job.progress()
    assert progress.fraction == 1.0


def test_each_job_can_save_into_its_own_runs_folder(manager, tmp_path):
    own = tmp_path / "sessions" / "alice" / "runs"  # e.g. an app owner's folder; the manager's default stays
    job = manager.start_training("alice", SPEC, *configs(), run_name="mine", runs_dir=own)
    race = manager.start_training("bob", SPEC, *configs(), cells=("rnn", "gru"), run_name="duel", runs_dir=own)
    assert job.run_dirs == [own / "mine"] and race.run_dirs == [own / "duel-rnn", own / "duel-gru"]
    race.request_stop()
    assert job.wait(TIMEOUT) and job.status == jobs.FINISHED, job.error
    assert Path(job.summary["run_dir"]) == own / "mine" and (own / "mine" / "model.safetensors").is_file()
    assert not (tmp_path / "mine").exists()
    assert race.wait(TIMEOUT)
    assert all(Path(s["run_dir"]).parent == own for s in race.summaries)


def test_race_needs_two_known_cells(manager):
    with pytest.raises(JobError, match="two or more"):
        manager.start_training("hugo", SPEC, *configs(), cells=("gru",))
    with pytest.raises(JobError):
        manager.start_training("hugo", SPEC, *configs(), cells=("gru", "transformer"))


def test_progress_and_eta_from_events():
    t0 = 1000.0
    events = [
        {"type": "stage", "text": "loading the dataset", "time": t0},
        {"type": "start", "total_steps": 100, "epochs": 2, "time": t0 + 2},
        {"type": "step", "step": 25, "epoch": 1, "tokens_per_second": 500.0, "time": t0 + 7},
    ]
    p = summarize_progress(events, started_at=t0, now=t0 + 7)
    assert (p.step, p.total_steps, p.epoch, p.epochs) == (25, 100, 1, 2)
    assert p.fraction == pytest.approx(0.25)
    assert p.eta_seconds == pytest.approx(15.0)  # 5 s for 25 steps -> 15 s for the other 75
    assert p.tokens_per_second == 500.0 and p.stage == "training"
    assert summarize_progress(events[:1], t0, t0 + 1).eta_seconds is None
    # A race: budgets add up; an early-stopped cell's budget shrinks to what it used.
    race = [
        {"type": "start", "cell": "rnn", "total_steps": 10, "epochs": 1, "time": t0},
        {"type": "start", "cell": "gru", "total_steps": 10, "epochs": 1, "time": t0},
        {"type": "step", "cell": "rnn", "step": 4, "epoch": 1, "tokens_per_second": 10.0, "time": t0 + 1},
        {"type": "step", "cell": "gru", "step": 4, "epoch": 1, "tokens_per_second": 20.0, "time": t0 + 1},
        {"type": "done", "cell": "rnn", "reason": "stopped", "time": t0 + 2},
    ]
    p = summarize_progress(race, t0, t0 + 2)
    assert (p.step, p.total_steps) == (8, 14) and p.tokens_per_second == 30.0


def test_max_jobs_from_env(monkeypatch):
    monkeypatch.setenv("RNN_DEMO_MAX_JOBS", "3")
    assert jobs.max_jobs_from_env() == 3
    monkeypatch.setenv("RNN_DEMO_MAX_JOBS", "zero")
    with pytest.raises(JobError, match="RNN_DEMO_MAX_JOBS"):
        jobs.max_jobs_from_env()
    monkeypatch.delenv("RNN_DEMO_MAX_JOBS")
    assert jobs.max_jobs_from_env() == jobs.available_cores()
    assert jobs.worker_threads(max_jobs=2, cores=2) == 1 and jobs.worker_threads(max_jobs=4, cores=2) == 1
    assert jobs.worker_threads(max_jobs=1, cores=8) == 8


def test_rename_run(tiny_runs_dir, tmp_path):
    import shutil

    run = shutil.copytree(tiny_runs_dir / "tiny-rnn", tmp_path / "copy")
    renamed = rename_run(run, "my best / run")
    assert renamed == tmp_path / "my-best-run" and (renamed / "config.json").is_file() and not run.exists()
    shutil.copytree(tiny_runs_dir / "tiny-rnn", tmp_path / "other")
    with pytest.raises(CheckpointError, match="already exists"):
        rename_run(tmp_path / "other", "my-best-run")
    with pytest.raises(CheckpointError, match="no usable characters"):
        rename_run(renamed, "///")
    assert rename_run(renamed, "my-best-run") == renamed


def _write_marker(path: str) -> None:
    Path(path).with_suffix(".child").write_text("ran")


def test_a_worker_never_reruns_the_app_script_even_when_main_is_swapped_meanwhile(tmp_path, monkeypatch):
    # Streamlit's script threads set sys.modules["__main__"] to the page being run. A worker launched from a
    # job's event thread (the next in the queue) while another session's script starts must still not
    # re-run that page in the child: it did, and the child died in app.py with a Streamlit error.
    import multiprocessing
    import sys
    import types

    from rnn_demo.jobs.worker import main_module_hidden

    marker = tmp_path / "page-ran"
    page = tmp_path / "page.py"
    page.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n")
    streamlit_page = types.ModuleType("__main__")
    streamlit_page.__file__ = str(page)
    context = multiprocessing.get_context("spawn")
    process = context.Process(target=_write_marker, args=(str(marker),), daemon=True)
    with main_module_hidden():
        monkeypatch.setitem(sys.modules, "__main__", streamlit_page)  # another session's script run begins
        process.start()
    process.join(60)
    assert process.exitcode == 0
    assert marker.with_suffix(".child").read_text() == "ran"
    assert not marker.exists(), "the worker re-ran the page script"
