"""Metrics: perplexity of language models; accuracy, F1 and confusion matrices of classifiers."""

import math
import numbers

import keras
import numpy as np
from keras import ops


def bits_per_character(nats_per_token, num_tokens, num_characters):
    """A language model's loss per character in bits, comparable across tokenizers.

    `nats_per_token × num_tokens / num_characters / ln 2`: the mean loss per token turned into
    the text's total information, spread over its characters. For a character tokenizer
    (one token per character) it is `nats_per_token / ln 2`.

    Args:
        nats_per_token: mean cross-entropy per token (a held-out loss), in nats.
        num_tokens: the tokens of the text the loss was measured on.
        num_characters: its characters (Unicode code points).

    Returns:
        float bits per character.

    Example:

    >>> bits_per_character(1.5, num_tokens=400, num_characters=1000)  # 1.5 * 0.4 / ln 2
    0.8656170245333781
    """
    if isinstance(num_characters, bool) or not isinstance(num_characters, numbers.Integral) \
            or num_characters <= 0:
        raise ValueError(f"`num_characters` must be a positive integer; got {num_characters!r}")
    if isinstance(num_tokens, bool) or not isinstance(num_tokens, numbers.Integral) \
            or num_tokens < 0:
        raise ValueError(f"`num_tokens` must be an integer >= 0; got {num_tokens!r}")
    return float(nats_per_token) * int(num_tokens) / int(num_characters) / math.log(2)


@keras.saving.register_keras_serializable(package="tfllm")
class Perplexity(keras.metrics.Metric):
    """Perplexity: `exp` of the mean next-token cross-entropy.

    The metric adds up the cross-entropy of every token it sees and the
    number of tokens, and reports `exp(total / count)` over everything seen
    since the last `reset_state()` (Keras resets it at every epoch). Summing
    first and dividing at the end weighs every token alike, however the
    tokens are split into batches, and it stays exact under `tf.distribute`:
    both sums are metric variables, which Keras adds up across replicas and
    workers. A model compiled with the default cross-entropy loss has
    `perplexity == exp(loss)` when no tokens are masked.

    Args:
        from_logits: bool, whether `y_pred` holds logits (tfllm models give
            logits) rather than probabilities. Defaults to True.
        mask_token_id: int or None; targets equal to this id (padding) are
            left out, as if their `sample_weight` were 0.
        name: string, the metric's name in logs and progress bars.
        dtype: the dtype of the sums. Defaults to `"float32"`.

    Call arguments (`update_state`):
        y_true: `[B, T]` integer target token ids.
        y_pred: `[B, T, V]` logits (or probabilities).
        sample_weight: optional `[B, T]` (or `[B]`, `[B, 1]`) weights, for
            example a padding mask; a token counts `sample_weight` times.

    Example:

    >>> perplexity = Perplexity()
    >>> perplexity.update_state(np.array([[1, 2]]), np.zeros((1, 2, 4)))
    >>> float(perplexity.result())      # uniform over 4 tokens
    4.0
    >>> model.compile(optimizer="adamw", metrics=[Perplexity()])
    """

    def __init__(self, from_logits=True, mask_token_id=None, name="perplexity", dtype=None):
        if not isinstance(from_logits, bool):
            raise ValueError(f"`from_logits` must be True or False; got {from_logits!r}.")
        if mask_token_id is not None and (
            isinstance(mask_token_id, bool) or not isinstance(mask_token_id, numbers.Integral)
        ):
            raise ValueError(f"`mask_token_id` must be an integer or None; got {mask_token_id!r}.")
        super().__init__(name=name, dtype=dtype or "float32")
        self.from_logits = from_logits
        self.mask_token_id = None if mask_token_id is None else int(mask_token_id)
        self.total_loss = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, aggregation="sum", name="total_loss"
        )
        self.token_count = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, aggregation="sum", name="token_count"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.convert_to_tensor(y_true)
        # Softmax and logarithms in float32 even for bfloat16 / float16 logits.
        y_pred = ops.cast(y_pred, "float32")
        if len(y_true.shape) != 2 or len(y_pred.shape) != 3:
            raise ValueError(
                "Perplexity expects targets [B, T] and predictions [B, T, V]; got shapes "
                f"{tuple(y_true.shape)} and {tuple(y_pred.shape)}."
            )
        losses = ops.sparse_categorical_crossentropy(
            ops.cast(y_true, "int32"), y_pred, from_logits=self.from_logits
        )
        weights = ops.ones_like(losses)
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, "float32")
            if len(sample_weight.shape) == 1:
                sample_weight = ops.expand_dims(sample_weight, -1)
            weights = weights * sample_weight
        if self.mask_token_id is not None:
            weights = weights * ops.cast(ops.not_equal(y_true, self.mask_token_id), "float32")
        self.total_loss.assign_add(ops.cast(ops.sum(losses * weights), self.dtype))
        self.token_count.assign_add(ops.cast(ops.sum(weights), self.dtype))

    def result(self):
        # Nothing seen yet: 0, a value no perplexity can have (as KerasHub's).
        mean_loss = ops.divide_no_nan(self.total_loss, self.token_count)
        return ops.where(self.token_count > 0, ops.exp(mean_loss), ops.zeros_like(mean_loss))

    def reset_state(self):
        self.total_loss.assign(0.0)
        self.token_count.assign(0.0)

    def get_config(self):
        return {
            "from_logits": self.from_logits,
            "mask_token_id": self.mask_token_id,
            "name": self.name,
            "dtype": self.dtype,
        }


