"""The base class of tfllm's language models: inputs, compile defaults, decoding."""

import keras
import numpy as np
import tensorflow as tf

from tfllm import generation
from tfllm.layers.embedding import check_token_ids


class LanguageModel(keras.Model):
    """A next-token language model: token ids `[B, T]` → logits `[B, T, V]`.

    Subclasses implement `call` and `_next_token_function`; this class gives
    them input handling, the default loss, and `generate`.
    """

    #: Longest sequence the model accepts, or None when unlimited.
    max_length = None

    @staticmethod
    def unpack_inputs(inputs, padding_mask=None):
        """Accepts `token_ids` or `{"token_ids", "padding_mask"}` (as in KerasHub)."""
        if isinstance(inputs, dict):
            unknown = set(inputs) - {"token_ids", "padding_mask"}
            if unknown or "token_ids" not in inputs:
                raise ValueError(
                    "A dict input must have the key 'token_ids' and may have "
                    f"'padding_mask'; got keys {sorted(inputs)}."
                )
            padding_mask = inputs.get("padding_mask", padding_mask)
            inputs = inputs["token_ids"]
        check_token_ids(inputs)
        if len(inputs.shape) != 2:
            raise ValueError(f"`token_ids` must have shape [B, T]; got shape {tuple(inputs.shape)}.")
        return inputs, padding_mask

    def compile(self, optimizer="adamw", loss=None, **kwargs):
        """`keras.Model.compile` with the language-model loss as default.

        The default loss is sparse categorical cross-entropy on logits, in
        nats per token (`exp(loss)` is the perplexity).
        """
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def compile_from_config(self, config):
        # Keras skips re-compiling a loaded model whose `compile` is
        # overridden; ours only adds a default, so re-compile as Keras would.
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    # Keras 3.15 cannot `fit` or `evaluate` under a MultiWorkerMirroredStrategy with
    # more than one worker (tensorflow/tensorflow#72388, keras-team/keras#20585):
    # - before the first step, `_maybe_symbolic_build` averages the first input batch
    #   over all replicas (`strategy.reduce("MEAN", ...)`), only to learn its shapes.
    #   Across workers this fails with "Attempt to convert a value (PerReplica...)";
    #   under MirroredStrategy it turns integer token ids into floats, which our
    #   models rightly refuse;
    # - after every step, `reduce_per_replica` averages the step's logs across
    #   workers with `strategy.reduce("MEAN", value, axis=0)`, which fails on
    #   scalars with "Invalid reduction dimension 0 for input with 0 dimensions".
    # The overrides below build from one replica's batch instead (same shapes and
    # dtypes, no communication), and give the logs the axis that the reduction needs
    # only where Keras takes that multi-worker path. Training numbers are the same
    # as Keras's wherever Keras works. tests/training/test_multi_worker.py and
    # test_strategy.py fail when upstream Keras no longer has these faults: then
    # delete the overrides and `_keras_reduces_across_workers`.

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy  # None: Keras builds when tracing instead
        if iterator is not None and strategy is not None:
            for _, _, batches in iterator:
                data_batch = keras.tree.map_structure(
                    lambda value: strategy.experimental_local_results(value)[0], next(batches)
                )
                break
            iterator = None
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, data):
        return self._logs_for_cross_worker_mean(super().train_step(data))

    def test_step(self, data):
        return self._logs_for_cross_worker_mean(super().test_step(data))

    def _logs_for_cross_worker_mean(self, logs):
        if not _keras_reduces_across_workers(self.distribute_strategy):
            return logs
        # Shape [1] gives the reduction an axis 0 to average over, and it returns a
        # scalar: the mean over all replicas, as Keras computes under MirroredStrategy.
        return keras.tree.map_structure(
            lambda value: tf.reshape(value, [1]) if value.shape.rank == 0 else value, logs
        )

    def generate(self, token_ids, max_new_tokens=100, temperature=1.0, seed=None):
        """Continues prompts by sampling one token at a time.

        Args:
            token_ids: `[B, T]` (or `[T]`) integer prompt ids, all prompts
                of the same length.
            max_new_tokens: int, how many tokens to add to each prompt.
            temperature: float; `0` is greedy decoding, larger values give
                more varied text.
            seed: int or None; the same seed gives the same sample.

        Returns:
            `[B, T + max_new_tokens]` int32 NumPy array: prompts and
            continuations.
        """
        generation.check_sampling_arguments(max_new_tokens, temperature)
        prompt = generation.prepare_prompt_ids(token_ids)
        vocabulary_size = self.vocabulary_size
        if prompt.min() < 0 or prompt.max() >= vocabulary_size:
            raise ValueError(
                f"Prompt token ids must lie in [0, {vocabulary_size}); got values in "
                f"[{prompt.min()}, {prompt.max()}]."
            )
        if seed is None:
            seed = np.random.randint(0, 2**31 - 1)
        if not self.built:
            # Decoding calls sub-layers directly, which would not build the model.
            self.build((None, None))
        return self._decode(prompt, int(max_new_tokens), float(temperature), int(seed))

    def _decode(self, prompt, max_new_tokens, temperature, seed):
        raise NotImplementedError(f"{type(self).__name__} must implement `_decode`.")

    def _compiled(self, name, function, input_signature):
        """A `tf.function` built once per model and kept, so calls do not retrace."""
        cache = self.__dict__.setdefault("_compiled_functions", {})
        if name not in cache:
            cache[name] = tf.function(function, input_signature=input_signature)
        return cache[name]


def _keras_reduces_across_workers(strategy):
    """Whether Keras takes its multi-worker reduction path under `strategy` (the test of
    `_collective_all_reduce_multi_worker` in keras/src/backend/tensorflow/trainer.py)."""
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    )
