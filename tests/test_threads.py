"""The one thread-count policy (``rnn_demo.threads``): server, workers, explanations, the CLI's ``--threads``."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import torch

from rnn_demo import explain, jobs, threads
from rnn_demo.cli import main


@pytest.fixture(autouse=True)
def _restore_threads():
    """Every test here changes the process's count; the next test file gets it back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_app_server_computes_with_one_thread():
    from rnn_demo.ui import state

    torch.set_num_threads(2)
    state.configure_server_process()
    assert torch.get_num_threads() == threads.SERVER_THREADS == 1
    state.configure_server_process()  # app.py calls it on every run
    assert torch.get_num_threads() == 1


def test_workers_split_the_cores_between_the_jobs_and_never_get_zero():
    assert threads.worker_threads(max_jobs=1, cores=8) == 8
    assert threads.worker_threads(max_jobs=3, cores=8) == 2
    assert threads.worker_threads(max_jobs=2, cores=2) == 1
    assert threads.worker_threads(max_jobs=16, cores=2) == 1
    assert threads.worker_threads(max_jobs=0, cores=4) == 4  # a nonsense cap never divides by zero
    assert threads.worker_threads(max_jobs=1) == threads.available_cores() >= 1
    # The job manager and the old import paths use the same policy.
    assert jobs.worker_threads is threads.worker_threads and jobs.available_cores is threads.available_cores
    from rnn_demo.jobs.limits import worker_threads

    assert worker_threads is threads.worker_threads
    manager = jobs.JobManager(max_jobs=2, cores=4, spare=False)
    try:
        assert manager.threads_per_job == 2
    finally:
        manager.shutdown(timeout=5)


def test_the_context_manager_restores_the_count_even_when_the_block_raises():
    assert explain.torch_threads is threads.torch_threads  # the old name still works
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError, match="boom"):
        with threads.torch_threads(threads.EXPLAIN_THREADS):
            assert torch.get_num_threads() == 1
            raise RuntimeError("boom")
    assert torch.get_num_threads() == 2
    with threads.torch_threads(1):
        with threads.torch_threads(1):  # nested: the inner end does not restore yet
            pass
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with threads.torch_threads(None):
        assert torch.get_num_threads() == 2


def test_each_thread_gets_its_own_count_back_while_another_block_is_open():
    # torch's count is per thread: a session's block in another thread must not keep ours at 1.
    torch.set_num_threads(2)
    inside, release = threading.Event(), threading.Event()
    seen: dict[str, int] = {}

    def other_session() -> None:
        seen["start"] = torch.get_num_threads()
        with threads.torch_threads(1):
            seen["inside"] = torch.get_num_threads()
            inside.set()
            release.wait(10)
        seen["after"] = torch.get_num_threads()

    worker = threading.Thread(target=other_session)
    worker.start()
    assert inside.wait(10)
    assert torch.get_num_threads() == 2  # the other thread's block leaves this thread alone
    with threads.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2  # restored although the other block is still open
    release.set()
    worker.join(10)
    assert seen == {"start": 2, "inside": 1, "after": 2}
    assert torch.get_num_threads() == 2


def test_set_threads_refuses_counts_that_are_not_positive_whole_numbers():
    threads.set_threads(1)
    assert torch.get_num_threads() == 1
    for bad in (0, -3, 1.5, "2", True, None):
        with pytest.raises(ValueError, match="at least 1"):
            threads.set_threads(bad)
    assert torch.get_num_threads() == 1


def test_the_threads_flag_applies_to_the_command(capsys):
    torch.set_num_threads(2)
    assert main(["datasets", "--threads", "1", "--json"]) == 0
    assert torch.get_num_threads() == 1
    assert "negation" in capsys.readouterr().out
    torch.set_num_threads(2)
    assert main(["datasets", "--json"]) == 0  # without the flag: left alone
    assert torch.get_num_threads() == 2
    proc = subprocess.run([sys.executable, "-m", "rnn_demo", "datasets", "--threads", "-1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--threads" in proc.stderr and "Traceback" not in proc.stderr
