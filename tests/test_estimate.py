"""Issue #18 (Train page): the training-time estimate from the dataset size and a measured throughput."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rnn_demo.checkpoints import RunInfo, read_run_info
from rnn_demo.estimate import (
    NO_ESTIMATE,
    Calibration,
    about,
    calibration_from_run,
    cost_per_token,
    estimate_seconds,
    pick_reference,
    roughly,
    round_count,
    tokens_per_epoch,
)

ROOT = Path(__file__).resolve().parent.parent
GRU = {"cell": "gru", "embedding_dim": 100, "hidden_size": 128, "num_layers": 1, "bidirectional": False,
       "pooling": "max", "head_hidden": 0, "num_classes": 2}


def model(**changes):
    return {**GRU, **changes}


def run_info(name, config):
    """A run's settings as read from its config.json (built by hand: nothing checked them)."""
    return RunInfo(path=Path(name), name=name, shipped=False, config=config, metrics={})


def calibration(name, cost, tps, cell="gru", version=2):
    return Calibration(name=name, cell=cell, cost=cost, tokens_per_second=tps, training_version=version)


# ---- per-token cost -----------------------------------------------------------------------


def test_cost_per_token_counts_gates_inputs_layers_directions_and_the_head():
    # GRU: 3 gates x (100 inputs + 128 recurrent) x 128 units; linear head 128 -> 2.
    assert cost_per_token(GRU) == 3 * (100 + 128) * 128 + 128 * 2
    assert cost_per_token(model(cell="lstm")) == 4 * (100 + 128) * 128 + 128 * 2
    assert cost_per_token(model(cell="rnn")) == 1 * (100 + 128) * 128 + 128 * 2
    # A second layer reads the first layer's output (128 wide); bidirectional doubles each layer
    # and the next layer reads both directions.
    assert cost_per_token(model(num_layers=2)) == 3 * (100 + 128) * 128 + 3 * (128 + 128) * 128 + 128 * 2
    assert cost_per_token(model(bidirectional=True)) == 2 * 3 * (100 + 128) * 128 + 256 * 2
    assert cost_per_token(model(head_hidden=64)) == 3 * (100 + 128) * 128 + 128 * 64 + 64 * 2
    assert cost_per_token(model(pooling="attention")) == cost_per_token(GRU) + 128 * 128 + 128


def test_cost_per_token_refuses_an_unknown_cell():
    with pytest.raises(ValueError, match="unknown cell 'transformer'"):
        cost_per_token(model(cell="transformer"))


# ---- tokens per epoch -----------------------------------------------------------------------


def test_tokens_per_epoch_applies_the_length_cap_and_counts_an_empty_text_as_one_token():
    lengths = np.array([3, 10, 0, 50])
    assert tokens_per_epoch(lengths, None) == 3 + 10 + 1 + 50
    assert tokens_per_epoch(lengths, 12) == 3 + 10 + 1 + 12


# ---- calibration runs -------------------------------------------------------------------------


def test_calibration_from_run_takes_the_median_epoch_throughput(tmp_path):
    history = [
        {"type": "start", "epochs": 3},
        {"type": "step", "tokens_per_second": 1.0},  # a step window, not an epoch: ignored
        {"type": "epoch", "epoch": 1, "tokens_per_second": 1000.0},
        {"type": "epoch", "epoch": 2, "tokens_per_second": 3000.0},
        {"type": "epoch", "epoch": 3, "tokens_per_second": 2000.0},
    ]
    found = calibration_from_run(run_info("my-run", {"model": GRU, "versions": {"training": 2}}), history)
    assert found == Calibration(name="my-run", cell="gru", cost=cost_per_token(GRU), tokens_per_second=2000.0,
                                training_version=2)


@pytest.mark.parametrize("history", [[], [{"type": "epoch", "tokens_per_second": 0.0}],
                                     [{"type": "epoch", "tokens_per_second": "fast"}], "not a list",
                                     [{"type": "epoch", "tokens_per_second": float("nan")}]])
def test_a_run_without_a_usable_throughput_calibrates_nothing(history):
    assert calibration_from_run(run_info("r", {"model": GRU}), history) is None


def test_a_run_with_a_broken_model_config_calibrates_nothing():
    history = [{"type": "epoch", "tokens_per_second": 1000.0}]
    for config in ({"model": "gru"}, {"model": model(cell="transformer")}, {"model": model(hidden_size=-1)}, {}):
        assert calibration_from_run(run_info("r", config), history) is None
    assert calibration_from_run(run_info("r", {"model": GRU, "versions": "2"}), history).training_version is None


