"""Shared test set-up: quiet TensorFlow, seeds, tiny configurations."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.get_logger().setLevel("ERROR")


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, the slow tests (and so the groups they open) are handed out
    first and the quick ones fill the gaps after them: a slow test drawn last would
    leave one worker running it alone."""
    if hasattr(config, "workerinput"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def _seed_and_reset_policy():
    """Every test starts seeded, in float32."""
    keras.utils.set_random_seed(1234)
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# The smallest GPT that still has every part: 2 blocks, 2 heads.
TINY_GPT_CONFIG = {
    "vocabulary_size": 37,
    "max_length": 16,
    "num_layers": 2,
    "num_heads": 2,
    "hidden_dim": 16,
    "intermediate_dim": 32,
}


@pytest.fixture
def tiny_gpt_config():
    """`TINY_GPT_CONFIG`, a copy of it for each test."""
    return dict(TINY_GPT_CONFIG)


@pytest.fixture
def tiny_lstm_config():
    return {"vocabulary_size": 37, "num_layers": 2, "hidden_dim": 16}
