import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfllm.layers import FeedForward
from tfllm.layers.activations import computed_activation, exact_gelu, get_activation


def _gelu_and_slope(x):
    """NumPy truth in float64: x Phi(x) and its derivative Phi(x) + x phi(x)."""
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))
    return x * cdf, cdf + x * np.exp(-0.5 * x**2) / math.sqrt(2.0 * math.pi)


def _value_and_gradient(function, x):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = function(x)
    return y, tape.gradient(y, x)


@pytest.mark.parametrize("dtype, atol", [("float64", 1e-12), ("float32", 1e-6),
                                         ("bfloat16", 2e-2)])
def test_exact_gelu_and_its_gradient_equal_the_formula(dtype, atol):
    x = np.linspace(-9.0, 9.0, 2001)
    value, gradient = _value_and_gradient(exact_gelu, tf.cast(x, dtype))
    assert value.dtype == dtype and gradient.dtype == dtype
    expected_value, expected_slope = _gelu_and_slope(x)
    scale = np.maximum(1.0, np.abs(expected_value))  # bfloat16 keeps 8 bits of mantissa
    np.testing.assert_allclose(np.asarray(tf.cast(value, "float64")) / scale,
                               expected_value / scale, atol=atol)
    np.testing.assert_allclose(np.asarray(tf.cast(gradient, "float64")), expected_slope,
                               atol=atol)


def test_exact_gelu_equals_keras_gelu_in_float32():
    x = np.random.default_rng(0).normal(size=(64, 128)).astype("float32") * 3
    ours, our_gradient = _value_and_gradient(exact_gelu, x)
    keras_value, keras_gradient = _value_and_gradient(keras.activations.gelu, x)
    np.testing.assert_allclose(ours, keras_value, atol=1e-6)
    np.testing.assert_allclose(our_gradient, keras_gradient, atol=1e-6)


def test_feed_forward_computes_gelu_with_it_and_its_config_still_says_gelu():
    layer = FeedForward(intermediate_dim=8)
    layer.build((None, 4))
    assert layer.hidden_dense.activation is exact_gelu
    assert computed_activation(keras.activations.relu) is keras.activations.relu
    assert layer.get_config()["activation"] == "gelu"
    assert get_activation(layer.get_config()["activation"]) is keras.activations.gelu
