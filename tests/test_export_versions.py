"""Export versions: chosen under the model folder's lock, distinct for exports side by side,
and the hidden folders of killed exports removed. The archive is a stand-in that writes a
file (what is tested is the choice of folders, not TensorFlow's SavedModel writer)."""

import json
import threading
import time
from pathlib import Path

import pytest

from tfllm.export.versions import LOCK_FILE, METADATA_FILE, reserve_version, write_version
from tests.test_locks import Holder


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


def test_a_version_being_written_is_taken_and_a_killed_exports_folder_removed(tmp_path):
    """A real process holds the folder's lock with a version half written, as an export
    does while it chooses; the next export waits for the lock, and once the process is
    killed its folder is stale: removed, and its version number free again."""
    holder = Holder(tmp_path / LOCK_FILE, purpose="export")
    try:
        assert holder.answer == ["locked"]
        (tmp_path / f".1.tmp-{holder.pid}").mkdir()
        chosen = []
        waiting = threading.Thread(target=lambda: chosen.append(reserve_version(tmp_path)))
        waiting.start()
        waiting.join(timeout=1)
        assert waiting.is_alive() and not chosen  # it waits for the lock
        holder.kill()
        waiting.join(timeout=60)
    finally:
        holder.kill()
    version, temporary = chosen[0]
    assert version == 1 and not (tmp_path / f".1.tmp-{holder.pid}").exists()
    # A version whose writer lives is taken, by number and explicitly.
    assert reserve_version(tmp_path)[0] == 2
    with pytest.raises(ValueError, match="being written"):
        reserve_version(tmp_path, 1)
