"""The Transformer stack that tfllm's GPT and BERT encoder share.

`TransformerBackbone` turns token ids into hidden states: token embeddings (plus learned or
sinusoidal position embeddings, plus segment embeddings) → `num_layers` pre-LN
`TransformerBlock`s, causal or bidirectional, optionally with rotary positions inside
attention → a final layer normalisation. `GPT` is a causal backbone with a tied output head;
`BertEncoder` is a bidirectional one that BERT's task models (`BertMaskedLM`,
`BertClassifier`) take as their encoder.

The GPT *is* a backbone (inherits) rather than *holding* one, as KerasHub's
`GPT2CausalLM` holds a `GPT2Backbone`: holding would move every GPT weight one level down
in saved files and checkpoints (and change the optimizer's variable order), so files saved
by earlier tfllm versions would no longer load. The attribute names below are those files'
weight paths; keep them.
"""

import math

import keras

from tfllm.layers.embedding import TokenEmbedding
from tfllm.layers.initializers import clone_initializer
from tfllm.layers.normalization import LayerNormalization
from tfllm.layers.positional import PositionEmbedding, SinusoidalPositionEncoding
from tfllm.layers.transformer import TransformerBlock
from tfllm.layers.validation import check_choice, check_transformer_settings
from tfllm.models.base import TrainableModel

#: Standard deviation of the initial weights in both schemes (GPT-2's and BERT's).
INITIALIZER_STDDEV = 0.02
#: How a backbone's weights start: GPT-2's normal draws with scaled residual projections,
#: or BERT's truncated normal draws.
INITIALIZATIONS = ("gpt2", "bert")
POSITION_ENCODINGS = ("learned", "sinusoidal", "rotary")
#: Where the layer normalisations sit: `"pre"` (GPT-2, tfllm's default: inside each residual
#: branch, plus a final one) or `"post"` (the original BERT: after each residual sum, plus one
#: over the embeddings).
NORMALIZATIONS = ("pre", "post")
#: The settings that shape a backbone's weights: two backbones that agree on these can
#: exchange weights.
SHAPE_SETTINGS = ("vocabulary_size", "max_length", "num_layers", "num_heads", "hidden_dim",
                  "intermediate_dim", "num_segments", "position_encoding", "normalization")


def initializers_for(initialization, num_layers):
    """`(initializer, residual_initializer)`: new unseeded instances for a scheme.

    `"gpt2"`: normal with standard deviation 0.02, and `0.02 / sqrt(2 * num_layers)` for the
    two projections of each block that write into the residual stream. `"bert"`: truncated
    normal, 0.02, for every weight.
    """
    if initialization == "gpt2":
        return (keras.initializers.RandomNormal(stddev=INITIALIZER_STDDEV),
                keras.initializers.RandomNormal(
                    stddev=INITIALIZER_STDDEV / math.sqrt(2 * num_layers)))
    return (keras.initializers.TruncatedNormal(stddev=INITIALIZER_STDDEV),
            keras.initializers.TruncatedNormal(stddev=INITIALIZER_STDDEV))


