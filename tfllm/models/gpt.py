"""GPT: a decoder-only Transformer language model."""

import keras
import numpy as np  # noqa: F401  (the docstring's example)

from tfllm.constants import GPT_POSITION_ENCODINGS
from tfllm.layers.validation import check_choice
from tfllm.models.backbone import TransformerBackbone
from tfllm.models.base import LanguageModel

POSITION_ENCODINGS = GPT_POSITION_ENCODINGS


@keras.saving.register_keras_serializable(package="tfllm")
class GPT(LanguageModel, TransformerBackbone):
    """A GPT-style causal language model: token ids `[B, T]` → logits `[B, T, V]`.

    Token embeddings (plus position information) pass through `num_layers`
    causal pre-LN `TransformerBlock`s and a final layer normalisation; the
    transposed token embedding turns the result into next-token logits
    (weight tying). Position `t`'s logits depend on tokens `0..t` only. A GPT
    is a causal `tfllm.models.TransformerBackbone` with that head: `encode` /
    `hidden_states` give the hidden states.

    Initialisation follows GPT-2 (and nanoGPT): every kernel and embedding
    table is drawn from a normal distribution with standard deviation 0.02,
    except the two projections of each block that write into the residual
    stream (attention output, feed-forward output), drawn with
    `0.02 / sqrt(2 * num_layers)` so that the residual stream's variance does
    not grow with depth; biases are zero, layer-norm scales one. Every weight
    has its own draw, reproducible under `keras.utils.set_random_seed`.

    Args:
        vocabulary_size: int, number of token ids `V`.
        max_length: int, the longest sequence the model accepts (and the
            size of the learned position table).
        num_layers: int, number of Transformer blocks.
        num_heads: int, attention heads per block; must divide `hidden_dim`.
        hidden_dim: int, model width `D`.
        intermediate_dim: int, feed-forward width. Defaults to `4 * hidden_dim`.
        dropout: float in [0, 1), dropout on embeddings, attention and
            feed-forward outputs during training.
        position_encoding: `"learned"` (GPT-2), `"sinusoidal"` (Vaswani et
            al.) or `"rotary"` (RoPE inside attention).
        activation: feed-forward activation. Defaults to `"gelu"`.
        layer_norm_epsilon: float, epsilon of the layer normalisations.
        seed: int or None, seed of the dropouts.
        **kwargs: standard `keras.Model` arguments (`name`, `dtype`).

    Call arguments:
        inputs: `[B, T]` integer token ids with `T <= max_length`, or a dict
            `{"token_ids": ..., "padding_mask": ...}`.
        padding_mask: optional `[B, T]` boolean, True for real tokens;
            padding positions are never attended to.
        training: bool, enables dropout.

    Returns:
        `[B, T, V]` float32 logits.

    Example:

    >>> model = GPT(vocabulary_size=100, max_length=64, num_layers=2,
    ...             num_heads=2, hidden_dim=32)
    >>> model.compile(optimizer="adamw")
    >>> logits = model(np.zeros((1, 10), "int32"))        # [1, 10, 100]
    >>> text_ids = model.generate(np.array([[5, 6, 7]]), max_new_tokens=5)

    References:
        Radford et al., "Language Models are Unsupervised Multitask
        Learners" (GPT-2), 2019.
    """

    def __init__(
        self,
        vocabulary_size,
        max_length,
        num_layers=4,
        num_heads=4,
        hidden_dim=256,
        intermediate_dim=None,
        dropout=0.0,
        position_encoding="learned",
        activation="gelu",
        layer_norm_epsilon=1e-5,
        seed=None,
        **kwargs,
    ):
        check_choice("position_encoding", position_encoding, POSITION_ENCODINGS)
        super().__init__(
            vocabulary_size, max_length, num_layers=num_layers, num_heads=num_heads,
            hidden_dim=hidden_dim, intermediate_dim=intermediate_dim, dropout=dropout,
            position_encoding=position_encoding, causal=True, activation=activation,
            layer_norm_epsilon=layer_norm_epsilon, initialization="gpt2", seed=seed, **kwargs)

    def hidden_states(self, token_ids, padding_mask=None, training=None):
        """`[B, T, D]` final hidden states (before the output head)."""
        return self.encode(token_ids, padding_mask=padding_mask, training=training)

    def call(self, inputs, padding_mask=None, training=None):
        token_ids, padding_mask = self.unpack_inputs(inputs, padding_mask)
        hidden = self.hidden_states(token_ids, padding_mask=padding_mask, training=training)
        return self.token_embedding(hidden, reverse=True)

    def init_decoding_state(self, batch_size, length):
        """One preallocated `[B, 2, H, length, d]` key/value cache per block."""
        return [block.attention.init_cache(batch_size, length) for block in self.blocks]

    #: Decoding compiles with XLA (see `LanguageModel.generate`): 1.5-2x faster here.
    decode_with_xla = True

    def decode_tokens(self, token_ids, index, state, last_index=None):
        """Reads `token_ids` at positions `index...` with the caches; next-token logits
        after the last token, or after `token_ids[:, last_index]`."""
        x = self.embed(token_ids, start_index=index, training=False)
        caches = []
        for block, cache in zip(self.blocks, state):
            x, cache = block(x, cache=cache, cache_index=index, training=False)
            caches.append(cache)
        last = x[:, -1:, :] if last_index is None else keras.ops.take(x, last_index, axis=1)[:, None]
        last = self.final_norm(last)
        return self.token_embedding(last, reverse=True)[:, 0, :], caches

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape["token_ids"]
        return (*input_shape, self.vocabulary_size)

    def get_config(self):
        config = super().get_config()
        for fixed in ("causal", "num_segments", "initialization", "normalization"):  # fixed
            del config[fixed]
        return config
