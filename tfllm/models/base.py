"""The base classes of tfllm's models: the `fit` fixes every model needs, and the language
models' inputs, compile defaults and decoding."""

import warnings

import keras
import tensorflow as tf

from tfllm import generation
from tfllm.layers.embedding import check_token_ids
from tfllm.layers.validation import check_positive_int

#: The layers `enable_lora` adapts by default: the attention's query and value
#: projections (as KerasHub's `Backbone.enable_lora` and the LoRA paper do).
DEFAULT_LORA_LAYER_NAMES = ("query", "value")


class TrainableModel(keras.Model):
    """The base of every tfllm model: `keras.Model` plus what `fit` needs to work everywhere.

    It holds the Keras 3 multi-worker fixes (below), a default SavedModel signature
    that takes int32 token ids, LoRA (`enable_lora`) and int8 weights (`quantize`)
    through Keras's own `EinsumDense` / `Dense` support, and a config that remembers
    which layers were quantized, so that a quantized model saves and loads.
    """

    def enable_lora(self, rank, target_layer_names=None):
        """Freezes the model and adds rank-`rank` LoRA adapters to some projections.

        Each target layer (a Keras `EinsumDense` or `Dense`: by default the attention's
        `query` and `value` projections, as KerasHub's `Backbone.enable_lora` chooses)
        keeps its kernel frozen and learns `kernel + (A @ B) * alpha / rank` through
        Keras's `enable_lora`; its bias is frozen too. Every other weight is frozen,
        except those of `lora_trainable_layers()` (a classifier's new output layer).
        Compile the model after this call. Saving merges the adapters into the kernels
        (`.keras`, `.weights.h5`): a saved LoRA model reloads as a plain model.

        Args:
            rank: int > 0, the rank of the adapters.
            target_layer_names: names of the layers to adapt; default
                `("query", "value")`.

        Returns:
            The adapted layers.

        Raises:
            ValueError: `rank` is not a positive integer, the model was never built,
                LoRA is enabled already, or no layer has one of the names.
        """
        rank = check_positive_int("rank", rank)
        if not self.built:
            raise ValueError(
                f"This {type(self).__name__} was never built, so it has no weights to "
                "adapt: call it on a batch or `model.build((None, None))` before "
                "`enable_lora`.")
        names = tuple(target_layer_names or DEFAULT_LORA_LAYER_NAMES)
        layers = [layer for layer in self._flatten_layers(include_self=False)
                  if layer.name in names and hasattr(layer, "enable_lora")]
        if not layers:
            raise ValueError(
                f"No layer of this {type(self).__name__} named {', '.join(names)} can take "
                "LoRA adapters (Keras EinsumDense or Dense layers).")
        if any(getattr(layer, "lora_enabled", False) for layer in layers):
            raise ValueError("LoRA is enabled on this model already.")
        self.trainable = True
        for layer in self._flatten_layers(include_self=False):
            layer.trainable = False
        for variable in self._trainable_variables:  # the model's own, e.g. an output bias
            variable.trainable = False
        for layer in self.lora_trainable_layers():
            layer.trainable = True
        for layer in layers:
            layer.trainable = True  # before `enable_lora`, which then freezes the kernel
            layer.enable_lora(rank)
            if layer.bias is not None:
                layer.bias.trainable = False
        self._forget_compiled_functions()
        return layers

    def merge_lora(self):
        """A copy of this model with the LoRA adapters merged into their kernels.

        The copy is a plain model of the same class and config (no adapters, nothing
        frozen, not compiled) that computes what this one computes: what `save_run`
        stores and `tfllm export` serves. Without adapters it is simply a copy.
        """
        if not self.built:
            raise ValueError(f"This {type(self).__name__} was never built.")
        if any(layer.quantization_mode for layer in self.lora_layers):
            raise ValueError("Merge the LoRA adapters before quantizing the model.")
        copy = type(self).from_config(self.get_config())
        copy.build((None, None))
        layers = list(self._flatten_layers(include_self=False))
        copies = list(copy._flatten_layers(include_self=False))
        if [layer.path for layer in layers] != [layer.path for layer in copies]:
            raise RuntimeError("The model's copy does not have the model's layers.")
        for layer, twin in zip(layers, copies):
            own = layer._trainable_variables + layer._non_trainable_variables
            if getattr(layer, "lora_enabled", False):
                own = [layer.kernel if variable is layer._kernel else variable
                       for variable in own if variable.path not in (
                           layer.lora_kernel_a.path, layer.lora_kernel_b.path)]
            targets = twin._trainable_variables + twin._non_trainable_variables
            for target, value in zip(targets, own, strict=True):
                target.assign(value)
        return copy

    def lora_trainable_layers(self):
        """Layers that `enable_lora` leaves trainable (a task's new head); none here."""
        return []

    @property
    def lora_layers(self):
        """The layers that carry LoRA adapters (empty unless `enable_lora` ran)."""
        return [layer for layer in self._flatten_layers(include_self=False)
                if getattr(layer, "lora_enabled", False)]

    def quantize(self, mode=None, config=None, filters=None, **kwargs):
        """Keras's `Model.quantize` (e.g. `model.quantize("int8")`) over the layers that
        support it: the attention projections and the feed-forward layers.

        Embedding tables, the tied output head and the normalisations stay in their
        float dtype. Without `filters` the layers Keras cannot quantize are skipped
        quietly instead of with one warning each. Compiled decoding functions are
        rebuilt, and `get_config` records the quantized layers so that the model saves
        to and loads from `.keras` files.
        """
        # (Keras's wrapper of this method refuses a model that was never built.)
        if filters is None:
            filters = _has_quantize
        with warnings.catch_warnings():
            # Emitted inside Keras's int8 quantizer under NumPy 2; harmless.
            warnings.filterwarnings("ignore", message=".*__array__ implementation.*")
            super().quantize(mode, config=config, filters=filters, **kwargs)
        self._forget_compiled_functions()

    def get_config(self):
        config = super().get_config()
        # As KerasHub's Backbone: a DTypePolicyMap of the quantized layers' policies,
        # which the layers (built with `dtype=self.dtype_policy`) look their paths up in.
        policy_map = keras.dtype_policies.DTypePolicyMap(default_policy=self.dtype_policy)
        for layer in self._flatten_layers(include_self=False):
            if layer.quantization_mode is not None:
                policy_map[layer.path] = layer.dtype_policy
        if len(policy_map) and not isinstance(self.dtype_policy,
                                              keras.dtype_policies.DTypePolicyMap):
            config["dtype"] = keras.dtype_policies.serialize(policy_map)
        return config

    def _forget_compiled_functions(self):
        """Drops kept `tf.function`s: they captured the variables the model had."""
        self.__dict__.pop("_decoder", None)

    @property
    def _default_save_signature(self):
        # What `tf.saved_model.save` traces when the model is part of an export:
        # Keras would trace it with float inputs, which token ids are not.
        @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)])
        def serving_default(token_ids):
            return self(token_ids)

        return serving_default

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


