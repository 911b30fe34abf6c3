"""The Ray back-end of the job manager, on a real two-node Ray cluster that these tests start and stop.

The cluster is a head and a second node, each with one CPU, started with ``ray start`` in
private temporary folders on free ports; its processes are found by those folders and
killed at the end (``ray stop`` would stop every Ray cluster on the machine). The archive
tests at the top need no cluster.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from rnn_demo import explain, jobs
from rnn_demo.checkpoints import load_run
from rnn_demo.data import DatasetSpec
from rnn_demo.jobs import JobManager
from rnn_demo.jobs.ray_backend import NODE_LOST, WORKER_LOST, select_backend
from rnn_demo.jobs.transfer import TransferError, pack_folder, unpack_folder
from rnn_demo.predict import Predictor
from test_jobs import configs, wait_for  # tiny negation runs, polling

SPEC = DatasetSpec(name="negation", params={"n": 600})
TINY_LAB = explain.LabSettings(cells=("rnn", "gru"), distractors=(3,), n=200, epochs=1, hidden_size=8,
                               embedding_dim=8, gradient_examples=4)  # fmt: skip
TIMEOUT = 120


def long_configs():
    """A run that trains until it is stopped (each evaluation is an event to wait for)."""
    text, model, train = configs(eval_every=4, log_every=1)
    return text, model, dataclasses.replace(train, epochs=200, patience=0)


def count(job, kind):
    return sum(event["type"] == kind for event in job.events())


def node_of(job):
    return next((e["node"] for e in job.events() if e["type"] == "stage" and "node" in e), None)


# ----- archives (no cluster) ---------------------------------------------------------------------


def _tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def test_a_run_folder_round_trips_through_an_archive(tmp_path):
    source = tmp_path / "run"
    (source / "sub").mkdir(parents=True)
    (source / "model.safetensors").write_bytes(b"\0" * 1000)
    (source / "sub" / "notes.json").write_text('{"a": 1}')
    (source / "link").symlink_to(source / "model.safetensors")  # links are left out
    target = unpack_folder(pack_folder(source, limit=10_000), tmp_path / "server" / "run", limit=10_000)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == [
        "model.safetensors", "sub", "sub/notes.json"]
    assert (target / "model.safetensors").read_bytes() == b"\0" * 1000
    assert not list((tmp_path / "server").glob(".*"))  # no half-unpacked folder is left behind
    with pytest.raises(TransferError, match=r"0\.0 MB, more than the 0 MB.*RNN_DEMO_RAY_MAX_MB"):
        pack_folder(source, limit=500)
    with pytest.raises(FileExistsError):
        unpack_folder(pack_folder(source, limit=10_000), target, limit=10_000)


@pytest.mark.parametrize("name", ["../evil.json", "/etc/evil.json", "a/../../evil.json", "a\\..\\evil.json"])
def test_unpacking_refuses_names_outside_the_run_folder(tmp_path, name):
    with pytest.raises(TransferError, match="unsafe file name"):
        unpack_folder(_tar(_file("ok.json"), _file(name)), tmp_path / "run", limit=10_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written, not even the good file


def test_unpacking_refuses_links_damage_and_too_much_data(tmp_path):
    link = tarfile.TarInfo("model.safetensors")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(TransferError, match="link or special file"):
        unpack_folder(_tar((link, None)), tmp_path / "a", limit=10_000)
    with pytest.raises(TransferError, match="more than the"):
        unpack_folder(_tar(_file("big.bin", b"y" * 5000)), tmp_path / "b", limit=1000)
    with pytest.raises(TransferError, match="damaged"):
        unpack_folder(b"not a tar archive at all" * 40, tmp_path / "c", limit=10_000)
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_cluster_falls_back_to_local_jobs_with_a_notice(tmp_path, monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.time()
    manager = JobManager(max_jobs=1, runs_dir=tmp_path, ray_address=f"127.0.0.1:{port}", spare=True)
    try:
        assert time.time() - started < 10
        assert manager.backend is None and manager.max_jobs == 1
        assert manager.backend_notice.startswith(f"Could not reach the Ray cluster at 127.0.0.1:{port} (nothing answers")
        assert manager.backend_notice.endswith("; training runs on this server instead.")
    finally:
        manager.shutdown(timeout=10)
    monkeypatch.setenv("RNN_DEMO_RAY_ADDRESS", "")
    assert select_backend() == (None, None)  # unset: local workers, ray never imported
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    backend, notice = select_backend("auto")
    assert backend is None and "pip install -r requirements-ray.txt" in notice


def test_the_actors_get_the_process_settings_of_configure_process(monkeypatch):
    from rnn_demo.jobs import ray_backend

    class FakeRay:
        def init(self, **kwargs):
            self.runtime_env = kwargs["runtime_env"]

    monkeypatch.setattr(ray_backend, "_probe", lambda address, timeout: None)
    for setting, expected in ((None, "PASSIVE"), ("ACTIVE", "ACTIVE")):  # a user's own setting wins
        if setting is None:
            monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
        else:
            monkeypatch.setenv("OMP_WAIT_POLICY", setting)
        ray = FakeRay()
        ray_backend._init(ray, "127.0.0.1:1", 5.0)
        assert ray.runtime_env["env_vars"] == {"OMP_WAIT_POLICY": expected}


def test_a_run_from_a_node_gets_the_server_s_dataset_paths_back(tiny_runs_dir, tmp_path):
    from rnn_demo.checkpoints import CheckpointError, read_run_info
    from rnn_demo.jobs.ray_backend import RayEvents

    run = Path(shutil.copytree(tiny_runs_dir / "tiny-gru", tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    node = DatasetSpec(csv="/node/in/reviews.csv", test_csv="/node/in/test.csv", text_cols=["review"], label_col="y")
    config["dataset"]["spec"] = node.to_dict()
    (run / "config.json").write_text(json.dumps(config))
    server = dataclasses.replace(node, csv="/srv/uploads/reviews.csv", test_csv=None)
    RayEvents(None, None, None, {"spec": server.to_dict()}, 0)._restore_dataset_paths(run)
    assert read_run_info(run).dataset_spec == server
    config["dataset"]["spec"] = {"csv": ["not", "a", "path"]}  # a damaged run from the node
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="is not a string"):  # a ValueError: the job's error event
        RayEvents(None, None, None, {"spec": server.to_dict()}, 0)._restore_dataset_paths(run)


# ----- a real cluster ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process we can see."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        found[int(entry.name)] = (parent, cmdline)
    return found


def kill_node(temp_dir: Path) -> int:
    """Kills the processes of the Ray node started with ``--temp-dir temp_dir`` and their children."""
    processes = _processes()
    doomed = {pid for pid, (_, cmd) in processes.items() if str(temp_dir) in cmd}
    grew = True
    while grew:
        children = {pid for pid, (parent, _) in processes.items() if parent in doomed} - doomed
        doomed |= children
        grew = bool(children)
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(doomed)


RAY_AUTH_MODE = "RAY_AUTH_MODE"


@pytest.fixture(scope="module")
def cluster():
    """A head and a second node with one CPU each: yields the head's address and the nodes' temp folders."""
    try:
        import ray
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("ray must be installed under CI (requirements-ray.txt)")
        pytest.skip("ray is not installed (pip install -r requirements-ray.txt)")
    base = Path(tempfile.mkdtemp(prefix="rnnray"))  # short: Ray's socket paths must stay under 107 characters
    head, worker = base / "h", base / "w"
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # Ray 2.60: a head that finds ~/.ray/auth_token (left by any local ray.init()) turns token auth on,
    # but a node joining with `ray start --address` does not send it (InvalidAuthToken). One mode for
    # the nodes and for this process, which connects to them.
    auth_mode = os.environ.get(RAY_AUTH_MODE)
    os.environ[RAY_AUTH_MODE] = "disabled"
    env = {**os.environ, "RAY_TMPDIR": str(base), "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--object-store-memory", "100000000",
              "--dashboard-agent-listen-port", "0"]
    try:
        subprocess.run([ray_cli, "start", "--head", "--port", str(port), "--include-dashboard", "false",
                        "--dashboard-port", str(_free_port()), "--disable-usage-stats", "--temp-dir", str(head),
                        *common], env=env, check=True, capture_output=True, timeout=180)
        subprocess.run([ray_cli, "start", "--address", address, "--temp-dir", str(worker), *common], env=env,
                       check=True, capture_output=True, timeout=180)
        yield {"address": address, "head": head, "worker": worker}
    finally:
        if ray.is_initialized():
            ray.shutdown()
        kill_node(worker)
        kill_node(head)
        shutil.rmtree(base, ignore_errors=True)
        if auth_mode is None:
            os.environ.pop(RAY_AUTH_MODE, None)
        else:
            os.environ[RAY_AUTH_MODE] = auth_mode


@pytest.fixture
def manager(cluster, tmp_path):
    mgr = JobManager(runs_dir=tmp_path / "runs", ray_address=cluster["address"], spare=True)
    assert mgr.backend is not None, mgr.backend_notice
    yield mgr
    mgr.shutdown(timeout=30)


def test_a_training_a_race_and_the_lab_run_on_ray_and_their_results_land_on_the_server(manager, tmp_path):
    assert manager.max_jobs == 2 and manager.backend_notice is None  # one job per CPU of the cluster
    assert not manager.spare_alive()  # the warm spare is a local-worker thing
    upload = tmp_path / "uploads" / "reviews.csv"  # an uploaded file: the node gets a copy with the job
    upload.parent.mkdir()
    rng = random.Random(0)
    rows = [(rng.random() < 0.5, rng.choice(["good", "fine", "great"]), rng.choice(["film", "show"])) for _ in range(300)]
    upload.write_text("text,label\n" + "".join(f"{'not ' * neg}{word} {thing},{'neg' if neg else 'pos'}\n"
                                                for neg, word, thing in rows))
    csv_spec = DatasetSpec(csv=str(upload), text_cols=["text"], label_col="label")
    job = manager.start_training("alice", csv_spec, *configs(), run_name="on ray")
    race = manager.start_training("dave", SPEC, *configs(), cells=("rnn", "gru"), run_name="duel")
    lab = manager.start_lab("erin", TINY_LAB, cache_dir=tmp_path / "lab")
    assert lab.status == jobs.QUEUED  # both CPUs are taken: it waits for a slot, as with local workers
    polled = []
    while not job.done:
        polled.extend(job.poll())
        time.sleep(0.1)
        assert time.time() - job.queued_at < TIMEOUT, job.events()
    polled.extend(job.poll())

    assert job.status == jobs.FINISHED, job.error
    events = job.events()
    assert polled == events  # every event once, in order
    print(f"first event {events[0]['time'] - job.queued_at:.1f} s after Start")
    kinds = [e["type"] for e in events]
    assert kinds[0] == "stage" and "Ray node" in events[0]["text"] and kinds[-1] == "finished"
    assert kinds.index("start") < kinds.index("step") < kinds.index("eval") < kinds.index("done")
    steps = [e["step"] for e in events if e["type"] == "step"]
    assert steps == sorted(steps) and len(steps) >= 2
    times = [e["time"] for e in events]
    assert times == sorted(times)

    run_dir = Path(job.summary["run_dir"])
    assert run_dir == tmp_path / "runs" / "on-ray"  # the server's reserved folder, not the node's temp folder
    assert {"model.safetensors", "config.json", "vocab.json", "metrics.json"} <= {p.name for p in run_dir.iterdir()}
    saved_config = json.loads((run_dir / "config.json").read_text())
    assert saved_config["name"] == "on-ray" and saved_config["dataset"]["spec"]["csv"] == str(upload)
    probabilities = Predictor.load(run_dir).predict_proba(["good film", "not good film"])
    assert probabilities.shape == (2, 2) and abs(probabilities.sum() - 2) < 1e-5

    assert race.wait(TIMEOUT) and race.status == jobs.FINISHED, race.error
    assert [Path(s["run_dir"]) for s in race.summaries] == [tmp_path / "runs" / "duel-rnn",
                                                            tmp_path / "runs" / "duel-gru"]
    assert [load_run(s["run_dir"]).model.config.cell for s in race.summaries] == ["rnn", "gru"]
    assert lab.wait(TIMEOUT) and lab.status == jobs.FINISHED, lab.error
    saved = explain.load_vanishing_lab(TINY_LAB, cache_dir=tmp_path / "lab")  # in the server's lab cache
    assert saved is not None and saved.accuracy == lab.lab_result["accuracy"]
    assert manager.active_jobs() == []


def test_a_job_size_no_node_can_hold_falls_back_with_a_notice(cluster, monkeypatch):
    monkeypatch.setenv("RNN_DEMO_RAY_CPUS", "4")  # every node has 1 CPU: such a job would wait forever
    backend, notice = select_backend(cluster["address"])
    assert backend is None and "no node of it has the 4 CPUs a job asks for (RNN_DEMO_RAY_CPUS)" in notice


def test_two_jobs_train_on_two_nodes_at_once_stop_keeps_the_best_weights(manager):
    first = manager.start_training("bob", SPEC, *long_configs())
    second = manager.start_training("carol", SPEC, *long_configs())
    assert wait_for(lambda: count(first, "eval") >= 2 and count(second, "eval") >= 2), (first.error, second.error)
    assert first.status == second.status == jobs.RUNNING
    assert node_of(first) and node_of(second) and node_of(first) != node_of(second)

    asked = time.time()
    first.request_stop()
    assert first.wait(TIMEOUT) and first.status == jobs.FINISHED, first.error
    done = next(e for e in first.events() if e["type"] == "done")
    assert done["reason"] == "stopped" and done["time"] - asked < 2.0  # the flag reached the node at once
    assert not second.done  # the other node trains on
    summary = first.summary
    saved = json.loads((Path(summary["run_dir"]) / "metrics.json").read_text())
    assert saved["validation"]["loss"] == pytest.approx(done["best_val_loss"], rel=1e-4)
    assert done["best_val_loss"] == pytest.approx(min(e["val_loss"] for e in first.events() if e["type"] == "eval"))
    load_run(summary["run_dir"])

    second.terminate()  # what the session clean-up does to a job still running after its grace
    assert second.wait(30), "a terminated Ray job did not end"
    assert second.status == jobs.FAILED and "was stopped" in second.error
    assert manager.active_jobs() == [] and not second.run_dirs[0].exists()


def test_a_lost_worker_process_or_node_fails_its_job_with_a_clear_message(manager, cluster):
    import ray

    head_id = next(n["NodeID"] for n in ray.nodes() if "node:__internal_head__" in n["Resources"])
    jobs_ = [manager.start_training(owner, SPEC, *long_configs()) for owner in ("frank", "gwen")]
    assert wait_for(lambda: all(count(job, "step") >= 1 for job in jobs_)), [job.error for job in jobs_]
    on_head = next(job for job in jobs_ if node_of(job) == head_id)
    on_worker = next(job for job in jobs_ if job is not on_head)

    os.kill(on_head.pid, signal.SIGKILL)  # the worker process dies (e.g. out of memory)
    assert on_head.wait(30), "a killed worker process left its job hanging"
    assert on_head.status == jobs.FAILED and on_head.error == WORKER_LOST

    killed = time.time()
    assert kill_node(cluster["worker"]) > 0  # the second node goes away
    assert on_worker.wait(45), "a lost node left its job hanging"
    assert on_worker.status == jobs.FAILED and on_worker.error == NODE_LOST
    print(f"node loss noticed after {time.time() - killed:.1f} s")
    assert manager.active_jobs() == []
