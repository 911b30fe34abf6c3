import math
import threading
from pathlib import Path

import pytest
import torch

from rnn_demo.accel.sparse_rows import clip_grad_norm_
from rnn_demo.batching import BatchLoader
from rnn_demo.data import DatasetSpec, load_splits
from rnn_demo.experiment import prepare_data
from rnn_demo.model import ModelConfig, RecurrentClassifier
from rnn_demo.text import TextConfig
from rnn_demo.train import Trainer, TrainConfig, TrainingError, evaluate, seed_everything


@pytest.fixture(scope="module")
def negation():
    return prepare_data(load_splits(DatasetSpec(name="negation")), TextConfig())


def _trainer(data, events=None, stop=None, cell="gru", **train_kwargs):
    cfg = TrainConfig(**{"epochs": 3, "lr": 5e-3, "batch_size": 32, "log_every": 1, **train_kwargs})
    seed_everything(cfg.seed)
    model = RecurrentClassifier(ModelConfig(vocab_size=len(data.vocab), num_classes=2, cell=cell,
                                            embedding_dim=32, hidden_size=64, dropout=0.1))
    callback = events.append if events is not None else None
    return Trainer(model, BatchLoader(data.train, cfg.batch_size, shuffle=True), BatchLoader(data.validation, 256),
                   cfg, callback=callback, stop=stop)


def test_training_lowers_the_loss_and_reaches_95_percent_on_negation(negation):
    events = []
    trainer = _trainer(negation, events)
    result = trainer.fit()
    steps = [e for e in events if e["type"] == "step"]
    assert sum(e["loss"] for e in steps[-10:]) / 10 < 0.5 * sum(e["loss"] for e in steps[:10]) / 10
    test = evaluate(trainer.model, BatchLoader(negation.test, 256))
    assert test.accuracy >= 0.95
    assert result.reason in ("completed", "early_stopping")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "eval" in kinds and "epoch" in kinds
    assert all(e["tokens_per_second"] > 0 and e["grad_norm"] >= 0 for e in steps)


def test_training_keeps_the_best_validation_weights(negation):
    events = []
    trainer = _trainer(negation, events, epochs=3)
    result = trainer.fit()
    evals = [e for e in events if e["type"] == "eval"]
    best = min(evals, key=lambda e: e["val_loss"])
    assert result.best_val_loss == pytest.approx(best["val_loss"])
    again = evaluate(trainer.model, BatchLoader(negation.validation, 256))
    assert again.loss == pytest.approx(best["val_loss"], rel=1e-5)


def test_stop_request_from_another_thread_ends_training_and_keeps_best_weights(negation):
    stop = threading.Event()
    events = []

    def callback(event):
        events.append(event)
        if event["type"] == "step" and event["step"] == 20:
            stop.set()

    trainer = _trainer(negation, stop=stop, epochs=50)
    trainer.callback = callback
    result = trainer.fit()
    assert result.reason == "stopped"
    assert max(e["step"] for e in events if e["type"] == "step") == 20
    assert math.isfinite(result.best_val_loss)  # the partial epoch was evaluated and kept
    assert events[-1]["type"] == "done" and events[-1]["reason"] == "stopped"


def test_nan_loss_stops_with_a_clear_message(negation):
    trainer = _trainer(negation)
    with torch.no_grad():
        trainer.model.embedding.weight.fill_(float("nan"))
    events = []
    trainer.callback = events.append
    with pytest.raises(TrainingError, match="lower the learning rate"):
        trainer.fit()
    assert events[-1]["reason"] == "diverged"


def test_training_is_deterministic_on_cpu_for_a_fixed_seed(negation):
    def run():
        trainer = _trainer(negation, epochs=1, seed=3)
        trainer.fit()
        return [p.detach().clone() for p in trainer.model.parameters()]

    first, second = run(), run()
    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_step_generator_yields_every_step(negation):
    trainer = _trainer(negation, epochs=1)
    steps = list(trainer.iter_steps())
    assert steps == list(range(1, len(trainer.train_loader) + 1))
    assert trainer.result is not None and trainer.result.epochs_run == 1


def test_bad_train_config_is_refused():
    with pytest.raises(ValueError, match="adam, adamw, sgd"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0)


def _omp_policy_after(code: str, user_setting: str | None = None) -> str:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if user_setting is not None:
        env["OMP_WAIT_POLICY"] = user_setting
    out = subprocess.run([sys.executable, "-c", code + "; print(os.environ.get('OMP_WAIT_POLICY'))"],
                         capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent)
    return out.stdout.strip().splitlines()[-1]


def test_importing_the_package_changes_nothing_in_the_process():
    assert _omp_policy_after("import os, rnn_demo, rnn_demo.train") == "None"