class LanguageModel(TrainableModel):
    """A next-token language model: token ids `[B, T]` → logits `[B, T, V]`.

    Subclasses implement `call`, `init_decoding_state` and `decode_tokens`; this class gives
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
            raise ValueError(
                f"`token_ids` must have shape [B, T]; got shape {tuple(inputs.shape)}.")
        return inputs, padding_mask

    def compile(self, optimizer="adamw", loss=None, **kwargs):
        """`keras.Model.compile` with the language-model loss as default.

        The default loss is sparse categorical cross-entropy on logits, in
        nats per token (`exp(loss)` is the perplexity).
        """
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    # Decoding protocol (see `tfllm.generation`): subclasses implement these two.
    def init_decoding_state(self, batch_size, length):
        """The decoding state before any token, for sequences of up to `length` tokens."""
        raise NotImplementedError(f"{type(self).__name__} must implement `init_decoding_state`.")

    def decode_tokens(self, token_ids, index, state, last_index=None):
        """Reads `token_ids [B, T]` at positions `index...`; returns `(logits [B, V], state)`:
        the logits after the last token, or after `token_ids[:, last_index]`."""
        raise NotImplementedError(f"{type(self).__name__} must implement `decode_tokens`.")

    #: Whether `generate` compiles decoding with XLA (needs `max_length` and
    #: `decode_tokens(..., last_index=...)`).
    decode_with_xla = False

    @property
    def decoder(self):
        """This model's `tfllm.generation.Decoder`: its compiled decoding functions and
        the policy past `max_length`, shared by `generate`, streaming and the export."""
        decoder = self.__dict__.get("_decoder")
        if decoder is None:
            decoder = self.__dict__["_decoder"] = generation.Decoder(self)
        return decoder

    def generate(
        self,
        token_ids,
        max_new_tokens=100,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        seed=None,
        stop_token_ids=(),
        num_beams=1,
        pad_token_id=0,
    ):
        """Continues prompts one token at a time, with a cache, in compiled loops.

        The prompts are read in one pass, then a `tf.while_loop` samples each new token
        from the cached state (a GPT's keys and values, an LSTM's recurrent states). The
        compiled functions are kept with the model (`model.decoder`): later calls,
        whatever their shapes, do not retrace.

        A GPT sees at most `max_length` tokens: a row whose tokens reach `max_length`
        (a long prompt, or prompt and continuation) continues from its last
        `max_length // 2` tokens, read again in one pass. Streaming
        (`tfllm.generation.stream_tokens`) and the exported SavedModel follow the same
        policy and seeds, so all three give the same text.

        Args:
            token_ids: prompts: a `[B, T]` (or `[T]`) integer array, or a list
                of integer sequences of different lengths.
            max_new_tokens: int, tokens to add to each prompt at most.
            temperature: float >= 0; `0` is greedy decoding, larger values
                give more varied text.
            top_k: int >= 0; sample among the `top_k` most likely tokens
                only (0: no limit).
            top_p: float in (0, 1]; sample within the nucleus of most likely
                tokens holding probability `top_p` (1: no limit).
            seed: int or None; the same seed gives the same sample.
            stop_token_ids: ids that end a row when generated (kept in it).
            num_beams: int; more than 1 runs beam search (deterministic, the
                most likely continuation; prompts of equal length, no stop
                tokens, and, for a GPT, within `max_length`).
            pad_token_id: the id written after a row's end; never generated.

        Returns:
            `[B, L]` int32 NumPy array: each prompt and its continuation,
            padded with `pad_token_id` after its end (`L` is the longest).
        """
        return self.decoder.generate(token_ids, max_new_tokens, temperature, top_k, top_p,
                                     seed, stop_token_ids, num_beams, pad_token_id)


def _has_quantize(layer):
    """Whether `layer`'s class implements Keras's `quantize` (Dense, EinsumDense, ...)."""
    return type(layer).quantize is not keras.layers.Layer.quantize


def _keras_reduces_across_workers(strategy):
    """Whether Keras takes its multi-worker reduction path under `strategy` (the test of
    `_collective_all_reduce_multi_worker` in keras/src/backend/tensorflow/trainer.py)."""
    return (
        isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        and strategy.extended._in_multi_worker_mode()
    )
