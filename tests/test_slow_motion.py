"""Issue #18 item 7: slow-motion training (a pace per step) and a watched sentence whose
predicted probabilities are reported as training goes, plotted live beside the loss."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from rnn_demo.batching import BatchLoader
from rnn_demo.data import DatasetSpec, load_splits
from rnn_demo.experiment import evaluate_and_save, prepare_data
from rnn_demo.model import ModelConfig, RecurrentClassifier
from rnn_demo.pacing import MAX_WATCH_CHARS, Watch
from rnn_demo.plots import palette
from rnn_demo.plots.watch import watch_figure
from rnn_demo.predict import Predictor
from rnn_demo.text import TextConfig
from rnn_demo.train import Trainer, TrainConfig, seed_everything

SENTENCE = "the movie was not good"


@pytest.fixture(scope="module")
def negation():
    return prepare_data(load_splits(DatasetSpec(name="negation")), TextConfig())


def _trainer(data, events, stop=None, watch_text="", **train_kwargs):
    cfg = TrainConfig(**{"epochs": 2, "lr": 5e-3, "batch_size": 32, "log_every": 5, "watch_text": watch_text,
                         **train_kwargs})
    seed_everything(cfg.seed)
    model = RecurrentClassifier(ModelConfig(vocab_size=len(data.vocab), num_classes=2, cell="gru",
                                            embedding_dim=32, hidden_size=64, dropout=0.1))
    watch = Watch.build(cfg.watch_text, data.tokenizer, data.vocab, TextConfig().max_tokens,
                        data.splits.label_names)
    return Trainer(model, BatchLoader(data.train, cfg.batch_size, shuffle=True, seed=cfg.seed),
                   BatchLoader(data.validation, 256), cfg, callback=events.append, stop=stop, watch=watch)


def test_watched_sentence_probabilities_move_and_end_at_the_saved_runs_prediction(negation, tmp_path):
    events: list[dict] = []
    trainer = _trainer(negation, events, watch_text=SENTENCE, patience=0)
    result = trainer.fit()
    watches = [e for e in events if e["type"] == "watch"]
    logged = [e["step"] for e in events if e["type"] == "step"]
    assert [w["step"] for w in watches[: len(logged)]] == sorted(set(w["step"] for w in watches))[: len(logged)]
    assert {w["step"] for w in watches} == set(logged)  # every logged step (evals fall on logged steps here)
    assert all(w["labels"] == negation.splits.label_names and w["text"] == SENTENCE for w in watches)
    probs = np.array([w["probabilities"] for w in watches])
    assert probs.shape == (len(watches), 2)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert np.abs(probs[-1] - probs[0]).max() > 0.2  # the model learns "not good" is negative
    last_step = max(logged)
    assert watches[-1]["step"] == last_step and result.best_step == last_step  # the kept weights are the last
    run = evaluate_and_save(trainer, negation, DatasetSpec(name="negation"), TextConfig(), tmp_path / "run",
                            events)
    expected = Predictor.load(run.run_dir).predict_proba([SENTENCE])[0]
    np.testing.assert_allclose(probs[-1], expected, atol=1e-5)
    saved = json.loads((run.run_dir / "history.json").read_text())
    assert [e for e in saved if e["type"] == "watch"] == watches  # the result panel can draw it after training


def test_watching_does_not_change_training(negation):
    watched: list[dict] = []
    plain: list[dict] = []
    _trainer(negation, watched, watch_text=SENTENCE).fit()
    _trainer(negation, plain).fit()
    assert not [e for e in plain if e["type"] == "watch"]

    def losses(events):
        return [(e["type"], e["step"], e.get("loss"), e.get("val_loss")) for e in events
                if e["type"] in ("step", "eval")]

    assert losses(watched) == losses(plain)  # exactly: the watch uses no randomness of training


def test_watch_reads_the_sentence_as_predictions_do(negation):
    watch = Watch.build("not good " * 30, negation.tokenizer, negation.vocab, 12, ["negative", "positive"])
    assert watch.ids.shape == (12,)  # cut at the run's max_tokens
    assert Watch.build("", negation.tokenizer, negation.vocab, None, ["a", "b"]) is None


def test_pace_makes_each_step_take_at_least_that_long(negation):
    stop = threading.Event()
    events: list[dict] = []
    trainer = _trainer(negation, events, stop=stop, pace_seconds=0.2, log_every=1)
    trainer.callback = lambda e: (events.append(e), e["type"] == "step" and e["step"] == 6 and stop.set())
    started = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - started
    steps = [e for e in events if e["type"] == "step"]
    assert len(steps) == 6
    assert seconds >= 0.2 * 5
    assert steps[-1]["elapsed"] - steps[0]["elapsed"] >= 0.2 * 4  # the pauses come between the steps
    # The pauses are not training time: throughput and epoch time stay those of the computation.
    epoch = next(e for e in events if e["type"] == "epoch")
    assert seconds - epoch["seconds"] >= 0.5


def test_stop_during_a_long_pace_returns_at_once(negation):
    stop = threading.Event()
    events: list[dict] = []
    trainer = _trainer(negation, events, stop=stop, pace_seconds=5.0, log_every=1)
    first_step = threading.Event()
    ended: list[float] = []  # when the step loop ended (the epoch event comes before the final evaluation)

    def callback(event):
        events.append(event)
        if event["type"] == "step":
            first_step.set()
        elif event["type"] == "epoch":
            ended.append(time.perf_counter())

    trainer.callback = callback
    thread = threading.Thread(target=trainer.fit)
    thread.start()
    assert first_step.wait(60)
    time.sleep(0.3)  # well inside the 5 s pace
    asked = time.perf_counter()
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
    assert ended[0] - asked < 1.0
    assert trainer.result.reason == "stopped"
    assert max(e["step"] for e in events if e["type"] == "step") == 1


@pytest.mark.parametrize(("field", "value", "message"), [
    ("pace_seconds", -1, "pace_seconds must be at least 0"),
    ("pace_seconds", 100, "pace_seconds must be at most 5"),
    ("pace_seconds", float("nan"), "pace_seconds must be a number, got nan"),
    ("watch_text", "x" * (MAX_WATCH_CHARS + 1), f"watch_text must be at most {MAX_WATCH_CHARS:,} characters"),
])  # fmt: skip
def test_config_checks_refuse_bad_slow_motion_settings(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_slow_motion_settings_are_saved_with_the_config():
    config = TrainConfig(pace_seconds=0.3, watch_text=SENTENCE)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig().pace_seconds == 0 and TrainConfig().watch_text == ""


def _watch_events() -> list[dict]:
    labels = ["neg<b>", "pos"]
    events: list[dict] = [{"type": "start", "steps_per_epoch": 10, "epochs": 3, "total_steps": 30}]
    for step, p in ((1, 0.5), (5, 0.6), (10, 0.8), (15, 0.9)):
        events.append({"type": "step", "step": step, "epoch": 1 + (step - 1) // 10, "loss": 1 - p})
        events.append({"type": "watch", "step": step, "epoch": 1, "probabilities": [1 - p, p], "labels": labels,
                       "text": "not <i>good</i>"})
    return events


def test_watch_figure_plots_each_class_over_epochs():
    fig = watch_figure(_watch_events())
    assert [t.name for t in fig.data] == ["neg&lt;b&gt;", "pos"]
    assert [t.line.color for t in fig.data] == [palette.class_color(0), palette.class_color(1)]
    np.testing.assert_allclose(fig.data[1].x, [0.1, 0.5, 1.0, 1.5])
    np.testing.assert_allclose(fig.data[1].y, [50, 60, 80, 90])
    assert tuple(fig.layout.yaxis.range) == (0, 100)
    assert "not &lt;i&gt;good&lt;/i&gt;" in fig.layout.title.text and "<i>" not in fig.layout.title.text
    assert tuple(fig.layout.xaxis.range) == (0, 3)


def _live_panel_app(with_watch: bool) -> None:
    from rnn_demo.jobs import JobProgress
    from rnn_demo.ui.job_view import live_panel

    labels = ["negative", "positive"]
    events = [{"type": "start", "steps_per_epoch": 10, "epochs": 2, "total_steps": 20},
              {"type": "step", "step": 5, "epoch": 1, "loss": 0.6},
              {"type": "eval", "step": 10, "epoch": 1, "val_loss": 0.5, "val_accuracy": 0.8,
               "val_macro_f1": 0.8, "improved": True}]
    if with_watch:
        events.insert(2, {"type": "watch", "step": 5, "epoch": 1, "probabilities": [0.3, 0.7], "labels": labels,
                          "text": "not good"})

    class FakeJob:
        done = True
        status = "finished"
        summary = None  # no saved run: the live panel draws no results under the curves

        def poll(self):
            return []

        def events(self):
            return list(events)

        def progress(self):
            return JobProgress(stage="training", epoch=1, epochs=2, step=10, total_steps=20, fraction=0.5,
                               elapsed=3.0, eta_seconds=None, tokens_per_second=None)

    live_panel(FakeJob())


@pytest.mark.parametrize("with_watch", [True, False])
def test_live_panel_draws_the_watch_figure_from_watch_events(with_watch):
    at = AppTest.from_function(_live_panel_app, kwargs={"with_watch": with_watch}, default_timeout=30).run()
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    titles = [str(c.proto.spec) for c in charts]
    assert len(charts) == (3 if with_watch else 2)
    assert any("not good" in t for t in titles) == with_watch


def _controls_app() -> None:
    import streamlit as st

    from rnn_demo.ui.slow_motion import controls

    controls("train")
    st.write(f"pace={st.session_state['cfg.train.pace_seconds']} watch={st.session_state['cfg.train.watch_text']}")


def test_slow_motion_controls_write_the_train_config_keys():
    at = AppTest.from_function(_controls_app, default_timeout=30).run()
    assert not at.exception, at.exception
    pace = next(n for n in at.number_input if n.label == "Slow motion (seconds per step)")
    watch = next(t for t in at.text_input if t.label == "Watch a sentence")
    pace.set_value(0.3).run()
    watch.input(SENTENCE).run()
    assert not at.exception
    assert at.markdown[-1].value == f"pace=0.3 watch={SENTENCE}"
    values = {k[len("cfg.train."):]: at.session_state[k] for k in ("cfg.train.pace_seconds", "cfg.train.watch_text")}
    assert TrainConfig.from_dict(values) == TrainConfig(pace_seconds=0.3, watch_text=SENTENCE)


def test_cli_takes_pace_and_watch_and_prints_the_watched_probability(capsys):
    from rnn_demo.cli import _ProgressBar, build_parser, configs_from_args

    args = build_parser().parse_args(["train", "--dataset", "negation", "--pace", "0.3", "--watch", SENTENCE])
    _, _, train = configs_from_args(args, "negation")
    assert (train.pace_seconds, train.watch_text) == (0.3, SENTENCE)
    bar = _ProgressBar(enabled=True)
    bar({"type": "start", "total_steps": 10, "n_train": 100, "device": "cpu"})
    bar({"type": "step", "step": 1, "epoch": 1, "loss": 0.7, "tokens_per_second": 1000.0})
    bar({"type": "watch", "step": 1, "epoch": 1, "probabilities": [0.25, 0.75], "labels": ["negative", "positive"],
         "text": SENTENCE})
    bar({"type": "done", "message": "done"})
    assert "positive 75%" in capsys.readouterr().err


def test_cli_refuses_a_bad_pace_with_a_clear_message(capsys):
    from rnn_demo.cli import main

    assert main(["train", "--dataset", "negation", "--pace", "-1"]) == 2
    assert "pace_seconds must be at least 0" in capsys.readouterr().err


def test_a_pace_wakes_for_a_stop_signal_without_wait():
    from rnn_demo.pacing import Pacer

    class Flag:  # only is_set(), like the StopSignal protocol asks
        value = False

        def is_set(self):
            return self.value

    flag = Flag()
    threading.Timer(0.2, lambda: setattr(flag, "value", True)).start()
    started = time.perf_counter()
    slept = Pacer(5.0, flag).wait()
    assert 0.15 <= slept <= time.perf_counter() - started < 0.6
