"""Threads and OpenMP waiting: how one training step and one prediction react, in fresh processes.

The machine is shared (2 cores, other test runs): torch's OpenMP threads spin while they
wait for work by default (libgomp), and a spinning thread that is descheduled stalls the
whole parallel region. Each variant runs in its own process (the policy is read when
libgomp starts), variants interleaved round by round:

- 1 thread;
- ``--threads`` threads, ``OMP_WAIT_POLICY`` unset (libgomp's default: spin, then sleep);
- ``--threads`` threads, ``OMP_WAIT_POLICY=PASSIVE`` (sleep at once).

Workloads: ms per step of the real Trainer on rotten_tomatoes (GRU, benchmark sizes), and
single-sentence ``predict_proba`` p50/p95 with the shipped rotten_tomatoes GRU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common


def child(threads: int, steps: int, windows: int, calls: int) -> dict[str, Any]:
    common.setup_torch(threads)
    from rnn_demo.batching import BatchLoader
    from rnn_demo.checkpoints import shipped_runs_dir
    from rnn_demo.data import DatasetSpec, load_splits
    from rnn_demo.experiment import default_configs, prepare_data
    from rnn_demo.model import RecurrentClassifier
    from rnn_demo.predict import Predictor
    from rnn_demo.train import Trainer, TrainConfig
    from training import BATCH_SIZE, CLIP, LR, our_model_config

    splits = load_splits(DatasetSpec(name="rotten_tomatoes"))
    data = prepare_data(splits, default_configs("rotten_tomatoes")[0])
    trainer = Trainer(RecurrentClassifier(our_model_config("gru", data)), BatchLoader(data.train, BATCH_SIZE, shuffle=True),
                      BatchLoader(data.validation, 256), TrainConfig(lr=LR, clip=CLIP, epochs=100, device="cpu"))
    step_iter = trainer.iter_steps()
    next(step_iter)  # warm-up
    step_ms = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(steps):
            next(step_iter)
        step_ms.append((time.perf_counter() - start) / steps * 1e3)
    step_iter.close()

    predictor = Predictor.load(shipped_runs_dir() / "rotten_tomatoes-gru")
    texts = splits.test.texts
    for text in texts[:20]:
        predictor.predict_proba([text])
    latencies = []
    for i in range(calls):
        start = time.perf_counter()
        predictor.predict_proba([texts[i % len(texts)]])
        latencies.append((time.perf_counter() - start) * 1e3)
    return {"train_step_ms": common.median(step_ms), "predict_p50_ms": common.percentile(latencies, 50),
            "predict_p95_ms": common.percentile(latencies, 95)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        threads, steps, windows, calls = (int(x) for x in sys.argv[2:6])
        print(json.dumps(child(threads, steps, windows, calls)))
        return
    parser = common.base_parser(__doc__.splitlines()[0], "threads_probe.json")
    parser.add_argument("--rounds", type=int, default=None, help="rounds over the variants (default 2, quick 1)")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 2)
    steps, windows, calls = (8, 2, 100) if args.quick else (15, 3, 200)
    base_env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    variants = {
        "1 thread": (1, base_env),
        f"{args.threads} threads, OMP_WAIT_POLICY unset (spin)": (args.threads, base_env),
        f"{args.threads} threads, OMP_WAIT_POLICY=PASSIVE": (args.threads, {**base_env, "OMP_WAIT_POLICY": "PASSIVE"}),
    }
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    load = [common.load_average()]
    for rnd in range(rounds):
        names = list(variants) if rnd % 2 == 0 else list(variants)[::-1]
        for name in names:
            threads, env = variants[name]
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--child", str(threads), str(steps), str(windows),
                 str(calls)], capture_output=True, text=True, env=env, cwd=common.ROOT, timeout=600,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"{name} failed:\n{proc.stderr[-1500:]}")
            samples[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            common.log(f"round {rnd + 1}/{rounds} {name}: {samples[name][-1]}")
        load.append(common.load_average())
    result = {
        "environment": {k: v for k, v in common.environment(args.threads).items() if k != "omp_wait_policy"},
        "load_average_per_round": load,
        "steps_per_window": steps,
        "calls": calls,
        "variants": {name: {key: common.spread([s[key] for s in runs]) for key in runs[0]}
                     for name, runs in samples.items()},
    }
    common.write_result(args.out, result)
    for name, figures in result["variants"].items():
        print(f"{name:45s} train step {figures['train_step_ms']['median']:7.1f} ms   predict p50 "
              f"{figures['predict_p50_ms']['median']:6.2f} ms p95 {figures['predict_p95_ms']['median']:6.2f} ms")


if __name__ == "__main__":
    main()
