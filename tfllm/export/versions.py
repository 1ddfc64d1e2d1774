"""Version folders of the TensorFlow Serving layout: the next number, and an atomic write.

An export is written to a hidden `.N.tmp-PID` folder and renamed to `N/` when complete.
Its number is chosen under an exclusive lock on the model's folder (`.lock` there): the
temporary folder is created under it, and its writer holds an `flock` on that folder until
the version is complete. A temporary folder counts as taken while its lock is held, so
exports running side by side get distinct versions; one whose lock is free (its writer was
killed: the kernel released the lock as the process died) is removed the next time a
version is chosen. The lock, not the pid in the name, decides: a pid can be reused, and a
dying process is still listed for a moment after its locks are gone. TensorFlow Serving
reads only the numbered folders.
"""

import fcntl
import json
import os
import re
import shutil
from pathlib import Path

from tfllm.locks import FileLock

DEFAULT_EXPORT_DIRECTORY = "saved_models"
METADATA_FILE = "assets.extra/tfllm.json"
LOCK_FILE = ".lock"
_TEMPORARY_NAME = re.compile(r"^\.(\d+)\.tmp-(\d+)$")


def check_version(directory, version):
    """`(directory as a Path, version)`, checked before anything is built: `version` is
    None (the next free one, chosen when writing) or a positive integer not taken yet."""
    directory = Path(directory)
    if version is None:
        return directory, None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive integer; got {version!r}.")
    if (directory / str(version)).exists():
        raise ValueError(f"{directory / str(version)} exists already; choose another version.")
    return directory, version


def reserve_version(directory, version=None):
    """Chooses `version` (default: one more than the highest taken) under the folder's lock
    and creates its temporary folder, locked by this process; returns `(version, temporary
    folder)`. Release it with `release_version` once it is renamed or removed. Temporary
    folders nobody holds are removed; those held count as taken.

    Raises:
        ValueError: `version` is taken (a version folder, or an export writing it).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with FileLock(directory / LOCK_FILE, purpose="export", blocking=True, reentrant=False):
        taken = {int(path.name) for path in directory.iterdir()
                 if path.is_dir() and path.name.isdigit()}
        for path in directory.iterdir():
            match = _TEMPORARY_NAME.match(path.name)
            if match and _is_being_written(path):
                taken.add(int(match.group(1)))
            elif match:
                shutil.rmtree(path, ignore_errors=True)  # left by a killed export
        if version is None:
            version = max(taken, default=0) + 1
        elif version in taken:
            raise ValueError(f"{directory / str(version)} exists already or is being "
                             "written; choose another version.")
        temporary = directory / f".{version}.tmp-{os.getpid()}"
        temporary.mkdir()
        _WRITING[temporary] = _lock_folder(temporary, blocking=True)
    return version, temporary


def release_version(temporary):
    """Releases the lock `reserve_version` took on `temporary` (renamed or not)."""
    descriptor = _WRITING.pop(Path(temporary), None)
    if descriptor is not None:
        os.close(descriptor)  # closing the last descriptor releases the flock


def write_version(archive, directory, version, metadata):
    """Writes `archive` (a `keras.export.ExportArchive`) and `metadata` (JSON, as
    `METADATA_FILE`) to `directory/VERSION/` (`version`, or the next free one: see
    `reserve_version`) under a temporary name, then renames it into place: the version
    folder is complete or absent. Returns the version folder."""
    version, temporary = reserve_version(directory, version)
    final = Path(directory) / str(version)
    try:
        archive.write_out(str(temporary), verbose=False)
        (temporary / METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
        (temporary / METADATA_FILE).write_text(
            json.dumps(metadata, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.rename(temporary, final)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
        release_version(temporary)
    return final


#: Temporary folders this process is writing -> the descriptor holding their flock.
_WRITING = {}


def _lock_folder(path, blocking):
    """An open descriptor of the folder `path` with an exclusive flock on it, or None when
    another open descriptor (of any process, this one included) holds it."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


def _is_being_written(path):
    """Whether an export holds the temporary folder `path` (see `reserve_version`)."""
    try:
        descriptor = _lock_folder(path, blocking=False)
    except FileNotFoundError:  # removed meanwhile
        return False
    if descriptor is None:
        return True
    os.close(descriptor)
    return False


def model_config_json(model):
    """`model.get_config()` as plain JSON values (what the metadata file records)."""
    return json.loads(json.dumps(model.get_config(), default=str))
