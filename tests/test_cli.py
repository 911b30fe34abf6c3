import json
import subprocess
import sys

import pytest

from rnn_demo.cli import main


def _last_json(capsys):
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "neg"
    code = main(["train", "--dataset", "negation", "--param", "n=1200", "--epochs", "2", "--hidden-size", "32",
                 "--max-tokens", "12", "--out", str(out), "--json", "--quiet"])
    assert code == 0
    return out


def test_train_json_reports_the_documented_fields(trained):
    config = json.loads((trained / "config.json").read_text())
    assert config["model"]["hidden_size"] == 32 and config["text"]["max_tokens"] == 12
    assert config["dataset"]["spec"]["params"] == {"n": 1200}
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["test"]["n"] == 120


def test_train_prints_one_json_object_last(tmp_path, capsys):
    code = main(["train", "--dataset", "negation", "--param", "n=400", "--epochs", "1", "--hidden-size", "8",
                 "--out", str(tmp_path / "r"), "--json", "--quiet"])
    assert code == 0
    data = _last_json(capsys)
    assert set(data) >= {"run_dir", "n_train", "epochs_run", "epoch_seconds", "tokens_per_second", "val", "test",
                         "label_names"}
    assert data["n_train"] == 320 and data["epochs_run"] == 1 and len(data["epoch_seconds"]) == 1
    assert set(data["test"]) == {"accuracy", "macro_f1", "loss"}
    assert data["label_names"] == ["negative", "positive"]


def test_predict_and_evaluate_json(trained, capsys):
    assert main(["predict", str(trained), "the", "film", "was", "never", "boring", "--json"]) == 0
    pred = _last_json(capsys)
    assert pred["label"] in ("negative", "positive")
    assert sum(pred["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert main(["evaluate", str(trained), "--json"]) == 0
    ev = _last_json(capsys)
    assert ev["n"] == 120 and 0 <= ev["accuracy"] <= 1
    assert sum(map(sum, ev["confusion_matrix"])) == 120
    assert set(ev["per_class"]) == {"negative", "positive"}


def test_train_from_csv_with_text_and_label_columns(tmp_path, capsys):
    rows = ["id,title,body,label"] + [
        f"{i},{'great' if i % 2 else 'awful'} day,{'we loved it' if i % 2 else 'we hated it'},{'pos' if i % 2 else 'neg'}"
        for i in range(80)
    ]
    path = tmp_path / "d.csv"
    path.write_text("\n".join(rows))
    code = main(["train", "--csv", str(path), "--text-col", "title", "--text-col", "body", "--label-col", "label",
                 "--epochs", "3", "--hidden-size", "8", "--no-vectors", "--out", str(tmp_path / "r"), "--json", "--quiet"])
    assert code == 0
    data = _last_json(capsys)
    assert data["label_names"] == ["neg", "pos"] and data["n_train"] == 64


def test_errors_are_one_line_on_stderr_with_nonzero_exit_and_no_traceback(tmp_path):
    cases = [
        ["predict", str(tmp_path / "missing"), "hello"],
        ["train", "--csv", str(tmp_path / "none.csv"), "--text-col", "a", "--label-col", "b"],
        ["train", "--dataset", "long_range", "--param", "distractors=lots"],
    ]
    for args in cases:
        proc = subprocess.run([sys.executable, "-m", "rnn_demo", *args], capture_output=True, text=True)
        assert proc.returncode != 0, args
        assert "Traceback" not in proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, proc.stderr


def test_help_documents_every_train_flag():
    proc = subprocess.run([sys.executable, "-m", "rnn_demo", "train", "--help"], capture_output=True, text=True)
    for flag in ("--cell", "--embedding-dim", "--hidden-size", "--num-layers", "--bidirectional", "--dropout",
                 "--pooling", "--epochs", "--batch-size", "--lr", "--optimizer", "--weight-decay", "--patience",
                 "--clip", "--seed", "--tokenizer", "--min-freq", "--max-vocab", "--max-tokens", "--out",
                 "--test-csv", "--text-col", "--label-col", "--no-header", "--delimiter"):
        assert flag in proc.stdout, flag


def test_progress_bar_starts_afresh_for_each_run():
    from rnn_demo.cli import _ProgressBar

    bar = _ProgressBar(enabled=True)
    for _ in range(2):
        bar({"type": "start", "total_steps": 10, "n_train": 5, "device": "cpu"})
        bar({"type": "step", "step": 4, "epoch": 1, "loss": 0.5, "tokens_per_second": 100.0})
        assert bar.bar.n == 4
        bar({"type": "done", "message": "ok"})


def test_threads_flag_sets_torch_threads_for_the_command(trained, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["predict", str(trained), "great fun", "--threads", "1", "--json"]) == 0
        assert torch.get_num_threads() == 1
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["label"]
    finally:
        torch.set_num_threads(before)
    proc = subprocess.run([sys.executable, "-m", "rnn_demo", "predict", str(trained), "x", "--threads", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "--threads" in proc.stderr and "at least 1" in proc.stderr
