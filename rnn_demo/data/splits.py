"""From a :class:`DatasetSpec` to seeded train/validation/test splits.

:func:`load_splits` is the entry point of the CLI, the trainer and the UI: it loads the source
a spec names (a registry dataset or a user file), splits it with :func:`split_dataset` and names
the classes.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from rnn_demo.data.csv_files import load_csv
from rnn_demo.data.download import default_cache_dir, load_ag_news_split
from rnn_demo.data.labels import with_class_names
from rnn_demo.data.registry import DATASETS, load_dataset
from rnn_demo.data.types import DatasetError, DatasetSplits, LabeledTexts


@dataclass
class DatasetSpec:
    """JSON-serialisable reference to a dataset, for worker processes and checkpoints.

    Exactly one of ``name`` and ``csv`` is set.
    """

    name: str | None = None  # registry name, or None for a user file
    params: dict = field(default_factory=dict)  # synthetic-task parameters, e.g. {"distractors": 50}
    csv: str | None = None  # path of a user CSV/TSV
    test_csv: str | None = None  # optional user test file with the same columns
    text_cols: list[str] = field(default_factory=list)  # header names or 0-based positions ("0", "2")
    label_col: str | None = None  # header name or 0-based position of the label column
    header: bool = True  # first row holds column names
    delimiter: str | None = None  # None = sniff
    class_names: dict[str, str] = field(default_factory=dict)  # label value -> class name, e.g. {"0": "negative"}
    seed: int = 0  # seeds the train/validation/test split
    val_fraction: float = 0.1  # share of examples used for validation
    test_fraction: float = 0.1  # share used for test (ignored when the source has its own test split)

    def to_dict(self) -> dict:
        """Returns a plain dict that survives ``json.dumps``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DatasetSpec:
        """Builds a spec from :meth:`to_dict` output.

        Raises:
            DatasetError: If ``data`` has keys that are not spec fields.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DatasetError(
                f"Unknown dataset spec field(s) {unknown}; valid fields are {sorted(known)}."
            )
        values = dict(data)
        values["params"] = dict(values.get("params") or {})
        values["class_names"] = {str(key): str(name) for key, name in (values.get("class_names") or {}).items()}
        values["text_cols"] = [str(col) for col in values.get("text_cols") or []]
        if values.get("label_col") is not None:
            values["label_col"] = str(values["label_col"])
        return cls(**values)

    def display_name(self) -> str:
        """Returns a short label for UIs and logs, e.g. ``"Long-range memory (distractors=50)"``."""
        if self.name is not None:
            info = DATASETS.get(self.name)
            title = info.title if info is not None else self.name
            if self.params:
                args = ", ".join(f"{key}={value}" for key, value in sorted(self.params.items()))
                return f"{title} ({args})"
            return title
        if self.csv is not None:
            shown = Path(self.csv).name
            if self.test_csv is not None:
                shown += f" + {Path(self.test_csv).name}"
            return shown
        return "(no dataset)"


def split_dataset(
    data: LabeledTexts,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    test: LabeledTexts | None = None,
    name: str = "",
) -> DatasetSplits:
    """Splits examples into seeded, stratified train/validation/test sets.

    Stratification falls back to a plain random split when a class is too small.

    Args:
        data: The examples to split.
        val_fraction: Share of examples for validation.
        test_fraction: Share for test; ignored when ``test`` is given.
        seed: Seed of the shuffle; the same seed gives the same split.
        test: A ready-made test set (a source's own split or a user test file);
            then ``data`` is only split into train and validation.
        name: Display name stored in the result.

    Returns:
        The splits with a fingerprint of their contents.

    Raises:
        DatasetError: For fractions outside [0, 1), too few examples, or a test set
            with different label names.
    """
    if test is not None:
        test_fraction = 0.0
        if list(test.label_names) != list(data.label_names):
            raise DatasetError(
                f"The test set's labels {test.label_names} differ from the training labels "
                f"{data.label_names}; use files with the same label values."
            )
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must each be in [0, 1) "
            "and sum to less than 1."
        )
    labels = np.asarray(data.labels)
    rest, test_indices = _split_indices(np.arange(len(data)), labels, test_fraction, seed)
    relative_val = val_fraction / (1 - test_fraction) if val_fraction else 0.0
    train_indices, val_indices = _split_indices(rest, labels[rest], relative_val, seed)
    if len(train_indices) == 0:
        raise DatasetError(f"Too few examples ({len(data)}) to split; add more rows or lower the fractions.")
    train = data.subset(train_indices)
    validation = data.subset(val_indices)
    test_split = test if test is not None else data.subset(test_indices)
    splits = {"train": train, "validation": validation, "test": test_split}
    return DatasetSplits(
        train=train,
        validation=validation,
        test=test_split,
        label_names=list(data.label_names),
        name=name,
        fingerprint=_fingerprint(splits),
        dropped=data.dropped + (test.dropped if test is not None else 0),
        load_reports=[part.report for part in (data, test) if part is not None and part.report is not None],
    )


def _split_indices(
    indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Splits ``indices`` into (kept, held_out) with ``fraction`` held out, stratified if possible."""
    if fraction <= 0 or len(indices) == 0:
        return indices, indices[:0]
    if len(indices) < 2:
        raise DatasetError(f"Too few examples ({len(indices)}) to split; add more rows or lower the fractions.")
    try:
        kept, held_out = train_test_split(indices, test_size=fraction, random_state=seed, stratify=labels)
    except ValueError:
        # A class with a single example (or fewer examples than classes in a split).
        kept, held_out = train_test_split(indices, test_size=fraction, random_state=seed, stratify=None)
    return np.asarray(kept), np.asarray(held_out)


def _fingerprint(splits: dict[str, LabeledTexts]) -> str:
    """SHA-256 (first 16 hex chars) over split names, texts and labels."""
    digest = hashlib.sha256()
    for split_name, split in splits.items():
        digest.update(f"\x1d{split_name}\x1d".encode())
        for text, label in zip(split.texts, split.labels):
            digest.update(text.encode("utf-8", errors="surrogatepass"))
            digest.update(f"\x1f{label}\x1e".encode())
    return digest.hexdigest()[:16]


def load_splits(spec: DatasetSpec) -> DatasetSplits:
    """Loads and splits the dataset a spec refers to (the entry point for CLI, trainer and UI).

    Args:
        spec: A registry name (+ params) or a user CSV (+ optional test CSV).

    Returns:
        Seeded train/validation/test splits. AG News and ``test_csv`` provide their own test split.

    Raises:
        DatasetError: For an invalid spec or any loading problem.
    """
    data, test = _load_source(spec)
    splits = split_dataset(
        data,
        val_fraction=spec.val_fraction,
        test_fraction=spec.test_fraction,
        seed=spec.seed,
        test=test,
        name=spec.display_name(),
    )
    return with_class_names(splits, spec.class_names)  # after loading: a test file's labels match the values


def _load_source(spec: DatasetSpec) -> tuple[LabeledTexts, LabeledTexts | None]:
    """Returns the examples a spec refers to, and the source's own test split if it has one."""
    if (spec.name is None) == (spec.csv is None):
        raise DatasetError("A dataset spec needs exactly one of `name` (a built-in dataset) or `csv` (a file).")
    if spec.name is not None:
        if spec.test_csv is not None:
            raise DatasetError("test_csv is only supported together with csv; remove it or load your own CSV.")
        if spec.name == "ag_news":
            if spec.params:
                raise DatasetError(f"Dataset 'ag_news' takes no parameters; got {sorted(spec.params)}.")
            cache = default_cache_dir()
            return load_ag_news_split("train.csv", cache), load_ag_news_split("test.csv", cache)
        return load_dataset(spec.name, **spec.params), None
    if not spec.text_cols or spec.label_col is None:
        raise DatasetError(
            "Choose the text column(s) and the label column of the CSV (header names or 0-based positions)."
        )
    data = load_csv(spec.csv, spec.text_cols, spec.label_col, header=spec.header, delimiter=spec.delimiter)
    if spec.test_csv is None:
        return data, None
    test = load_csv(
        spec.test_csv, spec.text_cols, spec.label_col, header=spec.header, delimiter=spec.delimiter,
        label_names=data.label_names,
    )
    return data, test
