"""Version folders of the TensorFlow Serving layout: the next number, and an atomic write."""

import json
import os
import shutil
from pathlib import Path

DEFAULT_EXPORT_DIRECTORY = "saved_models"
METADATA_FILE = "assets.extra/tfllm.json"


def _next_version(directory):
    versions = [int(path.name) for path in directory.iterdir()
                if path.is_dir() and path.name.isdigit()] if directory.is_dir() else []
    return max(versions, default=0) + 1


def check_version(directory, version):
    """`(directory as a Path, version)`: the next free version by default; refuses a taken one."""
    directory = Path(directory)
    if version is None:
        version = _next_version(directory)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive integer; got {version!r}.")
    if (directory / str(version)).exists():
        raise ValueError(f"{directory / str(version)} exists already; choose another version.")
    return directory, version


def write_version(archive, directory, version, metadata):
    """Writes `archive` (a `keras.export.ExportArchive`) and `metadata` (JSON, as
    `METADATA_FILE`) to `directory/version/` under a temporary name, then renames it into
    place: the version folder is complete or absent."""
    final = directory / str(version)
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{version}.tmp-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        archive.write_out(str(temporary), verbose=False)
        (temporary / METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
        (temporary / METADATA_FILE).write_text(
            json.dumps(metadata, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.rename(temporary, final)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return final


def model_config_json(model):
    """`model.get_config()` as plain JSON values (what the metadata file records)."""
    return json.loads(json.dumps(model.get_config(), default=str))
