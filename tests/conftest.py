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
    leave one worker running it alone. The tests of one `xdist_group` stay together, in
    their order, as one block (slow if any of them is): a module-scoped fixture they share
    is torn down as soon as its worker runs a test of another module, so a group split by
    the sort would build it twice."""
    if not hasattr(config, "workerinput"):
        return
    blocks = {}
    for index, item in enumerate(items):
        group = item.get_closest_marker("xdist_group")
        key = ("group", group.args[0] if group.args else group.kwargs["name"]) if group \
            else ("test", index)
        blocks.setdefault(key, []).append(item)
    slow_first = sorted(blocks.values(), key=lambda block: not any(
        item.get_closest_marker("slow") for item in block))
    items[:] = [item for block in slow_first for item in block]


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
