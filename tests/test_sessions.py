"""Each browser's data is its own (issue #17): owners, visibility, sharing, privacy of uploads, quota, clean-up.

The first part tests ``rnn_demo.sessions`` as plain functions; the second runs the real app
in two AppTest sessions with different ``s`` tokens (the owner is the browser: the token in the URL).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import types
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rnn_demo import sessions
from rnn_demo.data import DatasetSpec

APP = str(Path(__file__).resolve().parent.parent / "app.py")
ALICE = "alice-token-0123456789"
BOB = "bob-token-abcdefghijklm"
SECRET = "zebra-secret-phrase"  # planted in Alice's uploaded texts: Bob must never see it


@pytest.fixture(autouse=True)
def folders(monkeypatch, tmp_path):
    """A sessions root and an (empty) server runs folder of this test only; sharing on, default limits."""
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))
    monkeypatch.setenv("RNN_DEMO_RUNS", str(tmp_path / "server-runs"))
    for name in ("RNN_DEMO_SHARING", "RNN_DEMO_SESSION_MAX_RUNS", "RNN_DEMO_SESSION_MAX_MB",
                 "RNN_DEMO_SESSION_TTL_HOURS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def add_run(owner: str, source: Path, name: str) -> Path:
    """Copies a trained run into an owner's runs folder (what a finished training leaves there)."""
    sessions.ensure_owner_dir(owner)
    return Path(shutil.copytree(source, sessions.owner_runs_dir(owner) / name))


def names(runs) -> set[str]:
    return {run.info.name for run in runs}


def origins(runs) -> dict[str, str]:
    return {run.info.name: run.origin for run in runs}


# ---- tokens and folders ----------------------------------------------------------------


@pytest.mark.parametrize("hostile", ["../../etc", "a" * 10_000, "", "short", "has/slash/aaaaaaaaaaaa",
                                     "dots..aaaaaaaaaaaaaaaa", "sp ace-aaaaaaaaaaaaaa", None, 12345678901234567890])
def test_hostile_tokens_are_rejected(hostile, folders):
    assert sessions.valid_token(hostile) is None
    with pytest.raises(sessions.SessionError, match="session"):
        sessions.owner_dir(hostile)  # type: ignore[arg-type]
    assert not (folders / "sessions").exists() and not (folders / "etc").exists()


def test_new_tokens_are_valid_random_and_owner_folders_live_under_the_root(folders):
    tokens = {sessions.new_token() for _ in range(50)}
    assert len(tokens) == 50 and all(sessions.valid_token(t) == t for t in tokens)
    folder = sessions.ensure_owner_dir(ALICE)
    assert folder == (folders / "sessions" / ALICE).resolve()
    assert sessions.owner_runs_dir(ALICE).is_dir() and sessions.owner_uploads_dir(ALICE).is_dir()
    assert (folder / "last_seen").is_file()


def test_last_seen_is_touched_at_most_every_minute(folders):
    sessions.ensure_owner_dir(ALICE)
    marker = sessions.owner_dir(ALICE) / "last_seen"
    os.utime(marker, (1000.0, 1000.0))
    sessions.touch(ALICE, now=1030.0)
    assert marker.stat().st_mtime == 1000.0  # within the minute: no write
    sessions.touch(ALICE, now=1100.0)
    assert marker.stat().st_mtime == 1100.0
    sessions.touch(BOB, now=1100.0)  # an owner without a folder gets none just by visiting
    assert not sessions.owner_dir(BOB).exists()


# ---- who sees what ---------------------------------------------------------------------


def test_each_owner_sees_shipped_server_and_own_runs_but_not_the_others(tiny_runs_dir, folders):
    shutil.copytree(tiny_runs_dir / "tiny-gru", folders / "server-runs" / "teacher-gru")
    add_run(ALICE, tiny_runs_dir / "tiny-rnn", "alice-run")
    add_run(BOB, tiny_runs_dir / "tiny-gru", "bob-run")

    alice, alice_damaged = sessions.visible_runs(ALICE, sharing=True)
    bob, _ = sessions.visible_runs(BOB, sharing=True)
    assert not alice_damaged
    assert origins(alice)["alice-run"] == "yours" and "bob-run" not in names(alice)
    assert origins(bob)["bob-run"] == "yours" and "alice-run" not in names(bob)
    for runs in (alice, bob):
        assert origins(runs)["teacher-gru"] == "server"
        assert {"shipped"} == {run.origin for run in runs if run.info.shipped} and any(r.info.shipped for r in runs)
    assert next(r for r in alice if r.info.name == "alice-run").title().endswith(", yours)")


