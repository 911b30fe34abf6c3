"""Where the time goes: profiles of one rotten_tomatoes GRU training epoch and of ``predict_proba``.

Three kinds of evidence, all in one result file:

1. py-spy (when installed; ``pip install py-spy``, not a project requirement) samples a child
   process running the real code; samples are attributed to phases of a training step
   (batching, forward, loss, backward, clip, optimizer …) or of a prediction
   (tokenize, look-up, tensors, batching, model …).
2. ``torch.profiler`` op tables (top operators by self CPU time) of the same workloads.
3. What-if measurements behind the proposed core changes, interleaved and repeated:
   Adam's default (for-loop) step against ``fused=True``; a training step with and
   without flushing denormals to zero (on a synthetic 64×300 batch, and, without ``--quick``,
   the real Trainer on imdb); the share of ``prepare_data`` spent tokenizing. (The Trainer now
   uses fused Adam and flushes denormals; these measure what those changes are worth.)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import common

TRAIN_PHASES = [  # (label, a frame name that marks it), first match wins
    ("batching (BatchLoader/collate)", "BatchLoader.__iter__"),
    ("forward", "RecurrentClassifier.forward"),
    ("loss", "CrossEntropyLoss.forward"),
    ("backward", "Tensor.backward"),
    ("clip_grad_norm_", "clip_grad_norm_"),
    ("optimizer.zero_grad", "zero_grad"),
    ("optimizer.step (Adam)", "Adam.step"),
    ("optimizer.step (Adam)", "profile_hook_step"),
    ("best-weights copy", "deepcopy"),
]
PREDICT_PHASES = [
    ("tokenize (regex)", "Tokenizer.__call__"),
    ("vocab look-up", "Vocab.encode"),
    ("encode_texts (tensors)", "encode_texts"),
    ("bucketed_batches", "bucketed_batches"),
    ("collate (pad)", "collate"),
    ("model forward", "RecurrentClassifier.forward"),
]


# ---------------------------------------------------------------------------------------------
# Child workloads (run under py-spy or torch.profiler)
# ---------------------------------------------------------------------------------------------


def _train_epoch_workload(max_steps: int | None) -> Any:
    """Returns a function running one rotten_tomatoes GRU epoch (benchmark sizes, or its first
    ``max_steps`` steps) through Trainer.iter_steps."""
    import torch  # noqa: F401

    from rnn_demo.batching import BatchLoader
    from rnn_demo.data import DatasetSpec, load_splits
    from rnn_demo.experiment import default_configs, prepare_data
    from rnn_demo.model import RecurrentClassifier
    from rnn_demo.train import Trainer, TrainConfig
    from training import BATCH_SIZE, CLIP, LR, our_model_config

    data = prepare_data(load_splits(DatasetSpec(name="rotten_tomatoes")), default_configs("rotten_tomatoes")[0])

    def run() -> int:
        model = RecurrentClassifier(our_model_config("gru", data))
        loader = BatchLoader(data.train, BATCH_SIZE, shuffle=True)
        config = TrainConfig(lr=LR, batch_size=BATCH_SIZE, epochs=1, clip=CLIP, device="cpu")
        trainer = Trainer(model, loader, BatchLoader(data.validation, 256), config)
        steps = trainer.iter_steps()
        n = min(len(loader), max_steps or len(loader))
        for _ in range(n):  # one epoch of steps, stopping before the evaluation
            next(steps)
        steps.close()
        return n

    run()  # warm-up (also warms caches for the profiled run)
    return run


def _predict_workload(calls: int) -> Any:
    """Returns a function making ``calls`` single-sentence predict_proba calls with the shipped GRU."""
    from rnn_demo.checkpoints import shipped_runs_dir
    from rnn_demo.data import DatasetSpec, load_splits
    from rnn_demo.predict import Predictor

    predictor = Predictor.load(shipped_runs_dir() / "rotten_tomatoes-gru")
    texts = load_splits(DatasetSpec(name="rotten_tomatoes")).test.texts

    def run() -> int:
        for i in range(calls):
            predictor.predict_proba([texts[i % len(texts)]])
        return calls

    run_warm = min(50, calls)
    for i in range(run_warm):
        predictor.predict_proba([texts[i]])
    return run


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=["train", "predict"], required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: one epoch)")
    parser.add_argument("--torch-profiler", type=Path, default=None, help="write the op table JSON here")
    args = parser.parse_args(argv)
    common.setup_torch(args.threads)
    workload = _train_epoch_workload(args.steps) if args.child == "train" else _predict_workload(args.calls)
    if args.torch_profiler is None:
        start = time.perf_counter()
        units = workload()
        print(json.dumps({"seconds": time.perf_counter() - start, "units": units}))
        return
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        units = workload()
        seconds = time.perf_counter() - start
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    table = [
        {"op": e.key, "self_ms": e.self_cpu_time_total / 1e3, "total_ms": e.cpu_time_total / 1e3, "calls": e.count,
         "self_share": e.self_cpu_time_total / total}
        for e in events[:20]
    ]
    args.torch_profiler.write_text(json.dumps({"seconds": seconds, "units": units, "ops": table}, indent=1))


# ---------------------------------------------------------------------------------------------
# Parent: run the children, attribute samples
# ---------------------------------------------------------------------------------------------


def attribute_samples(raw: str, root: str, phases: list[tuple[str, str]]) -> dict[str, Any]:
    """Splits py-spy's collapsed stacks under ``root`` into phases (shares of samples)."""
    by_phase: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        roots = [i for i, f in enumerate(frames) if f.startswith(root + " ")]
        if not roots:
            continue
        below = frames[roots[-1] + 1:]
        n = int(count)
        total += n
        label = next((lab for lab, mark in phases if any(mark in f for f in below)), f"{root} itself / other")
        by_phase[label] += n
        leaves[frames[-1]] += n
    return {
        "samples": total,
        "phases": {k: v / total for k, v in by_phase.most_common()} if total else {},
        "top_leaf_frames": [{"frame": k, "share": v / total} for k, v in leaves.most_common(8)] if total else [],
    }


