"""Training throughput: our pipeline against a tutorial-style loop, side by side, plus hardware efficiency.

Ours: ``prepare_data`` once (tokenize and look up every text once), then the real
``rnn_demo.train.Trainer`` (``Trainer.iter_steps()``: length-bucketed ``BatchLoader``,
forward, cross-entropy, backward, clip 1.0, Adam) timed over a fixed number of steps.
Reference: ``tutorial_baseline`` (tokenize on every batch, pad/truncate to 50, no packing).

Both use embedding 100, hidden 128, batch 64, one unidirectional layer, last-state pooling,
dropout 0.3, Adam lr 2e-3, no pretrained vectors, the same vocabulary. For each configuration
the two loops are built once and advanced in short windows of a few batches, taking turns
(in alternating order) through the first part of a seeded epoch; every figure is per window,
then the median over windows (on a shared machine, bursts of load hit single windows, and the
median discards them). Epoch times are extrapolated from each window: ours by real tokens
(bucketed batches cost ~ their tokens), the reference by examples (every batch is 64×50).

On imdb the reference reads at most 50 tokens per review while ours reads up to 400, so the
two solve different tasks there: compare per token, not per example.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import common  # first: configure_process() (OpenMP) must run before torch loads
import efficiency
import torch
from rnn_demo.batching import Batch, BatchLoader
from rnn_demo.data import DatasetSpec, load_splits
from rnn_demo.experiment import PreparedData, default_configs, prepare_data
from rnn_demo.model import ModelConfig, RecurrentClassifier
from rnn_demo.train import Trainer, TrainConfig
from tutorial_baseline import FIXED_LENGTH, TutorialClassifier, tutorial_loader, tutorial_train_step

EMBEDDING_DIM = 100
HIDDEN_SIZE = 128
BATCH_SIZE = 64
DROPOUT = 0.3
LR = 2e-3
CLIP = 1.0

# Batches per timed window (rotten_tomatoes has 107 training batches per epoch, imdb 313):
# 10 windows time 60 rotten_tomatoes and 20 imdb batches per loop and configuration.
WINDOW_BATCHES = {"rotten_tomatoes": 6, "imdb": 2}
QUICK_WINDOW_BATCHES = {"rotten_tomatoes": 3, "imdb": 1}
WARMUP_BATCHES = 2
PEAK_SAMPLES_AT_START = 5


class RecordingLoader(BatchLoader):
    """A ``BatchLoader`` that remembers the real and padded tokens of every batch it yields."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.real_tokens = 0
        self.padded_tokens = 0
        self.examples = 0

    def __iter__(self):  # type: ignore[override]
        for batch in super().__iter__():
            self._record(batch)
            yield batch

    def _record(self, batch: Batch) -> None:
        self.real_tokens += int(batch.lengths.sum())
        self.padded_tokens += batch.ids.numel()
        self.examples += len(batch.lengths)


def our_model_config(cell: str, data: PreparedData) -> ModelConfig:
    return ModelConfig(
        vocab_size=len(data.vocab), num_classes=len(data.splits.label_names), cell=cell,
        embedding_dim=EMBEDDING_DIM, hidden_size=HIDDEN_SIZE, num_layers=1, bidirectional=False,
        dropout=DROPOUT, pooling="last", pretrained_vectors=None,
    )


def flush_denormal_active() -> bool:
    """True when float32 denormals are flushed to zero in this thread (torch has no getter)."""
    return bool((torch.tensor([1e-39], dtype=torch.float32) * 1.0)[0] == 0)


class OurLoop:
    """The real Trainer (``Trainer.iter_steps()``), advanced a window of steps at a time.

    Denormal flushing is process-wide state: the Trainer turns it on when it starts, and the
    loops here take turns in one process, so each window of this loop runs with the setting the
    Trainer chose (or ``flush_denormal`` when given, for what-if measurements) and every window
    ends with it off, as a fresh process (and the reference loop) has it. Loops built with the
    same seed train on the same batches.
    """

    def __init__(self, data: PreparedData, cell: str, seed: int = 0, *, flush_denormal: bool | None = None) -> None:
        torch.manual_seed(seed)
        model = RecurrentClassifier(our_model_config(cell, data))
        self.loader = RecordingLoader(data.train, BATCH_SIZE, shuffle=True, seed=seed)
        config = TrainConfig(optimizer="adam", lr=LR, batch_size=BATCH_SIZE, epochs=1, clip=CLIP, device="cpu",
                             seed=seed)
        trainer = Trainer(model, self.loader, BatchLoader(data.validation, 256), config)
        self.flush = flush_denormal  # None until the Trainer has chosen (at its first step)
        self.steps = trainer.iter_steps()

    def window(self, n_steps: int) -> dict[str, float]:
        """Runs ``n_steps`` steps; returns their wall time and what they read."""
        before = (self.loader.real_tokens, self.loader.padded_tokens, self.loader.examples)
        if self.flush is not None:
            torch.set_flush_denormal(self.flush)
        try:
            start = time.perf_counter()
            for _ in range(n_steps):
                next(self.steps)
            seconds = time.perf_counter() - start
            if self.flush is None:
                self.flush = flush_denormal_active()
        finally:
            torch.set_flush_denormal(False)
        return {"seconds": seconds, "real_tokens": self.loader.real_tokens - before[0],
                "padded_tokens": self.loader.padded_tokens - before[1], "examples": self.loader.examples - before[2]}

    def close(self) -> None:
        self.steps.close()  # stops before the end-of-epoch evaluation