def test_published_runs_are_seen_by_the_class_only_while_sharing_is_on(tiny_runs_dir, folders, monkeypatch):
    run = add_run(ALICE, tiny_runs_dir / "tiny-rnn", "alice-run")
    add_run(ALICE, tiny_runs_dir / "tiny-gru", "alice-private")
    sessions.set_shared(ALICE, "alice-run", True)
    assert sessions.shared_names(ALICE) == ["alice-run"]

    bob, _ = sessions.visible_runs(BOB, sharing=True)
    assert origins(bob).get("alice-run") == "shared by the class" and "alice-private" not in names(bob)
    assert str(run) in {str(r.path) for r in bob}
    assert "alice-run" not in names(sessions.visible_runs(BOB, sharing=False)[0])
    alice, _ = sessions.visible_runs(ALICE, sharing=True)
    assert [r.origin for r in alice if r.info.name == "alice-run"] == ["yours"]  # listed once, as her own

    monkeypatch.setenv("RNN_DEMO_SHARING", "off")
    assert not sessions.sharing_enabled()
    assert "alice-run" not in names(sessions.visible_runs(BOB)[0])  # the server setting is the default
    monkeypatch.setenv("RNN_DEMO_SHARING", "1")
    sessions.set_shared(ALICE, "alice-run", False)
    assert "alice-run" not in names(sessions.visible_runs(BOB)[0])


def test_only_ones_own_runs_can_be_published_renamed_or_deleted(tiny_runs_dir, folders):
    alice_run = add_run(ALICE, tiny_runs_dir / "tiny-rnn", "alice-run")
    with pytest.raises(sessions.SessionError, match="your own runs"):
        sessions.set_shared(BOB, "alice-run", True)
    with pytest.raises(sessions.SessionError, match="your own runs"):
        sessions.delete_own_run(BOB, alice_run)
    with pytest.raises(sessions.SessionError, match="your own runs"):
        sessions.delete_own_run(ALICE, tiny_runs_dir / "tiny-rnn")  # a server run
    with pytest.raises(sessions.SessionError, match="your own runs"):
        sessions.rename_own_run(BOB, alice_run, "mine-now")
    assert alice_run.is_dir() and (tiny_runs_dir / "tiny-rnn").is_dir()

    sessions.set_shared(ALICE, "alice-run", True)
    renamed = sessions.rename_own_run(ALICE, alice_run, "better name")
    assert renamed.name == "better-name" and sessions.shared_names(ALICE) == ["better-name"]
    sessions.delete_own_run(ALICE, renamed)
    assert not renamed.exists() and sessions.shared_names(ALICE) == []


def test_a_hostile_shared_list_never_reaches_outside_the_owners_runs(tiny_runs_dir, folders):
    add_run(ALICE, tiny_runs_dir / "tiny-rnn", "alice-run")
    add_run(BOB, tiny_runs_dir / "tiny-gru", "bob-private")
    outside = folders / "outside-run"
    shutil.copytree(tiny_runs_dir / "tiny-gru", outside)
    (sessions.owner_runs_dir(ALICE) / "link").symlink_to(outside)
    (sessions.owner_dir(ALICE) / "shared.json").write_text(json.dumps(
        ["../../" + BOB + "/runs/bob-private", str(outside), "link", "..", 42, {"x": 1}, "missing"]))
    carol = "carol-token-0123456789"
    visible, _ = sessions.visible_runs(carol, sharing=True)
    assert not {"bob-private", "outside-run", "link"} & names(visible)
    assert not [r for r in visible if r.origin == "shared by the class"]
    (sessions.owner_dir(ALICE) / "shared.json").write_text("{not json" * 1000)
    assert sessions.shared_names(ALICE) == []


