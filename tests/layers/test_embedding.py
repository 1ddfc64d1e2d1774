import keras
import numpy as np
import pytest

from tests.layer_checks import check_layer
from tfllm.layers import TokenEmbedding


def test_lookup_and_tied_logits_match_numpy(rng):
    layer = TokenEmbedding(vocabulary_size=11, output_dim=6)
    token_ids = np.array([[1, 2, 10], [0, 5, 5]])
    embedded = np.asarray(layer(token_ids))
    table = layer.embeddings.numpy()
    np.testing.assert_allclose(embedded, table[token_ids])
    hidden = rng.normal(size=(2, 3, 6)).astype("float32")
    np.testing.assert_allclose(layer(hidden, reverse=True), hidden @ table.T, rtol=1e-5, atol=1e-6)


def test_logits_are_float32_under_mixed_precision(rng):
    layer = TokenEmbedding(11, 8, dtype="mixed_bfloat16")
    hidden = layer(np.array([[1, 2, 3]]))
    assert keras.backend.standardize_dtype(hidden.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(layer(hidden, reverse=True).dtype) == "float32"


def test_mask_zero_marks_padding():
    layer = TokenEmbedding(11, 4, mask_zero=True)
    inputs = keras.Input((None,), dtype="int32")
    model = keras.Model(inputs, layer.compute_mask(inputs))
    np.testing.assert_array_equal(model(np.array([[3, 0, 2]])), [[True, False, True]])


def test_float_token_ids_are_refused():
    layer = TokenEmbedding(11, 4)
    with pytest.raises(ValueError, match="integer token ids"):
        layer(np.array([[1.0, 2.0]], "float32"))


def test_contract():
    check_layer(
        TokenEmbedding,
        {"vocabulary_size": 13, "output_dim": 8, "mask_zero": False},
        np.array([[1, 2, 3], [4, 5, 6]]),
        expected_output_shape=(2, 3, 8),
        expected_num_trainable_weights=1,
    )


@pytest.mark.parametrize("kwargs", [{"vocabulary_size": 0, "output_dim": 4},
                                    {"vocabulary_size": 4, "output_dim": -2}])
def test_bad_sizes_are_named(kwargs):
    name = next(key for key, value in kwargs.items() if value <= 0)
    with pytest.raises(ValueError, match=name):
        TokenEmbedding(**kwargs)