class ReferenceLoop:
    """The tutorial loop, advanced a window of steps at a time (DataLoader iteration included)."""

    def __init__(self, data: PreparedData, cell: str, seed: int = 0) -> None:
        torch.manual_seed(seed)
        splits = data.splits
        self.model = TutorialClassifier(cell, len(data.vocab), len(splits.label_names), EMBEDDING_DIM, HIDDEN_SIZE,
                                        DROPOUT)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.loader = tutorial_loader(splits.train.texts, splits.train.labels, data.tokenizer, data.vocab, BATCH_SIZE,
                                      seed)
        self.model.train()
        self.batches = iter(self.loader)

    def window(self, n_steps: int) -> dict[str, float]:
        real = examples = 0
        start = time.perf_counter()
        for _ in range(n_steps):
            try:
                ids, labels, n_real = next(self.batches)
            except StopIteration:  # a new epoch, as a tutorial's outer loop would start
                self.batches = iter(self.loader)
                ids, labels, n_real = next(self.batches)
            tutorial_train_step(self.model, self.optimizer, ids, labels, CLIP)
            real += n_real
            examples += len(labels)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "real_tokens": real, "padded_tokens": examples * FIXED_LENGTH, "examples": examples}

    def close(self) -> None:
        pass


def _variant_figures(runs: list[dict[str, float]], by_tokens: bool, n_train: int, epoch_tokens: int,
                     flops: float, peak: float) -> dict[str, list[float]]:
    """Per-window epoch seconds, tokens/s, examples/s and efficiency of one loop."""
    rows: dict[str, list[float]] = {"epoch_seconds": [], "tokens_per_second": [], "examples_per_second": [],
                                    "efficiency": []}
    for run in runs:
        if by_tokens:  # bucketed batches: cost ~ real tokens
            epoch = run["seconds"] / run["real_tokens"] * epoch_tokens
        else:  # fixed 64x50 batches: cost ~ examples
            epoch = run["seconds"] / run["examples"] * n_train
        tps = run["real_tokens"] / run["seconds"]
        rows["epoch_seconds"].append(epoch)
        rows["tokens_per_second"].append(tps)
        rows["examples_per_second"].append(n_train / epoch)
        rows["efficiency"].append(flops * tps / peak)
    return rows