def test_damaged_own_runs_are_reported_with_a_reason(tiny_runs_dir, folders):
    add_run(ALICE, tiny_runs_dir / "tiny-rnn", "alice-run")
    broken = add_run(ALICE, tiny_runs_dir / "tiny-gru", "broken-run")
    (broken / "config.json").write_text("{oops")
    runs, damaged = sessions.visible_runs(ALICE, sharing=True)
    assert "alice-run" in names(runs) and "broken-run" not in names(runs)
    assert [d.name for d in damaged] == ["broken-run"] and "config.json" in damaged[0].reason


# ---- uploads stay private --------------------------------------------------------------


def test_may_read_dataset_allows_only_ones_own_uploads(folders):
    mine = sessions.ensure_owner_dir(ALICE) / "uploads" / "mine.csv"
    theirs = sessions.ensure_owner_dir(BOB) / "uploads" / "theirs.csv"
    elsewhere = folders / "teacher.csv"
    legacy = Path(tempfile.gettempdir()) / "rnn_demo_uploads" / "abc123" / "old.csv"
    sneaky = sessions.owner_uploads_dir(ALICE) / ".." / ".." / BOB / "uploads" / "theirs.csv"
    assert sessions.may_read_dataset(ALICE, DatasetSpec(name="rotten_tomatoes"))
    assert sessions.may_read_dataset(ALICE, DatasetSpec(csv=str(mine), text_cols=["text"], label_col="label"))
    assert sessions.may_read_dataset(ALICE, {"csv": str(elsewhere)})  # the teacher's own file (CLI runs)
    assert not sessions.may_read_dataset(ALICE, {"csv": str(theirs)})
    assert not sessions.may_read_dataset(ALICE, {"csv": str(mine), "test_csv": str(theirs)})
    assert not sessions.may_read_dataset(ALICE, {"csv": str(sneaky)})
    assert not sessions.may_read_dataset(ALICE, {"csv": str(legacy)})  # uploads of the old layout
    assert not sessions.may_read_dataset(ALICE, {"csv": ["not", "a", "path"]})
    assert not sessions.may_read_dataset("../../etc", {"csv": str(mine)})
    assert sessions.may_read_dataset(BOB, {"csv": str(theirs)})


def test_session_folders_are_hidden_from_messages(folders):
    path = sessions.owner_runs_dir(ALICE) / "run"
    text = sessions.hide_session_paths(f"cannot load {path}/config.json")
    assert ALICE not in text and text.endswith("run/config.json")


# ---- quota -----------------------------------------------------------------------------


def test_quota_limits_runs_and_bytes_with_a_message_that_says_what_to_do(tiny_runs_dir, folders, monkeypatch):
    add_run(ALICE, tiny_runs_dir / "tiny-rnn", "one")
    runs, used = sessions.usage(ALICE)
    assert runs == 1 and used > 1000
    sessions.check_quota(ALICE, new_runs=1)  # defaults: 30 runs, 500 MB

    monkeypatch.setenv("RNN_DEMO_SESSION_MAX_RUNS", "1")
    with pytest.raises(sessions.QuotaError) as error:
        sessions.check_quota(ALICE, new_runs=1)
    message = str(error.value)
    assert "RNN_DEMO_SESSION_MAX_RUNS" in message and "Delete" in message and "\n" not in message
    sessions.check_quota(BOB, new_runs=1)  # the limit is per owner

    monkeypatch.setenv("RNN_DEMO_SESSION_MAX_RUNS", "5")
    with pytest.raises(sessions.QuotaError, match="race"):
        sessions.check_quota(ALICE, new_runs=5)
    monkeypatch.setenv("RNN_DEMO_SESSION_MAX_MB", str((used + 500) / 1e6))
    sessions.check_quota(ALICE, new_bytes=400)
    with pytest.raises(sessions.QuotaError, match="RNN_DEMO_SESSION_MAX_MB"):
        sessions.check_quota(ALICE, new_bytes=600)
    monkeypatch.setenv("RNN_DEMO_SESSION_MAX_MB", "junk")  # a bad setting falls back to the default
    sessions.check_quota(ALICE, new_bytes=600)


# ---- clean-up --------------------------------------------------------------------------


