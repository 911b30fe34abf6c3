import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from rnn_demo.checkpoints import (
    CheckpointError,
    list_runs,
    load_run,
    load_saved_predictions,
    read_run_info,
    sanitize_run_name,
)
from rnn_demo.data import DatasetSpec
from rnn_demo.experiment import run_experiment
from rnn_demo.model import ModelConfig
from rnn_demo.predict import Predictor
from rnn_demo.text import TextConfig
from rnn_demo.train import TrainConfig

TEXTS = ["the film was not good", "the food was really excellent , overall", "never boring", "x"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "neg-run"
    run_experiment(
        DatasetSpec(name="negation", params={"n": 600}),
        TextConfig(),
        ModelConfig(cell="lstm", embedding_dim=8, hidden_size=8, bidirectional=True, pooling="attention"),
        TrainConfig(epochs=1, batch_size=32),
        out_dir=out,
    )
    return out


def test_run_directory_has_every_file_and_the_config_rebuilds_the_model(run_dir):
    names = sorted(p.name for p in run_dir.iterdir())
    assert names == ["config.json", "history.json", "metrics.json", "model.safetensors", "predictions.safetensors", "vocab.json"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["cell"] == "lstm" and config["label_names"] == ["negative", "positive"]
    assert config["dataset"]["spec"]["name"] == "negation" and len(config["dataset"]["fingerprint"]) == 16
    assert config["versions"]["torch"] == torch.__version__
    history = json.loads((run_dir / "history.json").read_text())
    assert history[0]["type"] == "start" and history[-1]["type"] == "done"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {"validation", "test"} and 0 <= metrics["test"]["accuracy"] <= 1
    assert not [p for p in run_dir.parent.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_round_trip_gives_identical_probabilities(run_dir):
    first = Predictor.load(run_dir).predict_proba(TEXTS)
    second = Predictor.load(run_dir).predict_proba(TEXTS)
    assert first.shape == (4, 2)
    np.testing.assert_allclose(first.sum(1), 1, atol=1e-6)
    assert np.array_equal(first, second)


def test_saved_test_probabilities_match_a_fresh_prediction(run_dir):
    from rnn_demo.data import load_splits

    info = read_run_info(run_dir)
    splits = load_splits(DatasetSpec.from_dict(info.config["dataset"]["spec"]))
    saved = load_saved_predictions(run_dir)["test_probs"]
    fresh = Predictor.load(run_dir).predict_proba(splits.test.texts)
    np.testing.assert_allclose(saved, fresh, atol=1e-5)


def test_probabilities_are_identical_in_a_separate_process(run_dir):
    here = Predictor.load(run_dir).predict_proba(TEXTS)
    code = (
        "import json, sys; from rnn_demo.predict import Predictor; "
        f"print(json.dumps(Predictor.load({str(run_dir)!r}).predict_proba({TEXTS!r}).tolist()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert np.array_equal(np.asarray(json.loads(out), dtype=np.float32), here)


def test_a_pickle_file_is_refused_and_never_unpickled(run_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("config.json", "vocab.json", "history.json", "metrics.json"):
        (bad / name).write_bytes((run_dir / name).read_bytes())

    class Boom:
        def __reduce__(self):
            return (exec, ("open(%r, 'w').write('pwned')" % str(tmp_path / "pwned"),))

    (bad / "model.safetensors").write_bytes(pickle.dumps({"weights": Boom()}))
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_run(bad)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "vocab.json").unlink(), "missing vocab.json"),
        (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "config.json").write_text('{"format_version": 99}'), "not an rnn_demo run"),
        (lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 10), "not a safetensors file"),
        (lambda d: (d / "vocab.json").write_text('{"itos": ["<pad>", "<unk>", "a"]}'), "vocab.json has 3 tokens"),
    ],
)
def test_damaged_run_directories_give_clear_errors(run_dir, tmp_path, damage, message):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in run_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    damage(copy)
    with pytest.raises(CheckpointError, match=message):
        load_run(copy)


def test_run_names_are_sanitised_against_path_traversal():
    assert sanitize_run_name("../../etc/passwd") == "etc-passwd"
    assert sanitize_run_name("my run: GRU #1") == "my-run-GRU-1"
    with pytest.raises(CheckpointError):
        sanitize_run_name("../..")


def test_list_runs_returns_user_runs_and_skips_damaged_ones(run_dir, tmp_path):
    (tmp_path / "junk").mkdir()
    copy = tmp_path / "good"
    copy.mkdir()
    for path in run_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    runs = list_runs(include_shipped=False, user_dir=tmp_path)
    assert [r.name for r in runs] == ["good"]
    assert not runs[0].shipped and runs[0].cell == "lstm"
