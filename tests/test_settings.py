"""The config dataclasses' field metadata is the one description of every setting (issue #19)."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from rnn_demo import cli
from rnn_demo.model import MODEL_LIMITS, ModelConfig
from rnn_demo.settings import WIDGETS, limits_of, setting
from rnn_demo.text import TEXT_LIMITS, TextConfig
from rnn_demo.train import TRAIN_LIMITS, TrainConfig
from rnn_demo.ui import train_form

CONFIGS = {"text": TextConfig, "model": ModelConfig, "train": TrainConfig}


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    cli._add_train_flags(parser)
    return parser


@pytest.mark.parametrize("config_class", CONFIGS.values())
def test_every_field_has_label_help_and_widget(config_class):
    for f in dataclasses.fields(config_class):
        assert f.metadata.get("label") and f.metadata.get("help"), f.name
        assert f.metadata.get("widget") in WIDGETS, f.name


@pytest.mark.parametrize("config_class", CONFIGS.values())
def test_round_trip_and_unknown_or_missing_keys(config_class):
    config = config_class()
    assert config_class.from_dict(config.to_dict()) == config
    data = {k: v for k, v in config.to_dict().items() if k != "seed"}
    assert config_class.from_dict({**data, "no_longer_a_setting": 1}) == config


def test_limits_are_views_of_the_metadata():
    assert TEXT_LIMITS == limits_of(TextConfig)
    assert MODEL_LIMITS == limits_of(ModelConfig)
    assert TRAIN_LIMITS == limits_of(TrainConfig)
    with pytest.raises(ValueError, match="hidden_size must be at most"):
        ModelConfig(hidden_size=MODEL_LIMITS["hidden_size"][1] + 1)


def test_the_form_is_the_metadata():
    on_form = {(g, f.name) for g, c in CONFIGS.items() for f in dataclasses.fields(c) if f.metadata["form"] is not None}
    assert {(f.group, f.name) for f in train_form.FIELDS} == on_form
    for field in train_form.FIELDS:
        meta = CONFIGS[field.group].__dataclass_fields__[field.name].metadata
        assert (field.label, field.help, field.kind) == (meta["label"], meta["help"], meta["widget"])
        assert field.basic == meta["basic"]
        assert (field.min_value, field.max_value) == (meta["limits"] or meta["widget_range"] or (None, None))


def test_the_cli_flags_are_the_metadata():
    flagged = {(g, f.name): f.metadata for g, c in CONFIGS.items() for f in dataclasses.fields(c) if f.metadata["flag"]}
    assert set(cli._FLAG_FIELDS.values()) == set(flagged)
    actions = {a.dest: a for a in _train_parser()._actions}
    for dest, key in cli._FLAG_FIELDS.items():
        meta = flagged[key]
        assert meta["flag"] in actions[dest].option_strings
        assert actions[dest].help.startswith(meta["help"]), dest


def test_changing_the_metadata_changes_form_and_help(monkeypatch):
    field = ModelConfig.__dataclass_fields__["hidden_size"]
    changed = setting(128, **{**field.metadata, "help": "a brand-new help text"}).metadata
    monkeypatch.setattr(field, "metadata", changed)
    form_help = {f.name: f.help for f in train_form.form_fields()}["hidden_size"]
    assert form_help == "a brand-new help text"
    assert "a brand-new help text" in " ".join(_train_parser().format_help().split())


def test_existing_flags_keep_their_names():
    for flag in ("--hidden-size", "--pace", "--watch", "--vectors", "--no-vectors", "--gate-bias", "--max-vocab",
                 "--bidirectional", "--no-bidirectional", "--class-weights"):
        assert flag in _train_parser()._option_string_actions, flag
    args = _train_parser().parse_args(["--pace", "0.5", "--watch", "good", "--max-vocab", "0", "--vectors", "x.txt"])
    _, model, train = cli.configs_from_args(args, None)
    assert (train.pace_seconds, train.watch_text, model.pretrained_vectors) == (0.5, "good", "x.txt")
