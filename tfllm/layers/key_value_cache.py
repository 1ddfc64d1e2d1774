"""The key/value cache of `MultiHeadAttention`: one compiled decoding step for every position."""

import keras
from keras import ops

from tfllm.layers.attention_masks import MASKED_SCORE, merge_masks, without_keras_masks

#: Positions per block of the key/value cache that a decoding step attends to.
CACHE_WINDOW = 128


class KeyValueCacheMixin:
    """The cached self-attention of `MultiHeadAttention` (`call(..., cache=...)`).

    Kept apart from the layer, which holds Keras's contract, because Keras's layer has
    no cache. It uses the layer's projections (`_project_heads`, `_project_output`),
    its dropout and its settings; the class docstring of `MultiHeadAttention` describes
    the call. A cache is `[B, 2, H, S, d]`: keys and values, heads first.
    """

    def init_cache(self, batch_size, max_length, dtype=None):
        """A zero `[B, 2, H, max_length, d]` key/value cache for `call(..., cache=...)`."""
        if self._key_dim != self._value_dim:
            raise ValueError("A key/value cache needs `key_dim == value_dim`.")
        return ops.zeros(
            (batch_size, 2, self._num_heads, max_length, self._key_dim),
            dtype or self.compute_dtype,
        )

    def _call_with_cache(self, query, cache, cache_index, query_mask, attention_mask,
                         return_attention_scores, training):
        """Self-attention of `query [B, T, D]` at positions `cache_index...` over a cache."""
        if cache_index is None:
            raise ValueError("`cache_index` is required with `cache`.")
        if len(query.shape) != 3 or self._attention_axes != (1,):
            raise ValueError("A key/value cache works with [batch, length, features] "
                             "inputs and the default `attention_axes`.")
        gate, query_heads, key_heads, value_heads = self._project_cached_heads(
            query, cache_index)
        # [B, T, H, d] -> [B, H, T, d]: heads first, as the cache keeps them.
        query_heads, key_heads, value_heads = (
            ops.transpose(heads, (0, 2, 1, 3)) for heads in (query_heads, key_heads, value_heads))
        cache = self._write_cache(cache, cache_index, key_heads, value_heads)
        key_heads = ops.cast(cache[:, 0], query_heads.dtype)
        value_heads = ops.cast(cache[:, 1], query_heads.dtype)
        mask = self._cache_mask(query, cache, cache_index, query_mask, attention_mask)
        query_heads = query_heads * ops.cast(self._inverse_sqrt_key_dim, query_heads.dtype)
        single_step = (query.shape[1] == 1 and not return_attention_scores
                       and not (training and self._dropout > 0.0))
        context, probabilities = self._attend_to_cache(
            query_heads, key_heads, value_heads, mask, cache_index, single_step, training)
        output = self._project_output(ops.transpose(context, (0, 2, 1, 3)), gate)
        outputs = (output, probabilities) if return_attention_scores else (output,)
        return outputs + (cache,)

    def _project_cached_heads(self, query, cache_index):
        """`_project_heads(query, query, query)`, with the three projections as one matrix
        product when the layer allows it (`_fused_projection_kind`).

        A decoding step projects one token per row: three small products, each a few
        microseconds of work and as much of dispatch. One `[B*T, D] x [D, 3 H d]` product
        over the kernels put side by side computes the same numbers; in the compiled
        decoding loop it took a third of the time of a step at batch 1 (measured: 1.08 →
        0.36 ms per token at 128 positions, greedy tokens identical). Kernels quantized to
        int8 by Keras are put side by side the same way, with their scales: the input is
        quantized once, as each layer would have quantized it (same numbers).
        """
        denses = (self._query_dense, self._key_dense, self._value_dense)
        kind = self._fused_projection_kind(denses)
        if kind is None:
            return self._project_heads(query, query, query, start_index=cache_index)
        width = query.shape[-1]
        with without_keras_masks(query):
            if kind == "int8":
                heads = self._int8_fused_product(query, denses, width)
            else:
                kernel = ops.concatenate(
                    [ops.reshape(dense.kernel, (width, -1)) for dense in denses], axis=1)
                heads = ops.matmul(ops.reshape(query, (-1, width)), kernel)
            gate = self._gate_dense(query) if self._use_gate else None
        if self._use_bias:
            heads = heads + ops.concatenate([ops.reshape(dense.bias, (-1,)) for dense in denses])
        heads = ops.reshape(heads, (ops.shape(query)[0], ops.shape(query)[1], 3,
                                    self._num_heads, self._key_dim))
        query_heads, key_heads = self._rotate(heads[:, :, 0], heads[:, :, 1], cache_index)
        return gate, query_heads, key_heads, heads[:, :, 2]

    def _int8_fused_product(self, query, denses, width):
        """`[B*T, 3 H d]`: Keras's int8 `EinsumDense` computation (the input quantized per
        row by the layer's quantizer, an int8 product, divided by both scales) for the
        three projections at once. It reads Keras 3's int8 state (`inputs_quantizer`,
        `_kernel`, `kernel_scale`), which `_fused_projection_kind` checks is there; tests
        compare it with the layers' own path (cached against uncached attention)."""
        first = denses[0]
        quantized, input_scale = first.inputs_quantizer(query, axis=first.quantization_axis)
        kernel = ops.concatenate([ops.reshape(dense._kernel, (width, -1)) for dense in denses],
                                 axis=1)
        kernel_scale = ops.concatenate([ops.reshape(dense.kernel_scale, (-1,))
                                        for dense in denses])
        product = ops.matmul(ops.reshape(quantized, (-1, width)), kernel)
        return ops.divide(ops.cast(product, self.compute_dtype),
                          ops.multiply(ops.reshape(input_scale, (-1, 1)), kernel_scale))

    def _fused_projection_kind(self, denses):
        """`"float"` or `"int8"` when the query, key and value projections can run as one
        product, else None: the same kind of kernel in all three (float, or Keras's int8
        with its input quantizer), no LoRA adapters (those run through the layers), no
        activity regularizer (applied when a layer is called), heads of one size."""
        if (self._key_dim != self._value_dim or self._activity_regularizer is not None
                or any(getattr(dense, "lora_enabled", False)
                       or dense.activation is not keras.activations.linear
                       for dense in denses)):
            return None
        modes = {dense.quantization_mode for dense in denses}
        if modes == {None}:
            return "float"
        if modes == {"int8"} and all(
                getattr(dense, "inputs_quantizer", None) is not None
                and tuple(dense.kernel_scale.shape[-2:]) == (self._num_heads, self._key_dim)
                for dense in denses):
            return "int8"
        return None

    @staticmethod
    def _write_cache(cache, cache_index, key_heads, value_heads):
        """`cache` with keys and values `[B, H, T, d]` written at positions `cache_index...`
        (`slice_update`: the cache is not reallocated)."""
        update = ops.stack([key_heads, value_heads], axis=1)  # [B, 2, H, T, d]
        zero = ops.zeros((), "int32")
        return ops.slice_update(
            cache, (zero, zero, zero, ops.cast(cache_index, "int32"), zero),
            ops.cast(update, cache.dtype))

    def _cache_mask(self, query, cache, cache_index, query_mask, attention_mask):
        """`[B, 1, T, S]` mask over the cache (`[1, 1, T, S]` without padding masks).

        Query `i` sits at position `cache_index + i` and sees the keys up to it (within
        the sliding window); the cache beyond holds nothing yet (or stale keys of an
        earlier sequence).
        """
        query_length = ops.shape(query)[1]
        query_positions = ops.arange(query_length) + ops.cast(cache_index, "int32")
        key_positions = ops.arange(ops.shape(cache)[3])
        visible = key_positions[None, :] <= query_positions[:, None]
        if self._sliding_window is not None:
            visible = ops.logical_and(
                visible, query_positions[:, None] - key_positions[None, :] < self._sliding_window)
        return merge_masks(
            visible[None, None],
            None if attention_mask is None else ops.expand_dims(attention_mask, 1),
            None if query_mask is None else query_mask[:, None, :, None])

    def _attend_to_cache(self, query_heads, key_heads, value_heads, mask, cache_index,
                         single_step, training):
        """Scaled queries `[B, H, T, d]` over the whole cache `[B, H, S, d]`:
        `(context [B, H, T, dv], probabilities)`.

        A `single_step` (one query, no probabilities wanted, no dropout) is a decoding
        step: `_attend_one_query`. Over a cache of a known length above `CACHE_WINDOW`
        it attends to the smallest window of whole blocks that holds every position up
        to the query's (the rest of the cache is masked anyway).
        """
        if not single_step:
            return self._attend_heads_first(query_heads, key_heads, value_heads, mask, training)
        cache_length = key_heads.shape[2]
        if cache_length is None or cache_length <= CACHE_WINDOW:
            return self._attend_one_query(query_heads, key_heads, value_heads, mask), None
        windows = list(range(CACHE_WINDOW, cache_length, CACHE_WINDOW)) + [cache_length]
        block = ops.minimum(ops.cast(cache_index, "int32") // CACHE_WINDOW, len(windows) - 1)

        def window_attention(width):
            return lambda: self._attend_one_query(
                query_heads, key_heads[:, :, :width], value_heads[:, :, :width],
                mask[..., :width])

        return ops.switch(block, [window_attention(width) for width in windows]), None

    def _attend_one_query(self, query_heads, key_heads, value_heads, mask):
        """One scaled query per head `[B, H, 1, d]` over keys and values `[B, H, S, d]`
        → context `[B, H, 1, dv]`.

        The scores are computed as keys times the query (`[S, d] x [d, 1]` per head), the
        keys on the left: both operands are then in the layout a matrix product reads, so
        a compiled (XLA) step reads the keys where they lie in the cache. Written the other
        way round (query times transposed keys), XLA copied every block's key cache
        transposed at every step; as products summed over `d` it was a slow reduction
        (this form took 0.42 ms per token at batch 1 and 512 positions, that one 0.51).
        """
        scores = ops.matmul(key_heads, ops.transpose(query_heads, (0, 1, 3, 2)))  # [B, H, S, 1]
        scores = ops.cast(ops.transpose(scores, (0, 1, 3, 2)), "float32")  # [B, H, 1, S]
        scores = ops.where(mask, scores, MASKED_SCORE)
        probabilities = ops.where(mask, ops.softmax(scores, axis=-1), 0.0)
        return ops.matmul(ops.cast(probabilities, self.compute_dtype), value_heads)

    def _attend_heads_first(self, query_heads, key_heads, value_heads, mask, training):
        """Scaled queries, keys, values `[B, H, L, d]` → `(context [B, H, T, dv], probs)`."""
        # Contracting over d directly: no transposed copy of the keys (or the cache).
        scores = ops.cast(ops.einsum("bhtd,bhsd->bhts", query_heads, key_heads), "float32")
        scores = ops.where(mask, scores, MASKED_SCORE)
        probabilities = ops.where(mask, ops.softmax(scores, axis=-1), 0.0)
        weights = ops.cast(probabilities, self.compute_dtype)
        if self._dropout > 0.0:
            weights = self._dropout_layer(weights, training=training)
        return ops.matmul(weights, value_heads), probabilities
