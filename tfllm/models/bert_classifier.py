"""`BertClassifier`: a `BertEncoder` whose output is pooled into class logits.

Fine-tuning starts from a pre-trained encoder in one call:
`BertClassifier.from_pretrained(masked_lm_or_file_or_run, num_classes)`; `shaped_like`
gives the same classifier with fresh weights (what pre-training brings, measured).
"""

from pathlib import Path

import keras
from keras import ops

from tfllm.constants import POOLINGS
from tfllm.layers.validation import check_choice, check_rate
from tfllm.models import legacy
from tfllm.models.bert import BertEncoder, EncoderTask, bert_initializer


@keras.saving.register_keras_serializable(package="tfllm")
class BertClassifier(EncoderTask):
    """A `BertEncoder` with a classification head: token ids `[B, T]` → logits `[B, C]`.

    The encoder's output is pooled into one vector per sequence, the final hidden state of
    the first token (`"cls"`, BERT's `[CLS]`, through the encoder's pooler if it has one)
    or the mean over real tokens (`"mean"`), then dropout and a dense layer give one logit
    per class.

    Args:
        encoder: the `BertEncoder` (pre-trained or not).
        num_classes: int, number of classes `C`.
        pooling: `"cls"` or `"mean"`.
        classifier_dropout: float in [0, 1), dropout before the output layer.
        **kwargs: standard `keras.Model` arguments (`name`, `dtype`).

    Call arguments:
        As `BertEncoder`.

    Returns:
        `[B, C]` float32 logits (softmax them for class probabilities).

    Example:

    >>> classifier = BertClassifier.from_pretrained(masked_lm, num_classes=3)
    >>> probabilities = keras.ops.softmax(classifier(token_ids))
    """

    def __init__(self, encoder=None, num_classes=2, pooling="cls", classifier_dropout=0.1,
                 **kwargs):
        super().__init__(encoder, **kwargs)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an int >= 2; got {num_classes!r}.")
        self.num_classes = num_classes
        self.pooling = check_choice("pooling", pooling, POOLINGS)
        self.classifier_dropout = check_rate("classifier_dropout", classifier_dropout)
        common = {"dtype": self.dtype_policy}
        self.pooled_dropout = keras.layers.Dropout(
            self.classifier_dropout, seed=self.encoder.seed, name="pooled_dropout", **common)
        self.output_dense = keras.layers.Dense(
            num_classes, kernel_initializer=bert_initializer(), name="output_dense", **common,
        )

    def build(self, input_shape=None):
        if not self.encoder.built:  # (a deserialised encoder comes built)
            self.encoder.build(input_shape)
        self.output_dense.build((None, self.encoder.hidden_dim))
        self.built = True

    def call(self, inputs, padding_mask=None, segment_ids=None, training=None):
        token_ids, padding_mask, segment_ids = self.encoder.unpack_inputs(
            inputs, padding_mask, segment_ids)
        hidden = self.encoder(token_ids, padding_mask=padding_mask, segment_ids=segment_ids,
                              training=training)
        if self.pooling == "cls":
            pooled = self.encoder.pool(hidden)
        else:
            weights = ops.cast(padding_mask, hidden.dtype)[:, :, None]
            pooled = ops.sum(hidden * weights, axis=1) / ops.maximum(
                ops.sum(weights, axis=1), 1.0)
        pooled = self.pooled_dropout(pooled, training=training)
        return ops.cast(self.output_dense(pooled), "float32")

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, dict):
            input_shape = input_shape["token_ids"]
        return (input_shape[0], self.num_classes)

    def lora_trainable_layers(self):
        """Under LoRA the new output layer trains in full (it starts from random weights)."""
        return [self.output_dense]

    def compile(self, optimizer="adamw", loss=None, **kwargs):
        """`keras.Model.compile` with cross-entropy on the logits as the default loss."""
        if loss is None:
            loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def get_config(self):
        config = super().get_config()
        config.update(num_classes=self.num_classes, pooling=self.pooling,
                      classifier_dropout=self.classifier_dropout)
        return config

    def load_encoder(self, source):
        """Copies the encoder weights of `source` into this classifier's encoder.

        Args:
            source: a `BertMaskedLM` or `BertClassifier`, a `BertEncoder`, a `.keras` file
                of one, or a finished run (`tfllm.runs.RunDirectory(path)`).

        Raises:
            ValueError: the source is not a BERT model, or its encoder differs in a setting
                that shapes the weights (the error names them).
        """
        encoder = _find_encoder(source)
        mine, theirs = self.encoder.shape_settings(), encoder.shape_settings()
        differences = [f"{name}: this classifier {mine[name]!r}, the source {theirs[name]!r}"
                       for name in mine if mine[name] != theirs[name]]
        if differences:
            raise ValueError("The encoders differ; " + "; ".join(differences) + ".")
        if not self.built:
            self.build((None, None))
        if not encoder.built:
            encoder.build((None, None))
        self.encoder.set_weights(encoder.get_weights())
        return self

    @classmethod
    def from_pretrained(cls, source, num_classes, pooling="cls", classifier_dropout=0.1,
                        dropout=None, seed=None, **kwargs):
        """A classifier with the encoder settings and weights of `source` (see `load_encoder`).

        `dropout` and `seed` default to the source's.
        """
        encoder = _find_encoder(source)
        classifier = cls.shaped_like(encoder, num_classes, pooling=pooling,
                                     classifier_dropout=classifier_dropout, dropout=dropout,
                                     seed=seed, **kwargs)
        return classifier.load_encoder(encoder)

    @classmethod
    def shaped_like(cls, source, num_classes, pooling="cls", classifier_dropout=0.1,
                    dropout=None, seed=None, **kwargs):
        """A classifier with the encoder settings of `source` and fresh (random) weights:
        `from_pretrained` without the weights, e.g. to measure what pre-training brings."""
        encoder = _find_encoder(source).with_settings(dropout=dropout, seed=seed)
        return cls(encoder, num_classes=num_classes, pooling=pooling,
                   classifier_dropout=classifier_dropout, **kwargs)


def _find_encoder(source):
    """The `BertEncoder` of a model, a `.keras` file, or a run (anything with a
    `load_model()`, such as `tfllm.runs.RunDirectory`: models/ never reads run
    directories itself)."""
    if hasattr(source, "load_model") and not isinstance(source, keras.Model):
        source = source.load_model()
    elif isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            raise ValueError(
                f"{path} is a folder; give a model, a .keras file, or the run directory as "
                f"`tfllm.runs.RunDirectory({str(path)!r})`.")
        if not path.is_file():
            raise FileNotFoundError(f"{path} is not a model file.")
        source = legacy.load_model(path)
    if isinstance(source, BertEncoder):
        return source
    if isinstance(source, EncoderTask):
        return source.encoder
    raise ValueError(
        f"Cannot load BERT encoder weights from a {type(source).__name__}; give a "
        "BertMaskedLM, BertClassifier, BertEncoder, a .keras file or a RunDirectory."
    )
