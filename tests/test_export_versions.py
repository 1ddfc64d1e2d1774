"""Export versions: chosen under the model folder's lock, distinct for exports side by side,
and the hidden folders of killed exports removed. The archive is a stand-in that writes a
file (what is tested is the choice of folders, not TensorFlow's SavedModel writer)."""

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tfllm.export.versions import (LOCK_FILE, METADATA_FILE, release_version,
                                   reserve_version, write_version)


class SlowArchive:
    """Writes `saved_model.pb` slowly enough that exports overlap."""

    def write_out(self, path, verbose=False):
        time.sleep(0.2)
        (Path(path) / "saved_model.pb").write_bytes(b"model")


def test_exports_side_by_side_get_distinct_versions(tmp_path):
    results, errors = [], []

    def export(index):
        try:
            results.append(write_version(SlowArchive(), tmp_path, None, {"index": index}))
        except Exception as error:  # noqa: BLE001  (reported by the assertion below)
            errors.append(error)

    threads = [threading.Thread(target=export, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors and sorted(path.name for path in results) == ["1", "2", "3", "4"]
    indexes = {json.loads((path / METADATA_FILE).read_text())["index"] for path in results}
    assert indexes == {0, 1, 2, 3}  # each export's own files in its own version
    assert sorted(path.name for path in tmp_path.iterdir()) == [LOCK_FILE, "1", "2", "3", "4"]


#: An export caught mid-write, as a real process: it holds the folder's lock (as while it
#: chooses a version) if asked, and the flock on its temporary version folder (as while it
#: writes), until it is killed.
WRITER = """
import fcntl, os, sys, time
folder, version, hold_folder_lock = sys.argv[1], sys.argv[2], sys.argv[3] == "yes"
if hold_folder_lock:
    lock = os.open(os.path.join(folder, ".lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
temporary = os.path.join(folder, f".{version}.tmp-{os.getpid()}")
os.mkdir(temporary)
writing = os.open(temporary, os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(writing, fcntl.LOCK_EX)
print("writing", flush=True)
time.sleep(120)
"""


class Writer:
    """The WRITER process (stopped by its pid, SIGKILL, bounded waits)."""

    def __init__(self, folder, version, hold_folder_lock):
        self.process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(folder), str(version),
             "yes" if hold_folder_lock else "no"], stdout=subprocess.PIPE, text=True)
        self.pid = self.process.pid
        self.temporary = Path(folder) / f".{version}.tmp-{self.pid}"
        ready, _, _ = select.select([self.process.stdout], [], [], 60)
        assert ready and self.process.stdout.readline().strip() == "writing"

    def kill(self):
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=60)
        self.process.stdout.close()


def test_a_version_being_written_is_taken_and_a_killed_exports_folder_removed(tmp_path):
    """A real process holds the folder's lock and writes version 1; the next export waits
    for the lock, and once the writer is killed its folder is stale: removed, and its
    version number free again."""
    writer = Writer(tmp_path, 1, hold_folder_lock=True)
    try:
        chosen = []
        waiting = threading.Thread(target=lambda: chosen.append(reserve_version(tmp_path)))
        waiting.start()
        waiting.join(timeout=1)
        assert waiting.is_alive() and not chosen  # it waits for the lock
        writer.kill()
        waiting.join(timeout=60)
    finally:
        writer.kill()
    version, temporary = chosen[0]
    assert version == 1 and not writer.temporary.exists() and temporary.is_dir()
    # A version this process is writing is taken, by number and explicitly.
    second, second_temporary = reserve_version(tmp_path)
    assert second == 2
    with pytest.raises(ValueError, match="being written"):
        reserve_version(tmp_path, 1)
    release_version(temporary)
    release_version(second_temporary)
    again, again_temporary = reserve_version(tmp_path)  # released: stale, removed, free
    release_version(again_temporary)
    assert again == 1 and not second_temporary.exists()


def test_a_version_another_live_process_writes_is_taken(tmp_path):
    writer = Writer(tmp_path, 1, hold_folder_lock=False)
    try:
        version, temporary = reserve_version(tmp_path)
        assert version == 2 and writer.temporary.is_dir()
        with pytest.raises(ValueError, match="being written"):
            reserve_version(tmp_path, 1)
        release_version(temporary)
    finally:
        writer.kill()
    again, again_temporary = reserve_version(tmp_path)
    release_version(again_temporary)
    assert again == 1 and not writer.temporary.exists()
