"""Memory: peak RSS of training the imdb LSTM, and of the app with the shipped runs loaded.

1. Training: a fresh subprocess loads imdb, runs ``prepare_data`` with ``default_configs("imdb")``
   and trains the default imdb LSTM for ``--steps`` steps with the real ``Trainer``;
   ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is read after every stage.
2. The app server: ``streamlit run app.py --server.headless true`` on a free port with
   ``RNN_DEMO_RUNS`` pointing at an empty directory (so only the shipped runs exist), waited
   for on ``/_stcore/health``; then, when playwright and Chromium are available, headless
   Chromium opens the Predict page, selects every shipped run in turn and predicts a sentence
   with it. The server process's VmRSS/VmHWM (from /proc) are read at each stage.
3. The same without a server: a subprocess that imports streamlit and ``rnn_demo.ui`` and
   loads every shipped run's ``Predictor`` (one prediction each); its ``ru_maxrss``.

Each figure is the median over ``--reps`` fresh processes (the server over ``--server-reps``).
This script's own process imports no torch before its children run: on Linux a child's
``ru_maxrss`` starts at its parent's peak (the high-water mark survives fork + exec).
"""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import common
from browser_support import RunningApp, launch_chromium, missing_browser_parts, running_app

SENTENCE = "the movie was not good at all"


def peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_status_mb(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of another process."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


# ---------------------------------------------------------------------------------------------
# Children
# ---------------------------------------------------------------------------------------------


def child_train_imdb(steps: int, threads: int) -> dict[str, Any]:
    stages = {"python": peak_rss_mb()}
    import torch

    torch.set_num_threads(threads)
    from rnn_demo.batching import BatchLoader
    from rnn_demo.data import DatasetSpec, load_splits
    from rnn_demo.experiment import default_configs, prepare_data
    from rnn_demo.model import RecurrentClassifier
    from rnn_demo.train import Trainer, seed_everything

    stages["imports"] = peak_rss_mb()
    splits = load_splits(DatasetSpec(name="imdb"))
    stages["load_splits"] = peak_rss_mb()
    text_config, model_config, train_config = default_configs("imdb")
    data = prepare_data(splits, text_config)
    stages["prepare_data"] = peak_rss_mb()
    model_config = dataclasses.replace(model_config, vocab_size=len(data.vocab), num_classes=len(splits.label_names))
    seed_everything(train_config.seed)
    model = RecurrentClassifier(model_config)
    loader = BatchLoader(data.train, train_config.batch_size, shuffle=True)
    trainer = Trainer(model, loader, BatchLoader(data.validation, 256), train_config)
    stages["model_and_trainer"] = peak_rss_mb()
    # Activations grow with the longest batch; note how long the batches trained on were.
    widths = [batch.ids.shape[1] for _, batch in zip(range(steps), loader)]
    loader.epoch = 0  # the Trainer reseeds and replays the same order
    step_iter = trainer.iter_steps()
    for _ in range(steps):
        next(step_iter)
    step_iter.close()
    stages[f"after_{steps}_steps"] = peak_rss_mb()
    return {"stages_peak_mb": stages, "steps": steps, "model": model_config.to_dict(),
            "longest_batch_tokens": max(widths), "longest_text_tokens": int(data.train.lengths.max()),
            "num_parameters": model.num_parameters()}


def child_app_predictors(threads: int) -> dict[str, Any]:
    stages = {"python": peak_rss_mb()}
    import streamlit  # noqa: F401
    import torch

    torch.set_num_threads(threads)
    from rnn_demo.checkpoints import list_runs
    from rnn_demo.predict import Predictor
    from rnn_demo.ui import state, widgets  # noqa: F401  (what app.py imports)

    stages["imports (streamlit, rnn_demo.ui)"] = peak_rss_mb()
    runs = [info for info in list_runs(include_shipped=True) if info.shipped]
    predictors = []
    for info in runs:
        predictors.append(Predictor.load(info.path))
        predictors[-1].predict(SENTENCE)
        stages[f"+ {info.name}"] = peak_rss_mb()
    return {"stages_peak_mb": stages, "runs": [info.name for info in runs]}


# ---------------------------------------------------------------------------------------------
# The app server
# ---------------------------------------------------------------------------------------------


def measure_server(timeout: float = 90) -> dict[str, Any]:
    """Starts the app, drives the Predict page through every shipped run, samples the server's memory."""
    from rnn_demo.checkpoints import list_runs
    from rnn_demo.predict import Predictor

    runs = [info for info in list_runs(include_shipped=True) if info.shipped]
    with tempfile.TemporaryDirectory() as empty_runs:
        env = {"RNN_DEMO_RUNS": empty_runs, "RNN_DEMO_MAX_JOBS": "1"}
        with running_app(env, Path(empty_runs) / "server.log", start_timeout=timeout) as app:
            return _drive_server(app, runs, Predictor)


def _drive_server(app: RunningApp, runs: list, predictor_cls: Any) -> dict[str, Any]:
    stages: dict[str, dict[str, float]] = {"healthy (no session yet)": proc_status_mb(app.process.pid)}
    out: dict[str, Any] = {"runs": [info.name for info in runs], "startup_seconds": app.startup_seconds,
                           "stages_mb": stages}
    missing = missing_browser_parts()
    if missing:
        out["driven"] = f"not driven: needs {' and '.join(missing)}; only the idle server was measured"
        return out
    from playwright.sync_api import expect, sync_playwright

    expected = {info.name: predictor_cls.load(info.path).predict(SENTENCE).label for info in runs}
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600})
            page.goto(f"{app.url}/predict")
            expect(page.get_by_text("Current dataset")).to_be_visible(timeout=60_000)
            box = page.get_by_role("textbox", name="Text")
            box.fill(SENTENCE)
            box.press("Control+Enter")
            for info in runs:
                picker = page.get_by_test_id("stSelectbox").filter(has_text="Model").first
                picker.click()
                page.get_by_role("option", name=info.title()).click()
                expect(page.get_by_test_id("stMetricValue").first).to_have_text(expected[info.name], timeout=60_000)
                expect(page.get_by_text("Predicted label")).to_be_visible(timeout=60_000)
                page.wait_for_timeout(1500)  # let the rerun and the chart finish
                stages[f"+ Predict page with {info.name}"] = proc_status_mb(app.process.pid)
        finally:
            browser.close()
    out["driven"] = "headless Chromium (playwright) selected every shipped run on the Predict page and predicted a sentence"
    log = app.log_path.read_text()
    if "Traceback" in log:
        out["server_log_tail"] = log[-1500:]
    return out


