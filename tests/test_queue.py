"""The job manager's waiting line: first come first served, leaving it, closed sessions, limits and estimates.

The manager here launches fake workers (``_launch_worker`` overridden): each test decides
when a job ends, so the order of starts is exact and every test takes well under a second.
Real worker processes in a full server: tests/test_jobs.py.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from pathlib import Path

import pytest

from rnn_demo import jobs
from rnn_demo.data import DatasetSpec
from rnn_demo.experiment import default_configs
from rnn_demo.explain import LabSettings
from rnn_demo.jobs import CapacityError, JobError, JobManager
from rnn_demo.jobs.queue import estimate_start, estimate_wait, waiting_text
from rnn_demo.ui import queue_view

SPEC = DatasetSpec(name="negation", params={"n": 600})
CONFIGS = default_configs("negation")
_pids = itertools.count(90_000)


class FakeWorker:
    """Stands in for a worker process: ends when the test calls ``finish`` (or on Stop)."""

    def __init__(self, job_id: str, kind: str, payload: dict) -> None:
        self.job_id, self.kind, self.payload = job_id, kind, payload
        self.events: queue.Queue = queue.Queue()
        self.stop = FakeStop(self)
        self.alive = True
        self.exitcode: int | None = None
        self.pid = next(_pids)

    def is_alive(self) -> bool:
        return self.alive

    def join(self, timeout: float | None = None) -> None:
        pass

    def terminate(self) -> None:
        self.alive, self.exitcode = False, -15

    def finish(self) -> None:
        self.events.put({"type": "finished", "summary": {"run_dir": self.payload.get("out_dir")}, "time": time.time()})
        self.alive, self.exitcode = False, 0


class FakeStop(threading.Event):
    def __init__(self, worker: FakeWorker) -> None:
        super().__init__()
        self.worker = worker

    def set(self) -> None:
        super().set()
        self.worker.finish()  # a stopped trainer saves its best weights and ends


class FakeManager(JobManager):
    """A JobManager whose workers are ``FakeWorker``s, in the order they were launched."""

    def __init__(self, *args, fail_launch: frozenset[str] = frozenset(), **kwargs) -> None:
        self.workers: list[FakeWorker] = []
        self.fail_launch = fail_launch  # run names whose worker cannot start
        super().__init__(*args, **kwargs)

    def _launch_worker(self, kind, payload, job_id):
        if Path(payload.get("out_dir", "")).name in self.fail_launch:
            raise JobError("Could not start a training process (test); try again later.")
        worker = FakeWorker(job_id, kind, payload)
        self.workers.append(worker)
        return worker, worker.events, worker.stop, ()

    def worker_of(self, job) -> FakeWorker:
        return next(w for w in self.workers if w.job_id == job.id)

    def started(self) -> list[str]:
        """Ids of the jobs that got a worker, in launch order."""
        return [w.job_id for w in self.workers]


@pytest.fixture
def manager(tmp_path: Path):
    mgr = FakeManager(max_jobs=1, cores=1, runs_dir=tmp_path)
    yield mgr
    mgr.shutdown(timeout=1)


def start(mgr: FakeManager, owner: str, **kwargs):
    return mgr.start_training(owner, SPEC, *CONFIGS, **kwargs)


def end(mgr: FakeManager, job) -> None:
    """Ends a running job and waits until the manager has handed its slot on."""
    mgr.worker_of(job).finish()
    assert job.wait(5) and job.status == jobs.FINISHED


def test_jobs_wait_in_line_and_start_in_order_of_arrival(manager):
    alice, bob, carol = (start(manager, name) for name in ("alice", "bob", "carol"))
    assert alice.status == jobs.STARTING and alice.pid is not None
    assert bob.status == carol.status == jobs.QUEUED and bob.pid is None and not bob.done
    assert [manager.queue_position(j) for j in (alice, bob, carol)] == [None, 1, 2]
    assert manager.queued_jobs() == [bob, carol] and manager.job_of("carol") is carol
    assert manager.started() == [alice.id]

    end(manager, alice)
    assert bob.status == jobs.STARTING and manager.queue_position(carol) == 1  # positions move up
    assert manager.active_jobs() == [bob] and bob.started_at >= bob.queued_at
    end(manager, bob)
    end(manager, carol)
    assert manager.started() == [alice.id, bob.id, carol.id]
    assert manager.queued_jobs() == [] and manager.active_jobs() == []


def test_two_slots_serve_a_class_first_come_first_served(tmp_path):
    mgr = FakeManager(max_jobs=2, cores=2, runs_dir=tmp_path)
    try:
        students = [start(mgr, f"student{i:02d}") for i in range(12)]
        assert [j.status for j in students[:2]] == [jobs.STARTING] * 2
        assert [mgr.queue_position(j) for j in students[2:]] == list(range(1, 11))
        while any(not j.done for j in students):
            running = mgr.active_jobs()
            assert 0 < len(running) <= 2
            end(mgr, running[-1])  # whichever ends first, the next in line takes its slot
        assert mgr.started() == [j.id for j in students]
        assert all(j.status == jobs.FINISHED for j in students)  # nobody was refused
    finally:
        mgr.shutdown(timeout=1)


def test_leaving_the_queue_cancels_the_job_and_moves_the_others_up(manager):
    alice, bob, carol = (start(manager, name) for name in ("alice", "bob", "carol"))
    assert bob.leave_queue()
    assert bob.status == jobs.CANCELLED and bob.done and bob.status in jobs.TERMINAL and bob.error is None
    assert manager.queue_position(bob) is None and manager.queue_position(carol) == 1
    assert not bob.leave_queue() and not alice.leave_queue()  # only a waiting job can leave
    carol.request_stop()  # Stop on a waiting job also takes it out of the line
    assert carol.status == jobs.CANCELLED and not carol.stop_requested
    end(manager, alice)
    assert manager.started() == [alice.id] and manager.active_jobs() == []
    again = start(manager, "bob")  # having left, bob may start again, and runs at once
    assert again.status == jobs.STARTING


def test_a_closed_sessions_queued_job_never_starts(manager):
    alice, bob, carol = (start(manager, name) for name in ("alice", "bob", "carol"))
    manager.release_owner("bob", grace=30)
    manager.claim_owner("bob")  # a reload within the grace period keeps the place in line
    time.sleep(0.1)
    assert manager.queue_position(bob) == 1
    cleaned = threading.Event()
    manager.release_owner("bob", grace=0.05, on_expire=cleaned.set)
    assert cleaned.wait(5) and bob.wait(5)
    assert bob.status == jobs.CANCELLED and manager.job_of("bob") is None
    assert manager.queue_position(carol) == 1
    end(manager, alice)
    end(manager, carol)
    assert manager.started() == [alice.id, carol.id]  # bob's job never ran


def test_one_job_per_owner_waiting_or_running(manager):
    start(manager, "alice")
    start(manager, "bob")
    with pytest.raises(JobError, match="already have a job running"):
        start(manager, "alice")
    with pytest.raises(JobError, match="already have a job waiting in the queue"):
        start(manager, "bob")
    with pytest.raises(JobError, match="waiting in the queue"):
        manager.start_lab("bob", LabSettings(cells=("rnn", "gru"), distractors=(3,), n=100, epochs=1))
    assert len(manager.queued_jobs()) == 1


def test_waiting_jobs_never_share_a_run_folder(manager, tmp_path):
    first = start(manager, "alice", run_name="same")
    second = start(manager, "bob", run_name="same")
    third = start(manager, "carol", run_name="same")
    dirs = [j.run_dirs[0] for j in (first, second, third)]
    assert dirs == [tmp_path / "same", tmp_path / "same-2", tmp_path / "same-3"]
    assert second.leave_queue()  # its folder is free again, the others' stay promised
    assert start(manager, "dave", run_name="same").run_dirs[0] == tmp_path / "same-2"
    end(manager, first)
    assert manager.worker_of(third).payload["out_dir"] == str(tmp_path / "same-3")


def test_the_line_is_bounded(tmp_path, monkeypatch):
    mgr = FakeManager(max_jobs=1, cores=1, runs_dir=tmp_path, max_queue=2)
    try:
        for name in ("a", "b", "c"):
            start(mgr, name)
        with pytest.raises(CapacityError, match="RNN_DEMO_MAX_QUEUE") as refused:
            start(mgr, "d", run_name="d-run")
        assert "2 jobs are already waiting" in str(refused.value)
        assert mgr.job_of("d") is None and len(mgr.queued_jobs()) == 2
        assert mgr.job_of("b").leave_queue()
        assert start(mgr, "d", run_name="d-run").run_dirs[0] == tmp_path / "d-run"  # the refused one's is free
    finally:
        mgr.shutdown(timeout=1)
    monkeypatch.setenv(jobs.MAX_QUEUE_ENV, "7")
    assert jobs.max_queue_from_env() == 7
    monkeypatch.setenv(jobs.MAX_QUEUE_ENV, "lots")
    with pytest.raises(JobError, match="RNN_DEMO_MAX_QUEUE='lots'"):
        jobs.max_queue_from_env()


def test_a_waiting_job_whose_worker_cannot_start_fails_and_the_next_starts(tmp_path):
    mgr = FakeManager(max_jobs=1, cores=1, runs_dir=tmp_path, fail_launch=frozenset({"doomed"}))
    try:
        first = start(mgr, "alice")
        doomed = start(mgr, "bob", run_name="doomed")
        carol = start(mgr, "carol")
        end(mgr, first)
        assert doomed.done and doomed.status == jobs.FAILED and "Could not start" in doomed.error
        assert carol.status == jobs.STARTING
    finally:
        mgr.shutdown(timeout=1)


def test_shutdown_empties_the_line(tmp_path):
    mgr = FakeManager(max_jobs=1, cores=1, runs_dir=tmp_path)
    first, second = start(mgr, "alice"), start(mgr, "bob")
    mgr.shutdown(timeout=1)
    assert first.done and second.status == jobs.CANCELLED and mgr.queued_jobs() == []
    assert mgr.started() == [first.id]


class Running:
    def __init__(self, eta, started_at=0.0, kind="train"):
        self.eta, self.started_at, self.kind = eta, started_at, kind

    def eta_seconds(self):
        return self.eta


def test_the_expected_start_adds_up_the_running_etas_and_the_jobs_ahead():
    assert estimate_wait([0.0], []) == 0.0
    assert estimate_wait([30.0, 10.0], []) == 10.0  # the earliest slot
    assert estimate_wait([30.0, 10.0], [25.0]) == 30.0  # the job ahead takes the 10 s slot until 35 s
    assert estimate_wait([30.0, 10.0], [25.0, 25.0]) == 35.0
    assert estimate_wait([None, 10.0], []) is None and estimate_wait([10.0], [None]) is None
    # A running job still loading its data counts its kind's typical duration from its start.
    assert estimate_start([(Running(None, started_at=100.0), 60.0)], [], 1, now=120.0) == 40.0
    assert estimate_start([(Running(None), None)], [], 1, now=5.0) is None
    assert estimate_start([(Running(12.0), None)], [], 2, now=0.0) == 0.0  # a free slot
    assert estimate_start([(Running(12.0), None)], [30.0], 2, now=0.0) == 12.0  # the job ahead takes the free one


def test_waiting_text_says_the_place_and_when():
    assert waiting_text(3, 65.0) == "Queued: you are 3rd in line; expected to start in about 1 min 5 s"
    assert waiting_text(1, None) == "Queued: you are next in line; no estimate yet"
    assert waiting_text(2, 0.4) == "Queued: you are 2nd in line; a slot is freeing up now"  # never "in 0 s"
    assert [jobs.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]


def test_the_manager_estimates_from_running_etas_and_finished_durations(manager, monkeypatch):
    alice, bob, carol = (start(manager, name) for name in ("alice", "bob", "carol"))
    assert manager.estimated_start(alice) is None  # running, not waiting
    assert manager.estimated_start(bob) is None  # alice's ETA is not known before her first step
    assert manager.queue_status(bob) == "Queued: you are next in line; no estimate yet"
    monkeypatch.setattr(alice, "eta_seconds", lambda: 50.0)
    assert manager.estimated_start(bob) == 50.0
    assert manager.estimated_start(carol) is None  # how long bob's job takes is not known yet
    alice.started_at -= 20  # a finished job of 20 s teaches the typical duration
    end(manager, alice)
    monkeypatch.setattr(bob, "eta_seconds", lambda: 8.0)
    assert manager.estimated_start(carol) == pytest.approx(8.0)
    assert manager.queue_status(carol) == "Queued: you are next in line; expected to start in about 8 s"
    dave = start(manager, "dave")
    assert manager.estimated_start(dave) == pytest.approx(8.0 + 20.0, abs=0.5)
    assert manager.queue_status(dave).startswith("Queued: you are 2nd in line; expected to start in about 28 s")


# ---- the pages: Train, the race on Compare, the sidebar (AppTest; fake workers) ----------------------------------

APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture
def full_server(tmp_path, monkeypatch, tiny_runs_dir, app_navigation_mode):
    """The app's shared manager, one slot, busy with someone else's job; two more owners wait in line."""
    from rnn_demo.jobs import manager as manager_module

    monkeypatch.setenv("RNN_DEMO_RUNS", str(tiny_runs_dir))
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))
    mgr = FakeManager(max_jobs=1, cores=1, runs_dir=tmp_path / "others")
    monkeypatch.setattr(manager_module, "_shared", mgr)
    others = [start(mgr, name) for name in ("running", "ahead1", "ahead2")]
    yield mgr, others
    mgr.shutdown(timeout=1)


def page(path: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["app.dataset"] = SPEC.to_dict()
    at.run()
    at.switch_page(path).run()
    assert not at.exception, at.exception
    return at


def infos(at) -> list[str]:
    return [i.value for i in at.info]


def sidebar_job(at) -> str:
    return next(c.value for c in at.sidebar.caption if ": " in c.value and " on " in c.value)


def test_the_train_page_shows_the_place_in_line_updates_it_and_can_leave(full_server):
    mgr, (running, ahead1, ahead2) = full_server
    at = page("pages/train.py")
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error
    job = at.session_state["app.job"]
    assert job.status == jobs.QUEUED and mgr.queue_position(job) == 3
    assert "Queued: you are 3rd in line; no estimate yet." in infos(at)
    assert sidebar_job(at).endswith(": queued (3rd)")
    assert any(b.label == "Leave the queue" for b in at.button)
    assert not any(b.label == "Stop training" for b in at.button) and not at.get("plotly_chart")

    ahead1.leave_queue()
    at.run()  # what the fragment's next poll draws
    assert "Queued: you are 2nd in line; no estimate yet." in infos(at)
    assert sidebar_job(at).endswith(": queued (2nd)")
    running.started_at -= 30  # a finished 30 s job: the server now knows how long a training takes
    end(mgr, running)
    assert ahead2.status == jobs.STARTING
    at.run()
    assert any(text.startswith("Queued: you are next in line; expected to start in about") for text in infos(at))

    next(b for b in at.button if b.label == "Leave the queue").click().run()
    assert not at.exception
    assert job.status == jobs.CANCELLED and mgr.queued_jobs() == []
    assert "You left the queue; this job did not run. Start again whenever you like." in infos(at)
    assert sidebar_job(at).endswith(": left the queue")
    assert not next(b for b in at.button if b.label == "Start training").disabled  # free to start again
    assert mgr.started() == [running.id, ahead2.id]  # the job that left never ran


def test_the_train_page_says_when_training_falls_back_from_the_cluster(full_server, monkeypatch):
    mgr, _ = full_server
    notice = "Could not reach the Ray cluster at 10.0.0.9:6379 (timed out); training runs on this server instead."
    monkeypatch.setattr(mgr, "backend_notice", notice)
    at = page("pages/train.py")
    assert [text.replace("\\", "") for text in infos(at)] == [notice]
    monkeypatch.setattr(mgr, "backend_notice", None)
    assert not infos(page("pages/train.py"))


def test_the_folder_sweep_spares_the_owners_of_waiting_jobs(full_server, monkeypatch):
    from rnn_demo import sessions

    kept: list[set[str]] = []
    monkeypatch.setattr(sessions, "maybe_sweep", lambda keep=(), **kwargs: kept.append(set(keep)))
    page("pages/home.py")
    assert kept and {"running", "ahead1", "ahead2"} <= kept[-1]  # the waiting ones will save into their folders


def test_a_queued_race_waits_on_the_compare_page_and_goes_live_when_it_starts(full_server):
    mgr, (running, ahead1, ahead2) = full_server
    at = page("pages/compare.py")
    race = mgr.start_training(at.session_state["app.owner"], SPEC, *CONFIGS, cells=("rnn", "gru"))
    at.run()  # the page finds the session's job (as after a reload)
    assert at.session_state["app.job"] is race and not at.exception
    assert "Queued: you are 3rd in line; no estimate yet." in infos(at)
    assert any(b.label == "Leave the queue" and b.key == "compare.leave_queue" for b in at.button)
    for job in (running, ahead1):
        end(mgr, job)
    ahead2.request_stop()  # a running job stopped by its owner frees its slot too
    assert ahead2.wait(5) and race.status == jobs.STARTING
    at.run()
    assert not any(text.startswith("Queued:") for text in infos(at))
    assert not any(b.label == "Leave the queue" for b in at.button)
    assert at.get("progress") and "race" in sidebar_job(at) and sidebar_job(at).endswith("0%")


# ---- benchmarks/classroom.py's report, on made-up observations ------------------------------------------------


def test_the_classroom_report_checks_order_own_jobs_and_counts_jobs_per_minute(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import classroom

    args = classroom.parse_args(["--sessions", "2", "--trainers", "3"])
    assert (args.sessions, args.trainers, args.backend, args.order_slack) == (2, 3, "local", 3.0)

    def student(i, place, loss, run=None):
        return {"name": f"class-{i:02d}", "clicked_at": 100.0 + i * 0.1, "first_place": place, "first_loss_s": loss,
                "started_at": None if loss is None else 100.0 + loss - 1.0, "told_to_retry": False, "run": run or f"class-{i:02d}",
                "own_run": run is None, "jobs_in_sidebar": 1, "failed": "", "start_clicks": 1}

    raw = {"trained": [student(0, 0, 2.0), student(1, 1, 12.0), student(2, 2, 20.0)],
           "browsed": [{"label_s": [0.1, 0.3], "explained_s": [0.5, 0.9], "saw_a_job": False}] * 2,
           "started": 100.0, "ended": 130.0, "rss_before_mb": 800.0, "rss_after_mb": 900.0, "rss_peak_mb": 1000.0}
    summary = classroom.summarize(raw, args)
    assert summary["jobs_per_minute"] == 6.0 and summary["rss_per_session_mb"] == 20.0
    assert summary["in_arrival_order"] and summary["only_own_jobs"] and summary["nobody_told_to_retry"]
    assert summary["predict_label_p50_s"] == pytest.approx(0.2) and summary["longest_line"] == 2
    assert summary["first_steps_in_arrival_order"] and "left the line in arrival order" in classroom.table(summary)

    raw["trained"][1]["first_loss_s"] = 30.0  # 2nd in line's first step 10 s after the 3rd's (its worker was slow)
    summary = classroom.summarize(raw, args)
    assert summary["first_step_inversions"] == [("class-01", "class-02")] and not summary["first_steps_in_arrival_order"]
    assert summary["in_arrival_order"]  # it still left the line before the 3rd

    raw["trained"][1]["started_at"] = 125.0  # 2nd in line left the line 6 s after the 3rd
    raw["trained"][2] = student(2, 2, 20.0, run="class-01")  # and showed someone else's run
    summary = classroom.summarize(raw, args)
    assert summary["order_inversions"] == [("class-01", "class-02")] and not summary["in_arrival_order"]
    assert not summary["only_own_jobs"]

    raw["trained"][2] = dict(student(2, 2, 20.0), run="", own_run=False)  # its run name could not be read
    summary = classroom.summarize(raw, args)
    assert summary["only_own_jobs"] and summary["run_names_read"] == 2  # unread is not someone else's

    raw["trained"][1] = dict(student(1, 1, None, run=""), failed="Training failed: out of memory", start_clicks=2)
    summary = classroom.summarize(raw, args)  # a failed job is reported, not counted as finished
    assert summary["jobs_finished"] == 2 and summary["jobs_per_minute"] == 4.0 and summary["start_pressed_again"] == 1
    assert summary["jobs_failed"] == [["class-01", "Training failed: out of memory"]]
    assert "out of memory" in classroom.table(summary)



def test_one_polling_fragment_per_page_the_sidebar_rests_on_the_live_panels_page():
    """With a class on one server every tick is work: on Train and Compare the live panel redraws the sidebar line."""
    from types import SimpleNamespace

    from rnn_demo.ui.widgets import job_line_polls

    train, race, lab = (SimpleNamespace(done=False, kind=kind) for kind in ("train", "race", "lab"))
    assert job_line_polls(train, "Predict") and job_line_polls(train, "Compare") and job_line_polls(train, None)
    assert not job_line_polls(train, "Train")
    assert not job_line_polls(race, "Compare") and job_line_polls(race, "Train")
    assert job_line_polls(lab, "Internals")  # the lab's progress fragment does not draw the sidebar
    assert not job_line_polls(SimpleNamespace(done=True, kind="train"), "Predict")


def test_on_the_train_page_the_sidebar_names_the_job_once(full_server):
    """The live panel writes the sidebar's job line; the sidebar does not write it a second time."""
    mgr, _ = full_server
    at = page("pages/train.py")
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception
    lines = [c.value for c in at.sidebar.caption if ": " in c.value and " on " in c.value]
    assert len(lines) == 1 and lines[0].endswith(": queued (3rd)")
    at.switch_page("pages/predict.py").run()  # elsewhere the sidebar's own fragment draws it
    lines = [c.value for c in at.sidebar.caption if ": " in c.value and " on " in c.value]
    assert len(lines) == 1 and lines[0].endswith(": queued (3rd)")


