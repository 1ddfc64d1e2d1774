"""Tiny training jobs under `tf.distribute`, run in fresh processes by the strategy tests.

Logical CPU devices and `MultiWorkerMirroredStrategy` must be set up before TensorFlow
initialises its devices, which the pytest process has long done; so the tests start this
module as a script:

    python -m tests.training.distributed_jobs mirrored OUTPUT_PREFIX INITIAL_WEIGHTS
    TF_CONFIG=... python -m tests.training.distributed_jobs multi_worker OUTPUT_PREFIX \
        INITIAL_WEIGHTS

Each job writes `OUTPUT_PREFIX.npz` (arrays) and `OUTPUT_PREFIX.json` (everything else).
The tests import `train` and friends from here as well, to compute the single-process
reference with exactly the same model, data and optimiser.
"""

import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfllm.data.datasets import language_model_dataset  # noqa: E402
from tfllm.models import GPT  # noqa: E402
from tfllm.training import TrainingConfig, make_optimizer  # noqa: E402
from tfllm.training.strategy import (  # noqa: E402
    describe_strategy,
    jit_compile_for,
    resolve_strategy,
    use_logical_cpus,
    with_data_sharding,
)

MODEL_CONFIG = {
    "vocabulary_size": 37,
    "max_length": 16,
    "num_layers": 2,
    "num_heads": 2,
    "hidden_dim": 16,
    "intermediate_dim": 32,
}
SEQUENCE_LENGTH = 16
GLOBAL_BATCH = 8
STEPS_PER_EPOCH = 5
EPOCHS = 2
VALIDATION_BATCHES = 3
# Clipping is set far above the gradient norms of this model: Keras 3 clips each
# replica's share of the gradient before summing them, which only equals clipping the
# sum while no clipping happens (CLIPPED_TRAINING shows the difference; test_strategy.py).
TRAINING = TrainingConfig(
    sequence_length=SEQUENCE_LENGTH,
    batch_size=GLOBAL_BATCH,
    steps=STEPS_PER_EPOCH * EPOCHS,
    steps_per_epoch=STEPS_PER_EPOCH,
    peak_learning_rate=1e-2,
    warmup_steps=2,
    clip_norm=1e6,
    jit_compile=False,
)
CLIPPED_TRAINING = dataclasses.replace(TRAINING, clip_norm=0.05)


def token_stream(length, seed):
    """A learnable stream: each token is 3 × the previous one, plus 0 or 1, mod 37."""
    rng = np.random.default_rng(seed)
    stream = np.zeros(length, np.int32)
    for index in range(1, length):
        stream[index] = (3 * stream[index - 1] + rng.integers(0, 2)) % 37
    return stream


def training_data(shuffle=False):
    """Global batches of the training stream, the same sequence in every process."""
    return language_model_dataset(
        token_stream(2000, seed=0), SEQUENCE_LENGTH, GLOBAL_BATCH, shuffle=shuffle, seed=1,
        repeat=True,
    )


def validation_data():
    stream = token_stream(VALIDATION_BATCHES * GLOBAL_BATCH * SEQUENCE_LENGTH + 1, seed=1)
    return language_model_dataset(stream, SEQUENCE_LENGTH, GLOBAL_BATCH, shuffle=False)


def build_model(initial_weights=None, model_class=GPT, jit_compile=False, config=TRAINING):
    """The tiny GPT, compiled with tfllm's optimiser, in the current strategy's scope."""
    model = model_class(**MODEL_CONFIG)
    model.build()
    if initial_weights is not None:
        model.set_weights(initial_weights)
    model.compile(optimizer=make_optimizer(config), jit_compile=jit_compile)
    return model


def train(strategy, initial_weights, jit_compile=False, model_class=GPT, save_path=None,
          config=TRAINING):
    """`fit` (with validation) then `evaluate` under `strategy`, then save to `save_path`
    (a `.keras` file) if given; the figures as a dict."""
    with strategy.scope():
        model = build_model(initial_weights, model_class, jit_compile, config)
    history = model.fit(
        with_data_sharding(training_data()),
        epochs=EPOCHS,
        steps_per_epoch=STEPS_PER_EPOCH,
        validation_data=with_data_sharding(validation_data()),
        verbose=0,
        shuffle=False,  # the dataset decides the order
    )
    evaluate_loss = model.evaluate(with_data_sharding(validation_data()), verbose=0)
    if save_path is not None:
        model.save(save_path)
    return {
        "loss": [float(value) for value in history.history["loss"]],
        "val_loss": [float(value) for value in history.history["val_loss"]],
        "evaluate_loss": float(evaluate_loss),
        "weights": [np.asarray(weight) for weight in model.get_weights()],
    }


