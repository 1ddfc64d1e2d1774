"""Every weight of a fresh model has its own draw, with the documented spread."""

import math

import keras
import numpy as np
import pytest

from tfllm.models import GPT, BertClassifier, BertEncoder, BertMaskedLM, LSTMLanguageModel

SMALL = {"vocabulary_size": 61, "max_length": 32, "num_layers": 3, "num_heads": 4,
         "hidden_dim": 32, "intermediate_dim": 64}


def _built(model):
    model.build((None, None))
    return model


def _random_weights(model):
    """`{path: values}` of the weights that start from a random draw: not the constant
    ones (norms, biases; an LSTM's bias is 1 for the forget gate, 0 elsewhere)."""
    return {weight.path: np.asarray(weight) for weight in model.weights
            if np.std(np.asarray(weight)) > 0 and not weight.path.endswith("bias")}


def _truncated_normal_std(stddev, bound=2.0):
    """Standard deviation of N(0, stddev) re-drawn beyond ±bound·stddev (a formula)."""
    density = math.exp(-bound ** 2 / 2) / math.sqrt(2 * math.pi)
    mass = math.erf(bound / math.sqrt(2))
    return stddev * math.sqrt(1 - 2 * bound * density / mass)


MODELS = {
    "gpt": lambda: GPT(**SMALL),
    "gpt_rotary": lambda: GPT(**SMALL, position_encoding="rotary"),
    "bert_masked_lm": lambda: BertMaskedLM(BertEncoder(**SMALL, num_segments=2)),
    "bert_classifier": lambda: BertClassifier(BertEncoder(**SMALL), num_classes=3),
    "lstm": lambda: LSTMLanguageModel(vocabulary_size=61, num_layers=3, hidden_dim=32),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_no_two_weights_share_a_draw(kind):
    """Two weights drawn from one seed agree on their first values, whatever their shape
    or scale: the correlation of every pair's leading values must be small."""
    weights = _random_weights(_built(MODELS[kind]()))
    assert len(weights) >= 6
    paths = sorted(weights)
    for index, first in enumerate(paths):
        for second in paths[index + 1:]:
            a, b = weights[first].ravel(), weights[second].ravel()
            size = min(a.size, b.size, 4096)
            correlation = np.corrcoef(a[:size], b[:size])[0, 1]
            assert abs(correlation) < 0.5, f"{first} and {second} start from the same draw"


def test_gpt_follows_gpt2_initialisation():
    model = _built(GPT(**SMALL))
    residual = 0.02 / math.sqrt(2 * SMALL["num_layers"])
    expected = {"token_embedding": 0.02, "position_embedding": 0.02}
    for block in model.blocks:
        attention, feed_forward = block.attention, block.feed_forward
        for dense in (attention.query_dense, attention.key_dense, attention.value_dense,
                      feed_forward.hidden_dense):
            expected[dense.kernel.path] = 0.02
        for dense in (attention.output_dense, feed_forward.output_dense):
            expected[dense.kernel.path] = residual
    weights = {weight.path: np.asarray(weight) for weight in model.weights}
    checked = 0
    for path, values in weights.items():
        for name, stddev in expected.items():
            if path == name or path.endswith(f"{name}/embeddings"):
                assert abs(values.mean()) < 4 * stddev / math.sqrt(values.size)
                np.testing.assert_allclose(values.std(), stddev, rtol=0.08, err_msg=path)
                assert np.abs(values).max() > 2.5 * stddev  # a normal, not truncated
                checked += 1
    assert checked == 2 + 6 * SMALL["num_layers"]
    for path, values in weights.items():
        if path.endswith("bias") or path.endswith("beta"):
            np.testing.assert_array_equal(values, 0.0)
        if path.endswith("gamma"):
            np.testing.assert_array_equal(values, 1.0)


@pytest.mark.parametrize("model_class", [BertMaskedLM, BertClassifier])
def test_bert_follows_bert_initialisation(model_class):
    extra = {"num_classes": 3} if model_class is BertClassifier else {}
    model = _built(model_class(BertEncoder(**SMALL, num_segments=2), **extra))
    expected = _truncated_normal_std(0.02)
    kernels = [weight for weight in model.weights
               if weight.path.endswith("kernel") or weight.path.endswith("embeddings")]
    # token, position, segment tables; 6 kernels a block; the head's dense layer.
    assert len(kernels) == 3 + 6 * SMALL["num_layers"] + 1
    for weight in kernels:
        values = np.asarray(weight)
        assert np.abs(values).max() <= 2 * 0.02 + 1e-7, weight.path  # truncated at 2σ
        tolerance = 0.25 if values.size < 200 else 0.08
        np.testing.assert_allclose(values.std(), expected, rtol=tolerance, err_msg=weight.path)


@pytest.mark.parametrize("kind", ["gpt", "bert_masked_lm", "lstm"])
def test_the_same_seed_builds_the_same_model(kind):
    def weights(seed):
        keras.utils.set_random_seed(seed)
        return [np.asarray(weight) for weight in _built(MODELS[kind]()).weights]

    first, again, other = weights(7), weights(7), weights(8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other) if np.std(a) > 0)
