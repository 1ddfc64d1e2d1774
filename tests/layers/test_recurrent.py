import keras
import numpy as np
import pytest

from tests.layer_checks import check_layer
from tfllm.layers import StackedLSTM


def test_single_plain_layer_matches_keras_lstm(rng):
    layer = StackedLSTM(num_layers=1, hidden_dim=6, residual=False, normalize=False)
    reference = keras.layers.LSTM(6, return_sequences=True)
    x = rng.normal(size=(2, 5, 4)).astype("float32")
    layer(x)
    reference(x)
    reference.set_weights(layer.get_weights())
    outputs, _ = layer(x)
    np.testing.assert_allclose(outputs, reference(x), atol=1e-5)


def test_continuing_from_states_equals_running_whole(rng):
    layer = StackedLSTM(num_layers=3, hidden_dim=8)
    x = rng.normal(size=(2, 9, 8)).astype("float32")
    whole, final_states = layer(x)
    first, states = layer(x[:, :4])
    second, continued_states = layer(x[:, 4:], initial_states=states)
    np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole, atol=1e-5)
    for (h1, c1), (h2, c2) in zip(final_states, continued_states):
        np.testing.assert_allclose(h1, h2, atol=1e-5)
        np.testing.assert_allclose(c1, c2, atol=1e-5)


def test_residual_connections_add_the_input(rng):
    """With residuals each layer adds to its input: output - input is the LSTM path."""
    with_residual = StackedLSTM(num_layers=1, hidden_dim=4, normalize=False)
    without = StackedLSTM(num_layers=1, hidden_dim=4, normalize=False, residual=False)
    x = rng.normal(size=(1, 3, 4)).astype("float32")
    with_residual(x)
    without(x)
    without.set_weights(with_residual.get_weights())
    np.testing.assert_allclose(with_residual(x)[0] - x, without(x)[0], atol=1e-6)


def test_masked_steps_keep_the_states(rng):
    layer = StackedLSTM(num_layers=2, hidden_dim=8)
    x = rng.normal(size=(1, 6, 8)).astype("float32")
    mask = np.array([[True, True, True, False, False, False]])
    _, masked_states = layer(x, mask=mask)
    _, short_states = layer(x[:, :3])
    for (h1, c1), (h2, c2) in zip(masked_states, short_states):
        np.testing.assert_allclose(h1, h2, atol=1e-5)
        np.testing.assert_allclose(c1, c2, atol=1e-5)


def test_wrong_number_of_states_is_named(rng):
    layer = StackedLSTM(num_layers=2, hidden_dim=4)
    x = rng.normal(size=(1, 3, 4)).astype("float32")
    _, states = layer(x)
    with pytest.raises(ValueError, match="one \\[h, c\\] pair per layer"):
        layer(x, initial_states=states[:1])


@pytest.mark.parametrize("kwargs, message", [
    ({"num_layers": 0, "hidden_dim": 4}, "num_layers"),
    ({"num_layers": 1, "hidden_dim": -4}, "hidden_dim"),
    ({"num_layers": 1, "hidden_dim": 4, "dropout": 1.0}, "dropout"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StackedLSTM(**kwargs)


def test_contract(rng):
    check_layer(
        StackedLSTM,
        {"num_layers": 2, "hidden_dim": 8, "dropout": 0.1, "residual": True, "normalize": True},
        rng.normal(size=(2, 5, 6)).astype("float32"),
        expected_output_shape=(2, 5, 8),
        expected_num_trainable_weights=2 * 3 + 2 * 2,
    )


def _values_and_gradients(layer, x, states, mask, loss_of):
    import tensorflow as tf

    x, states = tf.constant(x), [[tf.constant(h), tf.constant(c)] for h, c in states]
    with tf.GradientTape() as tape:
        tape.watch([x, states])
        outputs, final = layer(x, initial_states=states, mask=mask)
        loss = loss_of(outputs, final)
    gradients = tape.gradient(loss, [x, states, layer.trainable_weights])
    return [np.asarray(value) for value in keras.tree.flatten([outputs, final, gradients])]


@pytest.mark.parametrize("steps", [7, 1])
@pytest.mark.parametrize("loss", ["everything", "outputs", "states"])
def test_written_out_lstm_equals_keras_lstm_with_gradients(rng, monkeypatch, steps, loss):
    """Without a mask the recurrence is `lstm_sequence` (its gradient written out); an
    all-true mask sends the same call through Keras's `LSTM` layers: the values and the
    gradients of inputs, initial states and every weight agree."""
    import tfllm.layers.recurrent as recurrent

    layer = StackedLSTM(num_layers=2, hidden_dim=8)
    x = rng.normal(size=(3, steps, 8)).astype("float32")
    states = [[rng.normal(size=(3, 8)).astype("float32") for _ in range(2)] for _ in range(2)]
    layer(x)
    losses = {
        "everything": lambda outputs, final: keras.ops.sum(outputs ** 2) + sum(
            keras.ops.sum(h * 0.3 - c * c) for h, c in final),
        "outputs": lambda outputs, final: keras.ops.sum(keras.ops.sin(outputs)),
        "states": lambda outputs, final: keras.ops.sum(final[-1][1] * final[-1][0]),
    }
    calls = []
    written_out = recurrent.lstm_sequence
    monkeypatch.setattr(recurrent, "lstm_sequence",
                        lambda *arguments: calls.append(1) or written_out(*arguments))
    ours = _values_and_gradients(layer, x, states, None, losses[loss])
    assert len(calls) == 2  # both layers ran the written-out LSTM
    keras_path = _values_and_gradients(layer, x, states, np.ones((3, steps), bool),
                                       losses[loss])
    assert len(calls) == 2
    assert len(ours) == len(keras_path)
    for mine, reference in zip(ours, keras_path):
        np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-5)


def test_written_out_lstm_in_bfloat16(rng):
    """Under `mixed_bfloat16` both paths compute in bfloat16: equal within its precision."""
    layer = StackedLSTM(num_layers=2, hidden_dim=16, dtype="mixed_bfloat16")
    x = rng.normal(size=(2, 12, 16)).astype("float32")
    outputs, states = layer(x)
    reference, reference_states = layer(x, mask=np.ones((2, 12), bool))
    assert outputs.dtype == reference.dtype == "bfloat16"
    np.testing.assert_allclose(np.asarray(outputs, "float32"),
                               np.asarray(reference, "float32"), atol=0.05)
    np.testing.assert_allclose(np.asarray(states[-1][1], "float32"),
                               np.asarray(reference_states[-1][1], "float32"), atol=0.05)
