"""Shared test fixtures."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from rnn_demo.runtime import configure_process

configure_process()  # as the app and the CLI do, before any test imports torch


@pytest.fixture(scope="session", autouse=True)
def _private_run_folders(tmp_path_factory: pytest.TempPathFactory):
    """No test writes into the real user runs or app sessions folders (tests may point them elsewhere)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RNN_DEMO_RUNS", str(tmp_path_factory.mktemp("user-runs")))
        patch.setenv("RNN_DEMO_SESSIONS", str(tmp_path_factory.mktemp("sessions")))
        yield


@pytest.fixture
def app_navigation_mode(monkeypatch: pytest.MonkeyPatch):
    """Runs every AppTest run in ``st.navigation`` mode, like a real server after its first request.

    AppTest re-detects the ``pages/`` folder before every run and so starts each run in
    Streamlit's legacy folder mode, where ``state.require_app_frame`` reruns the script
    (a real server leaves that mode for good at its first ``app.py`` run; the browser
    test covers that first deep link). The extra rerun would drop button clicks. The app
    sets one torch thread for its server process; the test's count is restored after.
    """
    import torch
    from streamlit.runtime.pages_manager import PagesManager

    original = PagesManager.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder with two tiny runs on the synthetic ``negation`` task (a few seconds to train).

    - ``tiny-gru``: a GRU that solves the task (tells "good" from "not good"); texts capped at 12 tokens.
    - ``tiny-rnn``: a deliberately weak plain RNN (1 epoch, 4 units), so it makes mistakes.
    """
    import torch

    from rnn_demo.data import DatasetSpec
    from rnn_demo.experiment import default_configs, run_experiment

    runs = tmp_path_factory.mktemp("runs")
    spec = DatasetSpec(name="negation")
    text, model, train = default_configs("negation")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: extra threads only contend with other processes on a busy machine
    try:
        run_experiment(spec, dataclasses.replace(text, max_tokens=12), model, dataclasses.replace(train, epochs=3),
                       out_dir=runs / "tiny-gru")
        run_experiment(spec, text, dataclasses.replace(model, cell="rnn", hidden_size=4, embedding_dim=4),
                       dataclasses.replace(train, epochs=1, lr=1e-3), out_dir=runs / "tiny-rnn")
    finally:
        torch.set_num_threads(threads)
    return runs


@pytest.fixture(scope="module")
def kernel():
    """The compiled kernels of ``rnn_demo.accel.kernels``: required under CI, skipped elsewhere without a compiler."""
    from rnn_demo.accel import kernels as fused

    if fused.load() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the fused kernels must build under CI: {fused.error()}")
        pytest.skip(f"fused kernels not available here: {fused.error()}")
    return fused.load()
