"""Latency of the explanation methods on one sentence (medians over repeated runs).

    python benchmarks/explain_latency.py [--run checkpoints/rotten_tomatoes-gru] [--repeats 7] [--out result.json]

Measures LIME (1,000 and 5,000 samples), occlusion, gradient × input, the
prediction trace, hidden states + gates and gradients through time, each with
torch's default thread count and with one thread (on a small shared machine one
thread is often much faster). Targets: LIME 1,000 ≤ 1 s, LIME 5,000 ≤ 2 s,
occlusion ≤ 100 ms, hidden states + gates ≤ 100 ms. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import common  # noqa: E402  (configure_process() (OpenMP) must run before torch loads)
import torch  # noqa: E402

from rnn_demo import explain  # noqa: E402
from rnn_demo.predict import Predictor  # noqa: E402

SENTENCE = (
    "the film is a charming , funny and surprisingly moving story about friendship , "
    "although the second half drags a little too long for me"
)  # 25 tokens
TARGETS = {"lime_1000": 1.0, "lime_5000": 2.0, "occlusion": 0.1, "states_and_gates": 0.1}


def _load_or_train(run: Path) -> tuple[Predictor, str]:
    if (run / "model.safetensors").is_file():
        return Predictor.load(run), str(run)
    from rnn_demo.data import DatasetSpec
    from rnn_demo.experiment import run_experiment
    from rnn_demo.model import ModelConfig
    from rnn_demo.text import TextConfig
    from rnn_demo.train import TrainConfig

    print(f"{run} not found: training a small rotten_tomatoes GRU instead …", file=sys.stderr)
    out = Path(tempfile.mkdtemp()) / "rotten_tomatoes-gru-small"
    summary = run_experiment(
        DatasetSpec(name="rotten_tomatoes"),
        TextConfig(max_vocab=10000),
        ModelConfig(cell="gru", embedding_dim=100, hidden_size=128, pooling="max", dropout=0.5),
        TrainConfig(epochs=2, device="cpu"),
        out_dir=out,
    )
    return Predictor.load(summary.run_dir), f"{summary.run_dir} (trained for this benchmark)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=str(ROOT / "checkpoints" / "rotten_tomatoes-gru"), help="run directory")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions per measurement (default 7)")
    parser.add_argument("--out", help="write the results as JSON to this path")
    args = parser.parse_args(argv)

    predictor, run_name = _load_or_train(Path(args.run))
    tokens = predictor.tokenize(SENTENCE)
    default_threads = torch.get_num_threads()
    cases: dict[str, Callable[[], object]] = {
        "lime_1000": lambda: explain.explain_lime(predictor, SENTENCE, num_samples=1000),
        "lime_5000": lambda: explain.explain_lime(predictor, SENTENCE, num_samples=5000),
        "occlusion": lambda: explain.explain_occlusion(predictor, SENTENCE),
        "gradient_x_input": lambda: explain.explain_gradient(predictor, SENTENCE),
        "prediction_trace": lambda: explain.prediction_trace(predictor, SENTENCE),
        "states_and_gates": lambda: explain.internal_states(predictor, SENTENCE),
        "gradient_through_time": lambda: explain.gradient_through_time(predictor, SENTENCE),
    }
    results: dict[str, dict[str, float]] = {}
    for label, threads in ((f"{default_threads} threads (default)", None), ("1 thread", 1)):
        with explain.torch_threads(threads):
            results[label] = {name: common.median_seconds(fn, args.repeats) for name, fn in cases.items()}

    print(f"run: {run_name}")
    print(f"sentence: {len(tokens)} tokens; medians of {args.repeats} runs; load average {os.getloadavg()[0]:.1f}")
    labels = list(results)
    print(f"{'':<24}" + "".join(f"{label:>24}" for label in labels) + f"{'target':>10}")
    for name in cases:
        row = "".join(f"{results[label][name] * 1000:>21.1f} ms" for label in labels)
        target = f"{TARGETS[name]:>8.1f} s" if name in TARGETS else ""
        print(f"{name:<24}{row}{target}")
    best = {name: min(results[label][name] for label in labels) for name in cases}
    met = {name: best[name] <= limit for name, limit in TARGETS.items()}
    print("targets met (best setting): " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in met.items()))
    if args.out:
        data = {
            "run": run_name,
            "tokens": len(tokens),
            "repeats": args.repeats,
            "median_seconds": results,
            "targets_seconds": TARGETS,
            "targets_met": met,
            "load_average": os.getloadavg()[0],
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        }
        Path(args.out).write_text(json.dumps(data, indent=2), encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
