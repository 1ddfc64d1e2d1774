import keras
import numpy as np
import pytest

from tests.layer_checks import check_layer
from tfllm.layers import PositionEmbedding, RotaryEmbedding, SinusoidalPositionEncoding


def _numpy_sinusoidal(positions, hidden_dim, max_wavelength=10000.0):
    """The formula of Vaswani et al.: sin in even channels, cos in odd ones."""
    encoding = np.zeros((len(positions), hidden_dim))
    for row, position in enumerate(positions):
        for i in range(hidden_dim // 2):
            angle = position / max_wavelength ** (2 * i / hidden_dim)
            encoding[row, 2 * i] = np.sin(angle)
            encoding[row, 2 * i + 1] = np.cos(angle)
    return encoding


def _numpy_rotary(x, positions, max_wavelength=10000.0):
    """RoPE as complex multiplication: pair (x[i], x[i + d/2]) times e^(i·angle)."""
    half = x.shape[-1] // 2
    frequencies = max_wavelength ** (-np.arange(half) * 2.0 / x.shape[-1])
    angles = np.asarray(positions)[:, None] * frequencies[None, :]  # [T, d/2]
    if x.ndim == 4:
        angles = angles[:, None, :]
    pairs = (x[..., :half] + 1j * x[..., half:]) * np.exp(1j * angles)
    return np.concatenate([pairs.real, pairs.imag], axis=-1)


@pytest.mark.parametrize("start_index", [0, 7])
def test_sinusoidal_matches_numpy_formula(start_index):
    inputs = np.zeros((2, 12, 24), "float32")
    encoding = SinusoidalPositionEncoding()(inputs, start_index=start_index)
    expected = _numpy_sinusoidal(range(start_index, start_index + 12), 24)
    np.testing.assert_allclose(encoding[0], expected, atol=1e-5)
    np.testing.assert_allclose(encoding[1], expected, atol=1e-5)


def test_position_embedding_returns_the_rows_of_its_positions(rng):
    layer = PositionEmbedding(max_length=20)
    inputs = rng.normal(size=(3, 6, 8)).astype("float32")
    layer(inputs)
    table = layer.embeddings.numpy()
    np.testing.assert_allclose(layer(inputs, start_index=5)[1], table[5:11])


def test_position_embedding_refuses_positions_past_max_length():
    layer = PositionEmbedding(max_length=8)
    with pytest.raises(ValueError, match="max_length=8"):
        layer(np.zeros((1, 6, 4), "float32"), start_index=4)


@pytest.mark.parametrize("shape", [(2, 9, 16), (2, 9, 3, 16)])
def test_rotary_matches_complex_rotation(rng, shape):
    x = rng.normal(size=shape).astype("float32")
    rotated = RotaryEmbedding()(x, start_index=3)
    np.testing.assert_allclose(rotated, _numpy_rotary(x, np.arange(3, 12)), atol=1e-4)


def test_rotary_preserves_norms(rng):
    x = rng.normal(size=(2, 50, 4, 32)).astype("float32")
    rotated = np.asarray(RotaryEmbedding()(x, start_index=11))
    np.testing.assert_allclose(
        np.linalg.norm(rotated, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5
    )


def test_rotary_scores_depend_only_on_relative_position(rng):
    """<rot(q, p), rot(k, s)> is the same for (p, s) and (p + c, s + c)."""
    layer = RotaryEmbedding()
    query = rng.normal(size=(1, 1, 32)).astype("float32")
    key = rng.normal(size=(1, 1, 32)).astype("float32")

    def score(query_position, key_position):
        q = np.asarray(layer(query, start_index=query_position))[0, 0]
        k = np.asarray(layer(key, start_index=key_position))[0, 0]
        return float(q @ k)

    for shift in (1, 17, 250):
        assert score(10, 4) == pytest.approx(score(10 + shift, 4 + shift), rel=1e-4, abs=1e-4)
    assert score(10, 4) != pytest.approx(score(10, 7), rel=1e-3)


def test_sinusoidal_contract(rng):
    check_layer(
        SinusoidalPositionEncoding,
        {"max_wavelength": 500.0},
        rng.normal(size=(2, 5, 8)).astype("float32"),
        expected_output_shape=(2, 5, 8),
        expected_num_trainable_weights=0,
    )


def test_position_embedding_contract(rng):
    check_layer(
        PositionEmbedding,
        {"max_length": 10},
        rng.normal(size=(2, 5, 8)).astype("float32"),
        expected_output_shape=(2, 5, 8),
        expected_num_trainable_weights=1,
    )


def test_rotary_contract(rng):
    check_layer(
        RotaryEmbedding,
        {"max_wavelength": 100.0, "scaling_factor": 2.0},
        rng.normal(size=(2, 5, 2, 8)).astype("float32"),
        expected_output_shape=(2, 5, 2, 8),
        expected_num_trainable_weights=0,
    )


@pytest.mark.parametrize(
    "factory, message",
    [
        (lambda: PositionEmbedding(max_length=0), "max_length"),
        (lambda: SinusoidalPositionEncoding(max_wavelength=-1), "max_wavelength"),
        (lambda: RotaryEmbedding(scaling_factor=0), "scaling_factor"),
    ],
)
def test_bad_arguments_are_named(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_odd_width_is_refused():
    with pytest.raises(ValueError, match="even"):
        SinusoidalPositionEncoding()(np.zeros((1, 3, 5), "float32"))
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding()(keras.ops.zeros((1, 3, 5)))


# KerasHub's position layers take explicit `positions`; ours take them with the same
# meaning (the concepts are the same; ours add `start_index` checks and names).


def test_sinusoidal_with_positions_matches_keras_hub(rng):
    keras_hub = pytest.importorskip("keras_hub")
    inputs = rng.normal(size=(2, 5, 16)).astype("float32")
    positions = np.array([[3, 4, 9, 10, 11], [0, 1, 2, 50, 51]])
    ours = SinusoidalPositionEncoding(max_wavelength=1000.0)(inputs, positions=positions)
    theirs = keras_hub.layers.SinePositionEncoding(max_wavelength=1000)(inputs,
                                                                       positions=positions)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    np.testing.assert_allclose(np.asarray(ours)[1], _numpy_sinusoidal(positions[1], 16, 1000.0),
                               atol=1e-5)


def test_position_embedding_with_positions_matches_keras_hub(rng):
    keras_hub = pytest.importorskip("keras_hub")
    inputs = rng.normal(size=(2, 4, 8)).astype("float32")
    positions = np.array([5, 1, 1, 7])  # [T], shared by the batch
    ours, theirs = PositionEmbedding(max_length=10), keras_hub.layers.PositionEmbedding(10)
    ours(inputs), theirs(inputs)
    theirs.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours(inputs, positions=positions),
                               theirs(inputs, positions=positions), atol=1e-6)
    np.testing.assert_allclose(ours(inputs, positions=np.arange(3, 7)),
                               ours(inputs, start_index=3), atol=1e-6)


@pytest.mark.parametrize("axes", [(1, -1), (2, -1), (1, 2)])
def test_rotary_with_positions_and_axes_matches_keras_hub(rng, axes):
    keras_hub = pytest.importorskip("keras_hub")
    sequence_axis, feature_axis = axes
    inputs = rng.normal(size=(2, 6, 4, 8)).astype("float32")
    if feature_axis == 2:
        inputs = np.swapaxes(inputs, 2, 3)  # [B, T, d, H]
    length = inputs.shape[sequence_axis]
    positions = rng.integers(0, 40, size=(2, length))
    ours = RotaryEmbedding(max_wavelength=500.0, scaling_factor=2.0,
                           sequence_axis=sequence_axis, feature_axis=feature_axis)
    theirs = keras_hub.layers.RotaryEmbedding(max_wavelength=500, scaling_factor=2.0,
                                              sequence_axis=sequence_axis,
                                              feature_axis=feature_axis)
    for kwargs in ({}, {"start_index": 5}, {"positions": positions}):
        np.testing.assert_allclose(ours(inputs, **kwargs), theirs(inputs, **kwargs), atol=1e-4)


def test_positions_of_a_bad_rank_are_named():
    with pytest.raises(ValueError, match="positions"):
        SinusoidalPositionEncoding()(np.zeros((1, 3, 4), "float32"),
                                     positions=np.zeros((1, 1, 3), "int32"))
