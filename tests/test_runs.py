"""RunDirectory: the one owner of a run directory's files."""

import json

import keras
import numpy as np
import pytest

from tfllm.data import CharacterTokenizer
from tfllm.models import GPT
from tfllm.runs import RunDirectory, write_json


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
