"""Operating-system file locks: who may write a run directory or an export folder.

A lock is `fcntl.flock` on a small file. The kernel releases it when the process that holds
it ends, however it ends (SIGKILL included), so a lock is never left behind; the file only
records who holds it (one `PID PURPOSE` line per holder), to name them to a process that
is refused. Exclusive locks are for writers (training), shared ones for readers that may
run side by side (exports of one run).

This module imports nothing but the standard library (no TensorFlow, nothing of tfllm): a
command takes its lock before TensorFlow loads, and a test can load this file on its own.
POSIX only (`fcntl`).
"""

import fcntl
import os
from pathlib import Path

#: Locks this process holds, by lock file: [fd, shared, count]. A process that asks again
#: for a lock it holds gets it (the command line locks a run, then the job it runs does).
_HELD = {}


class LockBusyError(RuntimeError):
    """Another process holds the lock. `holders`: `[(pid, purpose)]` of the live holders
    the lock file names (empty when none is recorded)."""

    def __init__(self, message, holders):
        super().__init__(message)
        self.holders = holders


def process_is_alive(pid):
    """Whether a process with this id runs (signal 0 checks without sending one); a
    zombie (dead, not yet reaped by its parent) or one that is exiting does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (not Linux): trust the signal
        return True
    fields = stat.rpartition(")")[2].split()  # state, ppid, ..., flags (the 7th)
    exiting = len(fields) > 6 and int(fields[6]) & _PF_EXITING
    return fields[:1] != ["Z"] and not exiting


#: The kernel's flag of a process that is exiting: its files (and so its locks) are being
#: closed, though it is not a zombie yet.
_PF_EXITING = 0x4


def lock_holders(path):
    """`[(pid, purpose)]` of the live processes a lock file names, this one left out."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    holders = []
    for line in lines:
        pid, _, purpose = line.strip().partition(" ")
        if pid.isdigit() and int(pid) != os.getpid() and process_is_alive(int(pid)) \
                and (int(pid), purpose) not in holders:
            holders.append((int(pid), purpose))
    return holders


def describe_holders(holders):
    """`"process 1234 (train)"`, several joined by commas, or `"another process"`."""
    return ", ".join(f"process {pid}" + (f" ({purpose})" if purpose else "")
                     for pid, purpose in holders) or "another process"


class FileLock:
    """An `flock` on `path`, as a context manager or with `acquire` / `release`.

    Args:
        path: the lock file (created if needed, with its folder).
        shared: a shared lock (many holders) instead of an exclusive one.
        purpose: a word recorded beside the pid (`"train"`, `"export"`).
        blocking: wait for the lock instead of raising `LockBusyError`.
        reentrant: a process that holds the lock already gets it again at once
            (counted: it is released when every holder has released it).

    Example:

    >>> with FileLock("runs/gpt/.lock", purpose="train"):
    ...     train()
    """

    def __init__(self, path, shared=False, purpose="", blocking=False, reentrant=True):
        self.path = Path(path)
        self.shared, self.purpose = shared, purpose
        self.blocking, self.reentrant = blocking, reentrant
        self._fd = None

    def acquire(self):
        """Takes the lock; returns self. Raises `LockBusyError` if another process holds it
        (and `blocking` is False)."""
        key = os.path.realpath(self.path)
        held = _HELD.get(key) if self.reentrant else None
        if held is not None and (self.shared or not held[1]):
            held[2] += 1
            self._fd = held[0]
            return self
        if held is not None:  # held shared, wanted exclusive: convert it
            self._flock(held[0])
            held[1], held[2] = False, held[2] + 1
            self._fd = held[0]
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            self._flock(fd)
        except BaseException:
            os.close(fd)
            raise
        if not self.shared:
            os.ftruncate(fd, 0)  # the holders of before are gone
        os.write(fd, f"{os.getpid()} {self.purpose}\n".encode())
        if self.reentrant:
            _HELD[key] = [fd, self.shared, 1]
        self._fd = fd
        return self

    def _flock(self, fd):
        operation = fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, operation | (0 if self.blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            holders = lock_holders(self.path)
            raise LockBusyError(f"{describe_holders(holders)} holds {self.path}",
                                holders) from None

    def release(self):
        """Releases the lock (once every re-entrant holder of this process has)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        key = os.path.realpath(self.path)
        held = _HELD.get(key) if self.reentrant else None
        if held is not None and held[0] == fd:
            held[2] -= 1
            if held[2] > 0:
                return
            del _HELD[key]
        if not self.shared:
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self):
        # `with RunDirectory(...).lock():` enters a lock acquired already.
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exception):
        self.release()
