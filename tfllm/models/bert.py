"""BERT: a bidirectional Transformer encoder, the base of its tasks, and the masked-LM task.

`BertEncoder` (a bidirectional `TransformerBackbone`) turns token ids into one vector per
token, every token attending to every real (non-padding) token before and after it. The
task models take an encoder, as KerasHub's tasks take their backbone: `BertMaskedLM(encoder)`
puts a masked-LM head on it (pre-training); `BertClassifier(encoder, num_classes)` pools its
output into class logits (fine-tuning; `bert_classifier.py`).
`BertClassifier.from_pretrained(masked_lm)` starts a classifier from a pre-trained encoder in
one call. A task's config holds its encoder, serialised with
`keras.saving.serialize_keras_object`.

Unlike the original BERT (post-LN blocks, an embedding layer normalisation) the encoder
uses pre-LN blocks and a final layer normalisation by default, as tfllm's GPT does: it
trains stably with a short warm-up, which matters for the small models trained here.
`normalization="post"` and `pooler=True` give the original layout, which checkpoints from
Hugging Face need (`tfllm.convert`).
"""

import keras
from keras import ops

from tfllm.constants import BERT_POSITION_ENCODINGS
from tfllm.layers.activations import computed_activation, get_activation
from tfllm.layers.embedding import check_token_ids
from tfllm.layers.normalization import LayerNormalization
from tfllm.layers.validation import check_choice
from tfllm.models.backbone import TransformerBackbone, initializers_for
from tfllm.models.base import TrainableModel

POSITION_ENCODINGS = BERT_POSITION_ENCODINGS
#: The `BertEncoder` arguments: the flat settings of task-model configs written before the
#: tasks took their encoder (still read by `from_config`).
_ENCODER_ARGUMENTS = ("vocabulary_size", "max_length", "num_layers", "num_heads", "hidden_dim",
                      "intermediate_dim", "dropout", "num_segments", "padding_id", "activation",
                      "layer_norm_epsilon", "seed", "position_encoding", "normalization",
                      "pooler")


def bert_initializer():
    """A new (unseeded) instance of BERT's initializer: truncated normal, stddev 0.02 (the
    backbone's `"bert"` scheme, for the heads)."""
    return initializers_for("bert", 1)[0]


