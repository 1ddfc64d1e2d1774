import keras
import numpy as np
import pytest

from tfllm.models import LSTMLanguageModel


def _token_ids(rng, batch_size=2, length=12):
    return rng.integers(1, 37, size=(batch_size, length)).astype("int32")


def test_logits_at_t_never_depend_on_later_tokens(rng, tiny_lstm_config):
    model = LSTMLanguageModel(**tiny_lstm_config)
    token_ids = _token_ids(rng)
    before = np.asarray(model(token_ids))
    assert before.shape == (2, 12, 37)
    changed = token_ids.copy()
    changed[:, 7] = (changed[:, 7] + 3) % 37
    after = np.asarray(model(changed))
    np.testing.assert_allclose(before[:, :7], after[:, :7], atol=1e-5)
    assert not np.allclose(before[:, 7:], after[:, 7:])


def test_left_padding_with_mask_equals_the_unpadded_sequence(rng, tiny_lstm_config):
    """Masked steps keep the states, so left padding changes nothing."""
    model = LSTMLanguageModel(**tiny_lstm_config)
    token_ids = _token_ids(rng, batch_size=1, length=8)
    padded = np.concatenate([rng.integers(1, 37, size=(1, 4)).astype("int32"), token_ids], 1)
    padding_mask = np.concatenate([np.zeros((1, 4), bool), np.ones((1, 8), bool)], 1)
    np.testing.assert_allclose(
        np.asarray(model(padded, padding_mask=padding_mask))[:, 4:],
        model(token_ids),
        atol=1e-5,
    )


def test_stateful_generation_equals_running_the_full_sequence(rng, tiny_lstm_config):
    model = LSTMLanguageModel(**tiny_lstm_config)
    prompt = _token_ids(rng, length=4)
    generated = model.generate(prompt, max_new_tokens=12, temperature=0)
    sequence = prompt
    for _ in range(12):
        next_token = np.asarray(model(sequence))[:, -1, 1:].argmax(-1) + 1  # never padding (0)
        sequence = np.concatenate([sequence, next_token[:, None]], axis=1)
    np.testing.assert_array_equal(generated, sequence)


def test_sampling_is_reproducible_with_a_seed(rng, tiny_lstm_config):
    model = LSTMLanguageModel(**tiny_lstm_config)
    prompt = _token_ids(rng, length=3)
    first = model.generate(prompt, max_new_tokens=10, temperature=1.0, seed=3)
    np.testing.assert_array_equal(first, model.generate(prompt, 10, temperature=1.0, seed=3))
    assert not np.array_equal(first, model.generate(prompt, 10, temperature=1.0, seed=4))


def test_untrained_loss_is_close_to_log_vocabulary(rng):
    model = LSTMLanguageModel(vocabulary_size=211, num_layers=2, hidden_dim=32)
    model.compile()
    stream = rng.integers(0, 211, size=(8, 33)).astype("int32")
    loss = model.evaluate(stream[:, :-1], stream[:, 1:], verbose=0)
    assert abs(loss - np.log(211)) < 0.05


def test_keras_file_round_trip(tmp_path, rng, tiny_lstm_config):
    model = LSTMLanguageModel(**tiny_lstm_config, dropout=0.1)
    model.compile()
    token_ids = _token_ids(rng)
    expected = np.asarray(model(token_ids))
    model.save(tmp_path / "lstm.keras")
    restored = keras.saving.load_model(tmp_path / "lstm.keras")
    assert type(restored) is LSTMLanguageModel
    assert restored.get_config() == model.get_config()
    np.testing.assert_allclose(restored(token_ids), expected, atol=1e-6)


def test_fit_learns_a_repeating_pattern(tiny_lstm_config):
    model = LSTMLanguageModel(**tiny_lstm_config)
    model.compile(optimizer=keras.optimizers.AdamW(1e-2))
    stream = np.tile(np.array([3, 1, 4, 1, 5], "int32"), 60)
    windows = np.stack([stream[i : i + 17] for i in range(0, 240, 3)])
    history = model.fit(windows[:, :-1], windows[:, 1:], epochs=15, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < 0.3


def test_mixed_bfloat16_gives_float32_logits(rng, tiny_lstm_config):
    model = LSTMLanguageModel(**tiny_lstm_config, dtype="mixed_bfloat16")
    assert keras.backend.standardize_dtype(model(_token_ids(rng)).dtype) == "float32"


@pytest.mark.parametrize(
    "overrides, message",
    [({"num_layers": 0}, "num_layers"), ({"hidden_dim": 0}, "hidden_dim"),
     ({"vocabulary_size": 0}, "vocabulary_size"), ({"dropout": -1}, "dropout")],
)
def test_bad_arguments_are_named(tiny_lstm_config, overrides, message):
    with pytest.raises(ValueError, match=message):
        LSTMLanguageModel(**{**tiny_lstm_config, **overrides})


def test_float_token_ids_are_refused(tiny_lstm_config):
    with pytest.raises(ValueError, match="integer token ids"):
        LSTMLanguageModel(**tiny_lstm_config)(np.zeros((1, 4), "float32"))
