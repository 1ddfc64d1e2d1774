"""The classifier's SavedModel: passages in, class label and probabilities out."""

import keras
import tensorflow as tf

from tfllm.export.language_model import valid_utf8
from tfllm.export.versions import check_version, model_config_json, write_version


def export_classifier(model, tokenizer, directory, class_names, version=None):
    """Writes a text classifier as `directory/VERSION/`, a SavedModel for serving.

    Its `serving_default` signature takes `texts` (string `[B]`) and returns `label`
    (string `[B]`, the most probable class name), `class_id` (int32 `[B]`),
    `probabilities` (float32 `[B, C]`, in `class_names` order) and `truncated` (bool
    `[B]`: the text had more word pieces than the model reads, and only its first
    `max_length - 2` were classified). A text without words (empty or blank) fails the
    call with an `InvalidArgumentError` that says so.

    The WordPiece tokenizer runs TensorFlow Text ops: load the SavedModel after
    `import tensorflow_text` (no tfllm, no Keras needed).

    Args:
        model: a built `tfllm.models.BertClassifier`.
        tokenizer: its `tfllm.data.WordPieceTokenizer`.
        directory: the model's folder in a TensorFlow Serving model base path.
        class_names: names of the class ids, e.g. `tfllm.data.CLASS_NAMES`.
        version: int; default: one more than the highest version in `directory`.

    Returns:
        The version folder as a `Path`.
    """
    class_names = [str(name) for name in class_names]
    if len(class_names) != model.num_classes:
        raise ValueError(
            f"{len(class_names)} class names for a classifier of {model.num_classes} classes."
        )
    directory, version = check_version(directory, version)
    if not model.built:
        model.build((None, None))
    length = model.max_length
    names = tf.constant(class_names)

    def classify(texts):
        texts = valid_utf8(tf.ensure_shape(texts, [None]))
        has_words = tf.strings.length(tf.strings.strip(texts)) > 0
        check = tf.debugging.assert_equal(
            tf.reduce_all(has_words), True,
            message="every text must hold words: an empty or blank text cannot be classified")
        with tf.control_dependencies([check]):
            ids, truncated = tokenizer.encode(texts, length)
        probabilities = tf.nn.softmax(tf.cast(model(ids, training=False), tf.float32), axis=-1)
        class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {"label": tf.gather(names, class_id), "class_id": class_id,
                "probabilities": probabilities, "truncated": truncated}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", classify,
                         [tf.TensorSpec([None], tf.string, name="texts")])
    metadata = {
        "model_class": type(model).__name__,
        "model_config": model_config_json(model),
        "class_names": class_names,
        "max_length": length,
        "requires": ["tensorflow", "tensorflow_text"],
        "signatures": ["serving_default"],
    }
    return write_version(archive, directory, version, metadata)
