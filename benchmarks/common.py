"""Shared helpers of the benchmark scripts: command-line flags, threads, statistics, result files.

Every benchmark script is runnable on its own (``python benchmarks/training.py --quick``)
and writes one JSON result; ``run_all.py`` runs them one after another and writes the report.
A benchmark that drives the app starts it with ``browser_support.streamlit_server`` (importable
once this module is: a free port, the health check, the server's process group stopped on exit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = ROOT / "benchmarks" / "out"
# The scripts run as `python benchmarks/x.py`, not as a package: rnn_demo, and tests/browser_support.py
# (`streamlit_server`, the one launcher of the app for benchmarks and tests), importable from here on.
for folder in (ROOT / "tests", ROOT):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

# The process-wide settings of a process that trains, as `python -m rnn_demo` and the job workers
# apply them (OMP_WAIT_POLICY, freed memory kept for reuse), applied here, ahead of torch, so that
# every benchmark runs under them.
from rnn_demo.runtime import configure_process  # noqa: E402

configure_process(training=True)


def base_parser(description: str, default_out: str) -> argparse.ArgumentParser:
    """The flags every benchmark shares: ``--threads``, ``--quick``, ``--out``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: fewer repetitions and batches")
    parser.add_argument(
        "--out", type=Path, default=OUT_DIR / default_out, help=f"JSON result file (default benchmarks/out/{default_out})"
    )
    return parser


def setup_torch(threads: int) -> None:
    """Fixes the thread count before any work (the inter-op pool is left alone: it is not used here)."""
    import torch

    torch.set_num_threads(threads)


def load_average() -> list[float]:
    """1/5/15-minute load averages: the machine is shared, so every result records how busy it was."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment(threads: int) -> dict[str, Any]:
    """What a result was measured on."""
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": threads,
        "torch_num_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset (libgomp default: spin, then sleep)"),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": load_average(),
    }


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()  # warm-up (imports, allocator, autograd, MKL set-up)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return median(times)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo))


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median with min/max, so a reader sees how noisy a figure was."""
    return {"median": median(values), "min": float(min(values)), "max": float(max(values)), "n": len(values)}


def write_result(path: Path, data: dict[str, Any]) -> None:
    data.setdefault("environment", {})["load_average_at_end"] = load_average()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, allow_nan=True), encoding="utf-8")


class Stopwatch:
    """``with Stopwatch() as sw: ...`` then ``sw.seconds``."""

    def __enter__(self) -> Stopwatch:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def log(message: str) -> None:
    """Progress goes to stderr so stdout stays for the final summary."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
