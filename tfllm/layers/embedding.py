"""Token embedding whose transpose is the language-model output head."""

import keras
from keras import ops

from tfllm.layers.initializers import clone_initializer
from tfllm.layers.validation import check_positive_int


def check_token_ids(token_ids, name="token_ids"):
    """Raises a ValueError unless `token_ids` has an integer dtype."""
    dtype = keras.backend.standardize_dtype(token_ids.dtype)
    if "int" not in dtype:
        raise ValueError(
            f"`{name}` must be integer token ids (int32 or int64); got dtype {dtype}. "
            "Tokenize text first, e.g. with tfllm.data.CharacterTokenizer."
        )


@keras.saving.register_keras_serializable(package="tfllm")
class TokenEmbedding(keras.layers.Layer):
    """Token embedding that doubles as the tied language-model head.

    `layer(token_ids)` looks up one `D`-vector per token. `layer(hidden,
    reverse=True)` multiplies hidden states by the transposed embedding
    table, giving one logit per vocabulary entry. Sharing the table between
    input and output ("weight tying", Press & Wolf 2017) saves `V × D`
    parameters and usually lowers perplexity of small models. Logits are
    returned in float32, also under mixed precision, so that the softmax
    and the loss stay accurate.

    Args:
        vocabulary_size: int, number of token ids `V`.
        output_dim: int, embedding width `D`.
        embeddings_initializer: initializer of the table. Defaults to
            `TruncatedNormal(stddev=0.02)`.
        mask_zero: bool, whether id 0 is padding; if True the embeddings
            carry a Keras mask (`ids != 0`).
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: `[B, T]` integer token ids, or `[B, T, D]` hidden states
            when `reverse=True`.
        reverse: bool, compute logits instead of embeddings.

    Returns:
        `[B, T, D]` embeddings, or `[B, T, V]` float32 logits.

    Example:

    >>> embedding = TokenEmbedding(vocabulary_size=100, output_dim=32)
    >>> hidden = embedding(keras.ops.array([[5, 7, 9]]))     # [1, 3, 32]
    >>> logits = embedding(hidden, reverse=True)             # [1, 3, 100]
    """

    def __init__(
        self,
        vocabulary_size,
        output_dim,
        embeddings_initializer=None,
        mask_zero=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
        self.output_dim = check_positive_int("output_dim", output_dim)
        self.embeddings_initializer = keras.initializers.get(
            embeddings_initializer or keras.initializers.TruncatedNormal(stddev=0.02)
        )
        self.mask_zero = bool(mask_zero)

    def build(self, input_shape=None):
        self.embeddings = self.add_weight(
            name="embeddings",
            shape=(self.vocabulary_size, self.output_dim),
            initializer=clone_initializer(self.embeddings_initializer),
        )
        self.built = True

    def call(self, inputs, reverse=False):
        if reverse:
            table = ops.cast(self.embeddings, inputs.dtype)
            logits = ops.matmul(inputs, ops.transpose(table))
            return ops.cast(logits, "float32")
        check_token_ids(inputs)
        return ops.cast(ops.take(self.embeddings, inputs, axis=0), self.compute_dtype)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero or "int" not in keras.backend.standardize_dtype(inputs.dtype):
            return None
        return ops.not_equal(inputs, 0)

    def compute_output_shape(self, input_shape, reverse=False):
        if reverse:
            return tuple(input_shape[:-1]) + (self.vocabulary_size,)
        return tuple(input_shape) + (self.output_dim,)

    def compute_output_spec(self, inputs, reverse=False):
        shape = self.compute_output_shape(inputs.shape, reverse=reverse)
        dtype = "float32" if reverse else self.compute_dtype
        return keras.KerasTensor(shape, dtype=dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "output_dim": self.output_dim,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
                "mask_zero": self.mask_zero,
            }
        )
        return config
