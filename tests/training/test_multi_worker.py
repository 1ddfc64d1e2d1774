"""`model.fit` under MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1.

One two-worker job (tests/training/distributed_jobs.py) runs once for this module: it trains
the tiny GPT with `fit` (validation included) and `evaluate`, records the input batches each
worker receives, and tries Keras's own code paths that tfllm's `LanguageModel` overrides.
The tests compare its results with a single-process run of the same job in this process.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.training import distributed_jobs as jobs
from tfllm.training.strategy import resolve_strategy

# One xdist worker runs them all: the two-worker cluster is started once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("multi_worker")]

REPOSITORY = Path(__file__).resolve().parents[2]
JOB_TIMEOUT_SECONDS = 300
NUM_WORKERS = 2


def _free_ports(count):
    """Ports the kernel reports free; held open together so that they differ."""
    sockets = []
    try:
        for _ in range(count):
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", 0))
            sockets.append(server)
        return [server.getsockname()[1] for server in sockets]
    finally:
        for server in sockets:
            server.close()


def _stop(process):
    """Kills a worker still running, with its process group (its own session)."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it ended in the meantime
        process.wait(timeout=30)


def run_workers(directory, initial_weights_path):
    """Runs the two-worker job; returns each worker's (figures, arrays)."""
    addresses = [f"127.0.0.1:{port}" for port in _free_ports(NUM_WORKERS)]
    processes, logs = [], []
    try:
        for index in range(NUM_WORKERS):
            tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker",
                                                                    "index": index}}
            environment = {**os.environ, "TF_CONFIG": json.dumps(tf_config),
                           "PYTHONPATH": str(REPOSITORY), "CUDA_VISIBLE_DEVICES": ""}
            log = open(directory / f"worker_{index}.log", "w")
            logs.append(log)
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "tests.training.distributed_jobs", "multi_worker",
                 str(directory / f"worker_{index}"), str(initial_weights_path)],
                cwd=REPOSITORY, env=environment, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as a whole
            ))
        deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
        while time.monotonic() < deadline and any(p.poll() is None for p in processes):
            if any(p.poll() not in (None, 0) for p in processes):
                break  # one worker failed; the other would wait for it forever
            time.sleep(0.5)
    finally:
        for process in processes:
            _stop(process)
        for log in logs:
            log.close()
    outcome = [process.returncode for process in processes]
    if outcome != [0] * NUM_WORKERS:
        tails = "\n".join(
            f"--- worker {index} (exit {code}) ---\n"
            + (directory / f"worker_{index}.log").read_text()[-3000:]
            for index, code in enumerate(outcome)
        )
        pytest.fail(f"the two-worker job failed or took over {JOB_TIMEOUT_SECONDS} s:\n{tails}")
    results = []
    for index in range(NUM_WORKERS):
        figures = json.loads((directory / f"worker_{index}.json").read_text())
        with np.load(directory / f"worker_{index}.npz") as arrays:
            results.append((figures, dict(arrays)))
    return results


@pytest.fixture(scope="module")
def initial_weights():
    model = jobs.build_model()
    return model.get_weights()


@pytest.fixture(scope="module")
def workers(tmp_path_factory, initial_weights):
    directory = tmp_path_factory.mktemp("multi_worker")
    weights_path = directory / "initial_weights.npz"
    np.savez(weights_path, *initial_weights)
    return run_workers(directory, weights_path)


@pytest.fixture(scope="module")
def single_process(initial_weights):
    """The same job in one process, one replica, on the same global batches."""
    return jobs.train(resolve_strategy("cpu"), initial_weights)


def _weights(arrays):
    return [arrays[f"weight_{index}"] for index in range(sum(k.startswith("weight_")
                                                             for k in arrays))]


def test_two_workers_form_one_cluster(workers):
    for index, (figures, _) in enumerate(workers):
        assert figures["replicas"] == 2
        assert figures["description"] == (
            f"MultiWorkerMirroredStrategy: 2 replicas, 2 workers (this is worker {index})"
        )


def test_both_workers_end_with_identical_weights(workers, initial_weights):
    (_, first), (_, second) = workers
    for weight_0, weight_1 in zip(_weights(first), _weights(second)):
        np.testing.assert_array_equal(weight_0, weight_1)
    assert not all(np.array_equal(w, i) for w, i in zip(_weights(first), initial_weights))


def test_two_worker_fit_matches_single_process_on_same_global_batches(workers, single_process):
    figures, arrays = workers[0]
    np.testing.assert_allclose(figures["loss"], single_process["loss"], rtol=1e-4)
    np.testing.assert_allclose(figures["val_loss"], single_process["val_loss"], rtol=1e-4)
    for distributed, single in zip(_weights(arrays), single_process["weights"]):
        np.testing.assert_allclose(distributed, single, atol=1e-4)
    assert figures["loss"][-1] < figures["loss"][0]  # it trained


def test_two_worker_evaluate_matches_single_process(workers, single_process):
    for figures, _ in workers:
        assert figures["evaluate_loss"] == pytest.approx(single_process["evaluate_loss"],
                                                         rel=1e-4)


def test_each_worker_receives_its_own_half_of_every_global_batch(workers):
    """With `with_data_sharding`: the workers' halves of each step make up the global
    batch that the (seeded) pipeline yields on every worker."""
    (_, first), (_, second) = workers
    for step in range(3):
        global_batch = first[f"global_batch_{step}"]
        np.testing.assert_array_equal(second[f"global_batch_{step}"], global_batch)
        halves = [first[f"local_batch_{step}"], second[f"local_batch_{step}"]]
        assert all(half.shape == (jobs.GLOBAL_BATCH // 2, jobs.SEQUENCE_LENGTH)
                   for half in halves)
        np.testing.assert_array_equal(np.concatenate(halves), global_batch)


def test_keras_still_needs_our_multi_worker_fixes(workers):
    """Fails when upstream Keras fixes either fault: then remove the overrides in
    tfllm/models/base.py (see the comment there; tensorflow/tensorflow#72388,
    keras-team/keras#20585)."""
    for figures, _ in workers:
        build_error, steps_error = figures["upstream_build_error"], figures["upstream_steps_error"]
        assert build_error is not None, (
            "Keras's `_maybe_symbolic_build` now works under two workers: remove "
            "LanguageModel._maybe_symbolic_build"
        )
        assert "Attempt to convert a value (PerReplica" in build_error, build_error
        assert steps_error is not None, (
            "Keras now reduces scalar logs across workers: remove LanguageModel.train_step, "
            "test_step and _logs_for_cross_worker_mean"
        )
        assert "Invalid reduction dimension 0 for input with 0 dimensions" in steps_error, (
            steps_error
        )
