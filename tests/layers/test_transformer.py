import math

import keras
import numpy as np
import pytest

from tests.layer_checks import check_layer
from tfllm.layers import FeedForward, TransformerBlock


_erf = np.vectorize(math.erf)


def _gelu(x):
    """Exact GELU, x·Φ(x), Keras' default `"gelu"`."""
    return 0.5 * x * (1 + _erf(x / np.sqrt(2)))


def _layer_norm(x, gamma, beta, epsilon=1e-5):
    mean = x.mean(-1, keepdims=True)
    variance = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def test_feed_forward_matches_numpy(rng):
    layer = FeedForward(intermediate_dim=12)
    x = rng.normal(size=(2, 3, 5)).astype("float32")
    output = np.asarray(layer(x))
    w1, b1, w2, b2 = (w.numpy() for w in layer.weights)
    np.testing.assert_allclose(output, _gelu(x @ w1 + b1) @ w2 + b2, atol=1e-5)


def _reference_block(block, x, normalize_first, causal):
    """The same block composed from Keras' own layers (MultiHeadAttention etc.)."""
    attention = keras.layers.MultiHeadAttention(block.num_heads, x.shape[-1] // block.num_heads)
    attention(x, x)
    attention.set_weights(block.attention.get_weights())
    g1, b1 = (w.numpy() for w in block.attention_norm.weights)
    g2, b2 = (w.numpy() for w in block.feed_forward_norm.weights)
    w1, c1, w2, c2 = (w.numpy() for w in block.feed_forward.weights)

    def attend(h):
        return np.asarray(attention(h, h, use_causal_mask=causal))

    def feed_forward(h):
        return _gelu(h @ w1 + c1) @ w2 + c2

    if normalize_first:
        x = x + attend(_layer_norm(x, g1, b1).astype("float32"))
        return x + feed_forward(_layer_norm(x, g2, b2))
    x = _layer_norm(x + attend(x), g1, b1)
    return _layer_norm(x + feed_forward(x), g2, b2)


@pytest.mark.parametrize("normalize_first", [True, False])
@pytest.mark.parametrize("causal", [True, False])
def test_block_matches_composition_of_keras_layers(rng, normalize_first, causal):
    block = TransformerBlock(
        num_heads=2, intermediate_dim=24, normalize_first=normalize_first, causal=causal
    )
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    block(x)
    # Non-trivial norm parameters, so that a swapped norm would be noticed.
    for norm in (block.attention_norm, block.feed_forward_norm):
        norm.set_weights([rng.normal(size=8) + 1, rng.normal(size=8) * 0.1])
    expected = _reference_block(block, x, normalize_first, causal)
    np.testing.assert_allclose(block(x), expected, atol=1e-4)


def test_causal_block_never_sees_the_future(rng):
    block = TransformerBlock(num_heads=2, intermediate_dim=16, causal=True)
    x = rng.normal(size=(1, 7, 8)).astype("float32")
    before = np.asarray(block(x))
    changed = x.copy()
    changed[:, 4] += rng.normal(size=8).astype("float32")
    after = np.asarray(block(changed))
    np.testing.assert_allclose(before[:, :4], after[:, :4], atol=1e-5)
    assert not np.allclose(before[:, 4:], after[:, 4:])


def test_bidirectional_block_sees_the_future(rng):
    block = TransformerBlock(num_heads=2, intermediate_dim=16, causal=False)
    x = rng.normal(size=(1, 7, 8)).astype("float32")
    changed = x.copy()
    # A random change: a constant shift of a position would vanish in LayerNorm.
    changed[:, 6] += rng.normal(size=8).astype("float32")
    assert not np.allclose(np.asarray(block(x))[:, 0], np.asarray(block(changed))[:, 0])


def test_padding_never_leaks_into_real_positions(rng):
    block = TransformerBlock(num_heads=2, intermediate_dim=16, causal=False)
    x = rng.normal(size=(2, 6, 8)).astype("float32")
    padding_mask = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0]], bool)
    before = np.asarray(block(x, padding_mask=padding_mask))
    changed = x.copy()
    changed[~padding_mask] = rng.normal(size=changed[~padding_mask].shape) * 50
    after = np.asarray(block(changed, padding_mask=padding_mask))
    np.testing.assert_allclose(before[padding_mask], after[padding_mask], atol=1e-5)


def test_width_not_divisible_by_heads_is_named():
    block = TransformerBlock(num_heads=3, intermediate_dim=16)
    with pytest.raises(ValueError, match="divisible by num_heads=3"):
        block(np.zeros((1, 2, 8), "float32"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_heads": 0, "intermediate_dim": 8}, "num_heads"),
        ({"num_heads": 2, "intermediate_dim": 0}, "intermediate_dim"),
        ({"num_heads": 2, "intermediate_dim": 8, "dropout": -0.1}, "dropout"),
        ({"num_heads": 2, "intermediate_dim": 8, "layer_norm_epsilon": 0}, "layer_norm_epsilon"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TransformerBlock(**kwargs)


def test_block_contract(rng):
    check_layer(
        TransformerBlock,
        {
            "num_heads": 2,
            "intermediate_dim": 16,
            "dropout": 0.1,
            "normalize_first": False,
            "causal": True,
            "rotary_max_wavelength": 1000.0,
        },
        rng.normal(size=(2, 5, 8)).astype("float32"),
        expected_output_shape=(2, 5, 8),
        expected_num_trainable_weights=8 + 4 + 4,
    )


def test_feed_forward_contract(rng):
    check_layer(
        FeedForward,
        {"intermediate_dim": 16, "output_dim": 4, "activation": "relu", "dropout": 0.2},
        rng.normal(size=(2, 5, 8)).astype("float32"),
        expected_output_shape=(2, 5, 4),
        expected_num_trainable_weights=4,
    )


@pytest.mark.parametrize("normalize_first", [True, False])
def test_cached_block_step_by_step_equals_the_whole_sequence(rng, normalize_first):
    x = rng.normal(size=(2, 6, 16)).astype("float32")
    block = TransformerBlock(num_heads=2, intermediate_dim=32, causal=True,
                             normalize_first=normalize_first, rotary_max_wavelength=100.0)
    whole = np.asarray(block(x))
    cache = block.attention.init_cache(2, 6)
    steps = []
    for index in range(6):
        output, cache = block(x[:, index : index + 1], cache=cache, cache_index=index)
        steps.append(np.asarray(output))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), whole, atol=1e-5)


def test_a_bidirectional_block_takes_no_cache(rng):
    block = TransformerBlock(num_heads=2, intermediate_dim=32, causal=False)
    x = rng.normal(size=(1, 2, 16)).astype("float32")
    block(x)
    with pytest.raises(ValueError, match="causal"):
        block(x, cache=block.attention.init_cache(1, 2), cache_index=0)