def test_the_shipped_runs_calibrate():
    run = ROOT / "checkpoints" / "rotten_tomatoes-gru"
    found = calibration_from_run(read_run_info(run), json.loads((run / "history.json").read_text()))
    assert found is not None and found.cell == "gru" and found.tokens_per_second > 0


# ---- picking the most similar run ------------------------------------------------------------


def test_the_same_cell_wins_then_the_nearest_cost():
    runs = [calibration("lstm-same-size", 100, 1e5, cell="lstm"), calibration("gru-huge", 1000, 1e4),
            calibration("gru-close", 150, 1e5), calibration("gru-small", 40, 1e5)]
    # |log(150/100)| = 0.41 < |log(40/100)| = 0.92
    assert pick_reference(runs, cell="gru", cost=100, training_version=2).name == "gru-close"
    assert pick_reference(runs, cell="lstm", cost=900, training_version=2).name == "lstm-same-size"
    assert pick_reference(runs, cell="rnn", cost=900, training_version=2).name == "gru-huge"  # no RNN: nearest cost


def test_only_runs_of_the_current_training_code_calibrate():
    runs = [calibration("old-gru", 100, 1e3, version=None), calibration("new-lstm", 100, 1e5, cell="lstm")]
    assert pick_reference(runs, cell="gru", cost=100, training_version=2).name == "new-lstm"
    assert pick_reference(runs[:1], cell="gru", cost=100, training_version=2) is None  # measured on other code
    assert pick_reference([calibration("v1", 100, 1e3, version=1)], cell="gru", cost=100, training_version=2) is None


def test_no_run_means_no_reference():
    assert pick_reference([], cell="gru", cost=100, training_version=2) is None


# ---- scaling and the sentence ----------------------------------------------------------------


def test_the_estimate_scales_the_throughput_by_the_cost_ratio():
    reference = calibration("rt-gru", cost=100, tps=100_000)
    same = estimate_seconds(tokens_per_epoch=2_000_000, epochs=2, cost=100, reference=reference)
    assert same.seconds == pytest.approx(40.0) and same.tokens_per_second == pytest.approx(100_000)
    double = estimate_seconds(tokens_per_epoch=2_000_000, epochs=2, cost=200, reference=reference)
    assert double.seconds == pytest.approx(80.0) and double.tokens_per_second == pytest.approx(50_000)


def test_the_estimate_sentence_names_its_numbers_and_its_run():
    reference = calibration("rt-gru-1205", cost=100, tps=105_000)
    text = estimate_seconds(tokens_per_epoch=2_100_000, epochs=2, cost=100, reference=reference).text()
    assert text == ("About 40 s on this server: ≈ 20 s per epoch × 2 epochs (≈ 2.1 M tokens per epoch at "
                    "≈ 105 k tokens/s, measured by run 'rt-gru-1205')")
    scaled = estimate_seconds(tokens_per_epoch=2_100_000, epochs=1, cost=300, reference=reference).text()
    assert "≈ 60 s per epoch × 1 epoch (" in scaled and "at ≈ 35 k tokens/s" in scaled
    assert "scaled from run 'rt-gru-1205' (≈ 105 k tokens/s) by the work per token" in scaled


@pytest.mark.parametrize(("seconds", "text"), [(0.4, "under 1 s"), (7.96, "8 s"), (23.4, "23 s"), (99, "99 s"),
                                               (140, "2.3 min"), (4000, "67 min"), (9000, "2.5 h")])
def test_the_time_per_epoch_keeps_two_digits(seconds, text):
    assert roughly(seconds) == text


def test_without_a_run_there_is_no_number():
    assert NO_ESTIMATE == "No estimate yet: train once to calibrate."
    assert not any(ch.isdigit() for ch in NO_ESTIMATE)


@pytest.mark.parametrize(("seconds", "text"), [
    (0.4, "under 10 s"), (9.9, "under 10 s"), (12, "about 10 s"), (38, "about 40 s"), (52, "about 50 s"),
    (58, "about 1 min"), (85, "about 1 min"), (95, "about 2 min"), (170, "about 3 min"), (3500, "about 58 min"),
    (3600, "about 1 h"), (5400, "about 1.5 h"), (4 * 3600 + 100, "about 4 h"),
])
def test_durations_are_rounded_honestly(seconds, text):
    assert about(seconds) == text


@pytest.mark.parametrize(("count", "text"), [(950, "950"), (2_100_000, "2.1 M"), (105_432, "105 k"),
                                             (12_345, "12 k"), (1_500, "1.5 k"), (3.2e9, "3.2 G")])
def test_counts_are_rounded_to_what_matters(count, text):
    assert round_count(count) == text


def test_about_refuses_nonsense():
    with pytest.raises(ValueError):
        about(math.nan)