def test_a_finished_jobs_page_keeps_no_polling_fragment(full_server, monkeypatch):
    """The results are drawn outside any fragment: a tick the browser sends after the job ended then
    names no fragment and Streamlit skips it. Drawing the results in such ticks made a class of 30
    finished pages saturate the server (none of them showed its results in 15 minutes)."""
    import streamlit as st

    mgr, others = full_server
    registered: list[tuple[str, float | None]] = []
    real = st.fragment

    def recording(func=None, **kwargs):
        if func is None:
            return lambda f: recording(f, **kwargs)
        registered.append((func.__qualname__, kwargs.get("run_every")))
        return real(func, **kwargs)

    monkeypatch.setattr(st, "fragment", recording)
    at = page("pages/train.py")
    next(b for b in at.button if b.label == "Start training").click().run()
    job = at.session_state["app.job"]
    assert ("live_panel.<locals>.panel", queue_view.QUEUE_POLL_SECONDS) in registered  # waiting: it polls
    for other in others:
        end(mgr, other)
    worker = mgr.worker_of(job)  # ends as a failure: the fake's summary is too thin for the result panel
    worker.events.put({"type": "error", "message": "out of memory", "time": time.time()})
    worker.alive, worker.exitcode = False, 1
    assert job.wait(5) and job.status == jobs.FAILED
    registered.clear()
    at.run()
    assert not at.exception
    assert not [name for name, _ in registered if name.startswith("live_panel")], registered
    assert not [every for _, every in registered if every], registered  # nothing on the page polls any more
    assert any("out of memory" in e.value for e in at.error)  # the ending is shown
