"""The bag-of-words baseline: what it scores, where it is stored, the sentence, and the CLI."""

from __future__ import annotations

import json
import shutil

import pytest

from rnn_demo import baseline as bow
from rnn_demo.checkpoints import read_run_info
from rnn_demo.cli import main
from rnn_demo.data import DatasetSplits, LabeledTexts
from rnn_demo.metrics import classification_summary, per_class_rows, weighted_f1
from rnn_demo.text import TextConfig


def _metrics(run) -> dict:
    return json.loads((run / "metrics.json").read_text(encoding="utf-8"))


def _splits(label_names=("fruit", "tool")) -> DatasetSplits:
    """A task bag-of-words solves: the class is which word occurs."""
    fruit = ["an apple a day", "ripe apple pie", "green apple", "apple juice", "red apple"]
    tool = ["a heavy hammer", "hammer and nails", "old hammer", "the hammer fell", "steel hammer"]
    first, second = (fruit, tool) if label_names[0] == "fruit" else (tool, fruit)
    texts = first + second
    labels = [0] * 5 + [1] * 5
    part = LabeledTexts(texts, labels, list(label_names))
    return DatasetSplits(part, part, part, list(label_names), "toy", f"toy-{label_names[0]}")


# ---- on the negation task, word order is what the GRU adds --------------------------------


def test_on_negation_the_gru_beats_bag_of_words_by_far_and_bag_of_words_is_at_chance(tiny_runs_dir):
    metrics = _metrics(tiny_runs_dir / "tiny-gru")  # a 3-epoch GRU, trained by the fixture (a few seconds)
    stored = metrics["baseline"]
    gru, words = metrics["test"]["accuracy"], stored["test"]["accuracy"]
    assert 0.40 <= words <= 0.60  # every sentiment word appears as often in both classes: chance
    assert bow.points(gru, words) >= 20
    # Neighbouring word pairs see "not good": they solve the task, which the app says too.
    assert stored["variants"]["word_pairs"]["test"]["accuracy"] >= 0.95
    assert stored["validation"]["n"] == metrics["validation"]["n"] and stored["test"]["n"] == metrics["test"]["n"]
    assert set(stored["test"]) >= {"accuracy", "macro_f1", "weighted_f1", "per_class"}
    assert stored["fit_seconds"] < 30 and stored["settings"]["random_state"] == bow.RANDOM_STATE
    sentence = bow.run_sentence(read_run_info(tiny_runs_dir / "tiny-gru"))
    assert sentence.startswith("On Negation the GRU beats bag-of-words by ") and "word order matters here" in sentence
    assert "Word pairs alone reach" in sentence


def test_the_baseline_is_deterministic_and_keeps_the_run_s_label_order():
    bow._CACHE.clear()
    first = bow.fit_baseline(_splits(), TextConfig())
    bow._CACHE.clear()
    again = bow.fit_baseline(_splits(), TextConfig())
    assert first["test"] == again["test"] and first["test"]["accuracy"] == 1.0
    flipped = bow.fit_baseline(_splits(("tool", "fruit")), TextConfig())
    assert list(flipped["test"]["per_class"]) == ["tool", "fruit"]
    assert flipped["test"]["confusion_matrix"] == [[5, 0], [0, 5]]


def test_a_character_level_run_s_baseline_reads_words_from_the_same_characters():
    config = TextConfig(tokenizer="char", max_tokens=4)  # the run reads only "an a", "ripe" …: a cut at 4 characters
    result = bow.fit_baseline(_splits(), config)
    assert result["reads"] == "words (the run reads characters)"
    assert bow._visible_tokens(["Ripe apple"], config) == [["ripe"]]
    assert bow._visible_tokens(["one two three"], TextConfig(max_tokens=2)) == [["one", "two"]]


def test_one_class_or_no_words_in_training_gives_a_constant_baseline_not_an_error():
    part = LabeledTexts(["a", "b"], [1, 1], ["x", "y"])
    result = bow.fit_baseline(DatasetSplits(part, part, part, ["x", "y"], "one", "one-class"), TextConfig())
    assert result["test"]["accuracy"] == 1.0 and result["test"]["per_class"]["x"]["support"] == 0
    blank = LabeledTexts(["<br />", "<br/>", "<br>"], [0, 1, 1], ["x", "y"])  # nothing left after normalising
    result = bow.fit_baseline(DatasetSplits(blank, blank, blank, ["x", "y"], "blank", "blank"), TextConfig())
    assert result["test"]["per_class"]["y"]["recall"] == 1.0  # the most frequent class, every time


# ---- the sentence --------------------------------------------------------------------------


def _stored(words: float, pairs: float | None = None) -> dict:
    variants = {"words": {"test": {"accuracy": words}}}
    if pairs is not None:
        variants["word_pairs"] = {"test": {"accuracy": pairs}}
    return {"test": {"accuracy": words}, "variants": variants}


@pytest.mark.parametrize(("model", "words", "pairs", "expected"), [
    (0.99, 0.61, 0.70, "On Negation the GRU beats bag-of-words by 38 points: word order matters here."),
    (0.824, 0.771, None, "On Negation bag-of-words scores 77.1%, the GRU 82.4%: the GRU is 5 points better; "
                         "word order helps, but counting words gets most of the way."),
    (0.78, 0.771, None, "On Negation bag-of-words scores 77.1%, the GRU 78.0%: the GRU is only 1 point better; "
                        "counting words does almost as well."),
    (0.80, 0.80, None, "On Negation bag-of-words scores 80.0%, the GRU 80.0%: no better than counting words."),
    (0.70, 0.76, None, "On Negation bag-of-words scores 76.0%, the GRU 70.0%: bag-of-words wins by 6 points; "
                       "the GRU adds nothing here."),
    (0.99, 0.50, 1.0, "On Negation the GRU beats bag-of-words by 49 points: word order matters here. Word pairs "
                      "alone reach 100.0%: the order that matters is between neighbours."),
])
def test_the_sentence_says_plainly_who_wins(model, words, pairs, expected):
    assert bow.comparison_sentence("Negation", "gru", model, _stored(words, pairs)) == expected


