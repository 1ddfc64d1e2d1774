"""Multi-head scaled dot-product attention: Keras's contract, a key/value cache on top."""

import math

import keras
from keras import ops

from tfllm.layers.attention_masks import (
    MASKED_SCORE,
    causal_mask,
    merge_masks,
    without_keras_masks,
)
from tfllm.layers.einsum_equations import attention_equations, projection_equation
from tfllm.layers.initializers import clone_initializer
from tfllm.layers.key_value_cache import KeyValueCacheMixin
from tfllm.layers.positional import RotaryEmbedding
from tfllm.layers.validation import check_rate


def _check_dim(name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"Received an invalid value for argument `{name}`: expected a positive integer"
            f"{' or None' if allow_none else ''}; got {name}={value!r}."
        )
    return value


@keras.saving.register_keras_serializable(package="tfllm")
class MultiHeadAttention(KeyValueCacheMixin, keras.layers.Layer):
    """Multi-head attention: a drop-in for `keras.layers.MultiHeadAttention`, plus a cache.

    Projects `query`, `key` and `value` into `num_heads` heads with
    `keras.layers.EinsumDense` sublayers named and shaped as Keras's are
    (`query`, `key`, `value`, `attention_output`, and `gate` with
    `use_gate=True`), attends with scaled dot products over `attention_axes`,
    and projects the heads back. It takes every constructor and call argument
    of `keras.layers.MultiHeadAttention` (Keras 3.15) with the same meaning,
    and its weights move between the two classes (`get_weights` /
    `set_weights`, `.weights.h5` files, either direction); Keras's own test
    file for the layer runs against it (`tests/layers/test_attention_keras_suite.py`).
    Because the projections are Keras's layers, `enable_lora`, `quantize("int8")`
    and `DTypePolicyMap`s reach them as they reach Keras's attention.

    On top of Keras's layer:

    - a key/value cache for decoding (`cache`, `cache_index`, `init_cache`): one
      compiled step serves every position;
    - rotary position embeddings of queries and keys (`rotary_max_wavelength`,
      with `start_index` in the call);
    - `output_kernel_initializer`, the output projection's own initializer (GPT-2
      scales it down with depth).

    Where it differs from Keras's layer, on purpose:

    - the softmax is computed in float32 also under `mixed_bfloat16` /
      `mixed_float16`, and `return_attention_scores` gives float32 probabilities;
    - `attention_mask` and the masks the layer makes (padding, causal, sliding
      window) are each broadcast to the scores' shape before they are combined,
      so a `[B, H, T, S]` mask with a padding or causal mask works whatever `B`
      and `H` are (Keras combines them first, which fails or mixes axes);
      a mask that cannot broadcast raises a ValueError naming its shape;
    - `query_mask`, `value_mask` and `key_mask` given explicitly are used (Keras
      uses the Keras masks of the tensors only);
    - a query that may attend to nothing gets a zero attention output (before the
      output projection) on every path; Keras's fused path gives it uniform
      attention over the masked keys;
    - `flash_attention` is accepted and stored but does nothing: TensorFlow has no
      flash-attention kernel (Keras's layer also falls back to the plain
      computation there); under XLA the attention compiles to one fused loop;
    - the input tensors' Keras masks are left on them (Keras's layer removes
      them).

    Masks are boolean, True = may attend. `attention_mask` is `[B, T, S]` or any
    shape that broadcasts to the scores (`[B, H, T, S]` for rank-3 inputs):
    missing axes are added before the heads axis, as Keras does, so `[T, S]`,
    `[B, T, S]`, `[B, 1, T, S]` and `[B, H, T, S]` all work. It is combined (AND)
    with the causal mask (`use_causal_mask=True`), the sliding window, and the
    padding masks of `query` / `value` / `key` (Keras masks, e.g. from
    `Embedding(mask_zero=True)`, or given as `query_mask` `[B, T]`, `value_mask`
    / `key_mask` `[B, S]`).

    Args:
        num_heads: int, number of attention heads `H`.
        key_dim: int, size of each head for query and key.
        value_dim: int, size of each head for value. Defaults to `key_dim`.
        dropout: float in [0, 1), dropout on the attention probabilities.
        use_bias: bool, whether the projections have biases.
        output_shape: int or tuple of ints, the shape of the output's features
            (besides batch and attended axes). Defaults to the query's last axis.
        attention_axes: int or tuple of ints, the axes attention runs over.
            Defaults to every axis but the batch and the features.
        sliding_window: int or None; when set, query position `i` attends only to
            key positions `j` with `|i - j| < sliding_window` (with
            `use_causal_mask=True`: the last `sliding_window` positions).
        flash_attention: bool or None; accepted for compatibility, no effect here.
        kernel_initializer: initializer of the projection kernels (each kernel
            gets its own draw).
        bias_initializer: initializer of the projection biases.
        kernel_regularizer, bias_regularizer, activity_regularizer: regularizers
            of the projections' kernels, biases and outputs.
        kernel_constraint, bias_constraint: constraints of the projections.
        use_gate: bool; when True, a sigmoid gate projected from the query
            multiplies the attention output before the output projection (Gated
            Attention, arXiv:2505.06708).
        seed: int or None, seed of the dropout.
        rotary_max_wavelength: float or None. When set, queries and keys are
            rotated with a `RotaryEmbedding` of this wavelength (rank-3 inputs).
        output_kernel_initializer: initializer of the output projection's kernel.
            Defaults to `kernel_initializer`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        query: `[B, T, Dq]` tensor (or higher rank with `attention_axes`).
        value: `[B, S, Dv]` tensor (pass `query` for self-attention).
        key: `[B, S, Dk]` tensor; defaults to `value`.
        query_mask, value_mask, key_mask: optional `[B, T]` / `[B, S]` padding
            masks (True = real token).
        attention_mask: optional boolean mask, see above.
        return_attention_scores: bool; also return the attention probabilities
            (`[B, H, T, S]`, float32, before dropout).
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
            the query itself; inputs are `[B, T, D]`. `attention_mask`, if
            given, is `[B, T, S]` (padding of the cached sequence).
        cache_index: int or scalar int tensor, the position of `query[:, 0]`
            when `cache` is given (also the rotary `start_index`).

    Returns:
        The output (`[B, T, D]`, or `[B, T, *output_shape]`), and the attention
        probabilities if `return_attention_scores=True`; with `cache`, also the
        updated cache (`output, cache` or `output, scores, cache`).

    Example:

    >>> attention = MultiHeadAttention(num_heads=4, key_dim=16)
    >>> x = keras.random.normal((2, 10, 64))
    >>> y = attention(x, x, use_causal_mask=True)  # [2, 10, 64]
    >>> keras_attention = keras.layers.MultiHeadAttention(num_heads=4, key_dim=16)
    >>> _ = keras_attention(x, x)
    >>> keras_attention.set_weights(attention.get_weights())  # and back

    References:
        Vaswani et al., "Attention Is All You Need", 2017.
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        dropout=0.0,
        use_bias=True,
        output_shape=None,
        attention_axes=None,
        sliding_window=None,
        flash_attention=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        use_gate=False,
        seed=None,
        rotary_max_wavelength=None,
        output_kernel_initializer=None,
        **kwargs,
    ):
        self._num_heads = _check_dim("num_heads", num_heads)
        self._key_dim = _check_dim("key_dim", key_dim)
        self._value_dim = _check_dim("value_dim", value_dim, allow_none=True) or key_dim
        super().__init__(**kwargs)
        self.supports_masking = True
        self._dropout = check_rate("dropout", dropout)
        self._use_bias = bool(use_bias)
        self._use_gate = bool(use_gate)
        self._output_shape = self._check_output_shape(output_shape)
        if isinstance(attention_axes, int):
            attention_axes = (attention_axes,)
        elif attention_axes is not None and not isinstance(attention_axes, (list, tuple)):
            raise ValueError(
                f"`attention_axes` must be an int, list, or tuple; got {attention_axes!r}.")
        self._attention_axes = None if attention_axes is None else tuple(attention_axes)
        self._sliding_window = _check_dim("sliding_window", sliding_window, allow_none=True)
        self._flash_attention = flash_attention
        self._kernel_initializer = keras.initializers.get(kernel_initializer)
        self._bias_initializer = keras.initializers.get(bias_initializer)
        self._output_kernel_initializer = keras.initializers.get(
            output_kernel_initializer or kernel_initializer)
        self._kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self._bias_regularizer = keras.regularizers.get(bias_regularizer)
        self._activity_regularizer = keras.regularizers.get(activity_regularizer)
        self._kernel_constraint = keras.constraints.get(kernel_constraint)
        self._bias_constraint = keras.constraints.get(bias_constraint)
        self.seed = seed
        self.rotary_max_wavelength = rotary_max_wavelength
        self._inverse_sqrt_key_dim = 1.0 / math.sqrt(float(self._key_dim))
        self.rotary_embedding = None
        if rotary_max_wavelength is not None:
            if self._key_dim % 2:
                raise ValueError(f"Rotary embeddings need an even `key_dim`; got {key_dim}.")
            self.rotary_embedding = RotaryEmbedding(
                max_wavelength=rotary_max_wavelength, dtype=self.dtype_policy,
                name="rotary_embedding")

    @staticmethod
    def _check_output_shape(output_shape):
        if output_shape is None:
            return None
        if isinstance(output_shape, int) and not isinstance(output_shape, bool):
            output_shape = (output_shape,)
        try:
            output_shape = tuple(output_shape)
        except TypeError:
            raise ValueError(
                f"Invalid `output_shape`: {output_shape!r}. When specified, the "
                "`output_shape` should be of type tuple, list, or int.") from None
        for size in output_shape:
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise ValueError(
                    f"Invalid `output_shape`: {output_shape!r}; every size must be a "
                    "positive integer.")
        return output_shape

    num_heads = property(lambda self: self._num_heads)
    key_dim = property(lambda self: self._key_dim)
    value_dim = property(lambda self: self._value_dim)
    dropout = property(lambda self: self._dropout)
    use_bias = property(lambda self: self._use_bias)
    attention_axes = property(lambda self: self._attention_axes)
    # The projections, under the names Keras's layer gives them (weights files walk
    # these public names first, so the paths inside `.weights.h5` files agree).
    query_dense = property(lambda self: self._query_dense)
    key_dense = property(lambda self: self._key_dense)
    value_dense = property(lambda self: self._value_dense)
    output_dense = property(lambda self: self._output_dense)

    def _sublayer_arguments(self, kernel_initializer=None):
        return {
            "kernel_initializer": clone_initializer(kernel_initializer
                                                    or self._kernel_initializer),
            "bias_initializer": clone_initializer(self._bias_initializer),
            "kernel_regularizer": self._kernel_regularizer,
            "bias_regularizer": self._bias_regularizer,
            "activity_regularizer": self._activity_regularizer,
            "kernel_constraint": self._kernel_constraint,
            "bias_constraint": self._bias_constraint,
            "dtype": self.dtype_policy,
        }

    def _projection(self, input_shape, heads_dim, name, activation=None):
        equation, bias_axes, output_rank = projection_equation(len(input_shape) - 1, 1, 2)
        layer = keras.layers.EinsumDense(
            equation,
            output_shape=[None] * (output_rank - 3) + [self._num_heads, heads_dim],
            bias_axes=bias_axes if self._use_bias else None,
            activation=activation,
            name=name,
            **self._sublayer_arguments(),
        )
        layer.build(input_shape)
        return layer

    def build(self, query_shape, value_shape=None, key_shape=None):
        query_shape = tuple(query_shape)
        value_shape = query_shape if value_shape is None else tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        self._check_shapes(query_shape, value_shape, key_shape)
        rank = len(query_shape) + 1  # of the projected tensors: [B, ..., H, d]
        if self._attention_axes is None:
            self._attention_axes = tuple(range(1, rank - 2))
        else:
            self._attention_axes = tuple(axis if axis >= 0 else (rank - 1) + axis
                                         for axis in self._attention_axes)
        if self.rotary_embedding is not None and len(query_shape) != 3:
            raise ValueError("Rotary embeddings need `[batch, length, features]` inputs; "
                             f"got a query of shape {query_shape}.")
        # Created in Keras's order, so that `get_weights()` lists the same weights.
        self._query_dense = self._projection(query_shape, self._key_dim, "query")
        self._key_dense = self._projection(key_shape, self._key_dim, "key")
        if self._use_gate:
            self._gate_dense = self._projection(query_shape, self._value_dim, "gate",
                                                activation="sigmoid")
        self._value_dense = self._projection(value_shape, self._value_dim, "value")
        (self._dot_product_equation, self._combine_equation,
         self._scores_rank) = attention_equations(rank, self._attention_axes)
        self._dropout_layer = keras.layers.Dropout(
            rate=self._dropout, seed=self.seed, dtype=self.dtype_policy)
        output_shape = self._output_shape or (query_shape[-1],)
        equation, bias_axes, output_rank = projection_equation(
            len(query_shape) - 1, 2, len(output_shape))
        self._output_dense = keras.layers.EinsumDense(
            equation,
            output_shape=[None] * (output_rank - 1 - len(output_shape)) + list(output_shape),
            bias_axes=bias_axes if self._use_bias else None,
            name="attention_output",
            **self._sublayer_arguments(self._output_kernel_initializer),
        )
        self._output_dense.build(query_shape[:-1] + (self._num_heads, self._value_dim))
        self.built = True

    @staticmethod
    def _check_shapes(query_shape, value_shape, key_shape):
        if value_shape[1:-1] != key_shape[1:-1]:
            raise ValueError(
                "All dimensions of `value` and `key`, except the last one, must be equal. "
                f"Received: value_shape={value_shape} and key_shape={key_shape}")
        for name, shape in (("query", query_shape), ("value", value_shape),
                            ("key", key_shape)):
            if len(shape) < 3 or shape[-1] is None:
                raise ValueError(
                    f"`{name}` must have shape [batch, length, features] (or more axes) "
                    f"with a known feature size; got {tuple(shape)}.")
        if len(query_shape) != len(value_shape):
            raise ValueError(
                f"`query` and `value` must have the same rank; got shapes {query_shape} "
                f"and {value_shape}.")

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
        if key is None or key is value:
            key = value
            key_mask = None  # the value's mask already covers it, as in Keras
        if cache is not None:
            return self._call_with_cache(query, cache, cache_index, query_mask,
                                         attention_mask, return_attention_scores, training)
        mask = self._compute_attention_mask(
            query, value, query_mask=query_mask, value_mask=value_mask,
            key_mask=key_mask, attention_mask=attention_mask,
            use_causal_mask=use_causal_mask)
        gate, query_heads, key_heads, value_heads = self._project_heads(
            query, key, value, start_index)
        output, scores = self._compute_attention(
            query_heads, key_heads, value_heads, mask, training, return_attention_scores)
        output = self._project_output(output, gate)
        return (output, scores) if return_attention_scores else output

    def _project_heads(self, query, key, value, start_index):
        """`(gate or None, query_heads, key_heads, value_heads)`: `[B, T, H, d]` for the
        query, `[B, S, H, d]` for the keys and values; queries and keys are rotated when
        the layer has rotary embeddings."""
        with without_keras_masks(query, value, key):
            gate = self._gate_dense(query) if self._use_gate else None
            query_heads = self._query_dense(query)
            key_heads = self._key_dense(key)
            value_heads = self._value_dense(value)
        query_heads, key_heads = self._rotate(query_heads, key_heads, start_index)
        return gate, query_heads, key_heads, value_heads

    def _rotate(self, query_heads, key_heads, start_index):
        """Queries and keys `[B, T, H, d]` rotated from position `start_index` when the
        layer has rotary embeddings (else as they are)."""
        if self.rotary_embedding is None:
            return query_heads, key_heads
        return (self.rotary_embedding(query_heads, start_index=start_index),
                self.rotary_embedding(key_heads, start_index=start_index))

    def _project_output(self, output, gate):
        """The attention output `[B, T, H, dv]`, times the gate (`use_gate`), projected back."""
        if gate is not None:
            output = output * gate
        return self._output_dense(output)

    def _compute_attention_mask(self, query, value, query_mask=None, value_mask=None,
                                key_mask=None, attention_mask=None, use_causal_mask=False):
        """The boolean mask of the scores (broadcastable to their shape), or None.

        The padding masks (`[B, T, 1]`, `[B, 1, S]`), the causal and sliding-window
        masks (`[1, T, S]`) and `attention_mask` are each given the scores' rank (axes
        added before the heads axis, as Keras does) and then combined, so none of
        them is broadcast against another's batch or heads axis.
        """
        made = []
        if query_mask is not None:
            made.append(ops.expand_dims(ops.cast(query_mask, "bool"), -1))
        for mask in (value_mask, key_mask):
            if mask is not None:
                made.append(ops.expand_dims(ops.cast(mask, "bool"), -2))
        if use_causal_mask:
            made.append(self._compute_causal_mask(query, value))
        if self._sliding_window is not None:
            made.append(self._compute_sliding_window_mask(query, value))
        if attention_mask is not None:
            self._check_attention_mask(attention_mask, query, value)
            made.append(ops.cast(attention_mask, "bool"))
        return merge_masks(*(self._expand_mask(mask) for mask in made))

    def _expand_mask(self, mask):
        """`mask` with axes added before the heads axis up to the scores' rank (Keras's
        broadcasting rule)."""
        axis = -len(self._attention_axes) * 2 - 1
        for _ in range(self._scores_rank - len(mask.shape)):
            mask = ops.expand_dims(mask, axis=axis)
        return mask

    def _check_attention_mask(self, attention_mask, query, value):
        """A ValueError naming `attention_mask` when its shape cannot broadcast."""
        shape = tuple(attention_mask.shape)
        scores = self._scores_shape(tuple(query.shape), tuple(value.shape))
        problem = len(shape) > len(scores)
        if not problem:
            expanded, axis = list(shape), -len(self._attention_axes) * 2 - 1
            while len(expanded) < len(scores):
                expanded.insert(len(expanded) + 1 + axis, 1)  # as ops.expand_dims(axis)
            problem = any(size not in (None, 1) and wanted is not None and size != wanted
                          for size, wanted in zip(expanded, scores))
        if problem:
            raise ValueError(
                f"`attention_mask` of shape {shape} cannot broadcast to the attention "
                f"scores of shape {scores} (batch, heads, query positions, key positions "
                "for 3-D inputs); give it as [B, T, S], [T, S], [B, 1, T, S] or "
                "[B, H, T, S].")

    def _scores_shape(self, query_shape, value_shape):
        """Static shape of the scores: `[B, <other axes>, H, <query axes>, <key axes>]`."""
        other = [axis for axis in range(1, len(query_shape) - 1)
                 if axis not in self._attention_axes]
        return ((query_shape[0],) + tuple(query_shape[axis] for axis in other)
                + (self._num_heads,) + tuple(query_shape[axis] for axis in self._attention_axes)
                + tuple(value_shape[axis] for axis in self._attention_axes))

    def _compute_causal_mask(self, query, value=None):
        """`[1, T, S]` boolean lower-triangular mask (T, S: axis 1 of query and value)."""
        query_length = ops.shape(query)[1]
        value_length = query_length if value is None else ops.shape(value)[1]
        return causal_mask(query_length, value_length)

    def _compute_sliding_window_mask(self, query, value=None):
        """`[1, T, S]` band: query `i` may attend to keys `j` with `|i - j| < window`."""
        query_length = ops.shape(query)[1]
        value_length = query_length if value is None else ops.shape(value)[1]
        rows = ops.reshape(ops.arange(query_length, dtype="int32"), (1, -1, 1))
        columns = ops.reshape(ops.arange(value_length, dtype="int32"), (1, 1, -1))
        return ops.less(ops.abs(rows - columns), self._sliding_window)

    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False, use_causal_mask=False):
        """Attention of projected heads: `([B, T, H, dv] output, probabilities or None)`.

        `query`, `key`, `value` are `[B, T, H, d]` / `[B, S, H, d]` (more axes with
        `attention_axes`); `attention_mask` broadcasts to the scores as described in
        the class docstring. Override it to change the attention itself, as with
        Keras's layer.
        """
        if use_causal_mask:
            attention_mask = merge_masks(
                None if attention_mask is None else self._expand_mask(attention_mask),
                self._expand_mask(self._compute_causal_mask(query, value)))
        query = ops.multiply(query, ops.cast(self._inverse_sqrt_key_dim, query.dtype))
        sequences = len(query.shape) == 4 and self._attention_axes == (1,)
        if sequences:
            # [B, T, H, d] inputs: heads first, then plain batched matrix products. The
            # same sums as the einsums below, but TensorFlow runs einsums of this layout
            # (and their gradients) as batched products half as fast (measured: 46 ms
            # against 31 ms for attention's forward and backward at B=16, H=4, T=256,
            # d=64 on 2 cores); the transposes cost little beside that.
            scores = ops.matmul(ops.transpose(query, (0, 2, 1, 3)),
                                ops.transpose(key, (0, 2, 3, 1)))
        else:
            scores = ops.einsum(self._dot_product_equation, key, query)
        # Empty rows: zeroed in the (smaller) output when the probabilities stay inside.
        zero_output_rows = sequences and not return_attention_scores
        probabilities = self._masked_softmax(scores, attention_mask,
                                             zero_empty_rows=not zero_output_rows)
        weights = ops.cast(probabilities, self.compute_dtype)
        if self._dropout > 0.0:
            weights = self._dropout_layer(weights, training=training)
        if sequences:
            output = ops.matmul(weights, ops.transpose(value, (0, 2, 1, 3)))
            if zero_output_rows:
                output = self._zero_empty_rows(output, attention_mask)
            output = ops.transpose(output, (0, 2, 1, 3))
        else:
            output = ops.einsum(self._combine_equation, weights, value)
        return output, probabilities if return_attention_scores else None

    def _masked_softmax(self, scores, attention_mask=None, zero_empty_rows=True):
        """Softmax over the key axes, in float32; masked keys get probability 0.

        A query whose keys are all masked gets probabilities 0 too; with
        `zero_empty_rows=False` it gets the softmax of equal scores (uniform), and the
        caller zeroes that query's output instead (`_zero_empty_rows`).
        """
        # bfloat16 / float16 scores lose too much precision for the softmax.
        scores = ops.cast(scores, "float32")
        if attention_mask is not None:
            attention_mask = self._expand_mask(ops.cast(attention_mask, "bool"))
            scores = ops.where(attention_mask, scores, MASKED_SCORE)
        axes = tuple(range(self._scores_rank - len(self._attention_axes), self._scores_rank))
        if len(axes) == 1 and self._scores_rank > 4:
            # TensorFlow's oneDNN softmax kernel (on by default on CPUs with AVX-512)
            # refuses more than 5 dimensions: softmax a [-1, S] view instead.
            probabilities = ops.reshape(
                ops.softmax(ops.reshape(scores, (-1, ops.shape(scores)[-1])), axis=-1),
                ops.shape(scores))
        elif len(axes) == 1:
            probabilities = ops.softmax(scores, axis=axes[0])
        else:
            probabilities = ops.exp(scores - ops.logsumexp(scores, axis=axes, keepdims=True))
        if attention_mask is not None and zero_empty_rows:
            # A fully masked row would otherwise be uniform over what it may not see.
            probabilities = ops.where(attention_mask, probabilities, 0.0)
        return probabilities

    def _zero_empty_rows(self, output, attention_mask):
        """`output` `[B, H, T, dv]` with the rows of queries that may attend to nothing
        set to zero: what zeroing their probabilities gives, for a quarter of the work
        when the head width is a quarter of the keys (and none of the softmax's)."""
        if attention_mask is None:
            return output
        attends = ops.any(self._expand_mask(ops.cast(attention_mask, "bool")), axis=-1,
                          keepdims=True)
        return output * ops.cast(attends, output.dtype)

    def compute_mask(self, query, previous_mask=None):
        # The output is aligned with the query, so it keeps the query's mask.
        return previous_mask

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        query_shape = tuple(query_shape)
        value_shape = query_shape if value_shape is None else tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        if value_shape[1:-1] != key_shape[1:-1]:
            raise ValueError(
                "All dimensions of `value` and `key`, except the last one, must be equal. "
                f"Received: value_shape={value_shape} and key_shape={key_shape}")
        return query_shape[:-1] + (self._output_shape or query_shape[-1:])

    def compute_output_spec(self, query, value, key=None, query_mask=None, value_mask=None,
                            key_mask=None, attention_mask=None, return_attention_scores=False,
                            training=None, use_causal_mask=False, start_index=0, cache=None,
                            cache_index=None):
        output_shape = self.compute_output_shape(
            query.shape, value.shape, None if key is None else key.shape)
        outputs = (keras.KerasTensor(output_shape, dtype=self.compute_dtype),)
        if return_attention_scores:
            keys = value if cache is None else keras.KerasTensor(
                (None, cache.shape[3], None))
            outputs += (keras.KerasTensor(self._scores_shape(tuple(query.shape),
                                                             tuple(keys.shape)),
                                          dtype="float32"),)
        if cache is not None:
            outputs += (keras.KerasTensor(cache.shape, dtype=cache.dtype),)
        return outputs if len(outputs) > 1 else outputs[0]

    def get_config(self):
        config = super().get_config()
        serialize = keras.saving.serialize_keras_object
        config.update({
            "num_heads": self._num_heads,
            "key_dim": self._key_dim,
            "value_dim": self._value_dim,
            "dropout": self._dropout,
            "use_bias": self._use_bias,
            "use_gate": self._use_gate,
            "output_shape": self._output_shape,
            "attention_axes": self._attention_axes,
            "sliding_window": self._sliding_window,
            "flash_attention": self._flash_attention,
            "kernel_initializer": keras.initializers.serialize(self._kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self._bias_initializer),
            "kernel_regularizer": serialize(self._kernel_regularizer),
            "bias_regularizer": serialize(self._bias_regularizer),
            "activity_regularizer": serialize(self._activity_regularizer),
            "kernel_constraint": serialize(self._kernel_constraint),
            "bias_constraint": serialize(self._bias_constraint),
            "seed": self.seed,
            "rotary_max_wavelength": self.rotary_max_wavelength,
            "output_kernel_initializer": keras.initializers.serialize(
                self._output_kernel_initializer),
        })
        return config
