"""The bounded wait for a multi-worker cluster (tfllm/training/cluster.py).

In-process: `wait_for_cluster` between threads on 127.0.0.1 (fast). In real processes
(`tfllm train --strategy multi_worker`, one worker of a two-worker TF_CONFIG on free
loopback ports): a peer that never starts is named within the timeout; a peer that
listens but never registers with TensorFlow is named by TensorFlow's bounded
registration; SIGTERM during the wait ends the process with one line. The three
processes run at once, each stopped by its pid within a bounded time.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.training.test_multi_worker import _free_ports, _stop
from tfllm.training.cluster import (
    ClusterTimeoutError,
    coordination_settings,
    tasks_named_in,
    wait_for_cluster,
)

REPOSITORY = Path(__file__).resolve().parents[2]
CLUSTER_TIMEOUT_SECONDS = 4
MARGIN_SECONDS = 30  # a loaded machine, TensorFlow's own shutdown
START_SECONDS = 240  # TensorFlow's start-up on 2 busy cores


def _tf_config(addresses, index):
    return {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}}


def _port(address):
    return int(address.rsplit(":", 1)[1])


def test_workers_that_all_start_find_each_other():
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(3)]
    errors, servers = [], []

    def worker(index):
        try:
            wait_for_cluster(_tf_config(addresses, index), timeout=20, poll_seconds=0.1,
                             print_function=None)
            # What TensorFlow's server does next: listen on the same address.
            servers.append(socket.create_server(("127.0.0.1", _port(addresses[index]))))
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(3)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        for server in servers:
            server.close()
    assert not errors and not any(thread.is_alive() for thread in threads)
    assert len(servers) == 3


def test_a_worker_that_never_starts_is_named_and_the_port_is_released():
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(3)]

    def worker_1():
        with pytest.raises(ClusterTimeoutError):
            wait_for_cluster(_tf_config(addresses, 1), timeout=1, print_function=None)

    started = threading.Thread(target=worker_1, daemon=True)
    started.start()  # worker 1 comes; worker 2 never does
    lines = []
    with pytest.raises(ClusterTimeoutError) as raised:
        wait_for_cluster(_tf_config(addresses, 0), timeout=1, poll_seconds=0.1,
                         print_function=lambda line, flush: lines.append(line))
    started.join(timeout=10)
    assert [task[:2] for task in raised.value.missing] == [("worker", 2)]
    assert f"worker 2 ({addresses[2]}) never came" in str(raised.value)
    assert "worker 1" not in str(raised.value)
    assert lines == [f"Waiting up to 1 s for the cluster: worker 1 ({addresses[1]}), "
                     f"worker 2 ({addresses[2]})."]
    with socket.create_server(("127.0.0.1", _port(addresses[0]))):
        pass  # TensorFlow's server can take the port


def test_sigint_interrupts_the_wait():
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    timer = threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            wait_for_cluster(_tf_config(addresses, 0), timeout=60, print_function=None)
    finally:
        timer.cancel()


def test_bad_timeouts_are_refused():
    config = _tf_config(["127.0.0.1:1", "127.0.0.1:2"], 0)
    for timeout in (0, -1, float("nan"), "300", True):
        with pytest.raises(ValueError, match="cluster timeout must be a positive number"):
            wait_for_cluster(config, timeout=timeout)


def test_tensorflow_messages_name_tasks_else_the_leader():
    config = _tf_config(["a:1", "b:2", "c:3"], 1)
    message = ("Barrier timed out. Some timed out task names:\n/job:worker/replica:0/task:2"
               "\n/job:worker/replica:0/task:1\n")
    assert tasks_named_in(message, config) == [("worker", 2, "c:3")]  # not itself
    assert tasks_named_in("Deadline Exceeded", config) == [("worker", 0, "a:1")]
    with_chief = {"cluster": {"chief": ["x:9"], "worker": ["a:1"]},
                  "task": {"type": "worker", "index": 0}}
    settings = coordination_settings(with_chief, 2.5)
    assert settings["service_leader"] == "/job:chief/replica:0/task:0"
    assert settings["coordinated_jobs"] == {"chief": 1, "worker": 1}
    assert settings["cluster_register_timeout_in_ms"] == 2500
    assert settings["cluster_register_with_barrier"] is True


def _start_worker(directory, name, addresses, cluster_timeout):
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY")}
    environment.update(TF_CONFIG=json.dumps(_tf_config(addresses, 0)),
                       PYTHONPATH=str(REPOSITORY), PYTHONUNBUFFERED="1",
                       CUDA_VISIBLE_DEVICES="")
    out, err = open(directory / f"{name}.out", "w"), open(directory / f"{name}.err", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "tfllm.cli", "train", "--model", "gpt", "--size", "tiny",
         "--strategy", "multi_worker", "--cluster-timeout", str(cluster_timeout),
         "--run-dir", str(directory / name), "--quiet"],
        cwd=directory, env=environment, stdout=out, stderr=err, start_new_session=True)
    return {"process": process, "files": (out, err), "name": name, "waiting_at": None,
            "ended_at": None}


def _read(directory, worker, stream):
    return (directory / f"{worker['name']}.{stream}").read_text()


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """Three lone worker 0s: `missing` (worker 1 never starts), `silent` (something
    listens at worker 1's address but never registers), `terminated` (SIGTERM while it
    waits for its missing peer)."""
    directory = tmp_path_factory.mktemp("cluster")
    ports = _free_ports(6)
    addresses = {name: [f"127.0.0.1:{ports[2 * i]}", f"127.0.0.1:{ports[2 * i + 1]}"]
                 for i, name in enumerate(("missing", "silent", "terminated"))}
    fake_peer = socket.create_server(("127.0.0.1", ports[3]))  # silent's worker 1
    started = {name: _start_worker(directory, name, addresses[name],
                                   300 if name == "terminated" else CLUSTER_TIMEOUT_SECONDS)
               for name in addresses}
    try:
        deadline = time.monotonic() + START_SECONDS + 2 * MARGIN_SECONDS
        while time.monotonic() < deadline and any(
                worker["ended_at"] is None for worker in started.values()):
            for worker in started.values():
                now = time.monotonic()
                if worker["waiting_at"] is None and "Waiting up to" in _read(
                        directory, worker, "out"):
                    worker["waiting_at"] = now
                    if worker["name"] == "terminated":
                        worker["process"].send_signal(signal.SIGTERM)
                if worker["ended_at"] is None and worker["process"].poll() is not None:
                    worker["ended_at"] = now
            time.sleep(0.2)
    finally:
        for worker in started.values():
            _stop(worker["process"])
            for file in worker["files"]:
                file.close()
        fake_peer.close()
    return {name: {**worker, "out": _read(directory, worker, "out"),
                   "err": _read(directory, worker, "err"), "addresses": addresses[name]}
            for name, worker in started.items()}


def _assert_ended_within(worker, seconds):
    assert worker["waiting_at"] is not None, worker["out"] + worker["err"]
    assert worker["ended_at"] is not None, f"still running: {worker['err'][-2000:]}"
    waited = worker["ended_at"] - worker["waiting_at"]
    print(f"{worker['name']}: ended {waited:.1f} s after it began to wait")
    assert waited <= seconds


@pytest.mark.slow
def test_a_worker_that_never_starts_is_named_within_the_timeout(workers):
    worker = workers["missing"]
    _assert_ended_within(worker, CLUSTER_TIMEOUT_SECONDS + MARGIN_SECONDS)
    assert worker["process"].returncode == 1
    assert worker["err"] == (
        f"error: the cluster did not form within {CLUSTER_TIMEOUT_SECONDS} s: worker 1 "
        f"({worker['addresses'][1]}) never came (start the same command there with its own "
        "TF_CONFIG task, or raise --cluster-timeout)\n")  # one line, no TensorFlow log


@pytest.mark.slow
def test_a_peer_that_never_registers_is_named_by_tensorflows_bounded_registration(workers):
    worker = workers["silent"]
    _assert_ended_within(worker, CLUSTER_TIMEOUT_SECONDS + MARGIN_SECONDS)
    assert worker["process"].returncode == 1
    lines = worker["err"].splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the cluster did not form"), lines
    assert f"worker 1 ({worker['addresses'][1]}) never came" in lines[0]


@pytest.mark.slow
def test_sigterm_ends_a_waiting_worker_with_one_line(workers):
    worker = workers["terminated"]
    _assert_ended_within(worker, MARGIN_SECONDS)
    assert worker["process"].returncode == 128 + signal.SIGTERM
    assert worker["err"] == ("Interrupted (SIGTERM); run the same command again to resume "
                             "from the last checkpoint.\n")