@keras.saving.register_keras_serializable(package="tfllm")
class BertEncoder(TransformerBackbone):
    """A bidirectional Transformer encoder: token ids `[B, T]` → hidden states `[B, T, D]`.

    A bidirectional `TransformerBackbone`: token embeddings plus learned position
    embeddings (plus segment embeddings when `num_segments > 0`) pass through `num_layers`
    bidirectional pre-LN `TransformerBlock`s and a final layer normalisation (or, with
    `normalization="post"`, BERT's original layout: a normalisation of the embeddings and
    post-LN blocks). Tokens equal to `padding_id` are padding: no position
    attends to them, so the outputs at real positions do not depend on them (the outputs
    at padding positions are meaningless).

    Initialisation follows BERT: every kernel and embedding table is drawn from a
    truncated normal distribution with standard deviation 0.02 (values beyond two
    standard deviations are drawn again, so the weights' own standard deviation is
    about 0.0176); biases are zero, layer-norm scales one. Every weight has its own
    draw, reproducible under `keras.utils.set_random_seed`.

    Args:
        vocabulary_size: int, number of token ids `V`.
        max_length: int, the longest sequence the encoder accepts.
        num_layers: int, number of Transformer blocks.
        num_heads: int, attention heads per block; must divide `hidden_dim`.
        hidden_dim: int, model width `D`.
        intermediate_dim: int, feed-forward width. Defaults to `4 * hidden_dim`.
        dropout: float in [0, 1), dropout on embeddings, attention and feed-forward outputs.
        num_segments: int, number of segment ids (sentence A / B); 0 for none.
        padding_id: the token id that marks padding.
        activation: feed-forward activation. Defaults to `"gelu"`.
        layer_norm_epsilon: float, epsilon of the layer normalisations.
        seed: int or None, seed of the dropouts.
        position_encoding: `"learned"` (BERT's table of `max_length` positions) or
            `"rotary"` (RoPE: queries and keys rotated by their positions inside
            attention, so that scores depend on relative positions).
        normalization: `"pre"` (tfllm's) or `"post"` (the original BERT's); see
            `TransformerBackbone`.
        pooler: bool; with True the encoder also holds BERT's pooler (a dense layer with
            tanh over the first token's state), which `pool` applies and a
            `BertClassifier` with `pooling="cls"` uses.
        **kwargs: standard `keras.Model` arguments (`name`, `dtype`).

    Call arguments:
        inputs: `[B, T]` integer token ids with `T <= max_length`, or a dict with
            `"token_ids"` and optionally `"padding_mask"` and `"segment_ids"`.
        padding_mask: optional `[B, T]` boolean, True for real tokens. Defaults to
            `token_ids != padding_id`.
        segment_ids: optional `[B, T]` integer segment ids (with `num_segments > 0`).
        training: bool, enables dropout.

    Returns:
        `[B, T, D]` hidden states.

    Example:

    >>> encoder = BertEncoder(vocabulary_size=4096, max_length=128, num_layers=2,
    ...                       num_heads=4, hidden_dim=128)
    >>> hidden = encoder(np.array([[2, 57, 90, 3, 0, 0]]))   # [1, 6, 128]

    References:
        Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language
        Understanding", 2019.
    """

    def __init__(
        self,
        vocabulary_size,
        max_length=128,
        num_layers=4,
        num_heads=4,
        hidden_dim=256,
        intermediate_dim=None,
        dropout=0.1,
        num_segments=0,
        padding_id=0,
        activation="gelu",
        layer_norm_epsilon=1e-5,
        seed=None,
        position_encoding="learned",
        normalization="pre",
        pooler=False,
        **kwargs,
    ):
        check_choice("position_encoding", position_encoding, POSITION_ENCODINGS)
        super().__init__(
            vocabulary_size, max_length, num_layers=num_layers, num_heads=num_heads,
            hidden_dim=hidden_dim, intermediate_dim=intermediate_dim, dropout=dropout,
            position_encoding=position_encoding, causal=False, num_segments=num_segments,
            activation=activation, layer_norm_epsilon=layer_norm_epsilon,
            initialization="bert", seed=seed, normalization=normalization, **kwargs)
        self.pooler = bool(pooler)
        self.pooler_dense = None
        if self.pooler:
            self.pooler_dense = keras.layers.Dense(
                self.hidden_dim, activation="tanh", kernel_initializer=bert_initializer(),
                name="pooler_dense", dtype=self.dtype_policy)
        if isinstance(padding_id, bool) or not isinstance(padding_id, int) \
                or not 0 <= padding_id < self.vocabulary_size:
            raise ValueError(
                f"`padding_id` must be a token id in [0, {self.vocabulary_size}); "
                f"got {padding_id!r}."
            )
        self.padding_id = padding_id

    def build(self, input_shape=None):
        super().build(input_shape)
        if self.pooler_dense is not None:
            self.pooler_dense.build((None, self.hidden_dim))

    def pool(self, hidden):
        """`[B, T, D]` hidden states → `[B, D]`: the pooler over the first token's state
        (with `pooler=True`), else that state itself."""
        first = hidden[:, 0, :]
        return first if self.pooler_dense is None else self.pooler_dense(first)

    def unpack_inputs(self, inputs, padding_mask=None, segment_ids=None):
        """`(token_ids, padding_mask, segment_ids)` from an array or a dict input, checked."""
        if isinstance(inputs, dict):
            unknown = set(inputs) - {"token_ids", "padding_mask", "segment_ids"}
            if unknown or "token_ids" not in inputs:
                raise ValueError(
                    "A dict input must have the key 'token_ids' and may have 'padding_mask' "
                    f"and 'segment_ids'; got keys {sorted(inputs)}."
                )
            padding_mask = inputs.get("padding_mask", padding_mask)
            segment_ids = inputs.get("segment_ids", segment_ids)
            inputs = inputs["token_ids"]
        check_token_ids(inputs)
        if len(inputs.shape) != 2:
            raise ValueError(f"`token_ids` must have shape [B, T]; got shape {tuple(inputs.shape)}.")
        self.check_length(inputs.shape[1], advice="truncate it (WordPieceTokenizer.encode "
                          "does), or build the encoder with a larger max_length")
        if segment_ids is not None and not self.num_segments:
            raise ValueError("`segment_ids` given, but the encoder has `num_segments=0`.")
        if padding_mask is None:
            padding_mask = ops.not_equal(inputs, self.padding_id)
        return inputs, padding_mask, segment_ids

    def call(self, inputs, padding_mask=None, segment_ids=None, training=None):
        token_ids, padding_mask, segment_ids = self.unpack_inputs(
            inputs, padding_mask, segment_ids)
        return self.encode(token_ids, padding_mask=padding_mask, segment_ids=segment_ids,
                           training=training)

    def get_config(self):
        config = super().get_config()
        for fixed in ("causal", "initialization"):  # always the same for BERT
            del config[fixed]
        config["padding_id"] = self.padding_id
        config["pooler"] = self.pooler
        return config

    def shape_settings(self):
        """The settings another encoder must share to take this one's weights."""
        return {**super().shape_settings(), "pooler": self.pooler}

    def encoder_settings(self):
        """The settings another encoder must share to take this one's weights."""
        return self.shape_settings()

    def with_settings(self, dropout=None, seed=None):
        """A new encoder (fresh weights) of this one's config, `dropout` / `seed` replaced."""
        config = self.get_config()
        config.pop("name", None)
        if dropout is not None:
            config["dropout"] = dropout
        if seed is not None:
            config["seed"] = seed
        return BertEncoder.from_config(config)