# ---------------------------------------------------------------------------------------------
# Parent
# ---------------------------------------------------------------------------------------------


def run_child(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args], capture_output=True, text=True,
                          cwd=common.ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child {args} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median_stages(samples: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    return {key: common.spread([s[key] for s in samples if key in s]) for key in samples[0]}


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, threads = sys.argv[2], int(sys.argv[3])
        data = child_train_imdb(int(sys.argv[4]), threads) if kind == "train" else child_app_predictors(threads)
        print(json.dumps(data))
        return
    parser = common.base_parser(__doc__.splitlines()[0], "memory.json")
    parser.add_argument("--steps", type=int, default=None, help="imdb LSTM training steps (default 10, quick 3)")
    parser.add_argument("--reps", type=int, default=None, help="fresh processes per measurement (default 3, quick 1)")
    parser.add_argument("--server-reps", type=int, default=None, help="app server starts (default 2, quick 1)")
    parser.add_argument("--no-server", action="store_true", help="skip starting the streamlit server")
    args = parser.parse_args()
    steps = args.steps or (3 if args.quick else 10)
    reps = args.reps or (1 if args.quick else 3)
    server_reps = args.server_reps or (1 if args.quick else 2)
    # No torch in this process before the children run: a child's ru_maxrss starts from its
    # parent's peak (Linux keeps the high-water mark across fork + exec).
    result: dict[str, Any] = {}

    train = []
    for rep in range(reps):
        common.log(f"training memory, process {rep + 1}/{reps} ({steps} steps)")
        train.append(run_child(["--child", "train", str(args.threads), str(steps)]))
    result["train_imdb_lstm"] = {**{k: v for k, v in train[0].items() if k != "stages_peak_mb"},
                                 "stages_peak_mb": median_stages([t["stages_peak_mb"] for t in train])}

    predictors = []
    for rep in range(reps):
        common.log(f"app predictors without a server, process {rep + 1}/{reps}")
        predictors.append(run_child(["--child", "predictors", "1"]))
    result["app_predictors_in_process"] = {"runs": predictors[0]["runs"], "threads": 1,
                                           "stages_peak_mb": median_stages([p["stages_peak_mb"] for p in predictors])}

    if not args.no_server:
        servers = []
        for rep in range(server_reps):
            common.log(f"app server, start {rep + 1}/{server_reps}")
            try:
                servers.append(measure_server())
            except Exception as exc:  # a UI change must not lose the other figures
                result["app_server_error"] = f"{type(exc).__name__}: {exc}"[:2000]
                break
        if servers:
            stage_names = list(servers[0]["stages_mb"])
            result["app_server"] = {
                **{k: v for k, v in servers[0].items() if k != "stages_mb"},
                "startup_seconds": common.spread([s["startup_seconds"] for s in servers]),
                "stages_mb": {name: {k: common.spread([s["stages_mb"][name][k] for s in servers
                                                       if name in s["stages_mb"]])
                                     for k in ("VmRSS", "VmHWM")} for name in stage_names},
            }
    result["environment"] = common.environment(args.threads)
    common.write_result(args.out, result)
    last = list(result["train_imdb_lstm"]["stages_peak_mb"].items())[-1]
    print(f"imdb LSTM training peak RSS ({last[0]}): {last[1]['median']:.0f} MB")
    stages = result["app_predictors_in_process"]["stages_peak_mb"]
    print(f"streamlit + shipped predictors in one process: {list(stages.values())[-1]['median']:.0f} MB")
    if "app_server" in result:
        name, mem = list(result["app_server"]["stages_mb"].items())[-1]
        print(f"app server ({name}): VmHWM {mem['VmHWM']['median']:.0f} MB")


if __name__ == "__main__":
    main()