def run_child(mode: str, threads: int, extra: list[str], pyspy: str | None, rate: int,
              profiler_extra: list[str] | None = None) -> dict[str, Any]:
    """Runs one child workload, under py-spy when available, then once more under torch.profiler
    (with ``profiler_extra`` arguments instead of ``extra``: recording every op is slow)."""
    script = str(Path(__file__).resolve())
    base = [sys.executable, script, "--child", mode, "--threads", str(threads), *extra]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if pyspy:
            raw_path = Path(tmp) / "stacks.txt"
            proc = subprocess.run([pyspy, "record", "--nonblocking", "-r", str(rate), "-f", "raw", "-o", str(raw_path),
                                   "--", *base], capture_output=True, text=True, cwd=common.ROOT)
            if proc.returncode == 0 and raw_path.exists():
                root = "Trainer.iter_steps" if mode == "train" else "Predictor.predict_proba"
                out["py_spy"] = attribute_samples(raw_path.read_text(), root,
                                                  TRAIN_PHASES if mode == "train" else PREDICT_PHASES)
                timing = [line for line in proc.stdout.splitlines() if line.startswith("{")]
                out["timing"] = json.loads(timing[-1]) if timing else None
            else:
                out["py_spy_error"] = (proc.stderr or proc.stdout)[-800:]
        table_path = Path(tmp) / "ops.json"
        profiled = base if profiler_extra is None else [*base[: len(base) - len(extra)], *profiler_extra]
        proc = subprocess.run([*profiled, "--torch-profiler", str(table_path)], capture_output=True, text=True,
                              cwd=common.ROOT)
        if proc.returncode == 0 and table_path.exists():
            out["torch_profiler"] = json.loads(table_path.read_text())
        else:
            out["torch_profiler_error"] = proc.stderr[-800:]
    return out


# ---------------------------------------------------------------------------------------------
# What-if measurements (in this process, interleaved)
# ---------------------------------------------------------------------------------------------