@pytest.mark.parametrize("entry", [
    "import os, runpy, sys; sys.argv = ['rnn_demo', 'datasets']; "
    "exec('try: runpy.run_module(\\'rnn_demo\\', run_name=\\'__main__\\')\\nexcept SystemExit: pass')",
    "import os; from rnn_demo.runtime import configure_process; configure_process()",
])
def test_entry_points_make_openmp_threads_sleep_instead_of_spinning_unless_the_user_chose(entry):
    # Spinning OpenMP threads made a training step 20x slower on a shared 2-core machine. The CLI, the app and
    # the benchmarks call configure_process() before torch loads OpenMP; workers inherit the environment.
    assert _omp_policy_after(entry) == "PASSIVE"
    assert _omp_policy_after(entry, "ACTIVE") == "ACTIVE"


def test_the_app_configures_the_process_before_anything_imports_torch():
    import ast

    app = Path(__file__).resolve().parent.parent / "app.py"
    body = ast.parse(app.read_text(encoding="utf-8")).body
    calls = [i for i, node in enumerate(body) if "configure_process()" in ast.unparse(node)]
    ui_imports = [i for i, node in enumerate(body) if "rnn_demo.ui" in ast.unparse(node)]
    assert calls and ui_imports and calls[0] < ui_imports[0], "app.py must call configure_process() first"


def test_the_first_step_is_reported_at_once_so_the_live_curve_starts_early(negation):
    events = []
    _trainer(negation, events, epochs=1, log_every=50).fit()
    steps = [e["step"] for e in events if e["type"] == "step"]
    assert steps[0] == 1 and 50 in steps


_FREED_MEMORY_KEPT = """
import runpy, sys, torch
{entry}
def rss_mb():
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmRSS")).split()[1]) // 1024
before = rss_mb()
torch.ones(16 * 2**20)  # 64 MB, filled (touched) then freed
print(rss_mb() - before)
"""
_CLI = """
sys.argv = ["rnn_demo", "datasets"]
try:
    runpy.run_module("rnn_demo", run_name="__main__")
except SystemExit:
    pass
"""
_RAY_ACTOR = """
from rnn_demo.jobs import ray_runner
ray_runner.run_job = lambda *args: None  # the job itself is not the point here
ray_runner._node_id = lambda: "node"  # outside an actor, asking Ray starts a whole local cluster
ray_runner.JobRunner().run("train", {}, 1, "test", 1)
"""


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc malloc tuning is Linux-only")
@pytest.mark.parametrize("entry,keeps", [
    ("", False),  # glibc's default
    ("from rnn_demo.runtime import configure_process; configure_process()", False),  # the app server: predicts only
    ("from rnn_demo.runtime import configure_process; configure_process(training=True)", True),
    (_CLI, True),
    ("from rnn_demo.jobs.worker import prepare_job_process; prepare_job_process(1)", True),  # a local worker
    (_RAY_ACTOR, True),
], ids=["default", "app", "training", "cli", "worker", "ray-actor"])
def test_processes_that_train_keep_freed_memory_for_reuse_from_the_start(entry, keeps):
    """Large tensors freed by one step stay mapped for the next instead of being unmapped and
    faulted in again, 4 KB at a time, in every process that trains, set at its start-up.

    (An earlier version counted page faults on re-allocating the same size; that failed in about a
    third of fresh processes, when glibc had carved small allocations out of the freed block.)"""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _FREED_MEMORY_KEPT.format(entry=entry)], capture_output=True,
                         text=True, check=True, cwd=Path(__file__).resolve().parent.parent)
    kept = int(out.stdout.strip().splitlines()[-1])
    if keeps:
        assert kept >= 60  # still mapped, its pages already faulted in
    else:
        assert kept < 16  # glibc unmapped the block when it was freed


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clipping_matches_torch_and_leaves_gradients_alone_within_the_limit(max_norm):
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(30, 4)), torch.nn.Parameter(torch.randn(7))]
    for p in params:
        p.grad = torch.randn_like(p)
    copies = [torch.nn.Parameter(p.detach().clone()) for p in params]
    for c, p in zip(copies, params):
        c.grad = p.grad.clone()
    versions = [p.grad._version for p in params]

    norm = clip_grad_norm_(params, max_norm)

    expected = torch.nn.utils.clip_grad_norm_(copies, max_norm)
    torch.testing.assert_close(norm, expected)
    for p, c in zip(params, copies):
        torch.testing.assert_close(p.grad, c.grad)
    clipped = float(expected) > max_norm
    assert clipped == (max_norm == 0.5)
    # Within the limit the gradients are not even rewritten (torch multiplies them by 1.0).
    assert all((p.grad._version != v) == clipped for p, v in zip(params, versions))
