import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.layer_checks import check_layer
from tfllm.layers.normalization import LayerNormalization


def _pair(rng, shape, **kwargs):
    """Ours and Keras's layer, built for `shape`, with the same random gamma and beta."""
    ours, reference = LayerNormalization(**kwargs), keras.layers.LayerNormalization(**kwargs)
    for layer in (ours, reference):
        layer.build(shape)
    weights = [rng.normal(size=np.shape(weight)).astype("float32")
               for weight in reference.get_weights()]
    reference.set_weights(weights)
    ours.set_weights(weights)
    return ours, reference


def _outputs_and_gradients(layer, x, upstream):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(tf.cast(y, "float32") * upstream)
    return [y] + tape.gradient(loss, [x] + layer.trainable_weights)


@pytest.mark.parametrize("shape", [(3, 7, 16), (5, 16), (2, 3, 4, 8)])
def test_values_and_every_gradient_equal_keras_layer_normalization(rng, shape):
    ours, reference = _pair(rng, shape, epsilon=1e-5)
    x = rng.normal(loc=2.0, scale=3.0, size=shape).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    for mine, theirs in zip(_outputs_and_gradients(ours, x, upstream),
                            _outputs_and_gradients(reference, x, upstream), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=2e-5)


def test_under_mixed_bfloat16_it_computes_in_float32_as_keras_does(rng):
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    ours, reference = _pair(rng, (4, 6, 32), epsilon=1e-5)
    x = tf.cast(rng.normal(size=(4, 6, 32)).astype("float32"), "bfloat16")
    upstream = rng.normal(size=(4, 6, 32)).astype("float32")
    mine = _outputs_and_gradients(ours, x, upstream)
    theirs = _outputs_and_gradients(reference, x, upstream)
    assert mine[0].dtype == theirs[0].dtype == "bfloat16"
    assert [g.dtype for g in mine[2:]] == [g.dtype for g in theirs[2:]] == ["float32"] * 2
    np.testing.assert_allclose(tf.cast(mine[0], "float32"), tf.cast(theirs[0], "float32"),
                               atol=0.05)
    for mine_gradient, their_gradient in zip(mine[2:], theirs[2:]):  # float32 weights
        np.testing.assert_allclose(mine_gradient, their_gradient, rtol=1e-3, atol=1e-3)


@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")
@pytest.mark.parametrize("kwargs", [{"axis": 1}, {"center": False}, {"scale": False},
                                    {"rms_scaling": True}])
def test_other_settings_compute_what_keras_computes(rng, kwargs):
    ours, reference = _pair(rng, (3, 5, 8), **kwargs)
    x = rng.normal(size=(3, 5, 8)).astype("float32")
    upstream = rng.normal(size=(3, 5, 8)).astype("float32")
    for mine, theirs in zip(_outputs_and_gradients(ours, x, upstream),
                            _outputs_and_gradients(reference, x, upstream), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)


def test_layer_contract(rng):
    inputs = rng.normal(size=(2, 4, 8)).astype("float32")
    check_layer(LayerNormalization, {"epsilon": 1e-5}, inputs, (2, 4, 8), 2)
