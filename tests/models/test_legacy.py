"""Files saved before the attention took Keras's layout still load, with the same numbers.

`tests/fixtures/legacy/` was written by tfllm at commit e1361ef (the attention held its
eight weights itself): a trained GPT (`gpt.keras`, with optimizer state), its training
checkpoint, a BertMaskedLM, and their logits for fixed token ids (`expected.npz`).
"""

import shutil
from pathlib import Path

import numpy as np

import tfllm.training  # noqa: F401  (registers the learning-rate schedule of the GPT's optimizer)
from tfllm.models import GPT, BertClassifier, legacy
from tfllm.training import TrainingConfig, compile_language_model
from tfllm.training.checkpoints import list_checkpoints, load_checkpoint_model, restore_checkpoint

LEGACY = Path(__file__).resolve().parents[1] / "fixtures" / "legacy"
EXPECTED = np.load(LEGACY / "expected.npz")


def test_old_keras_files_load_with_the_same_logits(tmp_path):
    for name, key in (("gpt.keras", "gpt"), ("bert_masked_lm.keras", "bert")):
        copy = tmp_path / name
        shutil.copyfile(LEGACY / name, copy)
        model = legacy.load_model(copy)
        np.testing.assert_allclose(model(EXPECTED["ids"]), EXPECTED[key], atol=1e-6)
        assert copy.read_bytes() == (LEGACY / name).read_bytes()  # never changed in place
    classifier = BertClassifier.from_pretrained(LEGACY / "bert_masked_lm.keras", num_classes=2)
    assert classifier.encoder.blocks[0].attention.query_dense.kernel.shape == (8, 2, 4)


def test_an_old_checkpoint_restores_weights_and_optimizer_state():
    (step, path), = list_checkpoints(LEGACY / "gpt-checkpoints")
    model = GPT(vocabulary_size=23, max_length=12, num_layers=2, num_heads=2, hidden_dim=8,
                intermediate_dim=16)
    config = TrainingConfig(sequence_length=8, batch_size=4, steps=4, steps_per_epoch=2,
                            warmup_steps=1, jit_compile=False)
    compile_language_model(model, config)
    model.build((None, None))
    restore_checkpoint(path, model)
    np.testing.assert_allclose(model(EXPECTED["ids"]), EXPECTED["gpt"], atol=1e-6)
    assert int(model.optimizer.iterations.numpy()) == int(EXPECTED["gpt_iterations"])
    moments = [np.asarray(variable) for variable in model.optimizer.variables
               if "query" in variable.path and "momentum" in variable.path]
    assert moments and all(np.abs(moment).max() > 0 for moment in moments)
    np.testing.assert_allclose(load_checkpoint_model(path)(EXPECTED["ids"]), EXPECTED["gpt"],
                               atol=1e-6)


def test_current_files_are_left_alone(tmp_path):
    model = GPT(vocabulary_size=23, max_length=12, num_layers=1, num_heads=2, hidden_dim=8)
    model.build((None, None))
    model.save_weights(tmp_path / "current.weights.h5")
    assert not legacy.is_legacy_weights_file(tmp_path / "current.weights.h5")
    assert legacy.upgrade_weights_file(tmp_path / "current.weights.h5",
                                       tmp_path / "copy.weights.h5") == 0