def test_sweep_deletes_only_expired_owners_and_nothing_outside_the_root(tiny_runs_dir, folders):
    now = time.time()
    old = now - 25 * 3600
    outside = folders / "precious"
    outside.mkdir()
    (outside / "thesis.txt").write_text("keep me")
    expired = "expired-token-000000000"
    busy = "busy-token-0000000000000"
    add_run(expired, tiny_runs_dir / "tiny-rnn", "old-run")
    (sessions.owner_dir(expired) / "uploads" / "link-out").symlink_to(outside)  # must not be followed
    for owner in (expired, busy):
        sessions.ensure_owner_dir(owner)
        os.utime(sessions.owner_dir(owner) / "last_seen", (old, old))
    sessions.ensure_owner_dir(ALICE)  # fresh
    root = sessions.sessions_root()
    (root / "not-a-token").mkdir()  # not ours: never deleted
    os.utime(root / "not-a-token", (old, old))
    linked = "linked-token-00000000000"
    (outside / "last_seen").write_text("x")
    os.utime(outside / "last_seen", (old, old))
    (root / linked).symlink_to(outside)  # an owner folder that is a symlink: skipped

    deleted = sessions.sweep_expired(keep={busy}, now=now)
    assert deleted == [expired]
    assert not sessions.owner_dir(expired).exists()
    assert sessions.owner_dir(busy).is_dir() and sessions.owner_dir(ALICE).is_dir()
    assert (root / "not-a-token").is_dir() and (root / linked).is_symlink()
    assert (outside / "thesis.txt").read_text() == "keep me"
    assert sessions.sweep_expired(now=now, ttl_hours=48) == []


def test_closing_a_tab_keeps_its_uploads_for_a_reload(folders, monkeypatch):
    from rnn_demo.ui import state

    monkeypatch.setenv("RNN_DEMO_SESSION_GRACE", "0.05")
    folder = state.upload_dir(ALICE)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "diary.csv").write_text("text,label\n")
    state._release(state.SessionLease(ALICE))  # what Streamlit calls when the tab closes
    time.sleep(0.5)  # the grace period has passed: a job would be stopped now
    assert (folder / "diary.csv").is_file()


def test_the_sweep_runs_at_most_every_ten_minutes(folders):
    start = time.time() + 10 * 365 * 86400  # later than any real call made by other tests
    assert sessions.maybe_sweep(now=start) is not None
    assert sessions.maybe_sweep(now=start + 60) is None
    assert sessions.maybe_sweep(now=start + 601) is not None


# ---- the app: two browsers -------------------------------------------------------------


@pytest.fixture
def _app_env(app_navigation_mode):
    """Navigation mode as on a real server (see tests/conftest.py)."""


