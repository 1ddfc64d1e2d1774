"""Shared test set-up: quiet TensorFlow, seeds, tiny configurations."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")


@pytest.fixture(autouse=True)
def _seed_and_reset_policy():
    """Every test starts seeded, in float32."""
    keras.utils.set_random_seed(1234)
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def tiny_gpt_config():
    """The smallest GPT that still has every part: 2 blocks, 2 heads."""
    return {
        "vocabulary_size": 37,
        "max_length": 16,
        "num_layers": 2,
        "num_heads": 2,
        "hidden_dim": 16,
        "intermediate_dim": 32,
    }


@pytest.fixture
def tiny_lstm_config():
    return {"vocabulary_size": 37, "num_layers": 2, "hidden_dim": 16}
