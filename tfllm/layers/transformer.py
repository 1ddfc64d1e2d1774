"""The Transformer block: self-attention and a feed-forward network."""

import keras

from tfllm.layers.activations import computed_activation, get_activation
from tfllm.layers.attention import MultiHeadAttention
from tfllm.layers.initializers import clone_initializer
from tfllm.layers.normalization import LayerNormalization
from tfllm.layers.validation import check_positive_int, check_rate


@keras.saving.register_keras_serializable(package="tfllm")
class FeedForward(keras.layers.Layer):
    """Position-wise feed-forward network: Dense → activation → Dense → dropout.

    Args:
        intermediate_dim: int, width of the hidden layer (usually 4 × D).
        output_dim: int or None, width of the output; defaults to the input
            width `D`.
        activation: activation of the hidden layer: a Keras name, `"gelu_approximate"`
            (GPT-2's tanh GELU) or a function. Defaults to `"gelu"` (exact).
        dropout: float in [0, 1), dropout on the output.
        kernel_initializer: initializer of the hidden kernel (and of the output
            kernel unless `output_kernel_initializer` is given). Each kernel
            gets its own draw.
        seed: int or None, seed of the dropout.
        output_kernel_initializer: initializer of the output kernel, e.g. one
            scaled down for a residual branch (GPT-2). Defaults to
            `kernel_initializer`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `[B, T, D]` tensor.
        training: bool, enables dropout.

    Returns:
        `[B, T, output_dim]` tensor.

    Example:

    >>> ffn = FeedForward(intermediate_dim=256)
    >>> y = ffn(keras.random.normal((2, 10, 64)))  # [2, 10, 64]
    """

    def __init__(
        self,
        intermediate_dim,
        output_dim=None,
        activation="gelu",
        dropout=0.0,
        kernel_initializer="glorot_uniform",
        seed=None,
        output_kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.intermediate_dim = check_positive_int("intermediate_dim", intermediate_dim)
        self.output_dim = None if output_dim is None else check_positive_int("output_dim", output_dim)
        self.activation = get_activation(activation)
        self.dropout = check_rate("dropout", dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.output_kernel_initializer = keras.initializers.get(
            output_kernel_initializer or kernel_initializer)
        self.seed = seed

    def build(self, input_shape):
        output_dim = self.output_dim or input_shape[-1]
        self.hidden_dense = keras.layers.Dense(
            self.intermediate_dim,
            activation=computed_activation(self.activation),  # config: self.activation
            kernel_initializer=clone_initializer(self.kernel_initializer),
            dtype=self.dtype_policy,
            name="hidden_dense",
        )
        self.hidden_dense.build(input_shape)
        self.output_dense = keras.layers.Dense(
            output_dim,
            kernel_initializer=clone_initializer(self.output_kernel_initializer),
            dtype=self.dtype_policy,
            name="output_dense",
        )
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_dim,))
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, seed=self.seed, dtype=self.dtype_policy
        )
        self.built = True

    def call(self, inputs, training=None):
        hidden = self.hidden_dense(inputs)
        return self.dropout_layer(self.output_dense(hidden), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim or input_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "output_dim": self.output_dim,
                "activation": keras.activations.serialize(self.activation),
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "seed": self.seed,
                "output_kernel_initializer": keras.initializers.serialize(
                    self.output_kernel_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="tfllm")
class TransformerBlock(keras.layers.Layer):
    """One Transformer layer: self-attention, then a feed-forward network.

    With `normalize_first=True` (the default, "pre-LN", as in GPT-2) each
    sub-layer sees layer-normalised inputs and adds its output to the
    residual stream: `x + attention(norm(x))`, then `x + ffn(norm(x))`. It
    trains stably without warm-up tricks. `normalize_first=False` gives the
    original "post-LN" block of Vaswani et al. and BERT:
    `norm(x + attention(x))`, then `norm(x + ffn(x))`.

    With `causal=True` the block is a decoder block (position `t` attends to
    positions `<= t` only); otherwise it is a bidirectional encoder block.

    Args:
        num_heads: int, number of attention heads `H`; must divide the input
            width `D`.
        intermediate_dim: int, width of the feed-forward hidden layer.
        dropout: float in [0, 1), dropout after attention and feed-forward.
        attention_dropout: float in [0, 1), dropout on attention
            probabilities. Defaults to `dropout`.
        activation: feed-forward activation (as `FeedForward`'s). Defaults to `"gelu"`.
        layer_norm_epsilon: float, epsilon of the layer normalisations.
        normalize_first: bool, pre-LN (True) or post-LN (False).
        causal: bool, decoder (True) or encoder (False) self-attention.
        rotary_max_wavelength: float or None; rotary position embeddings
            inside attention when set.
        kernel_initializer: initializer of the kernels; each kernel gets its
            own draw.
        seed: int or None, seed of the dropouts.
        output_kernel_initializer: initializer of the two kernels that write
            into the residual stream (attention output, feed-forward output).
            Defaults to `kernel_initializer`; GPT-2 scales it down with depth.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `[B, T, D]` tensor.
        padding_mask: optional `[B, T]` boolean, True for real tokens.
            Defaults to the Keras mask carried by `inputs`, if any.
        attention_mask: optional boolean mask, `[B, T, T]` or any shape
            `MultiHeadAttention` broadcasts (`[T, T]`, `[B, H, T, T]`, ...).
        training: bool, enables dropout.
        start_index: position of `inputs[:, 0]` (for rotary embeddings).
        cache: optional `[B, 2, H, S, d]` key/value cache of the attention
            (causal blocks; see `MultiHeadAttention`), updated at
            `cache_index`; padding then comes as `attention_mask [B, T, S]`.
        cache_index: position of `inputs[:, 0]` when `cache` is given.

    Returns:
        `[B, T, D]` tensor; with `cache`, `(output, updated cache)`.

    Example:

    >>> block = TransformerBlock(num_heads=4, intermediate_dim=256, causal=True)
    >>> y = block(keras.random.normal((2, 10, 64)))  # [2, 10, 64]
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        dropout=0.0,
        attention_dropout=None,
        activation="gelu",
        layer_norm_epsilon=1e-5,
        normalize_first=True,
        causal=False,
        rotary_max_wavelength=None,
        kernel_initializer="glorot_uniform",
        seed=None,
        output_kernel_initializer=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.intermediate_dim = check_positive_int("intermediate_dim", intermediate_dim)
        self.dropout = check_rate("dropout", dropout)
        self.attention_dropout = check_rate(
            "attention_dropout", self.dropout if attention_dropout is None else attention_dropout
        )
        self.activation = get_activation(activation)
        if not layer_norm_epsilon > 0:
            raise ValueError(f"`layer_norm_epsilon` must be positive; got {layer_norm_epsilon!r}.")
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.normalize_first = bool(normalize_first)
        self.causal = bool(causal)
        self.rotary_max_wavelength = rotary_max_wavelength
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.output_kernel_initializer = keras.initializers.get(
            output_kernel_initializer or kernel_initializer)
        self.seed = seed

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        if hidden_dim is None or hidden_dim % self.num_heads:
            raise ValueError(
                f"The input width (hidden_dim={hidden_dim}) must be divisible by "
                f"num_heads={self.num_heads}."
            )
        common = {"dtype": self.dtype_policy}
        self.attention_norm = LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="attention_norm", **common
        )
        self.attention = MultiHeadAttention(
            num_heads=self.num_heads,
            key_dim=hidden_dim // self.num_heads,
            dropout=self.attention_dropout,
            kernel_initializer=self.kernel_initializer,
            output_kernel_initializer=self.output_kernel_initializer,
            rotary_max_wavelength=self.rotary_max_wavelength,
            seed=self.seed,
            name="attention",
            **common,
        )
        self.attention_output_dropout = keras.layers.Dropout(self.dropout, seed=self.seed, **common)
        self.feed_forward_norm = LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="feed_forward_norm", **common
        )
        self.feed_forward = FeedForward(
            self.intermediate_dim,
            activation=self.activation,
            dropout=self.dropout,
            kernel_initializer=self.kernel_initializer,
            output_kernel_initializer=self.output_kernel_initializer,
            seed=self.seed,
            name="feed_forward",
            **common,
        )
        for layer in (self.attention_norm, self.feed_forward_norm, self.feed_forward):
            layer.build(input_shape)
        self.attention.build(input_shape, input_shape)
        self.built = True

    def call(self, inputs, padding_mask=None, attention_mask=None, training=None, start_index=0,
             cache=None, cache_index=None):
        if padding_mask is None:
            padding_mask = getattr(inputs, "_keras_mask", None)
        attention_kwargs = {
            "query_mask": padding_mask,
            "value_mask": padding_mask,
            "attention_mask": attention_mask,
            "use_causal_mask": self.causal,
            "training": training,
            "start_index": start_index,
        }
        if cache is not None:
            if not self.causal:
                raise ValueError("A key/value cache is for causal (decoder) blocks only.")
            # Padding of a cached sequence comes as `attention_mask` over the cache.
            attention_kwargs.update(query_mask=None, value_mask=None, cache=cache,
                                    cache_index=cache_index)

        def attend(x):
            result = self.attention(x, x, **attention_kwargs)
            return result if cache is not None else (result, None)

        x = inputs
        if self.normalize_first:
            attended, cache = attend(self.attention_norm(x))
            x = x + self.attention_output_dropout(attended, training=training)
            x = x + self.feed_forward(self.feed_forward_norm(x), training=training)
        else:
            attended, cache = attend(x)
            x = self.attention_norm(x + self.attention_output_dropout(attended, training=training))
            x = self.feed_forward_norm(x + self.feed_forward(x, training=training))
        return x if cache is None else (x, cache)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "activation": keras.activations.serialize(self.activation),
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "normalize_first": self.normalize_first,
                "causal": self.causal,
                "rotary_max_wavelength": self.rotary_max_wavelength,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "seed": self.seed,
                "output_kernel_initializer": keras.initializers.serialize(
                    self.output_kernel_initializer),
            }
        )
        return config