def input_batches(strategy, count):
    """The first `count` global input batches of the shuffled training data, and the parts
    of them that this process's replicas receive under `strategy`."""
    global_batches = [np.asarray(inputs) for inputs, _ in training_data(shuffle=True).take(count)]
    distributed = strategy.experimental_distribute_dataset(
        with_data_sharding(training_data(shuffle=True))
    )
    local_parts = []
    for _, (inputs, _) in zip(range(count), distributed):
        local_parts.append(np.concatenate(
            [np.asarray(part) for part in strategy.experimental_local_results(inputs)]
        ))
    return global_batches, local_parts


class GPTWithUpstreamBuild(GPT):
    """tfllm's GPT with Keras's own `_maybe_symbolic_build` (cause 1 not worked around)."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        return keras.Model._maybe_symbolic_build(self, iterator=iterator, data_batch=data_batch)


class GPTWithUpstreamSteps(GPT):
    """tfllm's GPT with Keras's own `train_step` / `test_step` (cause 2 not worked around)."""

    def train_step(self, data):
        return keras.Model.train_step(self, data)

    def test_step(self, data):
        return keras.Model.test_step(self, data)


class GPTWithUpstreamKeras(GPTWithUpstreamBuild, GPTWithUpstreamSteps):
    """tfllm's GPT with none of `LanguageModel`'s tf.distribute overrides."""


def upstream_failure(strategy, model_class, initial_weights, jit_compile=False):
    """The error that one step of `fit` raises for `model_class`, or None if it trains."""
    with strategy.scope():
        model = build_model(initial_weights, model_class=model_class, jit_compile=jit_compile)
    try:
        model.fit(with_data_sharding(training_data()), steps_per_epoch=1, verbose=0,
                  shuffle=False)
    except Exception as error:  # noqa: BLE001 - the test reads the message
        return f"{type(error).__name__}: {error}"
    return None


def save(prefix, arrays, figures):
    np.savez(prefix + ".npz", **arrays)
    with open(prefix + ".json", "w") as file:
        json.dump(figures, file, indent=1)


def load_weights(path):
    with np.load(path) as arrays:
        return [arrays[f"arr_{index}"] for index in range(len(arrays.files))]


def mirrored_job(prefix, initial_weights):
    use_logical_cpus(2)
    strategy = resolve_strategy("mirrored")
    result = train(strategy, initial_weights, save_path=prefix + ".keras")
    clipped = train(strategy, initial_weights, config=CLIPPED_TRAINING)
    figures = {
        "description": describe_strategy(strategy),
        "auto_description": describe_strategy(resolve_strategy("auto")),
        **{key: value for key, value in result.items() if key != "weights"},
        "upstream_build_error": upstream_failure(strategy, GPTWithUpstreamBuild, initial_weights),
        "jit_compile": jit_compile_for(strategy, True),
        "xla_error": upstream_failure(strategy, GPT, initial_weights, jit_compile=True),
    }
    arrays = {f"weight_{i}": w for i, w in enumerate(result["weights"])}
    arrays.update({f"clipped_weight_{i}": w for i, w in enumerate(clipped["weights"])})
    save(prefix, arrays, figures)


def multi_worker_job(prefix, initial_weights):
    strategy = resolve_strategy("multi_worker")  # first: before TensorFlow initialises
    result = train(strategy, initial_weights)
    figures = {
        "description": describe_strategy(strategy),
        "replicas": strategy.num_replicas_in_sync,
        **{key: value for key, value in result.items() if key != "weights"},
        "upstream_build_error": upstream_failure(strategy, GPTWithUpstreamBuild, initial_weights),
        "upstream_steps_error": upstream_failure(strategy, GPTWithUpstreamSteps, initial_weights),
    }
    arrays = {f"weight_{i}": w for i, w in enumerate(result["weights"])}
    global_batches, local_parts = input_batches(strategy, 3)
    arrays.update({f"global_batch_{i}": batch for i, batch in enumerate(global_batches)})
    arrays.update({f"local_batch_{i}": part for i, part in enumerate(local_parts)})
    save(prefix, arrays, figures)


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    job, output_prefix, weights_path = sys.argv[1:4]
    {"mirrored": mirrored_job, "multi_worker": multi_worker_job}[job](
        output_prefix, load_weights(weights_path)
    )
