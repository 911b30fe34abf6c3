"""Checks shared by the settings dataclasses (``TextConfig``, ``ModelConfig``, ``TrainConfig``).

A run's ``config.json`` may have been edited by hand and a CLI flag can be any number, so
every field is checked for its type and, where a value sizes memory or time, for an upper
bound, before anything is allocated. Each check raises ``ValueError`` naming the field.
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from typing import Any

from rnn_demo.settings import limits_of

Limits = dict[str, tuple[int, int]]  # field -> (smallest, largest) allowed value

_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_field_types(config: Any) -> None:
    """Checks every field of a config dataclass against its annotation and stores plain Python values.

    ``int`` fields take integers (NumPy's too, stored as ``int``) but not bools, floats or
    strings; ``float`` fields take any real number but a bool (stored as ``float``); ``str``
    and ``bool`` fields take exactly those; ``X | None`` also takes None. Why: a value of the
    wrong type otherwise fails later as a ``TypeError`` deep inside torch, or not at all.

    Raises:
        ValueError: A field's value has the wrong type; the message names the field.
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        hint = hints[f.name]
        kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        value = getattr(config, f.name)
        if value is None and type(None) in kinds:
            continue
        if int in kinds and isinstance(value, numbers.Integral) and not isinstance(value, bool):
            setattr(config, f.name, int(value))
        elif float in kinds and isinstance(value, numbers.Real) and not isinstance(value, bool):
            setattr(config, f.name, float(value))
        elif not any(k in (bool, str) and isinstance(value, k) for k in kinds):
            wanted = " or ".join(_KIND_NAMES.get(k, "None") for k in kinds)
            raise ValueError(f"{f.name} must be {wanted}, got {_short(value)}")


def check_limits(config: Any, limits: Limits | None = None) -> None:
    """Checks that every field named in ``limits`` lies within its bounds (None passes, NaN does not).

    Without ``limits``, the bounds are the ``limits`` in the config's field metadata (``rnn_demo.settings``).

    Raises:
        ValueError: A value is out of range; the message names the field and the bound.
    """
    for name, (low, high) in (limits_of(type(config)) if limits is None else limits).items():
        value = getattr(config, name)
        if value is None:
            continue
        if value != value:  # NaN passes both comparisons below
            raise ValueError(f"{name} must be a number, got {value}")
        if value < low:
            raise ValueError(f"{name} must be at least {low:,}, got {value:,}")
        if value > high:
            raise ValueError(f"{name} must be at most {high:,}, got {value:,}")


def check_lengths(config: Any, limits: dict[str, int]) -> None:
    """Checks that every text field named in ``limits`` has at most that many characters.

    Raises:
        ValueError: A text is too long; the message names the field, the bound and the length.
    """
    for name, most in limits.items():
        value = getattr(config, name)
        if value is not None and len(value) > most:
            raise ValueError(f"{name} must be at most {most:,} characters, got {len(value):,}")
