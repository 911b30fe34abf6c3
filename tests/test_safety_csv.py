"""Issue #17, safe inputs: CSV files load with bounded memory and nothing dropped silently;
a training whose loss explodes ends as diverged.

Every file is generated into tmp_path; nothing touches the network.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from rnn_demo.batching import BatchLoader
from rnn_demo.cli import main
from rnn_demo.data import DatasetError, DatasetSpec, LoadReport, load_csv, load_splits, read_table_preview
from rnn_demo.experiment import prepare_data
from rnn_demo.model import ModelConfig, RecurrentClassifier
from rnn_demo.text import TextConfig
from rnn_demo.train import Trainer, TrainConfig, TrainingError, seed_everything

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def reviews(n: int, start: int = 0) -> list[str]:
    """``n`` rows ``text,label`` of a two-class file (physical lines, no newline)."""
    return [f"{'a fine' if i % 2 else 'a poor'} film number {i},{'pos' if i % 2 else 'neg'}"
            for i in range(start, start + n)]


# ---- broken quoting ----------------------------------------------------------------------


def test_an_unterminated_quote_that_swallows_the_file_is_refused_naming_its_line(tmp_path: Path) -> None:
    lines = ["text,label", *reviews(10), '"this quote is never closed,pos', *reviews(188, start=10)]
    path = write(tmp_path / "bad.csv", "\n".join(lines) + "\n")  # line 12 opens the quote
    with pytest.raises(DatasetError, match=r"line 12 opens a quote that is never closed.*fix the quote"):
        load_csv(path, ["text"], "label")


def test_a_quote_that_closes_far_below_is_refused_naming_both_lines(tmp_path: Path) -> None:
    lines = ["text,label", *reviews(10), '"runs on,pos', *reviews(100, start=10), 'a "quoted" word,neg',
             *reviews(50, start=110)]
    path = write(tmp_path / "bad.csv", "\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"line 12 opens a quote that closes only on line 113"):
        load_csv(path, ["text"], "label")


def test_an_unterminated_quote_longer_than_a_cell_may_be_names_its_line(tmp_path: Path) -> None:
    lines = ["text,label", *reviews(3), '"never closed,pos', *reviews(20000, start=3)]
    path = write(tmp_path / "huge.csv", "\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"line 5 opens a quote that is not closed"):
        load_csv(path, ["text"], "label")
    with pytest.raises(DatasetError, match=r"line 5 opens a quote"):
        read_table_preview(path)  # the preview fails the same way instead of hanging on the cell


def test_a_few_legitimate_multi_line_cells_still_load(tmp_path: Path) -> None:
    rows = reviews(40)
    rows[5] = '"a long review,\nwith a second paragraph\nand a third one",pos'
    rows[20] = '"two\nlines",neg'
    path = write(tmp_path / "ok.csv", "text,label\n" + "\n".join(rows) + "\n")
    data = load_csv(path, ["text"], "label")
    assert len(data) == 40
    assert data.texts[5] == "a long review, with a second paragraph and a third one"
    assert data.report is not None and data.report.merged_lines == 0


def test_a_quote_swallowing_a_few_rows_is_loaded_but_reported(tmp_path: Path) -> None:
    lines = ["text,label", *reviews(10), '"runs on,pos', *reviews(3, start=10), 'a "quoted" word,neg',
             *reviews(90, start=13)]
    path = write(tmp_path / "few.csv", "\n".join(lines) + "\n")
    data = load_csv(path, ["text"], "label")
    assert data.report is not None and data.report.merged_lines == 3 and data.report.first_merged_line == 12
    assert "line 12" in data.report.summary() and "3 lines" in data.report.summary()


# ---- missing labels and the load report ----------------------------------------------------


def test_nan_like_labels_are_missing_labels_not_classes(tmp_path: Path) -> None:
    rows = reviews(20) + ["one,NaN", "two,nan", "three,None", "four,null", "five,NA", "six,N/A", "seven, n/a "]
    path = write(tmp_path / "nan.csv", "text,label\n" + "\n".join(rows) + "\n")
    data = load_csv(path, ["text"], "label")
    assert data.label_names == ["neg", "pos"]
    assert len(data) == 20 and data.dropped == 7
    assert data.report is not None and data.report.missing_label == 7


def test_rows_read_and_kept_are_reported_with_reasons(tmp_path: Path) -> None:
    rows = reviews(10) + [",pos", "   ,neg", "no label here,", "lonely cell without delimiter", "x,pos,surplus"]
    path = write(tmp_path / "reviews.csv", "text,label\n" + "\n".join(rows) + "\n\n")
    data = load_csv(path, ["text"], "label")
    report = data.report
    assert report is not None
    assert (report.rows_read, report.rows_kept) == (15, 10)
    assert (report.empty_text, report.missing_label, report.malformed) == (2, 1, 2)
    assert data.dropped == 5
    assert report.summary() == (
        "read 15 rows from reviews.csv, kept 10 (5 dropped: 2 empty text, 1 missing label, 2 malformed)"
    )
    splits = load_splits(DatasetSpec(csv=str(path), text_cols=["text"], label_col="label"))
    assert splits.dropped == 5 and splits.load_summary() == report.summary()


def test_a_clean_file_reports_every_row_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "clean.csv", "text,label\n" + "\n".join(reviews(1200)) + "\n")
    data = load_csv(path, ["text"], "label")
    assert data.report is not None and data.report.summary() == "read 1,200 rows from clean.csv, kept all 1,200"


def test_rows_past_the_limit_are_not_read_and_that_is_said(tmp_path: Path) -> None:
    path = write(tmp_path / "many.csv", "text,label\n" + "\n".join(reviews(150)) + "\n")
    data = load_csv(path, ["text"], "label", max_rows=100)
    assert len(data) == 100 and data.texts[-1] == "a fine film number 99"
    assert data.report is not None and data.report.row_limit == 100
    assert "more than 100 rows; only the first 100 are used" in data.report.summary()


# ---- encodings ---------------------------------------------------------------------------


def test_mixed_utf8_and_latin1_lines_are_decoded_per_line_and_counted(tmp_path: Path) -> None:
    lines = [b"text,label"] + [f"caf\u00e9 number {i},{'pos' if i % 2 else 'neg'}".encode() for i in range(30)]
    lines[7] = "cr\u00e8me br\u00fbl\u00e9e,pos".encode("latin-1")  # line 8
    lines[21] = "na\u00efve,neg".encode("latin-1")  # line 22
    data = load_csv(write(tmp_path / "mixed.csv", b"\n".join(lines) + b"\n"), ["text"], "label")
    assert data.texts[0] == "caf\u00e9 number 0"  # not mojibake ("cafÃ©")
    assert "cr\u00e8me br\u00fbl\u00e9e" in data.texts and "na\u00efve" in data.texts
    report = data.report
    assert report is not None and report.encoding == "utf-8"
    assert report.repaired_lines == 2 and report.first_repaired_line == 8
    assert "2 lines were not UTF-8 and were read as Latin-1 (first: line 8)" in report.summary()


def test_a_line_that_is_no_text_in_any_encoding_is_refused_with_its_number(tmp_path: Path) -> None:
    lines = [b"text,label"] + [f"review {i},{i % 2}".encode() for i in range(1000)]
    lines[600] = b"\x81\x8d\x01\x02\x03 garbage,1"  # line 601, past the start of the file
    with pytest.raises(DatasetError, match=r"line 601 .*neither UTF-8 nor Latin-1.*save the file as UTF-8"):
        load_csv(write(tmp_path / "junk.csv", b"\n".join(lines) + b"\n"), ["text"], "label")


# ---- memory ------------------------------------------------------------------------------

_MEMORY_CHILD = textwrap.dedent(
    """
    import os, sys
    from rnn_demo.data import load_csv

    def peak_rss():  # this process's own high-water mark; ru_maxrss starts at the parent's after a fork
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        return int(status["VmHWM"].split()[0]) * 1024

    path = sys.argv[1]
    with open(path, "w") as handle:  # 10 MB of short distinct rows, written before the baseline
        handle.write("text,label\\n")
        words = ["good", "bad", "movie", "film", "plot", "great", "dull"]
        for i in range(480_000):
            handle.write(f"{words[i % 7]} {words[(i // 7) % 7]} {i},{i % 2}\\n")
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # the high-water mark restarts at the current size
    except OSError:
        pass  # then the baseline is the peak of the imports: the growth can only look larger
    base = peak_rss()
    data = load_csv(path, ["text"], "label")
    print(len(data), os.path.getsize(path), peak_rss() - base)
    """
)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc")
def test_loading_a_csv_holds_memory_to_a_small_multiple_of_the_file(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(tmp_path / "big.csv")], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows, size, growth = map(int, proc.stdout.split())
    assert rows == 480_000 and size > 9_000_000
    assert size < growth, "the measurement saw no growth"  # the kept texts alone are several times the file
    assert growth < 10 * size, f"peak RSS grew {growth / size:.1f}x the file size"  # 15.7x before, about 6x now


# ---- the CLI: one error line, the report, diverged training ---------------------------------


def test_cli_refuses_a_swallowing_quote_with_one_error_line(tmp_path: Path) -> None:
    lines = ["text,label", *reviews(10), '"never closed,pos', *reviews(188, start=10)]
    path = write(tmp_path / "bad.csv", "\n".join(lines) + "\n")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "rnn_demo", "train", "--csv", str(path), "--text-col", "text",
                           "--label-col", "label", "--out", str(out)], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "line 12 opens a quote that is never closed" in errors[0]
    assert "Traceback" not in proc.stderr and not out.exists()


def test_cli_refuses_an_undecodable_line_with_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lines = [b"text,label"] + [f"review {i},{i % 2}".encode() for i in range(1000)]
    lines[600] = b"\x81\x8d\x01\x02 garbage,1"
    path = write(tmp_path / "junk.csv", b"\n".join(lines) + b"\n")
    code = main(["train", "--csv", str(path), "--text-col", "text", "--label-col", "label", "--out",
                 str(tmp_path / "run"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "line 601" in err[-1]


def test_cli_train_says_how_many_rows_were_read_and_kept(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rows = reviews(60) + [",pos", "no label,", "nan label,NaN"]
    path = write(tmp_path / "reviews.csv", "text,label\n" + "\n".join(rows) + "\n")
    code = main(["train", "--csv", str(path), "--text-col", "text", "--label-col", "label", "--epochs", "1",
                 "--hidden-size", "8", "--embedding-dim", "8", "--out", str(tmp_path / "run")])
    assert code == 0
    err = capsys.readouterr().err
    assert "read 63 rows from reviews.csv, kept 60 (3 dropped: 1 empty text, 2 missing label)" in err


@pytest.fixture(scope="module")
def negation():
    return prepare_data(load_splits(DatasetSpec(name="negation", params={"n": 400})), TextConfig())


def _trainer(data, events: list, **train_kwargs) -> Trainer:
    config = TrainConfig(**{"epochs": 2, "batch_size": 32, "log_every": 1, **train_kwargs})
    seed_everything(config.seed)
    model = RecurrentClassifier(ModelConfig(vocab_size=len(data.vocab), num_classes=2, cell="rnn",
                                            embedding_dim=16, hidden_size=16, dropout=0.0))
    return Trainer(model, BatchLoader(data.train, config.batch_size, shuffle=True), BatchLoader(data.validation, 256),
                   config, callback=events.append)


def test_a_loss_that_explodes_to_huge_finite_values_ends_as_diverged(negation) -> None:
    events: list = []
    trainer = _trainer(negation, events, lr=1e30)
    with pytest.raises(TrainingError, match=r"loss exploded to .* at step \d+.*lower the learning rate"):
        trainer.fit()  # no evaluation had usable weights yet
    assert events[-1]["type"] == "done" and events[-1]["reason"] == "diverged"


def test_a_run_that_explodes_after_good_epochs_keeps_them_and_reports_diverged(negation) -> None:
    events: list = []
    trainer = _trainer(negation, events, lr=5e-3, epochs=3)

    def explode_after_epoch_one(event: dict) -> None:
        events.append(event)
        if event["type"] == "eval" and event["epoch"] == 1:
            for group in trainer.optimizer.param_groups:
                group["lr"] = 1e30

    trainer.callback = explode_after_epoch_one
    result = trainer.fit()
    assert result.reason == "diverged" and result.best_epoch == 1
    assert events[-1]["reason"] == "diverged"
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())  # the epoch-1 weights


def test_cli_train_with_an_absurd_learning_rate_fails_as_diverged(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    code = main(["train", "--dataset", "negation", "--param", "n=400", "--epochs", "2", "--lr", "1e30", "--cell",
                 "rnn", "--out", str(tmp_path / "run"), "--json", "--quiet"])
    assert code != 0
    err = capsys.readouterr().err
    assert "loss exploded" in err and "Traceback" not in err


def test_cli_train_that_diverged_after_saving_good_weights_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture) -> None:
    # The run is saved with the weights from before the explosion, but the exit status must not say "completed".
    from rnn_demo import experiment

    def diverged_run(*args: object, **kwargs: object) -> experiment.RunSummary:
        return experiment.RunSummary(
            run_dir=tmp_path / "run", n_train=10, epochs_run=1, epoch_seconds=[0.1], tokens_per_second=[1.0],
            val={"accuracy": 0.5, "macro_f1": 0.5, "loss": 0.7}, test={"accuracy": 0.5, "macro_f1": 0.5, "loss": 0.7},
            label_names=["a", "b"], stop_reason="diverged", message="the loss exploded to 3e+30 at step 9",
            num_parameters=10)

    monkeypatch.setattr(experiment, "run_experiment", diverged_run)
    code = main(["train", "--dataset", "negation", "--out", str(tmp_path / "run"), "--json", "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "training diverged: the loss exploded" in err and "saved the best weights before it" in err


# ---- the Data page -------------------------------------------------------------------------


def test_the_data_page_overview_shows_the_load_report() -> None:
    from streamlit.testing.v1 import AppTest

    def page() -> None:
        import numpy as np

        from rnn_demo.data import LoadReport
        from rnn_demo.dataset_stats import DatasetStats
        from rnn_demo.ui import data_widgets

        report = LoadReport(source="my_reviews.csv", rows_read=12, missing_label=2, repaired_lines=1,
                            first_repaired_line=4)
        stats = DatasetStats(name="my_reviews.csv", label_names=["neg", "pos"],
                             split_sizes={"train": 8, "validation": 1, "test": 1},
                             class_counts={s: {"neg": 1, "pos": 1} for s in ("train", "validation", "test")},
                             train_lengths=np.array([3] * 8), vocab_size=10, oov_rate=0.0, truncated_fraction=0.0,
                             samples=[("a", "neg")], dropped=2, fingerprint="x", load_reports=[report])
        data_widgets.overview(stats, None)

    at = AppTest.from_function(page).run()
    assert not at.exception, at.exception
    shown = " ".join(e.value for e in [*at.caption, *at.warning]).replace("\\", "")
    assert "Read 12 rows from my_reviews.csv, kept 10 (2 dropped: 2 missing label)" in shown
    assert "1 line was not UTF-8 and was read as Latin-1 (line 4)" in shown
    assert LoadReport(rows_read=3).summary() == "read 3 rows, kept all 3"