def adam_step_ms(vocab_sizes: list[int], reps: int) -> list[dict[str, Any]]:
    """Milliseconds per Adam step on the benchmark GRU: torch's default CPU path vs fused=True."""
    import torch

    from rnn_demo.model import ModelConfig, RecurrentClassifier

    rows = []
    for vocab_size in vocab_sizes:
        model = RecurrentClassifier(ModelConfig(vocab_size=vocab_size, cell="gru", pooling="last"))
        for p in model.parameters():
            p.grad = torch.randn_like(p) * 1e-3
        optimizers = {"default": torch.optim.Adam(model.parameters(), lr=2e-3),
                      "fused": torch.optim.Adam(model.parameters(), lr=2e-3, fused=True)}
        times: dict[str, list[float]] = {k: [] for k in optimizers}
        for _ in range(reps):
            for name, opt in optimizers.items():
                opt.step()
                start = time.perf_counter()
                for _ in range(10):
                    opt.step()
                times[name].append((time.perf_counter() - start) / 10 * 1e3)
        rows.append({"vocab_size": vocab_size, "parameters": model.num_parameters(),
                     **{f"{k}_ms": common.spread(v) for k, v in times.items()},
                     "speedup": common.median(times["default"]) / common.median(times["fused"])})
    return rows


def denormal_step_ms(cells: list[str], seq_len: int, reps: int, steps: int) -> list[dict[str, Any]]:
    """A training step (forward, CE, backward, clip, Adam) on a (64, seq_len) batch, denormals kept vs flushed."""
    import torch
    from torch import nn

    from rnn_demo.model import ModelConfig, RecurrentClassifier

    rows = []
    for cell in cells:
        torch.manual_seed(0)
        model = RecurrentClassifier(ModelConfig(vocab_size=30000, cell=cell, pooling="last", dropout=0.3))
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        ids = torch.randint(2, 30000, (64, seq_len))
        lengths = torch.full((64,), seq_len)
        labels = torch.randint(0, 2, (64,))
        times: dict[bool, list[float]] = {False: [], True: []}
        for rep in range(reps):
            for flush in ((False, True) if rep % 2 == 0 else (True, False)):
                torch.set_flush_denormal(flush)
                start = time.perf_counter()
                for _ in range(steps):
                    loss = nn.functional.cross_entropy(model(ids, lengths), labels)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                times[flush].append((time.perf_counter() - start) / steps * 1e3)
        torch.set_flush_denormal(False)
        rows.append({"cell": cell, "seq_len": seq_len, "kept_ms": common.spread(times[False]),
                     "flushed_ms": common.spread(times[True]),
                     "speedup": common.median(times[False]) / common.median(times[True]),
                     "matmul_ms": _matmul_ms_per_step(model, opt, ids, lengths, labels)})
    return rows


