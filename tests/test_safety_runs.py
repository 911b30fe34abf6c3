"""Faults around run folders: nothing that is not ours is deleted or replaced, a damaged
run never breaks the others, interrupted saves leave nothing behind, SIGTERM saves.

Most cases are refused before any data is loaded, so they never train.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rnn_demo.checkpoints import CheckpointError, list_runs, load_run, read_run_info, save_run
from rnn_demo.cli import main
from rnn_demo.data import DatasetSpec
from rnn_demo.model import ModelConfig, RecurrentClassifier
from rnn_demo.text import TextConfig, Vocab
from rnn_demo.train import TrainConfig

TINY = ["--dataset", "negation", "--param", "n=200", "--epochs", "1", "--hidden-size", "4", "--embedding-dim", "4",
        "--threads", "1", "--json", "--quiet"]


def _save_tiny_run(run_dir: Path, **kwargs) -> Path:
    """Saves an untrained 4-unit GRU as a run (no training, so it takes milliseconds)."""
    vocab = Vocab.build([["not", "good", "bad"]])
    model = RecurrentClassifier(ModelConfig(vocab_size=len(vocab), num_classes=2, embedding_dim=4, hidden_size=4))
    spec = DatasetSpec(name="negation")
    return save_run(
        run_dir, model, vocab, text_config=TextConfig(), train_config=TrainConfig(),
        label_names=["negative", "positive"],
        dataset={"spec": spec.to_dict(), "name": "negation", "fingerprint": "0" * 16, "sizes": {}},
        history=[], metrics={"test": {"accuracy": 0.5, "macro_f1": 0.5, "loss": 0.7}}, **kwargs,
    )


def _snapshot(folder: Path) -> dict[str, tuple[bytes | None, int, bool]]:
    """Every path under ``folder`` (symlinks not followed) with its bytes, mtime and whether it is a link."""
    result = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        result[str(path.relative_to(folder))] = (data, st.st_mtime_ns, path.is_symlink())
    return result


@pytest.fixture
def no_training(monkeypatch):
    """Fails the test if a training gets as far as loading its data."""
    calls = []

    def refuse(spec):
        calls.append(spec)
        raise AssertionError("the dataset was loaded: the output folder was not validated before training")

    monkeypatch.setattr("rnn_demo.experiment.load_splits", refuse)
    return calls


@pytest.fixture
def runs_home(tmp_path, monkeypatch):
    """An empty user runs folder (``$RNN_DEMO_RUNS``)."""
    runs = tmp_path / "home-runs"
    runs.mkdir()
    monkeypatch.setenv("RNN_DEMO_RUNS", str(runs))
    return runs


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# --- 1. never delete or overwrite what is not ours -------------------------------------------------------------


def test_train_refuses_an_existing_folder_that_is_not_a_run_and_keeps_its_files(tmp_path, capsys, runs_home,
                                                                                no_training):
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "thesis.txt").write_text("x\n")
    before = _snapshot(tmp_path)
    assert main(["train", *TINY, "--out", str(folder)]) == 2
    line = _one_error_line(capsys)
    assert str(folder) in line and "pick a new folder name" in line
    assert _snapshot(tmp_path) == before  # thesis.txt unchanged (bytes and mtime), no hidden leftovers
    assert not no_training


def test_train_refuses_a_file_as_out_and_leaves_it_in_place(tmp_path, capsys, runs_home, no_training):
    target = tmp_path / "notes.txt"
    target.write_text("my notes\n")
    before = _snapshot(tmp_path)
    assert main(["train", *TINY, "--out", str(target)]) == 2
    line = _one_error_line(capsys)
    assert str(target) in line and "is a file" in line
    assert _snapshot(tmp_path) == before
    assert not list(tmp_path.glob(".notes.txt.old-*"))


@pytest.mark.parametrize(
    "out, fragment",
    [
        (".", "not a folder name"),
        ("..", "not a folder name"),
        ("somewhere/..", "not a folder name"),
        ("link", "symbolic link"),
        ("afile/run", "is a file"),
        ("my run", "'my-run'"),
        (".hidden", "not allowed"),
    ],
)
def test_train_validates_out_before_training(tmp_path, capsys, runs_home, no_training, monkeypatch, out, fragment):
    (tmp_path / "somewhere").mkdir()
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "data.txt").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "afile").write_text("a file")
    monkeypatch.chdir(tmp_path)
    before = _snapshot(tmp_path)
    assert main(["train", *TINY, "--out", out]) == 2
    assert fragment in _one_error_line(capsys)
    assert _snapshot(tmp_path) == before
    assert not no_training


def test_an_existing_run_is_replaced_only_with_overwrite(tmp_path, capsys, runs_home):
    run = _save_tiny_run(tmp_path / "mine")
    before = _snapshot(tmp_path)
    assert main(["train", *TINY, "--out", str(run)]) == 2
    line = _one_error_line(capsys)
    assert str(run) in line and "pass --overwrite to replace it" in line
    assert _snapshot(tmp_path) == before

    assert main(["train", *TINY, "--out", str(run), "--overwrite"]) == 0
    assert json.loads((run / "config.json").read_text())["model"]["cell"] == "gru"
    assert json.loads((run / "history.json").read_text())  # the new run's events, not the empty list saved above
    assert load_run(run).label_names == ["negative", "positive"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home-runs", "mine"]  # no temp, old or lock leftovers


def test_an_empty_existing_folder_is_used(tmp_path):
    (tmp_path / "empty").mkdir()
    run = _save_tiny_run(tmp_path / "empty")
    assert run == tmp_path / "empty" and read_run_info(run).name == "empty"


def test_save_run_never_replaces_a_foreign_folder_or_a_file(tmp_path):
    foreign = tmp_path / "v"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("x")
    file = tmp_path / "f"
    file.write_text("y")
    run = _save_tiny_run(tmp_path / "run")
    before = _snapshot(tmp_path)
    for target in (foreign, file):
        with pytest.raises(CheckpointError, match="pick a new folder name|is a file"):
            _save_tiny_run(target, overwrite=True)
    with pytest.raises(CheckpointError, match="pass --overwrite"):
        _save_tiny_run(run)
    assert _snapshot(tmp_path) == before
    assert _save_tiny_run(run, overwrite=True) == run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "run", "v"]


def test_run_experiment_refuses_a_foreign_folder_before_loading_data(tmp_path, no_training):
    from rnn_demo.experiment import default_configs, run_experiment

    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "thesis.txt").write_text("x")
    with pytest.raises(CheckpointError, match="pick a new folder name"):
        run_experiment(DatasetSpec(name="negation"), *default_configs("negation"), out_dir=tmp_path / "v")
    assert (tmp_path / "v" / "thesis.txt").read_text() == "x" and not no_training


def test_a_second_training_on_the_same_out_fails_while_the_first_holds_it(tmp_path, capsys, runs_home, no_training):
    from rnn_demo.checkpoints import claim_out_dir

    out = tmp_path / "shared"
    with claim_out_dir(out) as claimed:  # flock is per open file: a second open in this process conflicts too
        assert claimed == out
        assert main(["train", *TINY, "--out", str(out)]) == 2
        line = _one_error_line(capsys)
        assert f"another training is writing {out} right now (pid {os.getpid()})" in line
        assert "choose another --out" in line
    assert not no_training and not out.exists()
    assert not list(tmp_path.glob(".shared*"))  # the lock file is removed when the first one is done
    with claim_out_dir(out):  # and the folder can be claimed again
        pass


def test_build_checkpoints_replaces_its_own_runs_explicitly(monkeypatch, tmp_path):
    from rnn_demo import experiment

    seen = []
    monkeypatch.setattr(experiment, "run_experiment", lambda *args, **kwargs: seen.append(kwargs))
    experiment.build_shipped_runs(tmp_path)
    assert seen and all(kwargs["overwrite"] is True for kwargs in seen)


# --- 2. one damaged run never breaks the rest ----------------------------------------------------------------------


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


DAMAGES = {
    "model-not-a-dict": ("config.json", lambda c: c.update(model=[1, 2]), "'model'"),
    "cell-an-int": ("config.json", lambda c: c["model"].update(cell=5), "cell"),
    "hidden-size-huge": ("config.json", lambda c: c["model"].update(hidden_size=10**9), "hidden_size"),
    "hidden-size-a-string": ("config.json", lambda c: c["model"].update(hidden_size="big"), "model settings"),
    "label-names-ints": ("config.json", lambda c: c.update(label_names=[1, 2]), "label_names"),
    "label-names-a-string": ("config.json", lambda c: c.update(label_names="ab"), "label_names"),
    "label-count": ("config.json", lambda c: c.update(label_names=["a", "b", "c"]), "3 label names"),
    "train-missing": ("config.json", lambda c: c.pop("train"), "lacks 'train'"),
    "dataset-a-list": ("config.json", lambda c: c.update(dataset=[]), "'dataset'"),
    "metrics-test-a-string": ("metrics.json", lambda m: m.update(test="0.9"), "'test'"),
    "metrics-accuracy-a-string": ("metrics.json", lambda m: m["test"].update(accuracy="high"), "accuracy"),
}


@pytest.mark.parametrize("case", list(DAMAGES))
def test_read_run_info_refuses_malformed_fields_with_a_reason(tmp_path, case):
    filename, change, fragment = DAMAGES[case]
    run = _save_tiny_run(tmp_path / case)
    _edit_json(run / filename, change)
    with pytest.raises(CheckpointError, match="damaged") as info:
        read_run_info(run)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_run_info_labels_never_crash_on_malformed_json(tmp_path):
    from rnn_demo.checkpoints import RunInfo

    info = RunInfo(path=tmp_path, name="x", shipped=False, config={"model": 3, "dataset": "y", "label_names": 4},
                   metrics={"test": "0.9"})
    assert info.test_accuracy() is None and info.dataset_name == "?" and info.cell == "?"
    assert info.title() == "x (?, ?, yours)" and info.label_names == []


def test_runs_lists_damaged_runs_after_good_ones_and_good_runs_keep_working(runs_home, capsys):
    from rnn_demo.checkpoints import list_damaged_runs, runs_in_folder

    good = _save_tiny_run(runs_home / "good")
    bad = _save_tiny_run(runs_home / "bad")
    _edit_json(bad / "config.json", lambda c: c.update(model="gru"))
    (runs_home / "bad-partial").mkdir()
    (runs_home / "bad-partial" / "config.json").write_text("{not json")
    (runs_home / "photos").mkdir()  # not a run at all: not listed
    (runs_home / "photos" / "cat.png").write_bytes(b"png")
    (runs_home / ".hidden").mkdir()
    (runs_home / ".hidden" / "config.json").write_text("{}")

    runs, damaged = runs_in_folder(runs_home)
    assert [r.name for r in runs] == ["good"]
    assert [d.name for d in damaged] == ["bad", "bad-partial"]
    assert "'model' is not an object" in damaged[0].reason and "missing model.safetensors" in damaged[1].reason
    assert [r.name for r in list_runs(include_shipped=False, user_dir=runs_home)] == ["good"]
    damaged_paths = [d.path for d in list_damaged_runs(include_shipped=False, user_dir=runs_home)]
    assert damaged_paths == [bad, runs_home / "bad-partial"]

    assert main(["runs", "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "good" in [r["name"] for r in data["runs"]]
    assert [d["name"] for d in data["damaged"]] == ["bad", "bad-partial"] and data["damaged"][0]["reason"]
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert out.index("good (negation") < out.index("damaged: bad — ") < out.index("damaged: bad-partial — ")
    assert main(["predict", str(good), "not", "good", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["label"] in ("negative", "positive")


# --- 3. interrupted saves --------------------------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _stale_run_folder(path: Path, age: float = 0.0) -> Path:
    path.mkdir()
    for name in ("config.json", "model.safetensors"):
        (path / name).write_text("{}")
    if age:
        os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_clean_stale_temp_dirs_removes_only_our_dead_leftovers(tmp_path):
    from rnn_demo.checkpoints import clean_stale_temp_dirs

    dead, alive = _dead_pid(), os.getpid()
    removed_expected = {
        _stale_run_folder(tmp_path / f".run.{dead}-abcd_123.tmp"),  # a crashed save (pid gone)
        _stale_run_folder(tmp_path / f".run.old-{dead}"),
        _stale_run_folder(tmp_path / ".run.k2j4h5g6.tmp", age=7200),  # an old-style name, two hours old
        _stale_run_folder(tmp_path / f".run.{alive}-zzzz1111.tmp", age=7200),
    }
    kept = [
        _stale_run_folder(tmp_path / f".run.{alive}-abcd_123.tmp"),  # a save in progress
        _stale_run_folder(tmp_path / f".run.old-{alive}"),
        _stale_run_folder(tmp_path / ".run.q9w8e7r6.tmp"),  # young, no pid in the name
        _stale_run_folder(tmp_path / ".thesis", age=7200),  # not our pattern
        _stale_run_folder(tmp_path / "run", age=7200),
    ]
    foreign = _stale_run_folder(tmp_path / f".notes.old-{dead}")
    (foreign / "thesis.txt").write_text("mine")  # matches our pattern but holds something that is not ours
    target = _stale_run_folder(tmp_path / "target")
    (tmp_path / f".link.old-{dead}").symlink_to(target, target_is_directory=True)

    removed = clean_stale_temp_dirs(tmp_path)
    assert set(removed) == removed_expected
    assert not any(p.exists() for p in removed_expected)
    assert all(p.is_dir() for p in kept)
    assert (foreign / "thesis.txt").read_text() == "mine"
    assert (tmp_path / f".link.old-{dead}").is_symlink() and sorted(os.listdir(target)) == ["config.json",
                                                                                             "model.safetensors"]


def test_list_runs_and_train_clean_the_user_runs_folder(runs_home, tmp_path, capsys):
    dead = _dead_pid()
    first = _stale_run_folder(runs_home / f".a.{dead}-abcd_123.tmp")
    list_runs(include_shipped=False)
    assert not first.exists()
    second = _stale_run_folder(runs_home / f".b.old-{dead}")
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "x").write_text("x")
    assert main(["train", *TINY, "--out", str(tmp_path / "v")]) == 2  # refused, but the clean-up ran first
    assert not second.exists()


# --- 4. SIGTERM behaves like Ctrl-C -----------------------------------------------------------------------------------


@pytest.mark.parametrize("signum, status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_saves_the_best_weights_and_exits_non_zero(tmp_path, signum, status):
    out = tmp_path / "stopped"
    env = {**os.environ, "RNN_DEMO_RUNS": str(tmp_path / "runs"), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnn_demo", "train", "--dataset", "negation", "--param", "n=200", "--epochs", "200",
         "--patience", "0", "--hidden-size", "4", "--embedding-dim", "4", "--threads", "1", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    err = bytearray()
    progress = threading.Event()

    def read() -> None:
        while chunk := os.read(proc.stderr.fileno(), 4096):
            err.extend(chunk)
            if b"loss=" in err:
                progress.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert progress.wait(120), err.decode(errors="replace")
        proc.send_signal(signum)
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(10)
    text = err.decode(errors="replace")
    assert proc.returncode == status, text
    assert "Traceback" not in text
    name = signal.Signals(signum).name
    assert f"stopped by {name}; saved the best weights to {out}" in text
    run = load_run(out)
    assert json.loads((out / "history.json").read_text())[-1]["reason"] == "stopped"
    assert run.info.config["summary"]["epochs_run"] < 200
