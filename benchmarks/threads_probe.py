"""Threads and OpenMP waiting: how training steps and one prediction react, in fresh processes.

The machine is shared (2 cores, other test runs). libgomp's default is to spin for a while
when a thread waits for work, and a spinning thread that is descheduled stalls the whole
parallel region; the app, the CLI and the benchmarks set ``OMP_WAIT_POLICY=PASSIVE`` (sleep at
once) at start-up (``rnn_demo.runtime.configure_process``). The policy is read when torch loads libgomp, so each variant is a fresh process that
imports torch first, with exactly the environment given; variants are interleaved round by round:

- 1 thread;
- ``--threads`` threads, ``OMP_WAIT_POLICY`` unset (libgomp's default);
- ``--threads`` threads, ``OMP_WAIT_POLICY=PASSIVE`` (rnn_demo's default).

Workloads: ms per step of the real Trainer on rotten_tomatoes (GRU, benchmark sizes) and,
without ``--quick``, on imdb (LSTM, benchmark sizes); single-sentence ``predict_proba``
p50/p95 with the shipped rotten_tomatoes GRU.
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

# Loads torch (and so libgomp) before anything else in the child, then runs this script:
# rnn_demo's own OMP_WAIT_POLICY default must not apply to the "unset" variant.
PRELOAD_TORCH = ("import os, sys, runpy, torch; sys.argv = sys.argv[1:]; "
                 "sys.path.insert(0, os.path.dirname(sys.argv[0])); runpy.run_path(sys.argv[0], run_name='__main__')")


def _trainer_ms_per_step(dataset: str, cell: str, steps: int, windows: int) -> float:
    from rnn_demo.data import DatasetSpec, load_splits
    from rnn_demo.experiment import default_configs, prepare_data
    from training import WARMUP_BATCHES, OurLoop

    data = prepare_data(load_splits(DatasetSpec(name=dataset)), default_configs(dataset)[0])
    loop = OurLoop(data, cell)
    loop.window(WARMUP_BATCHES)
    ms = [loop.window(steps)["seconds"] / steps * 1e3 for _ in range(windows)]
    loop.close()
    return common.median(ms)


def child(threads: int, steps: int, windows: int, calls: int, imdb_steps: int) -> dict[str, Any]:
    common.setup_torch(threads)
    from rnn_demo.checkpoints import shipped_runs_dir
    from rnn_demo.data import DatasetSpec, load_splits
    from rnn_demo.predict import Predictor

    out: dict[str, Any] = {"rotten_tomatoes_gru_step_ms": _trainer_ms_per_step("rotten_tomatoes", "gru", steps, windows)}
    if imdb_steps:
        out["imdb_lstm_step_ms"] = _trainer_ms_per_step("imdb", "lstm", imdb_steps, windows)
    predictor = Predictor.load(shipped_runs_dir() / "rotten_tomatoes-gru")
    texts = load_splits(DatasetSpec(name="rotten_tomatoes")).test.texts
    for text in texts[:20]:
        predictor.predict_proba([text])
    latencies = []
    for i in range(calls):
        start = time.perf_counter()
        predictor.predict_proba([texts[i % len(texts)]])
        latencies.append((time.perf_counter() - start) * 1e3)
    out["predict_p50_ms"] = common.percentile(latencies, 50)
    out["predict_p95_ms"] = common.percentile(latencies, 95)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        threads, steps, windows, calls, imdb_steps = (int(x) for x in sys.argv[2:7])
        print(json.dumps(child(threads, steps, windows, calls, imdb_steps)))
        return
    parser = common.base_parser(__doc__.splitlines()[0], "threads_probe.json")
    parser.add_argument("--rounds", type=int, default=None, help="rounds over the variants (default 2, quick 1)")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 2)
    steps, windows, calls, imdb_steps = (8, 2, 100, 0) if args.quick else (15, 3, 200, 2)
    base_env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    variants = {
        "1 thread": (1, base_env),
        f"{args.threads} threads, OMP_WAIT_POLICY unset (libgomp default: spin)": (args.threads, base_env),
        f"{args.threads} threads, OMP_WAIT_POLICY=PASSIVE (rnn_demo's default)":
            (args.threads, {**base_env, "OMP_WAIT_POLICY": "PASSIVE"}),
    }
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    load = [common.load_average()]
    for rnd in range(rounds):
        names = list(variants) if rnd % 2 == 0 else list(variants)[::-1]
        for name in names:
            threads, env = variants[name]
            proc = subprocess.run(
                [sys.executable, "-c", PRELOAD_TORCH, str(Path(__file__).resolve()), "--child", str(threads),
                 str(steps), str(windows), str(calls), str(imdb_steps)],
                capture_output=True, text=True, env=env, cwd=common.ROOT, timeout=900,
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
        "imdb_steps_per_window": imdb_steps,
        "calls": calls,
        "variants": {name: {key: common.spread([s[key] for s in runs]) for key in runs[0]}
                     for name, runs in samples.items()},
    }
    common.write_result(args.out, result)
    for name, figures in result["variants"].items():
        print(f"{name:62s} " + ", ".join(f"{k} {v['median']:.2f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