def test_old_or_malformed_baselines_say_there_is_none():
    for metrics in ({}, {"baseline": None}, {"baseline": {"test": {"accuracy": "high"}}},
                    {"baseline": {"test": {"accuracy": float("nan")}}}, {"baseline": {"test": []}}, []):
        assert bow.stored_baseline(metrics) is None
    assert bow.comparison_sentence("IMDB", "lstm", 0.9, None) == f"On IMDB: {bow.NOT_STORED}."
    assert bow.variant_rows({"test": {"accuracy": 0.5}, "variants": {"words": "x"}}) == []


# ---- weighted F1 and per-class rows -----------------------------------------------------------


def test_weighted_f1_is_stored_and_recomputed_for_old_runs():
    import numpy as np

    summary = classification_summary([0, 0, 0, 1], np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9]]), ["a", "b"])
    f1_a, f1_b = 2 * 2 / (2 * 2 + 1), 2 / 3  # a: precision 1, recall 2/3; b: precision 1/2, recall 1
    assert summary["weighted_f1"] == pytest.approx((3 * f1_a + f1_b) / 4)
    old = {k: v for k, v in summary.items() if k != "weighted_f1"}
    assert weighted_f1(old) == pytest.approx(summary["weighted_f1"])
    rows = per_class_rows(old)
    assert [r["class"] for r in rows] == ["a", "b", "weighted average"] and rows[-1]["support"] == 4
    assert per_class_rows({"per_class": {"a": {"f1": "x", "support": -1}}})[0]["f1"] is None


# ---- the command line -------------------------------------------------------------------------


def test_evaluate_prints_the_stored_baseline_and_the_sentence(tiny_runs_dir, capsys):
    assert main(["evaluate", str(tiny_runs_dir / "tiny-gru")]) == 0
    out = capsys.readouterr().out
    assert "bag of words (TF-IDF + logistic regression; stored with the run): test accuracy 0." in out
    assert "On Negation the GRU beats bag-of-words by" in out and "weighted F1" in out
    assert main(["evaluate", str(tiny_runs_dir / "tiny-gru"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["baseline"]["source"] == "stored with the run"
    assert [r["model"] for r in data["baseline"]["rows"]] == ["bag of words", "bag of words and word pairs"]
    assert 0 <= data["weighted_f1"] <= 1


def test_evaluate_fits_the_baseline_now_for_a_run_trained_before_it(tiny_runs_dir, tmp_path, capsys):
    old = tmp_path / "old-run"
    shutil.copytree(tiny_runs_dir / "tiny-gru", old)
    metrics = _metrics(old)
    stored = metrics.pop("baseline")
    (old / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    assert main(["evaluate", str(old), "--json"]) == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["baseline"]["source"].startswith("computed now")
    assert data["baseline"]["rows"][0]["test accuracy"] == stored["test"]["accuracy"]  # same splits, same numbers

    config = json.loads((old / "config.json").read_text(encoding="utf-8"))
    config["dataset"]["spec"]["params"] = {"n": 1}  # the dataset can no longer be loaded
    (old / "config.json").write_text(json.dumps(config), encoding="utf-8")
    report = bow.baseline_report(read_run_info(old))
    assert report["sentence"].startswith(f"{bow.NOT_STORED}; its dataset could not be loaded (") and not report["rows"]
    del config["dataset"]  # a run saved before runs recorded their dataset
    (old / "config.json").write_text(json.dumps(config), encoding="utf-8")
    report = bow.baseline_report(read_run_info(old))
    assert report == {"sentence": f"{bow.NOT_STORED}; the run does not record which dataset it was trained on.",
                      "source": None, "rows": []}
    assert main(["evaluate", str(old)]) == 2  # a clear message, not a traceback
    assert "does not record which dataset it was trained on; name one with --dataset" in capsys.readouterr().err


def test_a_race_fits_the_baseline_once_for_all_its_cells():
    bow._CACHE.clear()
    first = bow.fit_baseline(_splits(), TextConfig())
    assert bow.fit_baseline(_splits(), TextConfig()) is first  # the same splits and reading: no refit
    assert bow.fit_baseline(_splits(), TextConfig(max_tokens=1)) is not first  # another cut: another fit


def test_every_race_entrant_stores_the_baseline_of_the_shared_splits(tmp_path):
    from rnn_demo.data import DatasetSpec
    from rnn_demo.model import ModelConfig
    from rnn_demo.race import run_race
    from rnn_demo.train import TrainConfig

    spec = DatasetSpec(name="negation", params={"n": 300})
    run_race(spec, TextConfig(), ModelConfig(embedding_dim=4, hidden_size=4), TrainConfig(epochs=1),
             cells=("rnn", "gru"), out_dirs={c: tmp_path / c for c in ("rnn", "gru")})
    stored = [_metrics(tmp_path / cell)["baseline"] for cell in ("rnn", "gru")]
    assert stored[0] == stored[1] and stored[0]["test"]["n"] == _metrics(tmp_path / "gru")["test"]["n"]
