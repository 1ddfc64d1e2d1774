"""Checkpoints: complete or absent, restored exactly, refused when they do not fit."""

import json

import keras
import numpy as np
import pytest

from tests.conftest import TINY_GPT_CONFIG
from tfllm.models import GPT
from tfllm.training import CheckpointError, TrainingConfig, compile_language_model
from tfllm.training.checkpoints import (
    list_checkpoints,
    load_checkpoint_model,
    restore_checkpoint,
    save_checkpoint,
)

CONFIG = TrainingConfig(sequence_length=8, batch_size=4, steps=10, steps_per_epoch=2,
                        warmup_steps=1, jit_compile=False)


def _trained(config, rng, steps=2):
    model = compile_language_model(GPT(**config), CONFIG)
    ids = rng.integers(1, config["vocabulary_size"], size=(4 * steps, 9))
    model.fit(ids[:, :-1], ids[:, 1:], batch_size=4, epochs=1, verbose=0, shuffle=False)
    return model


# The tests of the trained model go to one xdist worker (--dist loadgroup).
TRAINED = pytest.mark.xdist_group("checkpoint_trained")


@pytest.fixture(scope="module")
def trained():
    """A tiny GPT trained for 2 steps (trained once: the tests below only save it)."""
    keras.utils.set_random_seed(1234)
    return _trained(TINY_GPT_CONFIG, np.random.default_rng(1234))


def _fresh(config):
    model = compile_language_model(GPT(**config), CONFIG)
    model.build((None, None))
    return model


