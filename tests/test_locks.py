"""Run-directory locks: one trainer per run, refused with the holder's pid, freed by the
kernel when the holder dies. Holders are real processes that load `tfllm/locks.py` alone
(no TensorFlow: they start in a fraction of a second)."""

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tfllm.locks import FileLock, LockBusyError, lock_holders
from tfllm.runs import RunBusyError, RunDirectory

REPOSITORY = Path(__file__).resolve().parents[1]
TIMEOUT_SECONDS = 60

#: A process that takes a lock, says so, and holds it until it is killed.
HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("locks", sys.argv[1])
locks = importlib.util.module_from_spec(spec)
spec.loader.exec_module(locks)
lock = locks.FileLock(sys.argv[2], shared=sys.argv[3] == "shared", purpose=sys.argv[4])
try:
    lock.acquire()
except locks.LockBusyError as error:
    print("busy", *[pid for pid, _ in error.holders], flush=True)
    sys.exit(0)
print("locked", flush=True)
time.sleep(120)
"""


class Holder:
    """A process holding `lock_file` (stopped by its pid, SIGKILL, bounded waits)."""

    def __init__(self, lock_file, shared=False, purpose="train"):
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(REPOSITORY / "tfllm" / "locks.py"),
             str(lock_file), "shared" if shared else "exclusive", purpose],
            stdout=subprocess.PIPE, text=True)
        self.pid = self.process.pid
        self.answer = self._line()

    def _line(self):
        ready, _, _ = select.select([self.process.stdout], [], [], TIMEOUT_SECONDS)
        assert ready, "the lock holder did not answer in time"
        return self.process.stdout.readline().split()

    def kill(self):
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=TIMEOUT_SECONDS)
        self.process.stdout.close()


@pytest.fixture
def holders():
    started = []
    yield lambda *args, **kwargs: started.append(Holder(*args, **kwargs)) or started[-1]
    for holder in started:
        holder.kill()


def test_a_second_process_is_refused_with_the_pid_and_sigkill_frees_the_lock(tmp_path,
                                                                             holders):
    run = RunDirectory(tmp_path / "run")
    holder = holders(run.lock_file)
    assert holder.answer == ["locked"]
    with pytest.raises(RunBusyError) as refused:
        run.lock()
    assert f"is in use: process {holder.pid} (train) holds its lock" in str(refused.value)
    assert refused.value.holders == [(holder.pid, "train")]
    holder.kill()
    assert holder.process.returncode == -signal.SIGKILL
    with run.lock():  # the kernel released it with the process
        assert holders(run.lock_file).answer == ["busy", str(os.getpid())]
    assert holders(run.lock_file).answer == ["locked"]  # and this process released it


def test_exports_share_a_run_but_exclude_its_trainer(tmp_path, holders):
    run = RunDirectory(tmp_path / "run")
    exporter = holders(run.lock_file, shared=True, purpose="export")
    assert exporter.answer == ["locked"]
    with run.lock(shared=True, purpose="export"):
        pass
    with pytest.raises(RunBusyError, match=f"process {exporter.pid} \\(export\\)"):
        run.lock(purpose="train")


def test_a_process_may_take_its_own_lock_again(tmp_path, holders):
    lock_file = tmp_path / "lock"
    with FileLock(lock_file, purpose="train"):
        with FileLock(lock_file, purpose="train"):
            pass
        # Still held after the inner release: the outer holder has not released it.
        assert holders(lock_file).answer == ["busy", str(os.getpid())]
    assert lock_holders(lock_file) == []
    with pytest.raises(LockBusyError):
        with FileLock(lock_file, reentrant=False):
            FileLock(lock_file, reentrant=False).acquire()


def test_a_second_trainer_from_the_command_line_is_refused_at_once(tmp_path, holders):
    run = tmp_path / "run"
    holder = holders(RunDirectory(run).lock_file)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tfllm.cli", "train", "--model", "gpt",
         "--size", "tiny", "--run-dir", str(run)], capture_output=True, text=True,
        timeout=TIMEOUT_SECONDS, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)})
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if not line.startswith("import ")]
    assert errors == [f"error: {run} is in use: process {holder.pid} (train) holds its lock "
                      "(.lock); wait for it to end, or use another run directory."]
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "tfllm.runs" in imported and "tensorflow" not in imported
