"""What a user reads when `tfllm` fails after TensorFlow has loaded: one `error:` line on
stderr and nothing of TensorFlow's start-up log, unless `--verbose` (then the traceback
and TensorFlow's log too). Three runs of `python -m tfllm.cli`, started at once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from tfllm.data import CharacterTokenizer

REPOSITORY = Path(__file__).resolve().parents[1]
TIMEOUT_SECONDS = 300


def _run_directory(path, model_file_bytes=None):
    """A run directory whose `model.keras` Keras refuses in safe mode (a Python lambda),
    or holds `model_file_bytes`."""
    path.mkdir()
    CharacterTokenizer.from_texts(["to be or not to be"]).save(path / "tokenizer.json")
    (path / "config.json").write_text(json.dumps({"model_class": "GPT"}), encoding="utf-8")
    if model_file_bytes is not None:
        (path / "model.keras").write_bytes(model_file_bytes)
        return path
    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2)])
    model.save(path / "model.keras")
    return path


@pytest.fixture(scope="module")
def failures(tmp_path_factory):
    directory = tmp_path_factory.mktemp("cli_output")
    lambda_run = _run_directory(directory / "lambda")
    damaged_run = _run_directory(directory / "damaged", b"PK\x03\x04 not a zip file at all")
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("TF_CPP_MIN_LOG_LEVEL", "GRPC_VERBOSITY")}
    environment["PYTHONPATH"] = str(REPOSITORY)
    commands = {"safe_mode": ["generate", str(lambda_run)],
                "safe_mode_verbose": ["generate", str(lambda_run), "--verbose"],
                "damaged": ["export", str(damaged_run), "--output", str(directory / "out")]}
    processes = {name: subprocess.Popen([sys.executable, "-m", "tfllm.cli", *arguments],
                                        cwd=directory, env=environment, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for name, arguments in commands.items()}
    results = {}
    try:
        for name, process in processes.items():
            _, stderr = process.communicate(timeout=TIMEOUT_SECONDS)
            results[name] = (process.returncode, stderr)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)
    return results


@pytest.mark.slow
def test_a_model_refused_in_safe_mode_ends_in_one_line(failures):
    code, stderr = failures["safe_mode"]
    assert code == 1
    assert len(stderr.splitlines()) == 1, stderr  # no start-up log, no traceback
    assert stderr.startswith("error: Requested the deserialization of a `Lambda` layer")


@pytest.mark.slow
def test_verbose_shows_the_traceback_and_ends_with_the_same_line(failures):
    code, stderr = failures["safe_mode_verbose"]
    assert code == 1
    assert "Traceback (most recent call last)" in stderr
    assert stderr.splitlines()[-1] == failures["safe_mode"][1].rstrip("\n")


@pytest.mark.slow
def test_any_other_failure_ends_in_one_error_line(failures):
    code, stderr = failures["damaged"]
    assert code == 1
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr


def test_error_lines_are_one_line_and_name_foreign_failures():
    from tfllm.cli import MAX_ERROR_CHARACTERS, _one_line

    assert _one_line(ValueError("TF_CONFIG is malformed:\n  an example")) == (
        "TF_CONFIG is malformed: an example")
    assert _one_line(KeyError("model_class")) == "KeyError: 'model_class'"
    assert _one_line(ZeroDivisionError()) == "ZeroDivisionError"
    long = _one_line(TypeError("x" * (2 * MAX_ERROR_CHARACTERS)))
    assert "\n" not in long and long.endswith("(--verbose shows all of it)")
    assert len(long) < MAX_ERROR_CHARACTERS + 50
