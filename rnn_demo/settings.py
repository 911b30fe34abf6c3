"""Settings metadata: each config field's label, help, widget, limits and CLI flag, written once.

The config dataclasses (``TextConfig``, ``ModelConfig``, ``TrainConfig``) declare their fields
with ``setting(...)``; the Train form (``rnn_demo.ui.train_form.FIELDS``), the CLI's train flags
(``rnn_demo.cli``) and the limit checks (``rnn_demo.config_checks``) are generated from that
metadata. ``Settings`` gives every config one ``to_dict``/``from_dict``. Pure Python.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Self

WIDGETS = ("int", "float", "select", "check", "optint", "text")


def setting(
    default: Any,
    *,
    label: str,
    help: str,  # noqa: A002 - the name every consumer uses
    widget: str,
    limits: tuple[float, float] | None = None,
    widget_range: tuple[float, float] | None = None,
    options: tuple[Any, ...] = (),
    step: float | None = None,
    format: str | None = None,  # noqa: A002
    basic: bool = False,
    form: int | None = None,
    flag: str | None = None,
    metavar: str | None = None,
) -> Any:
    """A dataclass field with its metadata.

    Args:
        default: The field's default value.
        label: Its name in the app (e.g. "Hidden size").
        help: One line shown by the form widget and by ``--help``.
        widget: One of ``WIDGETS``: "optint" is an integer where empty means None.
        limits: Smallest and largest allowed value, checked by the config itself (memory and time bounds).
        widget_range: The form widget's range where it is narrower than ``limits`` (not checked).
        options: The choices of a "select".
        step: The form widget's step; format: its number format (e.g. "%.2f").
        basic: Shown in the short form; the others are under "Advanced settings".
        form: Position in the Train form (None: not on the form).
        flag: The ``python -m rnn_demo train`` flag (None: no flag).
        metavar: The flag's metavar; a "select" with one takes any text (e.g. a file path).
    """
    if widget not in WIDGETS:
        raise ValueError(f"unknown widget {widget!r}")
    metadata = {"label": label, "help": help, "widget": widget, "limits": limits, "widget_range": widget_range,
                "options": tuple(options), "step": step, "format": format, "basic": basic, "form": form,
                "flag": flag, "metavar": metavar}
    return dataclasses.field(default=default, metadata=metadata)


def meta(field: dataclasses.Field[Any]) -> dict[str, Any]:
    """A field's metadata (see ``setting``)."""
    return dict(field.metadata)


def limits_of(config_class: type) -> dict[str, tuple[float, float]]:
    """The checked limits of a config class: field -> (smallest, largest)."""
    return {f.name: f.metadata["limits"] for f in dataclasses.fields(config_class) if f.metadata.get("limits")}


class Settings:
    """Mixin of the config dataclasses: one ``to_dict``/``from_dict`` for all of them."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Unknown keys (e.g. from an older run's config.json) are ignored; missing ones take defaults."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})