def browser(token: str | None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if token is not None:
        at.query_params["s"] = token
    at.run()
    assert not at.exception, at.exception
    if page:
        at.switch_page(page).run()
        assert not at.exception, at.exception
    return at


def picker_labels(at: AppTest) -> list[str]:
    return list(at.selectbox(key="app.run").options)


def shown_text(at: AppTest) -> str:
    """Everything a page shows as text (markdown, captions, messages, tables)."""
    parts = [e.value for kind in ("markdown", "caption", "info", "error", "warning", "success", "text", "title")
             for e in getattr(at, kind)]
    parts += [frame.value.to_string() for frame in at.dataframe]
    return "\n".join(map(str, parts))


def test_the_owner_token_lives_in_the_url_and_a_hostile_one_is_replaced(_app_env, folders):
    at = browser(None)
    token = at.query_params["s"]
    assert sessions.valid_token(token) == token
    at.switch_page("pages/train.py").run()
    assert at.query_params["s"] == token  # a page switch keeps it (it is set again on every run)
    hostile = browser("../../etc")
    assert hostile.query_params["s"] != "../../etc" and sessions.valid_token(hostile.query_params["s"])
    junk = browser("x" * 10_000)
    assert len(junk.query_params["s"]) < 64
    assert not (folders / "etc").exists()


def test_two_browsers_see_only_their_own_runs_until_one_is_shared(_app_env, tiny_runs_dir, folders):
    run = add_run(ALICE, tiny_runs_dir / "tiny-gru", "alice-secret-run")
    alice = browser(ALICE, "pages/predict.py")
    bob = browser(BOB, "pages/predict.py")
    assert any("alice-secret-run" in label and "yours" in label for label in picker_labels(alice))
    assert not any("alice-secret-run" in label for label in picker_labels(bob))
    assert "alice-secret-run" not in shown_text(bob)

    forged = browser(BOB)  # Home: no picker, so only the check on every run stands between Bob and the path
    forged.session_state["app.run"] = str(run)
    forged.run()
    assert forged.session_state["app.run"] != str(run)
    assert not any("alice" in c.value for c in forged.sidebar.caption)

    alice.selectbox(key="app.run").set_value(str(run)).run()
    share = alice.sidebar.toggle[0]
    assert share.label == "Share with the class" and share.value is False  # off by default
    share.set_value(True).run()
    assert not alice.exception and sessions.shared_names(ALICE) == ["alice-secret-run"]
    bob.run()
    assert any("alice-secret-run" in label and "shared by the class" in label for label in picker_labels(bob))
    bob.selectbox(key="app.run").set_value(str(run)).run()
    assert not bob.exception and not [t for t in bob.sidebar.toggle if t.label == "Share with the class"]  # publish, rename, delete: only for one's own runs
    assert not [b for b in bob.sidebar.button if b.label == "Delete this run"]

    reloaded = browser(ALICE, "pages/predict.py")  # a reload: a new websocket session, same URL
    assert any("alice-secret-run" in label and "yours" in label for label in picker_labels(reloaded))


def write_upload_run(tiny_runs_dir: Path) -> Path:
    """A run of Alice's trained on a CSV she uploaded (texts that contain SECRET)."""
    uploads = sessions.ensure_owner_dir(ALICE) / "uploads"
    rows = "".join(f"{SECRET} number {i} was {'not ' if i % 2 else ''}good,{'negative' if i % 2 else 'positive'}\n"
                   for i in range(80))
    csv = uploads / "diary.csv"
    csv.write_text("text,label\n" + rows)
    run = add_run(ALICE, tiny_runs_dir / "tiny-rnn", "alice-diary-run")
    config = json.loads((run / "config.json").read_text())
    config["dataset"]["spec"] = DatasetSpec(csv=str(csv), text_cols=["text"], label_col="label").to_dict()
    (run / "config.json").write_text(json.dumps(config))
    (run / "predictions.safetensors").unlink(missing_ok=True)
    return run


def test_another_students_uploaded_texts_stay_private_on_mistakes_and_internals(_app_env, tiny_runs_dir, folders):
    run = write_upload_run(tiny_runs_dir)
    sessions.set_shared(ALICE, run.name, True)

    alice = browser(ALICE, "pages/mistakes.py")
    alice.selectbox(key="app.run").set_value(str(run)).run()
    alice.checkbox(key="mistakes.only_errors").uncheck().run()
    assert not alice.exception and SECRET in shown_text(alice)  # her own data: she sees it
    alice.switch_page("pages/internals.py").run()
    assert not alice.exception and not any("another student" in i.value for i in alice.info)
    assert any(SECRET in chart.proto.spec for chart in alice.get("plotly_chart"))  # the map of her texts

    bob = browser(BOB, "pages/mistakes.py")
    bob.selectbox(key="app.run").set_value(str(run)).run()
    assert not bob.exception
    assert any("another student's uploaded file" in i.value for i in bob.info)
    assert SECRET not in shown_text(bob) and not bob.dataframe

    bob.switch_page("pages/internals.py").run()
    assert not bob.exception
    assert any("another student's uploaded file" in i.value for i in bob.info)
    assert SECRET not in shown_text(bob) and not [c for c in bob.get("plotly_chart") if SECRET in c.proto.spec]


def test_a_full_quota_blocks_training_with_a_clear_message(_app_env, tiny_runs_dir, folders, monkeypatch):
    add_run(ALICE, tiny_runs_dir / "tiny-rnn", "one")
    monkeypatch.setenv("RNN_DEMO_SESSION_MAX_RUNS", "1")
    started = []
    monkeypatch.setattr("rnn_demo.jobs.JobManager.start_training", lambda *a, **k: started.append(a))
    at = browser(ALICE, "pages/train.py")
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not started
    message = re.sub(r"\\(.)", r"\1", at.error[0].value)
    assert "RNN_DEMO_SESSION_MAX_RUNS" in message and "Delete" in message


def test_an_upload_over_the_quota_is_refused_with_a_clear_message(_app_env, folders, monkeypatch):
    monkeypatch.setenv("RNN_DEMO_SESSION_MAX_MB", "0.001")  # 1,000 bytes
    at = browser(ALICE, "pages/data.py")
    at.radio(key="data.source").set_value("Your CSV/TSV file").run()
    data = ("text,label\n" + "a fine film,pos\n" * 200).encode()
    at.file_uploader(key="data.upload").set_value(("big.csv", data, "text/csv")).run()
    assert not at.exception
    message = re.sub(r"\\(.)", r"\1", at.error[0].value)
    assert "RNN_DEMO_SESSION_MAX_MB" in message
    assert not list(sessions.owner_uploads_dir(ALICE).glob("*.csv"))  # nothing was written


def test_own_runs_can_be_deleted_after_a_confirmation(_app_env, tiny_runs_dir, folders):
    run = add_run(ALICE, tiny_runs_dir / "tiny-rnn", "doomed")
    at = browser(ALICE, "pages/predict.py")
    at.selectbox(key="app.run").set_value(str(run)).run()
    next(b for b in at.sidebar.button if b.label == "Delete this run").click().run()
    assert run.is_dir()  # asks first
    next(b for b in at.sidebar.button if b.label == "Yes, delete it").click().run()
    assert not at.exception and not run.exists()
    assert at.session_state["app.run"] != str(run)
    assert not any("doomed" in label for label in picker_labels(at))


def test_a_reload_reattaches_the_running_job(_app_env, folders, monkeypatch):
    from rnn_demo.jobs import shared_manager

    job = types.SimpleNamespace(done=True, description="GRU on Negation", status="finished", kind="train",
                                id="j1", owner=ALICE)
    manager = shared_manager()
    monkeypatch.setattr(manager, "job_of", lambda owner: job if owner == ALICE else None)
    at = browser(ALICE)
    assert at.session_state["app.job"] is job
    assert any("GRU on Negation" in c.value for c in at.sidebar.caption)
    bob = browser(BOB)
    assert "app.job" not in bob.session_state or bob.session_state["app.job"] is None


def test_a_reload_keeps_the_dataset_choice_and_a_foreign_upload_is_never_restored(_app_env, folders):
    at = browser(ALICE, "pages/data.py")
    at.radio(key="data.source").set_value("Synthetic task").run()
    assert not at.exception and at.session_state["app.dataset"]["name"] == "negation"
    reloaded = browser(ALICE)  # a reload: a new websocket session, same URL
    assert reloaded.session_state["app.dataset"]["name"] == "negation"
    assert any("Negation" in c.value for c in reloaded.sidebar.caption)
    assert browser(BOB).session_state["app.dataset"]["name"] == "rotten_tomatoes"  # not Bob's choice

    # A choice file naming another owner's upload (or junk) falls back to the default dataset.
    theirs = sessions.ensure_owner_dir(BOB) / "uploads" / "theirs.csv"
    theirs.write_text("text,label\na,b\n")
    sessions.write_owner_json(ALICE, "choices.json", {"dataset": DatasetSpec(csv=str(theirs)).to_dict()})
    assert browser(ALICE).session_state["app.dataset"]["name"] == "rotten_tomatoes"
    sessions.write_owner_json(ALICE, "choices.json", {"dataset": {"name": 5, "params": "x"}})
    assert browser(ALICE).session_state["app.dataset"]["name"] == "rotten_tomatoes"


def test_a_page_lists_the_visible_runs_once_per_script_run_and_sees_a_new_run_on_the_next(
        _app_env, tiny_runs_dir, folders, monkeypatch):
    """Listing reads every visible run's files: once per rerun, however many widgets ask (a class's server
    spent a sixth of its time there); never stale across reruns."""
    at = browser(ALICE, "pages/predict.py")
    calls = []
    real = sessions.visible_runs
    monkeypatch.setattr(sessions, "visible_runs", lambda *a, **k: calls.append(1) or real(*a, **k))
    at.run()
    assert not at.exception and len(calls) == 1
    add_run(ALICE, tiny_runs_dir / "tiny-gru", "saved-meanwhile")
    at.run()
    assert any("saved-meanwhile" in label for label in picker_labels(at)) and len(calls) == 2