class EncoderTask(TrainableModel):
    """The base of BERT's task models: a `BertEncoder` it takes, and a head of its own.

    A new task subclasses it, builds its head in `__init__` / `build` and calls
    `self.encoder` in `call`; the encoder is serialised inside the task's config.
    """

    def __init__(self, encoder=None, **kwargs):
        if not isinstance(encoder, BertEncoder):
            raise TypeError(
                f"{type(self).__name__} takes its encoder: "
                f"{type(self).__name__}(BertEncoder(vocabulary_size=..., ...), ...); "
                f"got {type(encoder).__name__}.")
        kwargs.setdefault("dtype", encoder.dtype_policy)
        super().__init__(**kwargs)
        self.encoder = encoder

    @property
    def vocabulary_size(self):
        return self.encoder.vocabulary_size

    @property
    def max_length(self):
        return self.encoder.max_length

    def get_config(self):
        config = super().get_config()
        config["encoder"] = keras.saving.serialize_keras_object(self.encoder)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "encoder" in config:
            encoder = keras.saving.deserialize_keras_object(config.pop("encoder"))
        else:  # written before the tasks took their encoder: the encoder's settings, flat
            settings = {name: config.pop(name) for name in _ENCODER_ARGUMENTS if name in config}
            encoder = BertEncoder(**settings, dtype=config.get("dtype"), name="encoder")
        return cls(encoder, **config)


@keras.saving.register_keras_serializable(package="tfllm")
class BertMaskedLM(EncoderTask):
    """A `BertEncoder` with the masked-LM head: token ids `[B, T]` → logits `[B, T, V]`.

    The head is BERT's: a dense layer with the encoder's activation, a layer
    normalisation, then the transposed token embedding (weight tying) plus a bias per
    token. Train it on corrupted ids (`tfllm.data.masked_lm_dataset`) with the targets and
    a `sample_weight` that is 1 only at the selected positions; `compile`'s default loss
    averages the cross-entropy over those positions only.

    Args:
        encoder: the `BertEncoder` to pre-train.
        **kwargs: standard `keras.Model` arguments (`name`, `dtype`).

    Call arguments:
        As `BertEncoder`, plus `mask_positions`: optional `[B, P]` int positions (also
        accepted as the input dict's `"mask_positions"`); only those positions go
        through the head, which saves most of its cost in training
        (`masked_lm_dataset(..., max_predictions=P)` yields them).

    Returns:
        `[B, T, V]` float32 logits, or `[B, P, V]` with `mask_positions`.

    Example:

    >>> encoder = BertEncoder(vocabulary_size=4096, max_length=128, num_layers=2,
    ...                       hidden_dim=128, position_encoding="rotary")
    >>> model = BertMaskedLM(encoder)
    >>> model.compile(optimizer="adamw")
    >>> model.fit(masked_lm_dataset(train_ids, tokenizer, 128, batch_size=32, seed=1))
    """

    def __init__(self, encoder=None, **kwargs):
        super().__init__(encoder, **kwargs)
        common = {"dtype": self.dtype_policy}
        self.head_dense = keras.layers.Dense(
            self.encoder.hidden_dim,
            activation=computed_activation(get_activation(self.encoder.activation)),
            kernel_initializer=bert_initializer(), name="head_dense", **common,
        )
        self.head_norm = LayerNormalization(
            epsilon=self.encoder.layer_norm_epsilon, name="head_norm", **common
        )

    def build(self, input_shape=None):
        hidden_shape = (None, None, self.encoder.hidden_dim)
        if not self.encoder.built:  # (a deserialised encoder comes built)
            self.encoder.build(input_shape)
        self.head_dense.build(hidden_shape)
        self.head_norm.build(hidden_shape)
        self.output_bias = self.add_weight(
            shape=(self.encoder.vocabulary_size,), initializer="zeros", name="output_bias"
        )
        self.built = True

    def call(self, inputs, padding_mask=None, segment_ids=None, mask_positions=None,
             training=None):
        if isinstance(inputs, dict) and "mask_positions" in inputs:
            inputs = dict(inputs)
            mask_positions = inputs.pop("mask_positions")
        hidden = self.encoder(inputs, padding_mask=padding_mask, segment_ids=segment_ids,
                              training=training)
        if mask_positions is not None:
            # Only the positions to predict go through the head (a V-wide matmul).
            hidden = ops.take_along_axis(
                hidden, ops.cast(mask_positions, "int32")[:, :, None], axis=1)
        hidden = self.head_norm(self.head_dense(hidden))
        logits = self.encoder.token_embedding(hidden, reverse=True)
        return logits + ops.cast(self.output_bias, logits.dtype)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape.get("mask_positions", input_shape["token_ids"])
        return (*input_shape, self.encoder.vocabulary_size)

    def compile(self, optimizer="adamw", loss=None, **kwargs):
        """`keras.Model.compile`; the default loss is the cross-entropy (nats) averaged over
        the positions whose `sample_weight` is non-zero."""
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, reduction="mean_with_sample_weight")
        super().compile(optimizer=optimizer, loss=loss, **kwargs)
