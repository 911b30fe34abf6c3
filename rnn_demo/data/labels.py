"""Labels: label values to class indices, given names to classes, and the checks on those names.

A file's labels may be strings or integers written several ways ("1", "1.0"); integer-equal
values are one class everywhere in this module.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace

from rnn_demo.data.types import DatasetError, DatasetSplits

MAX_CLASS_NAME_CHARS = 40  # a class name is shown in legends, axes and tables
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def label_mapping(values: set[str]) -> tuple[list[str], dict[str, int]]:
    """Sorts distinct label strings (numerically if all are integers) and maps them to 0..C-1."""
    as_numbers = {value: _as_int(value) for value in values}
    if all(number is not None for number in as_numbers.values()):
        numbers = sorted(set(as_numbers.values()))  # "1" and "1.0" are the same class
        index = {number: position for position, number in enumerate(numbers)}
        return [str(number) for number in numbers], {value: index[as_numbers[value]] for value in values}
    names = sorted(values)
    return names, {value: position for position, value in enumerate(names)}


def _as_int(value: str) -> int | None:
    """Returns the integer a label string denotes ("3", "-1", "2.0"), else None."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _position_finder(values: Sequence[str]) -> Callable[[str], int | None]:
    """Returns a lookup of a label string's position in ``values``: the same string, else an
    integer-equal one ("1.0" finds "1"), else None."""
    exact = {value: position for position, value in enumerate(values)}
    numeric = {number: position for position, value in enumerate(values) if (number := _as_int(value)) is not None}

    def find(value: str) -> int | None:
        position = exact.get(value)
        if position is None and (number := _as_int(value)) is not None:
            position = numeric.get(number)
        return position

    return find


def map_to_known_labels(raw_labels: list[str], label_names: list[str], display_name: str) -> list[int]:
    """Maps label strings onto given names (exact, then integer-equal); unknown labels are an error."""
    find = _position_finder(label_names)
    labels: list[int] = []
    unknown: set[str] = set()
    for value in raw_labels:
        position = find(value)
        if position is None:
            unknown.add(value)
        else:
            labels.append(position)
    if unknown:
        shown = ", ".join(repr(value) for value in sorted(unknown)[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise DatasetError(
            f"{display_name} has label(s) {shown}{more} that the training data does not have "
            f"(known labels: {label_names}). Use the same label column and label values as the training file."
        )
    return labels


def name_classes(label_values: Sequence[str], class_names: dict[str, str]) -> list[str]:
    """Class names for a dataset's label values: each value named in ``class_names`` is renamed.

    Args:
        label_values: The labels as loaded, in class order (e.g. ``["0", "1"]``).
        class_names: Label value -> class name (e.g. ``{"0": "negative"}``); integer-equal keys
            match ("1.0" names "1"); names are trimmed.

    Returns:
        The class names in class order (values not named keep their name).

    Raises:
        DatasetError: For a key that is not a label value, or a name that is empty, longer
            than 40 characters, has control characters, or is not unique.
    """
    names = list(label_values)
    find = _position_finder(label_values)
    for value, name in class_names.items():
        position = find(value)
        if position is None:
            raise DatasetError(
                f"Class names: there is no label {value} (the labels are {', '.join(label_values)}); "
                "name only the values the label column has."
            )
        name = str(name).strip()
        if not name or len(name) > MAX_CLASS_NAME_CHARS or _CONTROL.search(name):
            problem = "is empty" if not name else "has control characters" if _CONTROL.search(name) else (
                f"is longer than {MAX_CLASS_NAME_CHARS} characters")
            raise DatasetError(
                f"The name for label {value} {problem}; give each class a name of at most "
                f"{MAX_CLASS_NAME_CHARS} characters on one line."
            )
        names[position] = name
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise DatasetError(
            f"Class names must be unique: {', '.join(repr(name) for name in repeated)} names more than one class; "
            "give each class its own name."
        )
    return names


def with_class_names(splits: DatasetSplits, class_names: dict[str, str]) -> DatasetSplits:
    """Renames the classes of loaded splits (the fingerprint then covers the names too)."""
    if not class_names:
        return splits
    names = name_classes(splits.label_names, class_names)
    for part in (splits.train, splits.validation, splits.test):
        part.label_names = list(names)
    digest = hashlib.sha256(f"{splits.fingerprint}\x1d{json.dumps(names)}".encode())
    return replace(splits, label_names=names, fingerprint=digest.hexdigest()[:16])
