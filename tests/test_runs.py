"""RunDirectory: the one owner of a run directory's files."""

import json
import shutil

import keras
import numpy as np
import pytest

from tfllm.data import CharacterTokenizer
from tfllm.models import GPT
from tfllm.runs import DamagedModelError, RunDirectory, write_json


def test_paths_and_state(tmp_path):
    run = RunDirectory(tmp_path / "gpt")
    assert not run.exists() and not run.is_finished()
    assert run.model_file.name == "model.keras" and run.checkpoints.name == "checkpoints"
    assert run.sibling("-scratch").path == tmp_path / "gpt-scratch"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run.read_config()


def test_config_tokenizer_and_model_round_trip(tmp_path):
    run = RunDirectory(tmp_path / "run")
    tokenizer = CharacterTokenizer.from_texts(["to be or not to be"])
    model = GPT(vocabulary_size=tokenizer.vocabulary_size, max_length=8, num_layers=1,
                num_heads=2, hidden_dim=8)
    model.build((None, None))
    run.write_config({"model_class": "GPT", "model": model.get_config(),
                      "class_names": ["a", "b"]})
    run.save_tokenizer(tokenizer)
    run.save_model(model)
    assert run.is_finished() and run.model_class() == "GPT"
    assert run.class_names() == ["a", "b"] and run.is_classifier()
    loaded, again = run.load()
    ids = np.array([[2, 3, 4]], "int32")
    np.testing.assert_allclose(loaded(ids), model(ids), atol=1e-6)
    assert again.vocabulary == tokenizer.vocabulary


def test_an_unfinished_run_loads_its_latest_checkpoint(tmp_path):
    from tfllm.training import TrainingConfig, compile_language_model
    from tfllm.training.checkpoints import save_checkpoint

    run = RunDirectory(tmp_path / "run")
    tokenizer = CharacterTokenizer.from_texts(["abc"])
    model = compile_language_model(
        GPT(vocabulary_size=tokenizer.vocabulary_size, max_length=8, num_layers=1,
            num_heads=2, hidden_dim=8),
        TrainingConfig(sequence_length=4, batch_size=2, steps=2, steps_per_epoch=1,
                       warmup_steps=0, jit_compile=False))
    model.build((None, None))
    run.save_tokenizer(tokenizer)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        run.load()
    save_checkpoint(run.checkpoints, model, step=1, epoch=1)
    loaded, _ = run.load()
    np.testing.assert_allclose(loaded(np.array([[2, 3]])), model(np.array([[2, 3]])), atol=1e-6)


def test_json_writes_are_atomic_and_readable(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"loss": 1.5})
    assert json.loads(path.read_text()) == {"loss": 1.5}
    assert not list(tmp_path.glob("*.tmp"))


def test_no_tensorflow_needed_to_read_a_run(tmp_path):
    """`tfllm.runs` imports no TensorFlow: a command reads the run directory before
    TensorFlow starts (here `tfllm export` refusing a folder that is not a run).

    (`import tfllm` itself loads the models, and with them TensorFlow; the command line is
    the one place that starts without them.)"""
    import subprocess
    import sys

    (tmp_path / "not-a-run").mkdir()
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tfllm.cli", "export",
         str(tmp_path / "not-a-run")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "error:" in result.stderr and "not-a-run" in result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "tfllm.runs" in imported
    assert not {name for name in imported if name.split(".")[0] in ("tensorflow", "keras")}


def test_a_classifier_needs_class_names(tmp_path):
    run = RunDirectory(tmp_path)
    run.write_config({"model_class": "BertMaskedLM"})
    assert not run.is_classifier()
    with pytest.raises(ValueError, match="not a classifier run"):
        run.class_names()
    keras.backend.clear_session()