def _matmul_ms_per_step(model: Any, opt: Any, ids: Any, lengths: Any, labels: Any) -> dict[str, float]:
    """Self time of ``aten::mm`` (the backward matmuls) in one profiled step, denormals kept vs flushed."""
    import torch
    from torch import nn
    from torch.profiler import ProfilerActivity, profile

    out = {}
    for flush in (False, True):
        torch.set_flush_denormal(flush)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            loss = nn.functional.cross_entropy(model(ids, lengths), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        out["flushed" if flush else "kept"] = sum(
            e.self_cpu_time_total for e in prof.key_averages() if e.key == "aten::mm") / 1e3
    torch.set_flush_denormal(False)
    return out


def tokenization_share(dataset: str) -> tuple[dict[str, Any], Any]:
    """prepare_data's wall time, and how much of it tokenizing every split once takes.

    Returns:
        The figures, and the prepared data (reused by ``denormals_in_training``).
    """
    from rnn_demo.data import DatasetSpec, load_splits
    from rnn_demo.experiment import default_configs, prepare_data
    from rnn_demo.text import Tokenizer

    splits = load_splits(DatasetSpec(name=dataset))
    text_config = default_configs(dataset)[0]
    with common.Stopwatch() as total:
        data = prepare_data(splits, text_config)
    tokenizer = Tokenizer.from_config(text_config)
    with common.Stopwatch() as tokenizing:
        for part in (splits.train, splits.validation, splits.test):
            for text in part.texts:
                tokenizer(text)
    figures = {"dataset": dataset, "prepare_data_seconds": total.seconds, "tokenize_seconds": tokenizing.seconds,
               "share": tokenizing.seconds / total.seconds}
    return figures, data


def denormals_in_training(data: Any, cells: list[str], windows: int, window_batches: int) -> list[dict[str, Any]]:
    """The real Trainer on imdb, denormals kept vs flushed: two loops with the same seed (same
    initial weights, same batches), advanced in alternating windows; ms per batch, medians."""
    from training import WARMUP_BATCHES, OurLoop

    rows = []
    for cell in cells:
        loops = {flush: OurLoop(data, cell, flush_denormal=flush) for flush in (False, True)}
        for loop in loops.values():
            loop.window(WARMUP_BATCHES)
        times: dict[bool, list[float]] = {False: [], True: []}
        for w in range(windows):
            for flush in ((False, True) if w % 2 == 0 else (True, False)):
                times[flush].append(loops[flush].window(window_batches)["seconds"] / window_batches * 1e3)
        for loop in loops.values():
            loop.close()
        rows.append({"cell": cell, "dataset": "imdb", "kept_ms": common.spread(times[False]),
                     "flushed_ms": common.spread(times[True]),
                     "speedup": common.spread([k / f for k, f in zip(times[False], times[True])])})
        common.log(f"imdb {cell}: denormals kept {rows[-1]['kept_ms']['median']:.0f} ms/batch, flushed "
                   f"{rows[-1]['flushed_ms']['median']:.0f} ms/batch")
    return rows


def main() -> None:
    if "--child" in sys.argv:
        child_main(sys.argv[1:])
        return
    parser = common.base_parser(__doc__.splitlines()[0], "profile.json")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    args = parser.parse_args()
    common.setup_torch(args.threads)
    pyspy = shutil.which("py-spy") or (shutil.which("py-spy", path=str(Path(sys.executable).parent)))
    result: dict[str, Any] = {"environment": common.environment(args.threads), "py_spy": pyspy or "not installed"}
    common.log("profiling one rotten_tomatoes GRU training epoch (30 steps with --quick)")
    result["train_epoch"] = run_child("train", args.threads, ["--steps", "30"] if args.quick else [], pyspy, args.rate)
    common.log("profiling single-sentence predict_proba")
    calls = 300 if args.quick else 2000
    result["predict_single"] = run_child("predict", args.threads, ["--calls", str(calls)], pyspy, args.rate,
                                         ["--calls", str(calls // 4)])
    reps = 3 if args.quick else 5
    common.log("what-if: Adam default vs fused")
    result["adam_step"] = adam_step_ms([10000, 30000], reps)
    common.log("what-if: denormals kept vs flushed")
    if args.quick:
        result["flush_denormal"] = denormal_step_ms(["gru"], 300, reps=2, steps=1)
    else:
        result["flush_denormal"] = denormal_step_ms(["rnn", "gru", "lstm"], 300, reps=4, steps=2)
    if not args.quick:
        common.log("prepare_data's tokenization share (imdb)")
        result["prepare_data"], imdb = tokenization_share("imdb")
        common.log("what-if: denormals kept vs flushed in the real Trainer on imdb")
        result["flush_denormal_imdb"] = denormals_in_training(imdb, ["rnn", "gru", "lstm"], windows=6,
                                                              window_batches=2)
    common.write_result(args.out, result)
    for name in ("train_epoch", "predict_single"):
        phases = result[name].get("py_spy", {}).get("phases", {})
        print(name + ": " + ", ".join(f"{k} {v:.0%}" for k, v in list(phases.items())[:6]))
    for row in result["adam_step"]:
        print(f"Adam step, vocab {row['vocab_size']}: default {row['default_ms']['median']:.1f} ms, "
              f"fused {row['fused_ms']['median']:.1f} ms")
    for row in result["flush_denormal"]:
        print(f"{row['cell']} step T={row['seq_len']}: denormals kept {row['kept_ms']['median']:.0f} ms, "
              f"flushed {row['flushed_ms']['median']:.0f} ms")
    for row in result.get("flush_denormal_imdb", []):
        print(f"{row['cell']} imdb Trainer: denormals kept {row['kept_ms']['median']:.0f} ms/batch, "
              f"flushed {row['flushed_ms']['median']:.0f} ms/batch")


if __name__ == "__main__":
    main()
