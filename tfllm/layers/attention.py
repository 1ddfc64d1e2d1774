"""Multi-head scaled dot-product attention with causal and padding masks."""

import math

import keras
from keras import ops

from tfllm.layers.initializers import clone_initializer
from tfllm.layers.positional import RotaryEmbedding
from tfllm.layers.validation import check_positive_int, check_rate


def causal_mask(query_length, key_length):
    """`[1, T, S]` boolean mask: query `i` may attend to keys `j <= i`.

    Aligned at the top left like `keras.layers.MultiHeadAttention`'s causal
    mask.
    """
    query_positions = ops.arange(query_length)[:, None]
    key_positions = ops.arange(key_length)[None, :]
    return ops.expand_dims(key_positions <= query_positions, 0)


def merge_masks(*masks):
    """Logical AND of the masks that are not None (None if all are None)."""
    merged = None
    for mask in masks:
        if mask is None:
            continue
        mask = ops.cast(mask, "bool")
        merged = mask if merged is None else ops.logical_and(merged, mask)
    return merged


#: Positions per block of the key/value cache that a decoding step attends to.
CACHE_WINDOW = 128


@keras.saving.register_keras_serializable(package="tfllm")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention, call-compatible with `keras.layers.MultiHeadAttention`.

    Projects `query`, `key` and `value` into `num_heads` heads, attends with
    scaled dot products, and projects the concatenated heads back. The call
    arguments mean what they mean in `keras.layers.MultiHeadAttention`, and
    the weights have the same shapes and order, so either layer can replace
    the other (`layer.set_weights(keras_layer.get_weights())`). Beyond the
    Keras layer it can rotate queries and keys with rotary position
    embeddings, it always computes softmax in float32 (also under
    `mixed_bfloat16` / `mixed_float16`), and it checks its inputs.

    Masks combine with a logical AND: `attention_mask` (`[B, T, S]`, True =
    may attend), the causal mask (`use_causal_mask=True`), and the Keras
    masks carried by `query` / `value` / `key` (for example from
    `Embedding(mask_zero=True)`), or given as `query_mask` / `value_mask` /
    `key_mask` (`[B, T]` / `[B, S]`). A query that may attend to nothing gets
    a zero output from the attention (before the output projection), never
    a mix of padding.

    Args:
        num_heads: int, number of attention heads `H`.
        key_dim: int, size of each head for query and key.
        value_dim: int, size of each head for value. Defaults to `key_dim`.
        dropout: float in [0, 1), dropout on the attention probabilities.
        use_bias: bool, whether the projections have biases.
        output_shape: int, size of the output features. Defaults to the
            query's feature size.
        kernel_initializer: initializer of the projection kernels.
        bias_initializer: initializer of the projection biases.
        rotary_max_wavelength: float or None. When set, queries and keys are
            rotated with a `RotaryEmbedding` of this wavelength.
        seed: int or None, seed of the dropout.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        query: `[B, T, Dq]` tensor.
        value: `[B, S, Dv]` tensor (pass `query` for self-attention).
        key: `[B, S, Dk]` tensor; defaults to `value`.
        query_mask, value_mask, key_mask: optional `[B, T]` / `[B, S]`
            padding masks (True = real token).
        attention_mask: optional `[B, T, S]` boolean mask.
        return_attention_scores: bool; also return the `[B, H, T, S]`
            attention probabilities (float32, before dropout).
        training: bool, enables dropout.
        use_causal_mask: bool, adds a causal mask (query `i` sees keys
            `j <= i`).
        start_index: int or scalar tensor, position of the first query/key
            for rotary embeddings. Defaults to `0`.
        cache: optional `[B, 2, H, S, d]` key/value cache for self-attention
            decoding (`init_cache` makes one): keys and values (after
            projection and rotary embedding) of positions `0..S-1`. The
            keys and values of `query` are written into it at `cache_index`
            (`keras.ops.slice_update`, no reallocation), and the queries
            attend to the cache, each to the positions up to its own: one
            compiled step serves every position. `value` and `key` must be
            the query itself. `attention_mask`, if given, is `[B, T, S]`.
        cache_index: int or scalar int tensor, the position of `query[:, 0]`
            when `cache` is given (also the rotary `start_index`).

    Returns:
        `[B, T, output_shape]` tensor, and the attention probabilities if
        `return_attention_scores=True`; with `cache`, also the updated cache
        (`output, cache` or `output, scores, cache`).

    Example:

    >>> attention = MultiHeadAttention(num_heads=4, key_dim=16)
    >>> x = keras.random.normal((2, 10, 64))
    >>> y = attention(x, x, use_causal_mask=True)  # [2, 10, 64]
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        dropout=0.0,
        use_bias=True,
        output_shape=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        rotary_max_wavelength=None,
        seed=None,
        output_kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.key_dim = check_positive_int("key_dim", key_dim)
        self.value_dim = check_positive_int("value_dim", value_dim or key_dim)
        self.dropout = check_rate("dropout", dropout)
        self.use_bias = bool(use_bias)
        self._output_dim = (
            None if output_shape is None else check_positive_int("output_shape", output_shape)
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.output_kernel_initializer = keras.initializers.get(
            output_kernel_initializer or kernel_initializer)
        self.rotary_max_wavelength = rotary_max_wavelength
        self.seed = seed
        if rotary_max_wavelength is not None:
            if self.key_dim % 2:
                raise ValueError(
                    f"Rotary embeddings need an even `key_dim`; got {key_dim}."
                )
            self.rotary_embedding = RotaryEmbedding(
                max_wavelength=rotary_max_wavelength,
                dtype=self.dtype_policy,
                name="rotary_embedding",
            )
        else:
            self.rotary_embedding = None
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, seed=seed, dtype=self.dtype_policy, name="attention_dropout"
        )

    def _projection(self, name, input_dim, heads, head_dim):
        kernel = self.add_weight(
            name=f"{name}_kernel",
            shape=(input_dim, heads, head_dim),
            initializer=clone_initializer(self.kernel_initializer),
        )
        bias = None
        if self.use_bias:
            bias = self.add_weight(
                name=f"{name}_bias",
                shape=(heads, head_dim),
                initializer=clone_initializer(self.bias_initializer),
            )
        return kernel, bias

    def build(self, query_shape, value_shape=None, key_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        for name, shape in (("query", query_shape), ("value", value_shape), ("key", key_shape)):
            if len(shape) != 3 or shape[-1] is None:
                raise ValueError(
                    f"`{name}` must have shape [batch, length, features] with a "
                    f"known feature size; got {tuple(shape)}."
                )
        output_dim = self._output_dim or query_shape[-1]
        self.query_kernel, self.query_bias = self._projection(
            "query", query_shape[-1], self.num_heads, self.key_dim
        )
        self.key_kernel, self.key_bias = self._projection(
            "key", key_shape[-1], self.num_heads, self.key_dim
        )
        self.value_kernel, self.value_bias = self._projection(
            "value", value_shape[-1], self.num_heads, self.value_dim
        )
        self.output_kernel = self.add_weight(
            name="output_kernel",
            shape=(self.num_heads, self.value_dim, output_dim),
            initializer=clone_initializer(self.output_kernel_initializer),
        )
        self.output_bias = None
        if self.use_bias:
            self.output_bias = self.add_weight(
                name="output_bias", shape=(output_dim,),
                initializer=clone_initializer(self.bias_initializer),
            )
        self.built = True

    def _project_to_heads(self, inputs, kernel, bias):
        """`[B, L, D] -> [B, H, L, d]` with one matmul over all heads."""
        _, heads, head_dim = kernel.shape
        flat_kernel = ops.reshape(kernel, (kernel.shape[0], heads * head_dim))
        projected = ops.matmul(inputs, ops.cast(flat_kernel, inputs.dtype))
        if bias is not None:
            projected = projected + ops.cast(ops.reshape(bias, (-1,)), inputs.dtype)
        batch_size, length = ops.shape(inputs)[0], ops.shape(inputs)[1]
        projected = ops.reshape(projected, (batch_size, length, heads, head_dim))
        return projected

    def call(
        self,
        query,
        value,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
        start_index=0,
        cache=None,
        cache_index=None,
    ):
        if key is None:
            key = value
            key_mask = None  # the value's mask already covers it, as in Keras
        if cache is not None:
            if cache_index is None:
                raise ValueError("`cache_index` is required with `cache`.")
            start_index = cache_index
        query_length = ops.shape(query)[1]

        query_heads = self._project_to_heads(query, self.query_kernel, self.query_bias)
        key_heads = self._project_to_heads(key, self.key_kernel, self.key_bias)
        value_heads = self._project_to_heads(value, self.value_kernel, self.value_bias)
        if self.rotary_embedding is not None:
            query_heads = self.rotary_embedding(query_heads, start_index=start_index)
            key_heads = self.rotary_embedding(key_heads, start_index=start_index)
        causal = causal_mask(query_length, ops.shape(key)[1]) if use_causal_mask else None
        # [B, L, H, d] -> [B, H, L, d]: heads first, as the cache keeps them.
        query_heads = ops.transpose(query_heads, (0, 2, 1, 3))
        key_heads = ops.transpose(key_heads, (0, 2, 1, 3))
        value_heads = ops.transpose(value_heads, (0, 2, 1, 3))
        if cache is not None:
            # Write this step's keys and values at `cache_index`, attend to the cache.
            update = ops.stack([key_heads, value_heads], axis=1)  # [B, 2, H, T, d]
            zero = ops.zeros((), "int32")
            cache = ops.slice_update(
                cache, (zero, zero, zero, ops.cast(cache_index, "int32"), zero),
                ops.cast(update, cache.dtype),
            )
            key_heads = ops.cast(cache[:, 0], query_heads.dtype)
            value_heads = ops.cast(cache[:, 1], query_heads.dtype)
            # Query i sits at position cache_index + i and sees keys up to it; the
            # cache beyond holds nothing yet (or stale keys of an earlier sequence).
            query_positions = ops.arange(query_length) + ops.cast(cache_index, "int32")
            key_positions = ops.arange(ops.shape(cache)[3])
            causal = ops.expand_dims(key_positions[None, :] <= query_positions[:, None], 0)
            key_mask = value_mask = None  # padding comes with `attention_mask`

        query_heads = query_heads * ops.cast(1.0 / math.sqrt(self.key_dim), query_heads.dtype)
        mask = merge_masks(
            attention_mask,
            None if query_mask is None else ops.expand_dims(query_mask, -1),
            None if value_mask is None else ops.expand_dims(value_mask, -2),
            None if key_mask is None else ops.expand_dims(key_mask, -2),
            causal,
        )
        if mask is not None:
            mask = ops.expand_dims(mask, 1)  # broadcast over heads
        cache_length = None if cache is None else cache.shape[3]
        if (cache_length is not None and query.shape[1] == 1 and not return_attention_scores
                and cache_length > CACHE_WINDOW):
            # One decoding step: attend to the smallest window of whole blocks that holds
            # every position up to the query's; the rest of the cache is masked anyway.
            windows = list(range(CACHE_WINDOW, cache_length, CACHE_WINDOW)) + [cache_length]
            block = ops.minimum(ops.cast(cache_index, "int32") // CACHE_WINDOW,
                                len(windows) - 1)

            def window_attention(width):
                return lambda: self._attend(
                    query_heads, key_heads[:, :, :width], value_heads[:, :, :width],
                    None if mask is None else mask[..., :width], training)[0]

            context = ops.switch(block, [window_attention(width) for width in windows])
            probabilities = None
        else:
            context, probabilities = self._attend(
                query_heads, key_heads, value_heads, mask, training)
        context = ops.transpose(context, (0, 2, 1, 3))
        batch_size = ops.shape(context)[0]
        context = ops.reshape(context, (batch_size, query_length, self.num_heads * self.value_dim))
        output_kernel = ops.reshape(
            self.output_kernel, (self.num_heads * self.value_dim, self.output_kernel.shape[-1])
        )
        output = ops.matmul(context, ops.cast(output_kernel, context.dtype))
        if self.output_bias is not None:
            output = output + ops.cast(self.output_bias, output.dtype)
        outputs = (output, probabilities) if return_attention_scores else (output,)
        if cache is not None:
            outputs += (cache,)
        return outputs if len(outputs) > 1 else output

    def _attend(self, query_heads, key_heads, value_heads, mask, training):
        """Scaled queries, keys, values `[B, H, L, d]` → `(context [B, H, T, dv], probabilities)`."""
        # Contracting over d directly: no transposed copy of the keys (or the cache).
        scores = ops.einsum("bhtd,bhsd->bhts", query_heads, key_heads)
        # Softmax in float32: bfloat16 / float16 logits lose too much precision.
        scores = ops.cast(scores, "float32")
        if mask is not None:
            scores = ops.where(mask, scores, -1e9)
        probabilities = ops.softmax(scores, axis=-1)
        if mask is not None:
            # A fully masked row would otherwise be uniform over padding.
            probabilities = ops.where(mask, probabilities, 0.0)
        dropped = self.dropout_layer(
            ops.cast(probabilities, self.compute_dtype), training=training
        )
        return ops.matmul(dropped, value_heads), probabilities

    def init_cache(self, batch_size, max_length, dtype=None):
        """A zero `[B, 2, H, max_length, d]` key/value cache for `call(..., cache=...)`."""
        if self.key_dim != self.value_dim:
            raise ValueError("A key/value cache needs `key_dim == value_dim`.")
        return ops.zeros(
            (batch_size, 2, self.num_heads, max_length, self.key_dim),
            dtype or self.compute_dtype,
        )

    def compute_mask(self, query, previous_mask=None):
        # The output is aligned with the query, so it keeps the query's mask.
        return previous_mask

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        return tuple(query_shape[:-1]) + (self._output_dim or query_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "output_shape": self._output_dim,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "rotary_max_wavelength": self.rotary_max_wavelength,
                "seed": self.seed,
                "output_kernel_initializer": keras.initializers.serialize(
                    self.output_kernel_initializer),
            }
        )
        return config
