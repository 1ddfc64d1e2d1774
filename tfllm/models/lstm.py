"""An LSTM language model."""

import keras
import numpy as np  # noqa: F401  (the docstring's example)

from tfllm.layers.embedding import TokenEmbedding
from tfllm.layers.normalization import LayerNormalization
from tfllm.layers.recurrent import StackedLSTM
from tfllm.layers.validation import check_positive_int, check_rate
from tfllm.models.base import LanguageModel


@keras.saving.register_keras_serializable(package="tfllm")
class LSTMLanguageModel(LanguageModel):
    """A recurrent language model: token ids `[B, T]` → logits `[B, T, V]`.

    Token embeddings pass through a `StackedLSTM` (residual connections and
    layer normalisation between layers) and a final layer normalisation; the
    transposed token embedding gives the logits (weight tying). There is no
    length limit, and generation carries the LSTM states from step to step,
    so each new token costs one step of the network.

    Args:
        vocabulary_size: int, number of token ids `V`.
        num_layers: int, number of LSTM layers.
        hidden_dim: int, width of the embeddings and of each LSTM layer.
        dropout: float in [0, 1), dropout on embeddings and between layers.
        layer_norm_epsilon: float, epsilon of the layer normalisations.
        seed: int or None, seed of the dropouts.
        **kwargs: standard `keras.Model` arguments (`name`, `dtype`).

    Call arguments:
        inputs: `[B, T]` integer token ids, or a dict
            `{"token_ids": ..., "padding_mask": ...}`.
        padding_mask: optional `[B, T]` boolean, True for real tokens;
            masked steps leave the LSTM states unchanged.
        initial_states: optional list of `num_layers` pairs `[h, c]` of
            `[B, hidden_dim]` tensors to continue from.
        return_states: bool; also return the final states.
        training: bool, enables dropout.

    Returns:
        `[B, T, V]` float32 logits, and the states if `return_states=True`.

    Example:

    >>> model = LSTMLanguageModel(vocabulary_size=100, num_layers=2, hidden_dim=64)
    >>> logits = model(np.zeros((1, 10), "int32"))        # [1, 10, 100]
    """

    def __init__(
        self,
        vocabulary_size,
        num_layers=2,
        hidden_dim=512,
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.dropout = check_rate("dropout", dropout)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.seed = seed

        common = {"dtype": self.dtype_policy}
        self.token_embedding = TokenEmbedding(
            self.vocabulary_size,
            self.hidden_dim,
            embeddings_initializer=keras.initializers.RandomUniform(-0.05, 0.05),
            name="token_embedding",
            **common,
        )
        self.embedding_dropout = keras.layers.Dropout(
            self.dropout, seed=seed, name="embedding_dropout", **common
        )
        self.lstm = StackedLSTM(
            self.num_layers,
            self.hidden_dim,
            dropout=self.dropout,
            layer_norm_epsilon=self.layer_norm_epsilon,
            seed=seed,
            name="stacked_lstm",
            **common,
        )
        self.final_norm = LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="final_norm", **common
        )

    def build(self, input_shape=None):
        hidden_shape = (None, None, self.hidden_dim)
        self.token_embedding.build()
        self.lstm.build(hidden_shape)
        self.final_norm.build(hidden_shape)
        self.built = True

    def call(
        self,
        inputs,
        padding_mask=None,
        initial_states=None,
        return_states=False,
        training=None,
    ):
        token_ids, padding_mask = self.unpack_inputs(inputs, padding_mask)
        x = self.embedding_dropout(self.token_embedding(token_ids), training=training)
        if padding_mask is not None:
            padding_mask = keras.ops.cast(padding_mask, "bool")
        x, states = self.lstm(
            x, initial_states=initial_states, mask=padding_mask, training=training
        )
        logits = self.token_embedding(self.final_norm(x), reverse=True)
        if return_states:
            return logits, states
        return logits

    def init_decoding_state(self, batch_size, length):
        """Zero `[h, c]` states (`[B, hidden_dim]` each) for every layer."""
        zeros = keras.ops.zeros((batch_size, self.hidden_dim), self.compute_dtype)
        return [[zeros, zeros] for _ in range(self.num_layers)]

    def decode_tokens(self, token_ids, index, state, last_index=None):
        """Runs `token_ids` on from the carried states; next-token logits and new states.

        The states are those after the last token, so `last_index` is refused.
        """
        if last_index is not None:
            raise ValueError("An LSTM's states follow its last token; `last_index` is not "
                             "supported.")
        logits, states = self(token_ids, initial_states=state, return_states=True,
                              training=False)
        return logits[:, -1, :], [list(pair) for pair in states]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "num_layers": self.num_layers,
                "hidden_dim": self.hidden_dim,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "seed": self.seed,
            }
        )
        return config