def _finished_run_with_a_checkpoint(path):
    """A run whose model.keras holds other weights than its checkpoint (step 1), so that
    what a load returns shows where it came from. Returns the run and both weights."""
    from tfllm.training import TrainingConfig, compile_language_model
    from tfllm.training.checkpoints import save_checkpoint

    run = RunDirectory(path)
    tokenizer = CharacterTokenizer.from_texts(["to be or not to be"])
    model = compile_language_model(
        GPT(vocabulary_size=tokenizer.vocabulary_size, max_length=8, num_layers=1,
            num_heads=2, hidden_dim=8),
        TrainingConfig(sequence_length=4, batch_size=2, steps=2, steps_per_epoch=1,
                       warmup_steps=0, jit_compile=False))
    model.build((None, None))
    run.save_tokenizer(tokenizer)
    save_checkpoint(run.checkpoints, model, step=1, epoch=1)
    checkpoint_weights = model.get_weights()
    model.set_weights([weight + 0.5 for weight in checkpoint_weights])
    run.save_model(model)
    return run, checkpoint_weights, model.get_weights()


@pytest.mark.parametrize("how", ["zeroed", "random", "truncated"])
def test_a_damaged_model_file_falls_back_to_the_latest_good_checkpoint(tmp_path, how):
    run, checkpoint_weights, model_weights = _finished_run_with_a_checkpoint(tmp_path / "run")
    for weight, expected in zip(run.load()[0].get_weights(), model_weights):
        np.testing.assert_array_equal(weight, expected)  # whole: model.keras
    data = run.model_file.read_bytes()
    run.model_file.write_bytes({"zeroed": bytes(len(data)),
                                "random": np.random.default_rng(5).bytes(len(data)),
                                "truncated": data[: len(data) - 100]}[how])
    lines = []
    model, _ = run.load(report=lines.append)
    for weight, expected in zip(model.get_weights(), checkpoint_weights):
        np.testing.assert_array_equal(weight, expected)
    assert len(lines) == 1 and lines[0].startswith(f"warning: {run.model_file} is damaged (")
    assert lines[0].endswith("Using its checkpoint of step 1 instead.")
    shutil.rmtree(run.checkpoints)
    with pytest.raises(DamagedModelError) as error:
        run.load(report=lines.append)
    assert "\n" not in str(error.value) and "no good checkpoint" in str(error.value)


def test_a_tokenizer_of_another_size_is_refused(tmp_path):
    run, _, _ = _finished_run_with_a_checkpoint(tmp_path / "run")
    expected = run.tokenizer().vocabulary_size
    other = CharacterTokenizer.from_texts(["abcdefghijklmnopqrstuvwxyz"])
    run.save_tokenizer(other)
    with pytest.raises(ValueError) as error:
        run.load()
    assert str(error.value) == (
        f"{run.tokenizer_file} holds {other.vocabulary_size} tokens but the model was built "
        f"for {expected}: it is not this run's tokenizer.")


def test_the_tokenizer_is_replaced_atomically_and_only_when_it_changed(tmp_path):
    run = RunDirectory(tmp_path / "run")
    tokenizer = CharacterTokenizer.from_texts(["abc"])
    run.save_tokenizer(tokenizer)
    inode = run.tokenizer_file.stat().st_ino
    run.save_tokenizer(CharacterTokenizer.from_texts(["cab"]))  # the same vocabulary
    assert run.tokenizer_file.stat().st_ino == inode
    run.save_tokenizer(CharacterTokenizer.from_texts(["abcd"]))
    assert run.tokenizer_file.stat().st_ino != inode  # a new file, renamed into place
    assert run.tokenizer().vocabulary == list("abcd")
    assert sorted(path.name for path in run.path.iterdir()) == ["tokenizer.json"]


def test_json_has_no_nan(tmp_path):
    path = tmp_path / "metrics.json"
    write_json(path, {"loss": float("nan"), "losses": [1.0, float("inf")], "ok": 2.0})
    text = path.read_text()
    assert json.loads(text, parse_constant=lambda name: pytest.fail(name)) == {
        "loss": None, "losses": [1.0, None], "ok": 2.0}
