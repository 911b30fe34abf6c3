"""Worst inputs: peak RSS and seconds of every path that reads user input, fed the worst of its kind.

Each case runs in a fresh process, waited for with ``os.wait4`` so that its own
``ru_maxrss`` is read (not the high-water mark of every child so far). The kernel starts that
figure at this process's own peak (it survives fork + exec), which stays small because this
process never imports torch:

- ``python -m rnn_demo explain`` (occlusion, LIME, gradient x input) and ``predict`` on a
  100,000-character text, with the shipped Rotten Tomatoes GRU (it has no length cap of its own,
  the worst case);
- ``Predictor.predict`` on a 1,000,000-character text (too long for one command-line argument);
- ``load_csv`` of a 50 MB CSV of 2.4 million short rows (the app accepts uploads up to 200 MB);
  the figure that matters is its peak (VmHWM) over the same process's resident size after imports,
  as a multiple of the file;
- ``python -m rnn_demo train`` with ``--hidden-size 1000000000`` and ``predict`` on a run whose
  ``config.json`` says the same: both must end in a one-line error, not an allocation.

Run: ``python benchmarks/worst_inputs.py [--quick] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common

RUN = common.ROOT / "checkpoints" / "rotten_tomatoes-gru"
WORDS = ("the film was not good but the actors were wonderful and the story moved me although it dragged "
         "in the middle and i never cared for the ending").split()


def words(n_chars: int, seed: int = 0) -> str:
    """About ``n_chars`` characters of space-separated words."""
    rng = random.Random(seed)
    parts, size = [], 0
    while size < n_chars:
        word = rng.choice(WORDS)
        parts.append(word)
        size += len(word) + 1
    return " ".join(parts)[:n_chars]


def measure(command: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs ``command``; returns its exit code, seconds, own peak RSS (MB) and stderr's last line."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=common.ROOT, env=env)
    # wait4 gives this child's own rusage; communicate() would reap it first, so read the pipes
    # after the process ended (outputs here are small: a JSON line or an error line).
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    stdout, stderr = proc.stdout.read().decode(errors="replace"), proc.stderr.read().decode(errors="replace")
    proc.stdout.close()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    last = [line for line in stderr.strip().splitlines() if line.strip()]
    return {
        "exit": proc.returncode,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "stderr_last_line": last[-1][:300] if last else "",
        "traceback": "Traceback" in stderr,
        "stdout_tail": stdout.strip()[-300:],
    }


def python_case(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def csv_file(folder: Path, target_bytes: int) -> Path:
    """A CSV of short rows (``id,text,label``, ~21 bytes each) of about ``target_bytes``."""
    rng = random.Random(0)
    path = folder / "rows.csv"
    rows = ["id,text,label"]
    size = 0
    while size < target_bytes:
        row = f"{len(rows)},{rng.choice(WORDS)} {rng.choice(WORDS)},{rng.randint(0, 1)}"
        rows.append(row)
        size += len(row) + 1
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 5 MB CSV instead of 50 MB")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the CLI commands (default 1)")
    parser.add_argument("--out", type=Path, default=common.OUT_DIR / "worst_inputs.json")
    args = parser.parse_args()

    cli = [sys.executable, "-m", "rnn_demo"]
    threads = ["--threads", str(args.threads)]
    text_100k = words(100_000)
    cases: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for method in ("occlusion", "lime", "grad"):
            common.log(f"explain --method {method}, 100k characters")
            cases[f"explain {method}, 100k chars"] = measure(
                [*cli, "explain", str(RUN), text_100k, "--method", method, "--json", *threads])
        common.log("predict, 100k characters")
        cases["predict, 100k chars"] = measure([*cli, "predict", str(RUN), text_100k, "--json", *threads])
        common.log("Predictor.predict, 1M characters")
        cases["Predictor.predict, 1M chars"] = measure(python_case(
            "import sys, rnn_demo; from rnn_demo.predict import Predictor; "
            f"p = Predictor.load({str(RUN)!r}).predict(('good movie ' * 100_000)); "
            "print(p.num_tokens, p.truncated)"))

        size = 5 * 1024 * 1024 if args.quick else 50 * 1024 * 1024
        path = csv_file(folder, size)
        common.log(f"load_csv of {path.stat().st_size / 1e6:.0f} MB of short rows")
        # Growth = the peak after loading (VmHWM) over the resident size after imports (VmRSS): an
        # import's passing peak can only make it look larger, never hide what the loading took.
        status = "lambda key: int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1]) // 1024"
        case = measure(python_case(
            f"import rnn_demo.data as d; kb = {status}; base = kb('VmRSS'); "
            f"t = d.load_csv({str(path)!r}, ['text'], 'label'); print(len(t), base, kb('VmHWM'))"))
        parts = case["stdout_tail"].split()
        if case["exit"] == 0 and len(parts) >= 3:
            base_mb, peak_mb = float(parts[-2]), float(parts[-1])
            case["rows"] = int(parts[-3])
            case["rss_after_imports_mb"] = base_mb
            case["growth_over_file"] = round((peak_mb - base_mb) / (path.stat().st_size / 2**20), 1)
        case["file_mb"] = round(path.stat().st_size / 2**20, 1)
        cases["load_csv, short rows"] = case

        common.log("train --hidden-size 1000000000")
        cases["train --hidden-size 1e9"] = measure(
            [*cli, "train", "--dataset", "negation", "--hidden-size", "1000000000", "--epochs", "1", "--out",
             str(folder / "huge"), *threads])
        damaged = folder / "huge-config"
        shutil.copytree(RUN, damaged)
        config = json.loads((damaged / "config.json").read_text())
        config["model"]["hidden_size"] = 10**9
        (damaged / "config.json").write_text(json.dumps(config))
        common.log("predict with hidden_size 10^9 in config.json")
        cases["predict, config.json hidden_size 1e9"] = measure([*cli, "predict", str(damaged), "good", *threads])

    for name, case in cases.items():
        print(f"{name:<40} exit {case['exit']:>3}  {case['seconds']:>6.2f} s  peak {case['peak_rss_mb']:>7.1f} MB"
              + (f"  growth {case['growth_over_file']}x the file" if "growth_over_file" in case else "")
              + (f"  {case['stderr_last_line'][:90]}" if case["exit"] else ""))
    common.write_result(args.out, {"cases": cases, "environment": {"load_average_at_start": common.load_average()}})


if __name__ == "__main__":
    main()
