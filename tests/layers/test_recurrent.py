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