@keras.saving.register_keras_serializable(package="tfllm")
class TransformerBackbone(TrainableModel):
    """Token ids `[B, T]` → hidden states `[B, T, D]` through a stack of Transformer blocks.

    Token embeddings, plus position embeddings (`"learned"` or `"sinusoidal"`) and segment
    embeddings (`num_segments > 0`), pass through `num_layers` pre-LN `TransformerBlock`s
    and a final layer normalisation (`normalization="pre"`); with `normalization="post"`
    (the original BERT's layout) the embeddings' sum is normalised, the blocks are post-LN
    and there is no final normalisation. With `causal=True` position `t` attends to positions
    `0..t` only; with `causal=False` every position attends to every real (non-padding)
    one. `position_encoding="rotary"` rotates queries and keys by their positions inside
    attention instead of adding position embeddings.

    Every weight has its own initial draw (reproducible under
    `keras.utils.set_random_seed`): `initialization="gpt2"` draws from a normal
    distribution with standard deviation 0.02, the residual projections of each block
    (attention output, feed-forward output) with `0.02 / sqrt(2 * num_layers)`;
    `"bert"` draws every kernel and table from a truncated normal with 0.02. Biases start
    at zero, layer-norm scales at one.

    Args:
        vocabulary_size: int, number of token ids `V`.
        max_length: int, the longest sequence accepted (and the size of a learned
            position table).
        num_layers: int, number of Transformer blocks.
        num_heads: int, attention heads per block; must divide `hidden_dim`.
        hidden_dim: int, model width `D`.
        intermediate_dim: int, feed-forward width. Defaults to `4 * hidden_dim`.
        dropout: float in [0, 1), dropout on embeddings, attention and feed-forward outputs.
        position_encoding: `"learned"`, `"sinusoidal"` or `"rotary"`.
        causal: bool, whether position `t` sees only positions up to `t`.
        num_segments: int, number of segment ids (sentence A / B); 0 for none.
        activation: feed-forward activation. Defaults to `"gelu"`.
        layer_norm_epsilon: float, epsilon of the layer normalisations.
        initialization: `"gpt2"` or `"bert"` (above).
        normalization: `"pre"` or `"post"` (above).
        seed: int or None, seed of the dropouts.
        **kwargs: standard `keras.Model` arguments (`name`, `dtype`).

    Call arguments:
        inputs: `[B, T]` integer token ids with `T <= max_length`.
        padding_mask: optional `[B, T]` boolean, True for real tokens; padding positions
            are never attended to.
        segment_ids: optional `[B, T]` integer segment ids (with `num_segments > 0`;
            segment 0 when omitted).
        training: bool, enables dropout.

    Returns:
        `[B, T, D]` hidden states.
    """

    def __init__(self, vocabulary_size, max_length, num_layers=4, num_heads=4, hidden_dim=256,
                 intermediate_dim=None, dropout=0.0, position_encoding="learned", causal=True,
                 num_segments=0, activation="gelu", layer_norm_epsilon=1e-5,
                 initialization="gpt2", seed=None, normalization="pre", **kwargs):
        super().__init__(**kwargs)
        for name, value in check_transformer_settings(
                vocabulary_size, max_length, num_layers, num_heads, hidden_dim,
                intermediate_dim, dropout).items():
            setattr(self, name, value)
        self.position_encoding = check_choice(
            "position_encoding", position_encoding, POSITION_ENCODINGS)
        self.initialization = check_choice("initialization", initialization, INITIALIZATIONS)
        self.normalization = check_choice("normalization", normalization, NORMALIZATIONS)
        if isinstance(num_segments, bool) or not isinstance(num_segments, int) \
                or num_segments < 0:
            raise ValueError(f"`num_segments` must be an int >= 0; got {num_segments!r}.")
        self.num_segments = num_segments
        self.causal = bool(causal)
        self.activation = activation
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.seed = seed
        self._build_stack()

    def _build_stack(self):
        """Creates the layers, in the order (and with the names) saved files expect."""
        common = {"dtype": self.dtype_policy}
        # Layers clone these per weight (an unseeded Keras initializer repeats its draw).
        initializer, residual_initializer = initializers_for(
            self.initialization, self.num_layers)
        self.token_embedding = TokenEmbedding(
            self.vocabulary_size, self.hidden_dim, embeddings_initializer=initializer,
            name="token_embedding", **common)
        self.position_embedding = None
        if self.position_encoding == "learned":
            self.position_embedding = PositionEmbedding(
                self.max_length, initializer=initializer, name="position_embedding", **common)
        elif self.position_encoding == "sinusoidal":
            self.position_embedding = SinusoidalPositionEncoding(
                name="position_encoding", **common)
        self.segment_embedding = None
        if self.num_segments:
            self.segment_embedding = keras.layers.Embedding(
                self.num_segments, self.hidden_dim,
                embeddings_initializer=clone_initializer(initializer),
                name="segment_embedding", **common)
        self.embedding_norm = None
        if self.normalization == "post":
            self.embedding_norm = LayerNormalization(
                epsilon=self.layer_norm_epsilon, name="embedding_norm", **common)
        self.embedding_dropout = keras.layers.Dropout(
            self.dropout, seed=self.seed, name="embedding_dropout", **common)
        rotary = 10000.0 if self.position_encoding == "rotary" else None
        self.blocks = [
            TransformerBlock(
                num_heads=self.num_heads, intermediate_dim=self.intermediate_dim,
                dropout=self.dropout, activation=self.activation,
                layer_norm_epsilon=self.layer_norm_epsilon,
                normalize_first=self.normalization == "pre",
                causal=self.causal, rotary_max_wavelength=rotary,
                kernel_initializer=initializer,
                output_kernel_initializer=residual_initializer,
                seed=self.seed, name=f"block_{index}", **common)
            for index in range(self.num_layers)
        ]
        self.final_norm = None
        if self.normalization == "pre":
            self.final_norm = LayerNormalization(
                epsilon=self.layer_norm_epsilon, name="final_norm", **common)

    def build(self, input_shape=None):
        hidden_shape = (None, None, self.hidden_dim)
        self.token_embedding.build()
        if self.position_embedding is not None:
            self.position_embedding.build(hidden_shape)
        if self.segment_embedding is not None:
            self.segment_embedding.build((None, None))
        if self.embedding_norm is not None:
            self.embedding_norm.build(hidden_shape)
        for block in self.blocks:
            block.build(hidden_shape)
        if self.final_norm is not None:
            self.final_norm.build(hidden_shape)
        self.built = True

    def check_length(self, length, advice="build the model with a larger max_length"):
        """Raises a ValueError when a static sequence length exceeds `max_length`."""
        if length is not None and length > self.max_length:
            raise ValueError(
                f"The sequence has {length} tokens, more than max_length={self.max_length} "
                f"of this {type(self).__name__}. Shorten it, or {advice}.")

    def embed(self, token_ids, segment_ids=None, start_index=0, training=None):
        """`[B, T, D]` input of the first block: token (+ position, + segment) embeddings,
        for tokens at positions `start_index...`."""
        if segment_ids is not None and not self.num_segments:
            raise ValueError(
                f"`segment_ids` given, but the {type(self).__name__} has `num_segments=0`.")
        x = self.token_embedding(token_ids)
        if self.position_embedding is not None:
            x = x + self.position_embedding(x, start_index=start_index)
        if self.segment_embedding is not None:
            if segment_ids is None:
                segment_ids = keras.ops.zeros_like(token_ids)
            x = x + self.segment_embedding(segment_ids)
        if self.embedding_norm is not None:
            x = self.embedding_norm(x)
        return self.embedding_dropout(x, training=training)

    def encode(self, token_ids, padding_mask=None, segment_ids=None, training=None):
        """`[B, T, D]` final hidden states (after the final layer normalisation, if any)."""
        self.check_length(token_ids.shape[1])
        x = self.embed(token_ids, segment_ids=segment_ids, training=training)
        for block in self.blocks:
            x = block(x, padding_mask=padding_mask, training=training)
        return x if self.final_norm is None else self.final_norm(x)

    def call(self, inputs, padding_mask=None, segment_ids=None, training=None):
        return self.encode(inputs, padding_mask=padding_mask, segment_ids=segment_ids,
                           training=training)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape["token_ids"]
        return (*input_shape, self.hidden_dim)

    def shape_settings(self):
        """The settings another backbone must share to take this one's weights."""
        return {name: getattr(self, name) for name in SHAPE_SETTINGS}

    def get_config(self):
        config = super().get_config()
        config.update({
            "vocabulary_size": self.vocabulary_size,
            "max_length": self.max_length,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "dropout": self.dropout,
            "position_encoding": self.position_encoding,
            "causal": self.causal,
            "num_segments": self.num_segments,
            "activation": self.activation,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initialization": self.initialization,
            "seed": self.seed,
            "normalization": self.normalization,
        })
        return config