def confusion_matrix(labels, predictions, num_classes):
    """`[C, C]` int64 counts: row = true class, column = predicted class."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.shape != predictions.shape or labels.ndim != 1:
        raise ValueError(
            f"`labels` and `predictions` must be 1-D and alike; got shapes {labels.shape} "
            f"and {predictions.shape}."
        )
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"`{name}` must be class ids in [0, {num_classes}).")
    matrix = np.zeros([num_classes, num_classes], np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    return matrix


def classification_report(labels, predictions, class_names):
    """Accuracy, macro-F1, per-class precision / recall / F1 and the confusion matrix.

    Macro-F1 is the unweighted mean of the per-class F1 scores, so a classifier that
    ignores a small class scores low however accurate it is on the others. A class that is
    never predicted (or never present) has precision (recall) 0 and F1 0.

    Returns:
        A JSON-friendly dict: `accuracy`, `macro_f1`, `per_class` (`{name: {precision,
        recall, f1, support}}`), `confusion_matrix` (rows true, columns predicted),
        `class_names`, `count`.
    """
    class_names = list(class_names)
    matrix = confusion_matrix(labels, predictions, len(class_names))
    true_positives = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    actual = matrix.sum(axis=1).astype(np.float64)
    precision = np.divide(true_positives, predicted, out=np.zeros_like(predicted),
                          where=predicted > 0)
    recall = np.divide(true_positives, actual, out=np.zeros_like(actual), where=actual > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator),
                   where=denominator > 0)
    total = int(matrix.sum())
    return {
        "accuracy": float(true_positives.sum() / total) if total else 0.0,
        "macro_f1": float(f1.mean()),
        "per_class": {
            name: {"precision": float(precision[index]), "recall": float(recall[index]),
                   "f1": float(f1[index]), "support": int(actual[index])}
            for index, name in enumerate(class_names)
        },
        "confusion_matrix": matrix.tolist(),
        "class_names": class_names,
        "count": total,
    }


def confusion_matrix_markdown(report):
    """A Markdown table of a `classification_report`'s confusion matrix (for TensorBoard)."""
    names = report["class_names"]
    lines = ["| true \\ predicted | " + " | ".join(names) + " |",
             "|---" * (len(names) + 1) + "|"]
    for name, row in zip(names, report["confusion_matrix"]):
        lines.append(f"| **{name}** | " + " | ".join(str(count) for count in row) + " |")
    return "\n".join(lines)