def summarize_config(dataset: str, cell: str, data: PreparedData, window_batches: int,
                     runs: dict[str, list[dict[str, float]]], peak: float) -> dict[str, Any]:
    """Per-window figures, ratios and efficiencies, reduced to medians with min/max."""
    n_train = len(data.train)
    epoch_tokens = data.train.num_tokens
    flops = efficiency.flops_per_token(cell, EMBEDDING_DIM, HIDDEN_SIZE)
    figures = {
        name: _variant_figures(r, name != "reference", n_train, epoch_tokens, flops, peak) for name, r in runs.items()
    }
    ref = figures["reference"]
    out: dict[str, Any] = {
        "dataset": dataset,
        "cell": cell,
        "n_train": n_train,
        "steps_per_epoch": (n_train + BATCH_SIZE - 1) // BATCH_SIZE,
        "windows": len(runs["ours"]),
        "window_batches": window_batches,
        "timed_batches": window_batches * len(runs["ours"]),
        "epoch_real_tokens": epoch_tokens,
        "epoch_real_tokens_reference": int(data.train.lengths.clamp(max=FIXED_LENGTH).sum()),
        "padding_fraction": {name: 1 - sum(w["real_tokens"] for w in r) / sum(w["padded_tokens"] for w in r)
                             for name, r in runs.items()},
        "flops_per_real_token": flops,
        # What bucketing alone can give: ours' padded steps per text over the reference's 50.
        "length_floor_ratio": sum(w["padded_tokens"] for w in runs["ours"])
        / sum(w["examples"] for w in runs["ours"]) / FIXED_LENGTH,
    }
    for name, rows in figures.items():
        out[name] = {k: common.spread(v) for k, v in rows.items()}
        if name != "reference":
            # Ratios per window (the loops ran back to back), then the median.
            out[name]["ratio_per_example"] = common.spread(
                [o / r for o, r in zip(rows["epoch_seconds"], ref["epoch_seconds"])])
            out[name]["ratio_per_token"] = common.spread(
                [r / o for o, r in zip(rows["tokens_per_second"], ref["tokens_per_second"])])
    out["raw"] = runs
    return out


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0], "training.json")
    parser.add_argument("--datasets", default="rotten_tomatoes,imdb", help="comma-separated built-in datasets")
    parser.add_argument("--cells", default="rnn,gru,lstm", help="comma-separated cells")
    parser.add_argument("--windows", type=int, default=None, help="timed windows per loop and configuration "
                        "(default 10, quick 4)")
    parser.add_argument("--window-batches", type=int, default=None,
                        help="batches per window (default rotten_tomatoes 6, imdb 2; quick 3/1)")
    args = parser.parse_args()
    common.setup_torch(args.threads)
    windows = args.windows or (4 if args.quick else 10)
    datasets = args.datasets.split(",")
    cells = args.cells.split(",")
    matmul_size = 1024 if args.quick else 2048
    result: dict[str, Any] = {"environment": common.environment(args.threads), "settings": {
        "embedding_dim": EMBEDDING_DIM, "hidden_size": HIDDEN_SIZE, "batch_size": BATCH_SIZE, "dropout": DROPOUT,
        "lr": LR, "clip": CLIP, "pooling": "last", "windows": windows, "reference_fixed_length": FIXED_LENGTH,
        "ours_timed": "Trainer.iter_steps() (the real Trainer step: BatchLoader collate, forward, cross-entropy, "
                      "backward, clip_grad_norm_ 1.0, Adam step, bookkeeping)",
    }}

    prepared: dict[str, PreparedData] = {}
    prep_seconds: dict[str, float] = {}
    for name in datasets:
        common.log(f"preparing {name}")
        splits = load_splits(DatasetSpec(name=name))
        text_config = default_configs(name)[0]
        with common.Stopwatch() as sw:
            prepared[name] = prepare_data(splits, text_config)
        prep_seconds[name] = sw.seconds
        result.setdefault("text_configs", {})[name] = dataclasses.asdict(text_config)
    result["prepare_data_seconds"] = prep_seconds

    table = QUICK_WINDOW_BATCHES if args.quick else WINDOW_BATCHES
    labels = ["ours", "reference"]
    # The matmul rate is sampled once before the windows and once after every round of windows: the
    # machine's speed drifts over a run (shared host), and the efficiency's denominator must come from
    # the same stretch of time as its numerator (a few samples taken between configurations ranged
    # 153-185 GFLOP/s in one run).
    probe = efficiency.MatmulProbe(matmul_size)
    peaks = [probe.sample() for _ in range(PEAK_SAMPLES_AT_START)]
    runs: dict[tuple[str, str], dict[str, list]] = {}
    per_window: dict[str, int] = {}
    for name in datasets:
        data = prepared[name]
        steps_per_epoch = len(BatchLoader(data.train, BATCH_SIZE))
        # Stay inside the first epoch: the Trainer evaluates at its end.
        k = max(1, min(args.window_batches or table.get(name, 2), (steps_per_epoch - WARMUP_BATCHES - 1) // windows))
        per_window[name] = k
        for cell in cells:
            loops = {"ours": OurLoop(data, cell), "reference": ReferenceLoop(data, cell)}
            for loop in loops.values():
                loop.window(WARMUP_BATCHES)  # first steps: allocations, oneDNN primitives
            samples: dict[str, list] = {label: [] for label in labels}
            for w in range(windows):
                # Rotate the order every window so no loop always runs first (or right after another).
                for label in labels[w % len(labels):] + labels[: w % len(labels)]:
                    samples[label].append(loops[label].window(k))
                peaks.append(probe.sample())
            for loop in loops.values():
                loop.close()
            runs[(name, cell)] = samples
            common.log(f"{name} {cell}: {windows} windows of {k} batches; seconds per window (median) " + ", ".join(
                f"{label} {common.median([x['seconds'] for x in samples[label]]):.2f}" for label in labels))
    peak = common.median(peaks)
    result["matmul_size"] = matmul_size
    result["matmul_flops_per_second"] = common.spread(peaks)
    result["configs"] = [
        summarize_config(name, cell, prepared[name], per_window[name], runs[(name, cell)], peak)
        for name in datasets for cell in cells
    ]
    common.write_result(args.out, result)
    for row in result["configs"]:
        line = (f"{row['dataset']:16s} {row['cell']:4s} epoch ours {row['ours']['epoch_seconds']['median']:6.2f}s "
                f"ref {row['reference']['epoch_seconds']['median']:6.2f}s  ours/ref per example "
                f"{row['ours']['ratio_per_example']['median']:.2f} per token {row['ours']['ratio_per_token']['median']:.2f}"
                f"  ours {row['ours']['tokens_per_second']['median']:.0f} tok/s, efficiency "
                f"{row['ours']['efficiency']['median']:.2f}")
        print(line)


if __name__ == "__main__":
    main()
