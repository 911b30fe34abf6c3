import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

import rnn_demo
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
    assert set(metrics) == {"validation", "test", "baseline"} and 0 <= metrics["test"]["accuracy"] <= 1
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
    splits = load_splits(info.dataset_spec)
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


def _copy_with_config(run_dir, target, change):
    """A copy of the run whose config.json was changed by ``change(config)``."""
    target.mkdir()
    for path in run_dir.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    config = json.loads((target / "config.json").read_text())
    change(config)
    (target / "config.json").write_text(json.dumps(config))
    return target


def test_run_info_reads_the_settings_through_typed_accessors(run_dir):
    info = read_run_info(run_dir)
    assert info.dataset_spec == DatasetSpec(name="negation", params={"n": 600})
    assert info.spec_name == "negation" and info.dataset_name == "Negation (n=600)"  # the splits' display name
    assert len(info.dataset_fingerprint) == 16 and info.created.startswith("20")
    assert info.model_config.cell == "lstm" and info.model_config.bidirectional
    assert info.model_config.pooling == "attention" and info.model_config.num_classes == 2
    assert info.model_config == load_run(run_dir).model.config
    assert info.text_config == TextConfig() and info.train_config.epochs == 1 and info.train_config.batch_size == 32
    assert info.summary["epochs_run"] == 1 and info.summary["num_parameters"] > 0
    assert info.dataset_spec is info.dataset_spec and info.model_config is info.model_config  # parsed once
    assert info.training_version == rnn_demo.TRAINING_VERSION and info.test_accuracy() == info.test_scores["accuracy"]
    assert set(info.test_per_class) == {"negative", "positive"} and info.test_per_class["negative"]["support"] > 0


def test_an_old_run_without_a_dataset_reference_still_loads(run_dir, tmp_path):
    from rnn_demo.explain import ExplainError, validation_examples
    from rnn_demo.mistakes import load_split_predictions

    old = _copy_with_config(run_dir, tmp_path / "old", lambda c: (c.pop("dataset"), c.pop("summary")))
    info = read_run_info(old)
    assert info.dataset_spec is None and info.spec_name is None and info.dataset_fingerprint is None
    assert info.dataset_name == "?" and info.summary == {} and info.model_config.cell == "lstm"
    assert Predictor.load(old).predict_proba(["not good"]).shape == (1, 2)
    with pytest.raises(CheckpointError, match="does not record which dataset"):
        load_split_predictions(old, "test", lambda texts: None)
    with pytest.raises(ExplainError, match="no saved dataset reference"):
        validation_examples(Predictor.load(old))
    user_file = _copy_with_config(run_dir, tmp_path / "csv", lambda c: c["dataset"].update(
        spec={"csv": str(tmp_path / "reviews.csv"), "text_cols": ["text"], "label_col": "label"}))
    info = read_run_info(user_file)
    assert info.spec_name is None and info.dataset_spec.csv == str(tmp_path / "reviews.csv")


@pytest.mark.parametrize("spec, fragment", [
    ({"name": "negation", "colour": "red"}, "'dataset.spec' is malformed"),
    ({"name": 5}, "'dataset.spec.name' is not a string"),
    ({"csv": ["a.csv"]}, "'dataset.spec.csv' is not a string"),
    ({"name": "negation", "class_names": "ab"}, "'dataset.spec' is malformed"),
    ([1, 2], "'dataset.spec' is not an object"),
])
def test_a_malformed_dataset_reference_is_refused_once_when_reading_the_run(run_dir, tmp_path, spec, fragment):
    bad = _copy_with_config(run_dir, tmp_path / "bad", lambda c: c["dataset"].update(spec=spec))
    with pytest.raises(CheckpointError, match="damaged") as error:
        read_run_info(bad)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_typed_accessors_of_a_hand_built_run_info_raise_a_checkpoint_error(tmp_path):
    from rnn_demo.checkpoints import RunInfo

    info = RunInfo(path=tmp_path, name="x", shipped=False, metrics={},
                   config={"model": {"cell": 5}, "dataset": {"spec": {"name": "negation", "oops": 1}}})
    with pytest.raises(CheckpointError, match="dataset.spec"):
        info.dataset_spec
    with pytest.raises(CheckpointError, match="invalid model settings"):
        info.model_config
    with pytest.raises(CheckpointError, match="invalid text settings"):
        info.text_config
    assert info.cell == "5" and info.dataset_name == "?"  # labels never raise
    info = RunInfo(path=tmp_path, name="x", shipped=False, metrics={"test": [0.5]}, config={"model": "gru"})
    with pytest.raises(CheckpointError, match="invalid model settings"):
        info.model_config
    assert info.test_scores == {} and info.test_per_class == {} and info.test_accuracy() is None



def test_the_app_reads_runs_through_the_accessors(run_dir, tmp_path, monkeypatch):
    from rnn_demo import sessions
    from rnn_demo.ui import state

    other = _copy_with_config(run_dir, tmp_path / "rt", lambda c: c["dataset"].update(spec={"name": "rotten_tomatoes"}))
    old = _copy_with_config(run_dir, tmp_path / "old", lambda c: c.pop("dataset"))
    infos = [read_run_info(path) for path in (old, other, run_dir)]
    monkeypatch.setattr(state, "current_spec", lambda: DatasetSpec(name="negation"))
    assert state.default_run(infos).path == run_dir  # the first run of the current dataset
    monkeypatch.setattr(state, "current_spec", lambda: DatasetSpec(name="imdb"))
    assert state.default_run(infos).path == old  # none of it: the first run
    # Another owner's upload stays private; runs without a dataset or on a built-in one are readable.
    monkeypatch.setenv("RNN_DEMO_SESSIONS", str(tmp_path / "sessions"))
    upload = sessions.owner_uploads_dir("b" * 20) / "theirs.csv"
    private = _copy_with_config(run_dir, tmp_path / "private", lambda c: c["dataset"].update(
        spec={"csv": str(upload), "text_cols": ["text"], "label_col": "label"}))
    monkeypatch.setattr(state, "owner_id", lambda: "a" * 20)
    assert [state.may_read_run_data(read_run_info(p)) for p in (old, run_dir, private)] == [True, True, False]


def test_a_run_read_again_is_checked_once_and_each_reader_gets_its_own_copy(run_dir, tmp_path, monkeypatch):
    """Every page lists runs on every rerun: the checks run once per content, never on stale content."""
    from rnn_demo import checkpoints

    copy = tmp_path / "copy"
    copy.mkdir()
    for path in run_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    checkpoints._json_problem.cache_clear()  # other tests read the same bytes
    checks = []
    real = checkpoints.config_problem
    monkeypatch.setattr(checkpoints, "config_problem", lambda config: checks.append(1) or real(config))
    first = read_run_info(copy)
    first.config["model"]["cell"] = "changed by one reader"
    first.metrics["test"]["accuracy"] = -1
    second = read_run_info(copy)
    assert len(checks) == 1
    assert second.cell == "lstm" and 0 <= second.metrics["test"]["accuracy"] <= 1

    config = (copy / "config.json").read_text()
    (copy / "config.json").write_text(config.replace('"format_version"', '"format_versioN"'))  # same size
    with pytest.raises(CheckpointError, match="not an rnn_demo run"):
        read_run_info(copy)
    (copy / "config.json").write_text(config)
    assert read_run_info(copy).cell == "lstm" and len(checks) == 1
