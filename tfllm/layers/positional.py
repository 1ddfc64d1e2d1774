"""Position encodings: sinusoidal (fixed), learned, and rotary.

Every layer here takes a `start_index` so that a decoder can continue a
sequence: the first position of `inputs` is position `start_index`, not 0. Each
also takes explicit `positions` (`[T]` or `[B, T]`), as KerasHub's
`PositionEmbedding`, `SinePositionEncoding` and `RotaryEmbedding` do, for
sequences whose tokens do not sit at consecutive positions (packed or
left-padded batches).
"""

import math

import keras
from keras import ops

from tfllm.layers.initializers import clone_initializer
from tfllm.layers.validation import check_positive_int


def _positions(sequence_length, start_index, dtype="float32", positions=None):
    """`[1, T]` positions `start_index, ..., start_index + T - 1`, or the given
    `positions` (`[T]` or `[B, T]`) as `[1 or B, T]`."""
    if positions is None:
        positions = ops.arange(sequence_length, dtype="int32")
        positions = positions + ops.cast(start_index, "int32")
    positions = ops.convert_to_tensor(positions)
    if len(positions.shape) == 1:
        positions = positions[None, :]
    if len(positions.shape) != 2:
        raise ValueError(
            f"`positions` must have shape [T] or [B, T]; got shape {tuple(positions.shape)}.")
    return ops.cast(positions, dtype)


@keras.saving.register_keras_serializable(package="tfllm")
class SinusoidalPositionEncoding(keras.layers.Layer):
    """Fixed sinusoidal position encoding of "Attention Is All You Need".

    For position `p` and channel pair `i`, the encoding is
    `sin(p / max_wavelength ** (2i / D))` in channel `2i` and
    `cos(p / max_wavelength ** (2i / D))` in channel `2i + 1`. The layer has
    no weights and works for any sequence length; it returns the encoding,
    which the caller adds to its embeddings.

    Args:
        max_wavelength: float, the longest wavelength of the sinusoids.
            Defaults to `10000`.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Call arguments:
        inputs: `[B, T, D]` embeddings; only their shape and dtype are used.
            `D` must be even.
        start_index: int or scalar tensor, the position of `inputs[:, 0]`.
            Defaults to `0`.
        positions: optional `[T]` or `[B, T]` positions of the tokens (instead
            of `start_index, start_index + 1, ...`).

    Returns:
        `[B, T, D]` encodings in the layer's compute dtype.

    Example:

    >>> embeddings = keras.random.normal((2, 16, 64))
    >>> encoded = embeddings + SinusoidalPositionEncoding()(embeddings)

    References:
        Vaswani et al., "Attention Is All You Need", 2017.
    """

    def __init__(self, max_wavelength=10000.0, **kwargs):
        super().__init__(**kwargs)
        if not max_wavelength > 1:
            raise ValueError(
                f"`max_wavelength` must be greater than 1; got {max_wavelength!r}."
            )
        self.max_wavelength = float(max_wavelength)

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        if hidden_dim is not None and hidden_dim % 2:
            raise ValueError(
                "SinusoidalPositionEncoding needs an even feature size, got "
                f"inputs with last dimension {hidden_dim}."
            )
        super().build(input_shape)

    def call(self, inputs, start_index=0, positions=None):
        shape = ops.shape(inputs)
        sequence_length, hidden_dim = shape[-2], inputs.shape[-1]
        positions = _positions(sequence_length, start_index, positions=positions)
        # Frequencies 1 / max_wavelength ** (2i / D) for i = 0 .. D/2 - 1.
        exponents = ops.arange(hidden_dim // 2, dtype="float32") * (2.0 / hidden_dim)
        frequencies = ops.exp(-math.log(self.max_wavelength) * exponents)
        angles = positions[:, :, None] * frequencies  # [1 or B, T, D/2]
        # Interleave: sin in even channels, cos in odd channels.
        encoding = ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1)
        encoding = ops.reshape(encoding, (-1, sequence_length, hidden_dim))
        encoding = ops.cast(encoding, self.compute_dtype)
        return ops.broadcast_to(encoding, shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"max_wavelength": self.max_wavelength})
        return config


