"""The RNN / GRU / LSTM race: several cells trained on the same data, split and budget, side by side.

The data is loaded, tokenized and encoded ONCE; then one ``Trainer.iter_steps()``
generator per cell is advanced one step at a time in turn, so all curves move
forward together (in one process, on one job slot). Every event is tagged with
its ``"cell"``. Each cell's run is evaluated and saved like a normal run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rnn_demo.checkpoints import user_runs_dir
from rnn_demo.data import DatasetSpec
from rnn_demo.experiment import RunSummary, Training, build_training, evaluate_and_save, load_and_prepare
from rnn_demo.model import CELLS, ModelConfig
from rnn_demo.text import TextConfig
from rnn_demo.train import EventCallback, StopSignal, TrainConfig, TrainingError
from rnn_demo.vectors import resolve_vectors

DEFAULT_CELLS = tuple(CELLS)  # ("rnn", "gru", "lstm")


@dataclass
class _Entrant:
    """One cell in the race: its training (model, trainer, recorded history) and its step generator."""

    cell: str
    training: Training
    steps: Iterator[int]
    error: str | None = None
    busy_seconds: float = 0.0  # time spent in this entrant's own steps and evaluations


def run_race(
    spec: DatasetSpec,
    text_config: TextConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    cells: Sequence[str] = DEFAULT_CELLS,
    *,
    out_dirs: dict[str, str | Path] | None = None,
    callback: EventCallback | None = None,
    stop: StopSignal | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> list[RunSummary]:
    """Trains one model per cell on the same data and budget, interleaving their steps.

    Args:
        spec: The dataset (loaded and split once).
        text_config: Tokenizer settings (one vocabulary for all cells).
        model_config: Model settings; only ``cell`` differs between the entrants.
        train_config: Training settings (same epochs, batch size, seed for every cell).
        cells: The cells to race, e.g. ``("rnn", "gru", "lstm")``.
        out_dirs: Run directory per cell; default ``<user runs>/race-<dataset>-<time>-<cell>``.
        callback: Receives every trainer event with an extra ``"cell"`` key.
        stop: Stops every entrant after its current step (each keeps its best weights).
        on_stage: Called with a short description before each slow stage.

    Returns:
        One summary per cell that produced a model, in ``cells`` order.

    Raises:
        ValueError: Unknown or fewer than two cells.
        rnn_demo.data.DatasetError: The dataset cannot be loaded.
        rnn_demo.train.TrainingError: Every entrant diverged.
    """
    cells = list(dict.fromkeys(cells))
    unknown = [c for c in cells if c not in CELLS]
    if unknown or len(cells) < 2:
        raise ValueError(f"a race needs two or more distinct cells from {', '.join(CELLS)}; got {cells}")
    stage = on_stage or (lambda text: None)
    emit = callback or (lambda event: None)

    data = load_and_prepare(spec, text_config, on_stage=stage)
    vectors_path = None
    if model_config.pretrained_vectors:
        stage(f"preparing word vectors ({model_config.pretrained_vectors})")
        vectors_path = resolve_vectors(model_config.pretrained_vectors, model_config.embedding_dim)

    entrants = []
    for cell in cells:  # every cell from the same seed: build_training seeds before it builds each model
        training = build_training(data, text_config, model_config.with_cell(cell), train_config,
                                  callback=_tagged(emit, cell), stop=stop, watch=False, vectors_path=vectors_path,
                                  on_stage=stage)
        entrants.append(_Entrant(cell, training, training.trainer.iter_steps()))
    stage("training " + " vs ".join(c.upper() for c in cells))
    _interleave(entrants, emit)
    if all(e.error is not None for e in entrants):
        raise TrainingError("every model in the race diverged: " + "; ".join(f"{e.cell}: {e.error}" for e in entrants))

    stamp = time.strftime("%Y%m%d-%H%M%S")
    summaries = []
    for entrant in entrants:
        if entrant.error is not None:
            continue
        stage(f"evaluating and saving the {entrant.cell.upper()} run")
        out = (out_dirs or {}).get(entrant.cell) or user_runs_dir() / f"race-{spec.name or 'data'}-{stamp}-{entrant.cell}"
        # The trainer's own clock also counts the other entrants' turns; busy_seconds is the cell's own time.
        summaries.append(
            evaluate_and_save(
                entrant.training.trainer, data, spec, text_config, Path(out), entrant.training.history,
                vector_coverage=entrant.training.vector_coverage, train_seconds=entrant.busy_seconds,
                extra_summary={"race": True},
            )
        )
    return summaries


def _tagged(emit: EventCallback, cell: str) -> EventCallback:
    """Passes each event on with its ``"cell"`` (the history keeps the untagged event)."""
    return lambda event: emit({**event, "cell": cell})


def _interleave(entrants: list[_Entrant], emit: EventCallback) -> None:
    """Advances every entrant's training generator one step in turn until all are exhausted."""
    running = list(entrants)
    while running:
        for entrant in list(running):
            started = time.perf_counter()
            try:
                next(entrant.steps)
            except StopIteration:
                running.remove(entrant)
            except TrainingError as exc:  # one diverging cell must not end the others' race
                entrant.error = str(exc)
                running.remove(entrant)
                emit({"type": "cell_error", "cell": entrant.cell, "message": f"{entrant.cell.upper()}: {exc}"})
            finally:
                entrant.busy_seconds += time.perf_counter() - started
