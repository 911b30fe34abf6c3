"""Figure builders and the data behind the app's charts: training curves, results, dataset
statistics and the Mistakes list (filtering and sorting)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from rnn_demo.data import DatasetSpec, LabeledTexts, load_splits, split_dataset
from rnn_demo.dataset_stats import dataset_stats
from rnn_demo.metrics import example_predictions
from rnn_demo.mistakes import confusion_counts, load_split_predictions, select_examples
from rnn_demo.plots.data import class_balance_figure, length_histogram_figure
from rnn_demo.plots.results import confusion_matrix_figure, per_class_f1_figure, probability_html
from rnn_demo.plots.training import (
    compare_figure,
    curves_by_cell,
    loss_figure,
    race_figure,
    training_curves,
    validation_metrics_figure,
)
from rnn_demo.text import TextConfig

EVENTS = [
    {"type": "start", "total_steps": 20, "steps_per_epoch": 10, "epochs": 2},
    {"type": "step", "step": 5, "epoch": 1, "loss": 0.9},
    {"type": "step", "step": 10, "epoch": 1, "loss": 0.7},
    {"type": "epoch", "epoch": 1, "step": 10},
    {"type": "eval", "step": 10, "epoch": 1, "val_loss": 0.8, "val_accuracy": 0.6, "val_macro_f1": 0.55},
    {"type": "step", "step": 15, "epoch": 2, "loss": 0.5},
    {"type": "step", "step": 20, "epoch": 2, "loss": 0.4},
    {"type": "eval", "step": 20, "epoch": 2, "val_loss": 0.6, "val_accuracy": 0.75, "val_macro_f1": 0.7},
    {"type": "done", "reason": "completed"},
]


def test_training_curves_put_steps_on_an_epoch_axis():
    curves = training_curves(EVENTS)
    assert curves.train_loss == ([0.5, 1.0, 1.5, 2.0], [0.9, 0.7, 0.5, 0.4])
    assert curves.val_loss == ([1.0, 2.0], [0.8, 0.6])
    assert curves.val_accuracy[1] == [0.6, 0.75] and curves.val_macro_f1[1] == [0.55, 0.7]
    assert training_curves([]).train_loss == ([], [])


def test_loss_and_metric_figures():
    fig = loss_figure(EVENTS)
    assert [t.name for t in fig.data] == ["training loss", "validation loss"]
    assert list(fig.data[0].y) == [0.9, 0.7, 0.5, 0.4] and list(fig.data[1].x) == [1.0, 2.0]
    fig = validation_metrics_figure(EVENTS)
    assert [t.name for t in fig.data] == ["validation accuracy", "validation macro-F1"]
    assert list(fig.data[0].y) == [0.6, 0.75]


def test_race_figure_has_one_curve_per_cell():
    race = [{**e, "cell": cell} for cell in ("rnn", "gru") for e in EVENTS]
    race[-1]["val_loss"] = 0.1  # gru's last event is "done": no change expected
    assert set(curves_by_cell(race)) == {"rnn", "gru"}
    fig = race_figure(race, "val_accuracy")
    assert [t.name for t in fig.data] == ["RNN", "GRU"]
    assert list(fig.data[1].y) == [0.6, 0.75]
    assert fig.data[0].line.color != fig.data[1].line.color


def test_compare_figure_overlays_runs():
    other = [dict(e) for e in EVENTS]
    for e in other:
        if e["type"] == "start":
            e["steps_per_epoch"] = 5  # a different batch size still lines up in epochs
    fig = compare_figure({"a": EVENTS, "b": other}, "train_loss")
    assert [t.name for t in fig.data] == ["a", "b"]
    assert list(fig.data[1].x) == [1.0, 2.0, 3.0, 4.0]


def test_confusion_matrix_figure_shows_counts_and_row_shares():
    fig = confusion_matrix_figure([[8, 2], [0, 0]], ["neg", "pos"])
    heat = fig.data[0]
    assert list(heat.x) == ["neg", "pos"] and list(heat.y) == ["neg", "pos"]
    assert [list(row) for row in heat.text] == [[8, 2], [0, 0]]
    assert np.allclose(heat.z, [[0.8, 0.2], [0.0, 0.0]])  # an empty class gives zeros, not NaN
    cells = fig.data[1]  # invisible markers that make the cells clickable
    assert list(zip(cells.y, cells.x, cells.text)) == [("neg", "neg", "8"), ("neg", "pos", "2"),
                                                        ("pos", "neg", "0"), ("pos", "pos", "0")]


def test_user_class_names_are_shown_as_text():
    fig = confusion_matrix_figure([[1, 0], [0, 1]], ["<b>bold</b>", "a&b"])
    assert list(fig.data[0].x) == ["&lt;b&gt;bold&lt;/b&gt;", "a&amp;b"]
    bars = probability_html({"<i>x</i>": 0.3, "y\"><script>": 0.7})
    assert "<i>" not in bars and "<script>" not in bars and "&lt;i&gt;x&lt;/i&gt;" in bars


def _bars(fragment: str) -> list[tuple[str, float, str]]:
    """(class name, bar width in %, label) per row of ``probability_html``, top to bottom."""
    rows = re.findall(r'title="([^"]*)".*?width: ([0-9.]+)%.*?>([0-9.]+%)</div>', fragment)
    return [(name, float(width), label) for name, width, label in rows]


def test_probability_bars_put_the_predicted_class_first_and_darkest():
    fragment = probability_html({"negative": 0.2, "neutral": 0.1, "positive": 0.7})
    assert _bars(fragment) == [("positive", 70.0, "70.0%"), ("negative", 20.0, "20.0%"), ("neutral", 10.0, "10.0%")]
    opacities = [float(o) for o in re.findall(r"opacity: ([0-9.]+)", fragment)]
    assert opacities[0] == 1.0 and max(opacities[1:]) < 0.5  # only the prediction stands out
    assert 'aria-label="Class probabilities: positive 70.0%, negative 20.0%, neutral 10.0%"' in fragment


def test_probability_bars_keep_numeric_labels_and_stay_in_bounds():
    assert _bars(probability_html({"0": 0.3, "1": 0.7})) == [("1", 70.0, "70.0%"), ("0", 30.0, "30.0%")]
    rows = _bars(probability_html({"a": 1.0000001, "b": -1e-9}))  # float error never draws outside the track
    assert [width for _, width, _ in rows] == [100.0, 0.0]


def test_probability_bars_grow_in_presenter_mode():
    sizes = [float(re.search(r"font-size: ([0-9.]+)rem", probability_html({"a": 1.0}, scale=k)).group(1))
             for k in (1.0, 1.4)]
    assert sizes[1] == pytest.approx(sizes[0] * 1.4)


def test_per_class_f1_figure_groups_runs_by_class():
    fig = per_class_f1_figure({"run-a": {"x": {"f1": 0.5}, "y": {"f1": 0.9}}, "run-b": {"y": {"f1": 0.4}}})
    assert [t.name for t in fig.data] == ["run-a", "run-b"]
    assert list(fig.data[0].x) == ["x", "y"]
    assert list(fig.data[1].y) == [None, 0.4]  # a class a run does not have is a gap


def test_data_figures():
    fig = class_balance_figure({"train": {"neg": 30, "pos": 10}, "test": {"neg": 3, "pos": 1}})
    assert [t.name for t in fig.data] == ["train", "test"] and list(fig.data[0].y) == [30, 10]
    fig = length_histogram_figure(np.array([1, 2, 3, 50]), max_tokens=10)
    assert list(fig.data[0].x) == [1, 2, 3, 50]
    assert fig.layout.shapes[0].x0 == 10  # the cap line
    assert "median 2" in fig.layout.title.text


def test_dataset_stats_fit_the_vocabulary_on_train_only():
    data = LabeledTexts(
        texts=["good film", "bad film", "good plot", "bad plot"] * 5 + ["unseen words here"] * 4,
        labels=[1, 0, 1, 0] * 5 + [0, 1, 0, 1],
        label_names=["neg", "pos"],
    )
    splits = split_dataset(data, val_fraction=0.25, test_fraction=0.25, seed=0)
    stats = dataset_stats(splits, TextConfig(max_tokens=2), n_samples=3)
    assert stats.split_sizes == {"train": len(splits.train), "validation": len(splits.validation), "test": len(splits.test)}
    assert stats.class_counts["train"] == splits.train.class_counts()
    assert len(stats.train_lengths) == len(splits.train) and stats.train_lengths.max() == 3
    assert stats.truncated_fraction == pytest.approx(float((stats.train_lengths > 2).mean()))
    assert len(stats.samples) == 3 and all(label in ("neg", "pos") for _, label in stats.samples)
    train_tokens = {t for text in splits.train.texts for t in text.split()}
    assert stats.vocab_size == len(train_tokens) + 2
    assert 0.0 <= stats.oov_rate <= 1.0


# ---- the Mistakes list ------------------------------------------------------------------

NAMES = ["neg", "pos", "neu"]
TEXTS = ["a great film", "not great", "dull", "fine I guess", "GREAT acting", "bad"]
LABELS = [1, 0, 0, 2, 1, 0]
PROBS = np.array(
    [
        [0.1, 0.8, 0.1],  # correct
        [0.05, 0.9, 0.05],  # neg -> pos, very confident mistake
        [0.6, 0.3, 0.1],  # correct
        [0.1, 0.3, 0.6],  # correct
        [0.7, 0.2, 0.1],  # pos -> neg mistake
        [0.2, 0.5, 0.3],  # neg -> pos, less confident mistake
    ]
)
RECORDS = example_predictions(TEXTS, LABELS, PROBS, NAMES)


def test_mistakes_come_first_most_confident_first():
    ordered = select_examples(RECORDS)
    assert [r["index"] for r in ordered] == [1, 4, 5, 0, 2, 3]  # ties (0.6, 0.6) keep split order
    assert [r["index"] for r in select_examples(RECORDS, mistakes_only=True)] == [1, 4, 5]


def test_mistakes_filter_by_cell_and_text():
    cell = select_examples(RECORDS, true_label="neg", predicted_label="pos")
    assert [r["index"] for r in cell] == [1, 5]
    assert all(r["true"] == "neg" and r["predicted"] == "pos" for r in cell)
    assert [r["index"] for r in select_examples(RECORDS, query="great")] == [1, 4, 0]  # case-insensitive
    assert [r["index"] for r in select_examples(RECORDS, query="great film")] == [0]  # the words as a phrase
    assert select_examples(RECORDS, predicted_label="neu", mistakes_only=True) == []
    assert len(select_examples(RECORDS, limit=2)) == 2


def test_confusion_counts_match_the_records():
    counts = confusion_counts(RECORDS, NAMES)
    assert counts.tolist() == [[1, 2, 0], [1, 1, 0], [0, 0, 1]]
    assert counts.sum() == len(RECORDS)


def test_split_predictions_reuse_saved_probabilities(tiny_runs_dir):
    def must_not_run(texts):
        raise AssertionError("saved probabilities should have been used")

    result = load_split_predictions(tiny_runs_dir / "tiny-rnn", "validation", must_not_run)
    splits = load_splits(DatasetSpec(name="negation"))
    assert result.source == "saved" and result.texts == splits.validation.texts
    assert result.probs.shape == (len(splits.validation), 2)
    assert len(result.records()) == len(splits.validation)


def test_split_predictions_recompute_when_the_data_changed(tiny_runs_dir, tmp_path):
    import json
    import shutil

    run = shutil.copytree(tiny_runs_dir / "tiny-rnn", tmp_path / "changed")
    config = json.loads((run / "config.json").read_text())
    config["dataset"]["fingerprint"] = "something-else"
    (run / "config.json").write_text(json.dumps(config))
    calls = []

    def predict(texts):
        calls.append(len(texts))
        return np.full((len(texts), 2), 0.5)

    result = load_split_predictions(run, "test", predict)
    assert result.source == "recomputed" and calls == [len(result.texts)]
    with pytest.raises(ValueError, match="unknown split"):
        load_split_predictions(run, "train", predict)


# ---- numeric class names are categories (issue #18) -------------------------------------

NUMERIC_LABELS = ["0", "1"]


def _assert_category_axis(axis, labels):
    """A category axis whose ticks are exactly the class names, in the given order."""
    assert axis.type == "category"
    assert list(axis.categoryarray) == labels and axis.categoryorder == "array"


def test_confusion_matrix_treats_numeric_labels_as_categories():
    fig = confusion_matrix_figure([[3, 1], [0, 4]], NUMERIC_LABELS)
    _assert_category_axis(fig.layout.xaxis, NUMERIC_LABELS)
    _assert_category_axis(fig.layout.yaxis, NUMERIC_LABELS)


def test_per_class_figures_treat_numeric_labels_as_categories():
    per_class = {"0": {"f1": 0.5}, "1": {"f1": 0.75}}
    _assert_category_axis(per_class_f1_figure({"run-a": per_class}).layout.xaxis, NUMERIC_LABELS)
    balance = class_balance_figure({"train": {"0": 5, "1": 3}, "test": {"0": 1, "1": 2}})
    _assert_category_axis(balance.layout.xaxis, NUMERIC_LABELS)


def test_unknown_tokens_are_struck_through_in_token_views_and_labelled_in_bars():
    from rnn_demo.plots.explanations import UNKNOWN_NOTE, token_html, token_weight_bars

    html = token_html(["good", "zzxq", "film"], [0.5, 0.1, -0.2], unknown=[False, True, False])
    spans = html.split("<span")[1:]
    assert ["line-through" in span for span in spans] == [False, True, False]
    assert UNKNOWN_NOTE.replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#x27;") in spans[1]
    assert "line-through" not in token_html(["good"], [0.5])  # nothing marked without the mask
    labels = token_weight_bars(["good", "zzxq"], [0.5, 0.1], unknown=[False, True]).layout.yaxis.ticktext
    assert [("&lt;unk&gt;" in label) for label in labels] == [True, False]  # smallest weight first


def _run_events(epochs: int = 8, best_epoch: int = 3, done: bool = True, cell: str | None = None) -> list[dict]:
    """A run of ``epochs`` epochs of 10 steps whose validation loss was lowest after ``best_epoch``."""
    tag = {"cell": cell} if cell else {}
    events = [{"type": "start", "steps_per_epoch": 10, "epochs": epochs, **tag}]
    for epoch in range(1, epochs + 1):
        events.append({"type": "step", "step": epoch * 10, "epoch": epoch, "loss": 1.0 / epoch, **tag})
        events.append({"type": "eval", "step": epoch * 10, "epoch": epoch, "val_loss": abs(epoch - best_epoch) + 0.5,
                       "val_accuracy": 0.8, "val_macro_f1": 0.8, "improved": epoch <= best_epoch, **tag})
    if done:
        events.append({"type": "done", "reason": "completed", "best_epoch": best_epoch, "best_step": best_epoch * 10,
                       **tag})
    return events


def test_epoch_axes_are_whole_epochs_over_the_whole_run():
    figures = [loss_figure(_run_events()), validation_metrics_figure(_run_events())]
    race = _run_events(cell="gru") + _run_events(cell="lstm")
    figures += [race_figure(race, "val_accuracy"), compare_figure({"a": _run_events(), "b": _run_events(5)})]
    for fig in figures:
        assert fig.layout.xaxis.dtick == 1 and fig.layout.xaxis.tick0 == 0
        assert list(fig.layout.xaxis.range) == [0, 8]
    long = loss_figure(_run_events(epochs=60))
    assert long.layout.xaxis.dtick == 6 and list(long.layout.xaxis.range) == [0, 60]


def test_accuracy_axes_run_from_0_to_100_percent_everywhere():
    race = _run_events(cell="gru") + _run_events(cell="lstm")
    for fig in (validation_metrics_figure(_run_events()), race_figure(race, "val_accuracy"),
                compare_figure({"a": _run_events()}, "val_macro_f1")):
        assert list(fig.layout.yaxis.range) == [0, 1.02] and fig.layout.yaxis.tickformat == ".0%"


def test_accuracy_and_macro_f1_stay_two_distinct_lines_when_equal():
    fig = validation_metrics_figure(_run_events())
    styles = {trace.name: (trace.line.dash, trace.marker.symbol) for trace in fig.data}
    assert len(set(styles.values())) == 2


def test_the_epoch_whose_weights_were_kept_is_marked():
    for fig in (loss_figure(_run_events(best_epoch=3)), validation_metrics_figure(_run_events(best_epoch=3))):
        lines = [shape for shape in fig.layout.shapes if shape.type == "line"]
        assert len(lines) == 1 and lines[0].x0 == lines[0].x1 == 3.0
        assert any("kept" in (a.text or "") for a in fig.layout.annotations)
    live = loss_figure(_run_events(best_epoch=2, done=False))  # still training: the best so far
    assert [s.x0 for s in live.layout.shapes] == [2.0] and any("best so far" in (a.text or "")
                                                               for a in live.layout.annotations)


def test_every_gate_heat_map_has_a_colour_bar_beside_its_own_row():
    from rnn_demo.plots.explanations import gate_heatmaps

    rng = np.random.default_rng(0)
    gates = {"input": rng.random((6, 4)), "forget": rng.random((6, 4)), "candidate": rng.random((6, 4)) * 2 - 1,
             "cell": rng.random((6, 4)) * 4 - 2}
    fig = gate_heatmaps(gates, ["a", "b", "c", "d"])
    assert all(trace.showscale for trace in fig.data)
    for row, trace in enumerate(fig.data, start=1):
        low, high = fig.layout[f"yaxis{row if row > 1 else ''}"].domain
        assert low <= trace.colorbar.y <= high and trace.colorbar.len <= high - low + 1e-9


def test_the_confusion_matrix_keeps_square_cells_up_to_ten_classes():
    names = [f"class {i}" for i in range(10)]
    fig = confusion_matrix_figure(np.eye(10, dtype=int) * 5, names)
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.yaxis.scaleratio == 1
    assert fig.layout.height >= 560


@pytest.mark.parametrize("n", [2, 5, 10])
def test_the_confusion_matrix_cells_fill_the_plot_not_the_click_markers(n):
    # The invisible click markers (size 120 for two classes) widened Plotly's autorange, so on
    # Mistakes two classes drew as a 40-pixel square with overlapping labels.
    fig = confusion_matrix_figure(np.eye(n, dtype=int) * 3, [f"c{i}" for i in range(n)])
    assert list(fig.layout.xaxis.range) == [-0.5, n - 0.5]
    assert list(fig.layout.yaxis.range) == [n - 0.5, -0.5]  # first class on top


# ---- learning rate and gradient norm under the loss; the bag-of-words bars -------------------

DYNAMICS = [
    {"type": "start", "total_steps": 20, "steps_per_epoch": 10, "epochs": 2},
    {"type": "step", "step": 5, "loss": 0.9, "lr": 2e-3, "grad_norm": 40.0},
    {"type": "eval", "step": 10, "val_loss": 0.8, "val_accuracy": 0.6, "val_macro_f1": 0.55, "improved": True},
    {"type": "step", "step": 10, "loss": 0.7, "lr": 1e-3, "grad_norm": 0.2},
    {"type": "step", "step": 15, "loss": 0.6, "lr": 1e-3, "grad_norm": float("nan")},  # a bad value is skipped
    {"type": "done", "reason": "completed"},
]


def test_learning_rate_and_gradient_norm_are_drawn_under_the_loss_on_one_epoch_axis():
    from rnn_demo.plots.training import has_step_dynamics, loss_and_dynamics_figure

    assert has_step_dynamics(DYNAMICS) and not has_step_dynamics(EVENTS)  # EVENTS: a history from before them
    fig = loss_and_dynamics_figure(DYNAMICS, clip=1.0)
    traces = {t.name: t for t in fig.data}
    assert list(traces) == ["training loss", "validation loss", "learning rate", "gradient norm"]
    assert list(traces["learning rate"].y) == [2e-3, 1e-3, 1e-3] and traces["learning rate"].yaxis == "y2"
    assert list(traces["gradient norm"].x) == [0.5, 1.0] and traces["gradient norm"].yaxis == "y3"
    assert fig.layout.xaxis.matches == "x3" or fig.layout.xaxis2.matches == "x3"  # one shared x axis
    clip = [s for s in fig.layout.shapes if s.yref == "y3"]
    assert len(clip) == 1 and clip[0].y0 == clip[0].y1 == 1.0
    assert any(a.text == "clipped to 1" for a in fig.layout.annotations)
    assert fig.layout.yaxis3.type == "log"  # 0.2 .. 40 spans more than two decades
    assert fig.layout.xaxis3.title.text == "epoch" and list(fig.layout.xaxis3.range) == [0, 2]
    assert any(a.text == "kept weights" for a in fig.layout.annotations)
    unclipped = loss_and_dynamics_figure(DYNAMICS, clip=0.0)
    assert not [s for s in unclipped.layout.shapes if s.yref == "y3"]


def test_each_run_stands_beside_its_bag_of_words_bar():
    from rnn_demo.plots import palette
    from rnn_demo.plots.results import baseline_figure

    fig = baseline_figure([("gru <b>run</b>", "gru", 0.99, 0.5), ("old", "lstm", 0.8, None)])
    run, base = fig.data
    assert list(run.x) == ["gru &lt;b&gt;run&lt;/b&gt;", "old"] and list(run.y) == [0.99, 0.8]
    assert list(run.marker.color) == [palette.CELL["gru"], palette.CELL["lstm"]]
    assert list(base.y) == [0.5, None] and list(base.text) == ["50.0%", "none yet"]
    assert base.marker.color == palette.GUIDE and fig.layout.yaxis.tickformat == ".0%"
