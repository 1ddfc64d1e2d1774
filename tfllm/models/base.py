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
