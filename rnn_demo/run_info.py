"""What a run is, read from its JSON files: ``RunInfo`` and its typed accessors, and the checks of
config.json and metrics.json that ``rnn_demo.checkpoints.read_run_info`` applies once per run.

Why a module of its own: every page, the CLI and the job manager read runs through ``RunInfo``,
and keeping its validation beside it keeps ``checkpoints`` about saving and loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from rnn_demo.data import DatasetError, DatasetSpec
from rnn_demo.metrics import as_number
from rnn_demo.model import ModelConfig
from rnn_demo.run_folders import CheckpointError
from rnn_demo.text import TextConfig
from rnn_demo.train import TrainConfig


def _as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass
class RunInfo:
    """What a run is, read from its JSON files without loading weights.

    Read a run's settings through the typed accessors (``dataset_spec``, ``model_config``,
    ``text_config``, ``train_config`` …), never through ``config`` dict look-ups: ``read_run_info``
    has validated every one of them, and each is parsed once. The label accessors (``dataset_name``,
    ``cell``, ``title`` …) also tolerate malformed JSON (a RunInfo can be built by hand), so a label
    for a picker never raises.
    """

    path: Path
    name: str
    shipped: bool
    config: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def label_names(self) -> list[str]:
        names = self.config.get("label_names")
        return [str(n) for n in names] if isinstance(names, list) else []

    @property
    def dataset_name(self) -> str:
        """The dataset's display name recorded at training (e.g. ``"Negation (n=600)"``; "?" when missing)."""
        return str(_as_dict(self.config.get("dataset")).get("name", "?"))

    @property
    def cell(self) -> str:
        return str(_as_dict(self.config.get("model")).get("cell", "?"))

    @cached_property
    def dataset_spec(self) -> DatasetSpec | None:
        """The dataset the run was trained on; None for a run that records none (older runs).

        Raises:
            CheckpointError: The recorded reference is malformed (only in a RunInfo built by hand).
        """
        data = _as_dict(self.config.get("dataset")).get("spec")
        if data is None:
            return None
        spec, problem = _parse_spec(data)
        if spec is None:
            raise CheckpointError(f"{self.path}/config.json: {problem}; the run is damaged, train it again")
        return spec

    @property
    def spec_name(self) -> str | None:
        """The registry name of the run's dataset (e.g. ``"negation"``); None for a user file or no reference."""
        return self.dataset_spec.name if self.dataset_spec is not None else None

    @property
    def dataset_fingerprint(self) -> str | None:
        """The fingerprint of the splits it was trained on (None when not recorded)."""
        value = _as_dict(self.config.get("dataset")).get("fingerprint")
        return value if isinstance(value, str) else None

    @property
    def created(self) -> str:
        """When the run was saved (ISO 8601, sorts by time; "" when not recorded)."""
        return str(self.config.get("created", ""))

    @property
    def summary(self) -> dict[str, Any]:
        """The facts of config.json's ``summary`` (training seconds, parameter count …); {} when absent."""
        return _as_dict(self.config.get("summary"))

    @property
    def training_version(self) -> Any:
        """``rnn_demo.TRAINING_VERSION`` of the code that trained the run (None for older runs)."""
        return _as_dict(self.config.get("versions")).get("training")

    @cached_property
    def model_config(self) -> ModelConfig:
        """The model's settings (``vocab_size`` and ``num_classes`` included)."""
        return self._settings("model", ModelConfig)

    @cached_property
    def text_config(self) -> TextConfig:
        """The tokenizer settings the run was trained with."""
        return self._settings("text", TextConfig)

    @cached_property
    def train_config(self) -> TrainConfig:
        """The training settings the run was trained with."""
        return self._settings("train", TrainConfig)

    def _settings(self, key: str, cls: Any) -> Any:
        data = self.config.get(key)
        if not isinstance(data, dict):
            raise CheckpointError(f"{self.path}/config.json has invalid {key} settings (not an object)")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{self.path}/config.json has invalid {key} settings ({exc})") from exc

    @property
    def test_scores(self) -> dict[str, Any]:
        """metrics.json's ``test`` scores (``accuracy``, ``macro_f1``, ``per_class``, ``confusion_matrix`` …);
        {} when absent."""
        return _as_dict(self.metrics.get("test"))

    @property
    def test_per_class(self) -> dict[str, Any]:
        """Test precision, recall, F1 and support by class name; {} when not recorded."""
        return _as_dict(self.test_scores.get("per_class"))

    def test_accuracy(self) -> float | None:
        """The test accuracy, None when not recorded or not a finite number."""
        return as_number(self.test_scores.get("accuracy"))

    def title(self, origin: str | None = None) -> str:
        """A one-line label for pickers: name, dataset, cell, test accuracy and where the run comes from
        (default "shipped" or "yours")."""
        acc = self.test_accuracy()
        acc_text = f", test acc {acc:.1%}" if acc is not None else ""
        where = origin or ("shipped" if self.shipped else "yours")
        return f"{self.name} ({self.dataset_name}, {self.cell.upper()}{acc_text}, {where})"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def config_problem(config: dict[str, Any]) -> str | None:
    """Why a run's config.json cannot be used, or None: every field the code reads is checked."""
    for key in ("model", "train", "text", "label_names"):
        if key not in config:
            return f"lacks '{key}'"
    for key in ("model", "train", "text"):
        if not isinstance(config[key], dict):
            return f"'{key}' is not an object"
    for key in ("dataset", "summary"):
        if key in config and not isinstance(config[key], dict):
            return f"'{key}' is not an object"
    if "spec" in _as_dict(config.get("dataset")):
        problem = _parse_spec(config["dataset"]["spec"])[1]
        if problem:
            return problem
    names = config["label_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return "'label_names' is not a list of class names"
    try:  # the dataclasses' own checks, including their upper bounds on model sizes
        model = ModelConfig.from_dict(config["model"])
        TextConfig.from_dict(config["text"])
        TrainConfig.from_dict(config["train"])
    except (TypeError, ValueError) as exc:
        return f"model settings are invalid ({' '.join(str(exc).split())})"
    if len(names) != model.num_classes:
        return f"it has {len(names)} label names but the model has {model.num_classes} classes"
    return None


def _parse_spec(data: Any) -> tuple[DatasetSpec | None, str | None]:
    """A run's recorded dataset reference as a spec, or (None, why it is unusable)."""
    if not isinstance(data, dict):
        return None, "'dataset.spec' is not an object"
    try:
        spec = DatasetSpec.from_dict(data)
    except (DatasetError, TypeError, ValueError, AttributeError) as exc:
        return None, f"'dataset.spec' is malformed ({' '.join(str(exc).split())})"
    for key in ("name", "csv", "test_csv"):
        if getattr(spec, key) is not None and not isinstance(getattr(spec, key), str):
            return None, f"'dataset.spec.{key}' is not a string"
    return spec, None


def metrics_problem(metrics: Any) -> str | None:
    """Why a run's metrics.json cannot be shown, or None."""
    if not isinstance(metrics, dict):
        return "it is not an object"
    for split in ("validation", "test"):
        if split not in metrics:
            continue
        if not isinstance(metrics[split], dict):
            return f"'{split}' is not an object"
        for key in ("accuracy", "macro_f1", "loss", "n"):
            value = metrics[split].get(key)
            if value is not None and not _is_number(value):
                return f"'{split}.{key}' is not a number"
        for key, kind in (("per_class", dict), ("confusion_matrix", list)):
            if key in metrics[split] and not isinstance(metrics[split][key], kind):
                return f"'{split}.{key}' is malformed"
    return None
