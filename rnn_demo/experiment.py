"""One training run from a dataset reference to a saved run directory, and the recipe behind it.

``run_experiment`` is what ``python -m rnn_demo train`` and the app's training
worker both call: load and split the data, fit the vocabulary on the training
split, encode every split once, build the model, train, evaluate, save.
``build_training`` is the one recipe from data to a ready Trainer; the race
(``rnn_demo.race``) and the vanishing-gradient lab (``rnn_demo.explain.lab``) use it too.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnn_demo.batching import BatchLoader, EncodedTexts, encode_tokens
from rnn_demo.checkpoints import claim_out_dir, lock_file, sanitize_run_name, save_run, user_runs_dir
from rnn_demo.data import DatasetSpec, DatasetSplits, load_splits
from rnn_demo.metrics import classification_summary
from rnn_demo.model import ModelConfig, RecurrentClassifier
from rnn_demo.pacing import Watch
from rnn_demo.text import TextConfig, Tokenizer, Vocab
from rnn_demo.train import EventCallback, StopSignal, Trainer, TrainConfig, evaluate, seed_everything
from rnn_demo.vectors import default_binary_cache, load_vectors_into, resolve_vectors

logger = logging.getLogger(__name__)

# Per-dataset defaults, chosen so that the default model is good, not just fast.
# Keys are dataset names; values override the dataclass defaults.
_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "rotten_tomatoes": {
        "text": {"min_freq": 1, "max_vocab": 10000},
        "model": {
            "cell": "gru",
            "embedding_dim": 100,
            "hidden_size": 128,
            "pooling": "max",
            "dropout": 0.5,
            "pretrained_vectors": "imdb",  # 8,530 sentences are too few to learn word meanings from scratch
        },
        "train": {"epochs": 8, "lr": 2e-3, "batch_size": 64, "patience": 2},
    },
    "imdb": {
        "text": {"min_freq": 2, "max_vocab": 30000, "max_tokens": 400},
        "model": {"cell": "lstm", "embedding_dim": 100, "hidden_size": 128, "pooling": "max", "dropout": 0.4},
        "train": {"epochs": 6, "lr": 2e-3, "batch_size": 64, "patience": 2},
    },
    "bbc_news": {
        "text": {"min_freq": 2, "max_vocab": 10000, "max_tokens": 400},
        "model": {
            "cell": "lstm",
            "embedding_dim": 100,
            "hidden_size": 128,
            "pooling": "max",
            "dropout": 0.4,
            "pretrained_vectors": "imdb",  # 1,779 training articles; general English vectors help (91% -> 96%)
        },
        "train": {"epochs": 15, "lr": 2e-3, "batch_size": 32, "patience": 3},
    },
    "negation": {
        "text": {"min_freq": 1},
        "model": {"cell": "gru", "embedding_dim": 32, "hidden_size": 64, "pooling": "last", "dropout": 0.1},
        "train": {"epochs": 10, "lr": 5e-3, "batch_size": 32, "patience": 3},
    },
    "long_range": {
        "text": {"min_freq": 1},
        "model": {
            "cell": "lstm",
            "embedding_dim": 16,
            "hidden_size": 64,
            "pooling": "last",  # max/mean pooling would let any cell skip the memory test
            "dropout": 0.0,
            "gate_bias": 2.0,  # start gated cells remembering: 50+ steps back is far for a fresh cell
        },
        "train": {"epochs": 10, "lr": 5e-3, "batch_size": 32, "patience": 3, "lr_patience": 3},
    },
}


def default_configs(dataset_name: str | None) -> tuple[TextConfig, ModelConfig, TrainConfig]:
    """Sensible settings for a dataset (generic ones for user files and unknown names)."""
    overrides = _DEFAULTS.get(dataset_name or "", {})
    return (
        TextConfig(**overrides.get("text", {})),
        ModelConfig(**overrides.get("model", {})),
        TrainConfig(**overrides.get("train", {})),
    )


@dataclass
class PreparedData:
    """Splits after tokenization: the vocabulary and every split encoded once."""

    splits: DatasetSplits
    tokenizer: Tokenizer
    vocab: Vocab
    train: EncodedTexts
    validation: EncodedTexts
    test: EncodedTexts
    oov_rate: float  # fraction of validation tokens outside the vocabulary


def prepare_data(splits: DatasetSplits, text_config: TextConfig) -> PreparedData:
    """Fits the vocabulary on the training split only and encodes every split once."""
    tokenizer = Tokenizer.from_config(text_config)
    tokens = {name: [tokenizer(t) for t in getattr(splits, name).texts] for name in ("train", "validation", "test")}
    vocab = Vocab.build(tokens["train"], min_freq=text_config.min_freq, max_size=text_config.max_vocab)
    encoded = {
        name: encode_tokens(lists, vocab, getattr(splits, name).labels, max_tokens=text_config.max_tokens)
        for name, lists in tokens.items()
    }
    return PreparedData(splits=splits, tokenizer=tokenizer, vocab=vocab, oov_rate=vocab.oov_rate(tokens["validation"]),
                        **encoded)  # train=, validation=, test=


@dataclass
class RunSummary:
    """What a finished run reports (the CLI prints it as JSON)."""

    run_dir: Path
    n_train: int
    epochs_run: int
    epoch_seconds: list[float]
    tokens_per_second: list[float]
    val: dict[str, float]
    test: dict[str, float]
    label_names: list[str]
    stop_reason: str
    message: str
    num_parameters: int

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["run_dir"] = str(self.run_dir)
        return data


def _headline(summary: dict[str, Any], loss: float) -> dict[str, float]:
    return {"accuracy": summary["accuracy"], "macro_f1": summary["macro_f1"], "loss": loss}


def run_experiment(
    spec: DatasetSpec,
    text_config: TextConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    overwrite: bool = False,
    callback: EventCallback | None = None,
    stop: StopSignal | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> RunSummary:
    """Trains one model and saves its run directory.

    The output folder is checked and locked before the data is loaded, so a folder
    that cannot be used is refused at once rather than after training.

    Args:
        spec: Which dataset (built-in, synthetic or user file) and how to split it.
        text_config: Tokenizer and vocabulary settings.
        model_config: Model settings; ``vocab_size`` and ``num_classes`` are filled in here.
        train_config: Training settings.
        out_dir: Run directory; default a new ``<user runs>/<dataset>-<cell>-<time>``.
        overwrite: Replace an existing run at ``out_dir`` (never anything else).
        callback: Receives every training event (see ``rnn_demo.train``).
        stop: Optional stop signal (keeps the best weights so far).
        on_stage: Called with a short description before each slow stage.

    Returns:
        The summary of the run.

    Raises:
        rnn_demo.checkpoints.CheckpointError: ``out_dir`` is refused (see
            ``check_out_dir``) or another training is writing it.
        rnn_demo.data.DatasetError: The dataset cannot be loaded.
        rnn_demo.train.TrainingError: Training diverged before producing usable weights.
    """
    if out_dir is None:
        out_dir = _new_run_dir(spec, model_config.cell)
    with claim_out_dir(out_dir, overwrite=overwrite) as run_dir:
        return _train_and_save(spec, text_config, model_config, train_config, run_dir, overwrite=overwrite,
                               callback=callback, stop=stop, on_stage=on_stage)


def _new_run_dir(spec: DatasetSpec, cell: str) -> Path:
    """A fresh ``<user runs>/<dataset>-<cell>-<time>`` folder name (suffixed if taken)."""
    base = user_runs_dir()
    name = sanitize_run_name(f"{spec.display_name()}-{cell}-{time.strftime('%Y%m%d-%H%M%S')}")
    candidate, n = base / name, 2
    while os.path.lexists(candidate) or os.path.lexists(lock_file(candidate)):
        candidate, n = base / f"{name}-{n}", n + 1
    return candidate


def _train_and_save(
    spec: DatasetSpec,
    text_config: TextConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    out_dir: Path,
    *,
    overwrite: bool,
    callback: EventCallback | None,
    stop: StopSignal | None,
    on_stage: Callable[[str], None] | None,
) -> RunSummary:
    """The body of ``run_experiment``, run while it holds the output folder."""
    stage = on_stage or (lambda text: None)
    data = load_and_prepare(spec, text_config, on_stage=stage)
    training = build_training(data, text_config, model_config, train_config, callback=callback, stop=stop,
                              on_stage=stage)
    training.trainer.fit()
    return evaluate_and_save(
        training.trainer, data, spec, text_config, out_dir, training.history,
        vector_coverage=training.vector_coverage, on_stage=stage, overwrite=overwrite,
    )


def load_and_prepare(
    spec: DatasetSpec, text_config: TextConfig, *, on_stage: Callable[[str], None] | None = None
) -> PreparedData:
    """Loads and splits a dataset, then fits the vocabulary and encodes it (``prepare_data``).

    For a user file the load report (rows read, kept and dropped) goes to ``on_stage``:
    nothing is dropped silently.
    """
    stage = on_stage or (lambda text: None)
    stage("loading the dataset")
    splits = load_splits(spec)
    if spec.csv:
        stage(splits.load_summary())
    stage("building the vocabulary and encoding the texts")
    return prepare_data(splits, text_config)


@dataclass
class Training:
    """A model ready to train on prepared data: call ``trainer.fit()`` or step ``trainer.iter_steps()``.

    ``history`` collects every event the trainer sends, each with its wall-clock ``time``;
    ``vector_coverage`` is the share of the vocabulary that had pretrained vectors (None
    without them).
    """

    data: PreparedData
    model: RecurrentClassifier
    trainer: Trainer
    history: list[dict[str, Any]]
    vector_coverage: float | None


def build_training(
    data: PreparedData | DatasetSplits,
    text_config: TextConfig,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    callback: EventCallback | None = None,
    stop: StopSignal | None = None,
    watch: bool = True,
    vectors_path: Path | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> Training:
    """The one training recipe: data → vocabulary → seeded model → word vectors → loaders → Trainer.

    ``run_experiment``, the race and the vanishing-gradient lab all build their models here,
    so a model trained by any of them starts from the same weights and sees the same batches
    for the same settings and seed.

    Args:
        data: Prepared data, or splits to prepare here (vocabulary fitted on the train split).
        text_config: Tokenizer settings (its ``max_tokens`` also caps the watched sentence).
        model_config: Model settings; ``vocab_size`` and ``num_classes`` are filled in here.
        train_config: Training settings (batch size, seed, watched sentence …).
        callback: Receives every training event (after it is added to ``history``).
        stop: Optional stop signal (keeps the best weights so far).
        watch: Follow ``train_config.watch_text`` after every step (the race does not).
        vectors_path: ``model_config.pretrained_vectors`` already resolved (the race resolves
            once for all its models); resolved here when None.
        on_stage: Called with a short description before each slow stage.

    Returns:
        The data, the model, its trainer (not yet run), the history it fills and the
        vector coverage.

    Raises:
        rnn_demo.vectors.VectorsError: The word-vector file cannot be read.
    """
    stage = on_stage or (lambda text: None)
    if isinstance(data, DatasetSplits):
        data = prepare_data(data, text_config)
    model_config = dataclasses.replace(model_config, vocab_size=len(data.vocab),
                                       num_classes=len(data.splits.label_names))
    seed_everything(train_config.seed)  # the same initial weights for the same seed, whoever trains
    model = RecurrentClassifier(model_config)
    vector_coverage = None
    if model_config.pretrained_vectors:
        if vectors_path is None:
            stage(f"preparing word vectors ({model_config.pretrained_vectors})")
            vectors_path = resolve_vectors(model_config.pretrained_vectors, model_config.embedding_dim)
        vector_coverage = load_vectors_into(model.embedding, data.vocab, vectors_path,
                                            binary_cache=default_binary_cache())
    history: list[dict[str, Any]] = []

    def record(event: dict[str, Any]) -> None:
        history.append({**event, "time": time.time()})
        if callback is not None:
            callback(event)

    # Each model has its own loaders: the training loader's shuffle state is per epoch.
    train_loader = BatchLoader(data.train, train_config.batch_size, shuffle=True, seed=train_config.seed)
    val_loader = BatchLoader(data.validation, max(train_config.batch_size, 256))
    watched = (Watch.build(train_config.watch_text, data.tokenizer, data.vocab, text_config.max_tokens,
                           data.splits.label_names) if watch else None)
    trainer = Trainer(model, train_loader, val_loader, train_config, callback=record, stop=stop, watch=watched,
                      on_stage=stage)  # e.g. compiling the training kernels, once per machine
    return Training(data=data, model=model, trainer=trainer, history=history, vector_coverage=vector_coverage)


def evaluate_and_save(
    trainer: Trainer,
    data: PreparedData,
    spec: DatasetSpec,
    text_config: TextConfig,
    out_dir: str | Path,
    history: list[dict[str, Any]],
    *,
    vector_coverage: float | None = None,
    train_seconds: float | None = None,
    extra_summary: dict[str, Any] | None = None,
    on_stage: Callable[[str], None] | None = None,
    overwrite: bool = False,
) -> RunSummary:
    """Evaluates a trained model on validation and test and saves its run directory.

    Args:
        trainer: A trainer whose ``fit``/``iter_steps`` has finished (``trainer.result`` is set).
        data: The prepared splits it was trained on.
        spec: The dataset reference (stored in the run).
        text_config: The tokenizer settings (stored in the run).
        out_dir: The run directory.
        history: Every training event.
        vector_coverage: Share of the vocabulary that had pretrained vectors, if any were used.
        train_seconds: Training time to record; defaults to the sum of the epoch times.
        extra_summary: More facts for config.json's ``summary``.
        on_stage: Called with a short description before each slow stage.
        overwrite: Replace an existing run at ``out_dir`` (see ``save_run``).

    Returns:
        The run summary.
    """
    stage = on_stage or (lambda text: None)
    model, result = trainer.model, trainer.result
    assert result is not None, "evaluate_and_save needs a finished trainer"
    stage("evaluating on the validation and test splits")
    val_eval = evaluate(model, trainer.val_loader, trainer.device)
    test_eval = evaluate(model, BatchLoader(data.test, trainer.val_loader.batch_size), trainer.device)
    splits, names = data.splits, data.splits.label_names
    val_summary = classification_summary(val_eval.labels, val_eval.probs, names)
    test_summary = classification_summary(test_eval.labels, test_eval.probs, names)
    stage("fitting the bag-of-words baseline")
    from rnn_demo.baseline import fit_baseline  # loads scikit-learn's linear models only when a run is saved

    try:
        baseline = fit_baseline(splits, text_config)
    except (MemoryError, ValueError) as exc:  # a comparison must never cost the trained run
        logger.warning("bag-of-words baseline failed: %s", exc)
        stage(f"no bag-of-words baseline ({type(exc).__name__}: {exc})")
        baseline = None
    stage("saving the run")
    run_dir = save_run(
        out_dir,
        model.cpu(),
        data.vocab,
        text_config=text_config,
        train_config=trainer.config,
        label_names=names,
        dataset={
            "spec": spec.to_dict(),
            "name": splits.name,
            "fingerprint": splits.fingerprint,
            "sizes": {"train": len(splits.train), "validation": len(splits.validation), "test": len(splits.test)},
        },
        history=history,
        metrics={
            "validation": {**val_summary, "loss": val_eval.loss},
            "test": {**test_summary, "loss": test_eval.loss},
            "baseline": baseline,
        },
        summary={
            "train_seconds": sum(result.epoch_seconds) if train_seconds is None else train_seconds,
            "wall_seconds": result.seconds,
            "epochs_run": result.epochs_run,
            "best_epoch": result.best_epoch,
            "stop_reason": result.reason,
            "num_parameters": model.num_parameters(),
            "oov_rate": data.oov_rate,
            "vector_coverage": vector_coverage,
            "device": str(trainer.device),
            **(extra_summary or {}),
        },
        predictions={"validation_probs": val_eval.probs, "test_probs": test_eval.probs},
        overwrite=overwrite,
    )
    return RunSummary(
        run_dir=run_dir,
        n_train=len(splits.train),
        epochs_run=result.epochs_run,
        epoch_seconds=result.epoch_seconds,
        tokens_per_second=result.epoch_tokens_per_second,
        val=_headline(val_summary, val_eval.loss),
        test=_headline(test_summary, test_eval.loss),
        label_names=names,
        stop_reason=result.reason,
        message=result.message,
        num_parameters=model.num_parameters(),
    )


# The demo runs shipped in checkpoints/: (run name, dataset, model overrides). Each stays
# under 5 MB because the per-dataset defaults cap those vocabularies at 10,000 tokens.
SHIPPED_RUNS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("rotten_tomatoes-gru", "rotten_tomatoes", {"cell": "gru"}),
    ("rotten_tomatoes-lstm", "rotten_tomatoes", {"cell": "lstm"}),
    ("bbc_news-lstm", "bbc_news", {"cell": "lstm"}),
)


def build_shipped_runs(
    out_dir: str | Path,
    callback: EventCallback | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> list[RunSummary]:
    """Retrains the shipped demo runs with the default settings (seed 0) into ``out_dir``.

    Existing runs of those names are replaced: ``checkpoints/`` is the project's own folder.
    """
    summaries = []
    for run_name, dataset, model_overrides in SHIPPED_RUNS:
        text_config, model_config, train_config = default_configs(dataset)
        model_config = dataclasses.replace(model_config, **model_overrides)
        if on_stage is not None:
            on_stage(f"training {run_name}")
        summaries.append(
            run_experiment(
                DatasetSpec(name=dataset), text_config, model_config, train_config,
                out_dir=Path(out_dir) / run_name, overwrite=True, callback=callback, on_stage=on_stage,
            )
        )
    return summaries