@keras.saving.register_keras_serializable(package="tfllm")
class PositionEmbedding(keras.layers.Layer):
    """Learned absolute position embedding (as in GPT-2 and BERT).

    One trainable vector per position `0 .. max_length - 1`; the layer returns
    the vectors for the positions of `inputs`, which the caller adds to its
    token embeddings.

    Args:
        max_length: int, the number of positions that have an embedding.
        initializer: initializer of the embedding table. Defaults to
            `TruncatedNormal(stddev=0.02)`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `[B, T, D]` embeddings; only their shape is used.
        start_index: int or scalar tensor, the position of `inputs[:, 0]`.
            `start_index + T` must not exceed `max_length`.
        positions: optional `[T]` or `[B, T]` integer positions of the tokens
            (instead of `start_index, start_index + 1, ...`), each below
            `max_length`.

    Returns:
        `[B, T, D]` position embeddings.

    Example:

    >>> tokens = keras.random.normal((2, 16, 64))
    >>> encoded = tokens + PositionEmbedding(max_length=128)(tokens)
    """

    def __init__(self, max_length, initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.max_length = check_positive_int("max_length", max_length)
        self.initializer = keras.initializers.get(
            initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.max_length, input_shape[-1]),
            initializer=clone_initializer(self.initializer),
        )
        super().build(input_shape)

    def call(self, inputs, start_index=0, positions=None):
        shape = ops.shape(inputs)
        sequence_length = shape[-2]
        if positions is not None:
            positions = ops.cast(_positions(sequence_length, 0, "int32", positions), "int32")
            embeddings = ops.take(self.embeddings, positions, axis=0)  # [1 or B, T, D]
            return ops.broadcast_to(ops.cast(embeddings, self.compute_dtype), shape)
        if isinstance(sequence_length, int) and isinstance(start_index, int):
            if start_index + sequence_length > self.max_length:
                raise ValueError(
                    f"Positions {start_index}..{start_index + sequence_length - 1} "
                    f"are beyond max_length={self.max_length} of {self.name}."
                )
        embeddings = ops.slice(
            ops.convert_to_tensor(self.embeddings),
            (ops.cast(start_index, "int32"), 0),
            (sequence_length, shape[-1]),
        )
        return ops.broadcast_to(ops.cast(embeddings, self.compute_dtype), shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_length": self.max_length,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="tfllm")
class RotaryEmbedding(keras.layers.Layer):
    """Rotary position embedding (RoPE) applied to queries or keys.

    Each pair of channels `(x[i], x[i + d/2])` is rotated by the angle
    `p / max_wavelength ** (2i / d)` where `p` is the position. A rotation
    keeps vector norms, and the dot product of a rotated query at position
    `p` with a rotated key at position `q` depends on `p - q` only, which is
    how attention learns relative positions. The layer has no weights.

    Args:
        max_wavelength: float, the longest wavelength. Defaults to `10000`.
        scaling_factor: float, divides positions (linear position
            interpolation for longer contexts). Defaults to `1.0`.
        sequence_axis: int, the axis of positions in `inputs` (KerasHub's
            argument). Defaults to `1`.
        feature_axis: int, the axis of the rotated features. Defaults to `-1`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `[B, T, d]` or `[B, T, H, d]` tensor (positions along
            `sequence_axis`, features along `feature_axis`); `d` must be even.
        start_index: int or scalar tensor, the position of `inputs[:, 0]`.
        positions: optional `[T]` or `[B, T]` positions of the tokens (instead
            of `start_index, start_index + 1, ...`).

    Returns:
        The rotated tensor, same shape and dtype as `inputs`.

    Example:

    >>> query = keras.random.normal((2, 16, 4, 32))  # [B, T, H, d]
    >>> rotated = RotaryEmbedding()(query)

    References:
        Su et al., "RoFormer: Enhanced Transformer with Rotary Position
        Embedding", 2021.
    """

    def __init__(self, max_wavelength=10000.0, scaling_factor=1.0, sequence_axis=1,
                 feature_axis=-1, **kwargs):
        super().__init__(**kwargs)
        if not max_wavelength > 1:
            raise ValueError(
                f"`max_wavelength` must be greater than 1; got {max_wavelength!r}."
            )
        if not scaling_factor > 0:
            raise ValueError(
                f"`scaling_factor` must be positive; got {scaling_factor!r}."
            )
        self.max_wavelength = float(max_wavelength)
        self.scaling_factor = float(scaling_factor)
        self.sequence_axis = int(sequence_axis)
        self.feature_axis = int(feature_axis)

    def _axes(self, rank):
        sequence_axis, feature_axis = self.sequence_axis % rank, self.feature_axis % rank
        if sequence_axis == feature_axis or sequence_axis == 0 or not (
                -rank <= self.sequence_axis < rank and -rank <= self.feature_axis < rank):
            raise ValueError(
                f"`sequence_axis` ({self.sequence_axis}) and `feature_axis` "
                f"({self.feature_axis}) must be different axes of the rank-{rank} inputs, "
                "neither of them the batch axis.")
        return sequence_axis, feature_axis

    def build(self, input_shape):
        _, feature_axis = self._axes(len(input_shape))
        if input_shape[feature_axis] is not None and input_shape[feature_axis] % 2:
            raise ValueError(
                "RotaryEmbedding needs an even feature size, got inputs with "
                f"{input_shape[feature_axis]} features."
            )
        super().build(input_shape)

    def call(self, inputs, start_index=0, positions=None):
        sequence_axis, feature_axis = self._axes(len(inputs.shape))
        moved = (sequence_axis, feature_axis) != (1, len(inputs.shape) - 1)
        if moved:
            inputs = ops.moveaxis(inputs, (sequence_axis, feature_axis), (1, -1))
        rotary_dim = inputs.shape[-1]
        sequence_length = ops.shape(inputs)[1]
        positions = _positions(sequence_length, start_index, positions=positions)
        positions = positions / self.scaling_factor
        exponents = ops.arange(rotary_dim // 2, dtype="float32") * (2.0 / rotary_dim)
        frequencies = ops.exp(-math.log(self.max_wavelength) * exponents)
        angles = positions[:, :, None] * frequencies  # [1 or B, T, d/2]
        angles = ops.concatenate([angles, angles], axis=-1)  # [1 or B, T, d]
        # Broadcast over the axes between positions and features (heads).
        for _ in range(len(inputs.shape) - 3):
            angles = ops.expand_dims(angles, -2)
        cos = ops.cast(ops.cos(angles), inputs.dtype)
        sin = ops.cast(ops.sin(angles), inputs.dtype)
        first_half, second_half = ops.split(inputs, 2, axis=-1)
        rotated_half = ops.concatenate([-second_half, first_half], axis=-1)
        outputs = inputs * cos + rotated_half * sin
        if moved:
            outputs = ops.moveaxis(outputs, (1, -1), (sequence_axis, feature_axis))
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "max_wavelength": self.max_wavelength,
                "scaling_factor": self.scaling_factor,
                "sequence_axis": self.sequence_axis,
                "feature_axis": self.feature_axis,
            }
        )
        return config