@TRAINED
def test_restore_gives_back_weights_optimizer_state_and_step(tmp_path, trained,
                                                             tiny_gpt_config):
    path = save_checkpoint(tmp_path, trained, step=2, epoch=1)
    restored = _fresh(tiny_gpt_config)
    state = restore_checkpoint(path, restored)
    assert state["step"] == 2 and state["epoch"] == 1
    assert int(restored.optimizer.iterations.numpy()) == 2
    for mine, theirs in zip(restored.weights, trained.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    for mine, theirs in zip(restored.optimizer.variables, trained.optimizer.variables):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


@TRAINED
def test_only_complete_checkpoints_count_and_old_ones_go(tmp_path, trained):
    (tmp_path / "step-00000009.tmp").mkdir()  # what a kill while saving leaves behind
    for step in (2, 4, 6, 8):
        save_checkpoint(tmp_path, trained, step=step, epoch=step // 2, keep=2)
    assert [step for step, _ in list_checkpoints(tmp_path)] == [6, 8]
    assert not list(tmp_path.glob("*.tmp"))


@TRAINED
def test_corrupted_weights_are_reported_not_loaded(tmp_path, trained, tiny_gpt_config):
    path = save_checkpoint(tmp_path, trained, step=2, epoch=1)
    weights = path / "weights.weights.h5"
    weights.write_bytes(weights.read_bytes()[: len(weights.read_bytes()) // 2])
    model = _fresh(tiny_gpt_config)
    before = [weight.numpy().copy() for weight in model.weights]
    with pytest.raises(CheckpointError, match="corrupted"):
        restore_checkpoint(path, model)
    for weight, value in zip(model.weights, before):
        np.testing.assert_array_equal(weight.numpy(), value)


@TRAINED
def test_unreadable_state_is_reported(tmp_path, trained, tiny_gpt_config):
    path = save_checkpoint(tmp_path, trained, step=2, epoch=1)
    (path / "state.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckpointError, match="corrupted.*state.json"):
        restore_checkpoint(path, _fresh(tiny_gpt_config))


@TRAINED
def test_a_checkpoint_of_another_model_is_refused(tmp_path, trained, tiny_gpt_config):
    path = save_checkpoint(tmp_path, trained, step=2, epoch=1)
    with pytest.raises(CheckpointError, match="hidden_dim: saved 16, now 32"):
        restore_checkpoint(path, _fresh({**tiny_gpt_config, "hidden_dim": 32}))


@TRAINED
def test_a_checkpoint_without_optimizer_state_is_refused(tmp_path, trained, tiny_gpt_config):
    path = save_checkpoint(tmp_path, trained, step=2, epoch=1)
    state = json.loads((path / "state.json").read_text())
    state["optimizer_iterations"] = 5
    (path / "state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="no optimizer state"):
        restore_checkpoint(path, _fresh(tiny_gpt_config))


@TRAINED
def test_the_model_of_a_checkpoint_loads_on_its_own(tmp_path, rng, trained):
    path = save_checkpoint(tmp_path, trained, step=2, epoch=1)
    ids = rng.integers(1, 37, size=(2, 8))
    np.testing.assert_allclose(load_checkpoint_model(path)(ids), trained(ids), atol=1e-6)


def test_keep_best_weights_puts_back_the_best_epoch():
    from tfllm.training.checkpoints import KeepBestWeights

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    callback = KeepBestWeights("val_accuracy")
    callback.set_model(model)
    best = [np.full(w.shape, 1.0, "float32") for w in model.get_weights()]
    model.set_weights(best)
    callback.on_epoch_end(0, {"val_accuracy": 0.7})
    model.set_weights([np.full(w.shape, 2.0, "float32") for w in best])
    callback.on_epoch_end(1, {"val_accuracy": 0.6})
    callback.on_epoch_end(2, {"val_accuracy": float("nan")})
    callback.on_train_end()
    assert callback.best_epoch == 1 and callback.best == 0.7
    for kept, expected in zip(model.get_weights(), best):
        np.testing.assert_array_equal(kept, expected)
    with pytest.raises(ValueError, match="mode"):
        KeepBestWeights(mode="up")


def _lora_model(config, rng=None, steps=0):
    model = GPT(**config)
    model.build((None, None))
    model.enable_lora(2)
    compile_language_model(model, CONFIG)
    if steps:
        ids = rng.integers(1, config["vocabulary_size"], size=(4 * steps, 9))
        model.fit(ids[:, :-1], ids[:, 1:], batch_size=4, epochs=1, verbose=0, shuffle=False)
    return model


def test_a_lora_checkpoint_resumes_its_adapters_and_keeps_learning(tmp_path, rng,
                                                                    tiny_gpt_config):
    """Keras loads an adapted layer's kernel merged and its adapters as zeros (where they
    get no gradient); the checkpoint puts the frozen kernel and both adapters back."""
    trained = _lora_model(tiny_gpt_config, rng, steps=3)
    path = save_checkpoint(tmp_path, trained, step=2, epoch=1)
    keras.utils.set_random_seed(99)  # other adapter draws than the trained model's
    restored = _lora_model(tiny_gpt_config)
    restore_checkpoint(path, restored)
    for mine, theirs in zip(restored.weights, trained.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy(), err_msg=mine.path)
    before = [np.asarray(layer.lora_kernel_b) for layer in restored.lora_layers]
    ids = rng.integers(1, tiny_gpt_config["vocabulary_size"], size=(8, 9))
    restored.fit(ids[:, :-1], ids[:, 1:], batch_size=4, epochs=1, verbose=0)
    assert all(not np.array_equal(np.asarray(layer.lora_kernel_b), value)
               for layer, value in zip(restored.lora_layers, before))


def test_a_lora_checkpoint_does_not_load_into_a_model_without_adapters(tmp_path, rng,
                                                                        tiny_gpt_config):
    path = save_checkpoint(tmp_path, _lora_model(tiny_gpt_config, rng, steps=1), step=2,
                           epoch=1)
    with pytest.raises(CheckpointError, match="LoRA"):
        restore_checkpoint(path, _fresh(tiny_gpt_config))
    # A checkpoint's model (for generation) is the plain model, adapters merged.
    assert not load_checkpoint_model(path).lora_layers


def _damage(path, how, rng):
    """Damages a file as disks and careless copies do: zeroed or random bytes of the same
    size, or cut short."""
    data = path.read_bytes()
    if how == "zeroed":
        damaged = data[:64] + bytes(len(data) - 64)  # a valid header, zeroed weights
    elif how == "random":
        damaged = rng.integers(0, 256, len(data), dtype=np.uint8).tobytes()
    else:
        damaged = data[: len(data) // 2]
    path.write_bytes(damaged)


@pytest.mark.parametrize("how", ["zeroed", "random", "truncated"])
def test_a_damaged_newest_checkpoint_is_skipped_for_the_one_before(tmp_path, rng,
                                                                   tiny_gpt_config, how):
    from tfllm.training.checkpoints import latest_good_checkpoint, restore_latest

    model = _trained(tiny_gpt_config, rng)
    save_checkpoint(tmp_path, model, step=2, epoch=1)
    at_step_2 = [weight.numpy().copy() for weight in model.weights]
    ids = rng.integers(1, 37, size=(8, 9))
    model.fit(ids[:, :-1], ids[:, 1:], batch_size=4, epochs=1, verbose=0, shuffle=False)
    newest = save_checkpoint(tmp_path, model, step=4, epoch=2)
    _damage(newest / "weights.weights.h5", how, rng)
    lines = []
    assert latest_good_checkpoint(tmp_path, lines.append) == (2, tmp_path / "step-00000002")
    restored = _fresh(tiny_gpt_config)
    step, state = restore_latest(tmp_path, restored, lines.append)
    assert step == 2 == state["step"] and int(restored.optimizer.iterations.numpy()) == 2
    for weight, expected in zip(restored.weights, at_step_2):
        np.testing.assert_array_equal(weight.numpy(), expected)
    assert lines == [f"checkpoint {newest} is corrupted: weights.weights.h5 does not match "
                     "its recorded sha256. Skipping it for the checkpoint before it."] * 2


def test_every_checkpoint_damaged_is_an_error_not_a_fresh_start(tmp_path, rng,
                                                                tiny_gpt_config):
    from tfllm.training.checkpoints import restore_latest

    path = save_checkpoint(tmp_path, _trained(tiny_gpt_config, rng), step=2, epoch=1)
    _damage(path / "weights.weights.h5", "zeroed", rng)
    with pytest.raises(CheckpointError, match="every checkpoint in .* is damaged"):
        restore_latest(tmp_path, _fresh(tiny_gpt_config), lambda line: None)
    assert restore_latest(tmp_path / "none", _fresh(tiny_gpt_config)) is None
