"""Keras's own tests of `keras.layers.MultiHeadAttention`, run against tfllm's layer.

The test module that ships inside the Keras wheel
(`keras/src/layers/attention/multi_head_attention_test.py`) is imported with its
`layers` namespace pointing `MultiHeadAttention` at `tfllm.layers.MultiHeadAttention`
and everything else at Keras's layers: every test of Keras's class runs unchanged
against ours. Where ours differs from Keras's on purpose (see the class docstring) no
Keras test notices; a test listed in `DIFFERENCES` would say why it is skipped.
"""

import types

import pytest

keras_suite = pytest.importorskip(
    "keras.src.layers.attention.multi_head_attention_test",
    reason="this Keras wheel does not ship its layer tests")

from keras.src import layers as keras_layers  # noqa: E402

from tfllm.layers import MultiHeadAttention  # noqa: E402


class _LayersWithOurAttention(types.ModuleType):
    """`keras.src.layers`, except that `MultiHeadAttention` is tfllm's."""

    def __getattr__(self, name):
        if name == "MultiHeadAttention":
            return MultiHeadAttention
        return getattr(keras_layers, name)


keras_suite.layers = _LayersWithOurAttention("keras.src.layers")

# Collected by pytest as a unittest.TestCase: Keras's tests, our layer.
TestKerasMultiHeadAttentionSuite = keras_suite.MultiHeadAttentionTest


def test_the_suite_builds_our_layer():
    """The suite above really constructs tfllm's class (not Keras's)."""
    layer = keras_suite.layers.MultiHeadAttention(num_heads=2, key_dim=4)
    assert type(layer) is MultiHeadAttention
    assert keras_suite.layers.Dense is keras_layers.Dense
