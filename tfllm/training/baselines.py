"""Baselines a classifier is measured against: the majority class and bag-of-words.

(The third, the same classifier trained from random weights, is a fine-tuning run of its
own: `tfllm.training.classification.classification_job` runs it.)
"""

import keras
import numpy as np
import tensorflow as tf

from tfllm.metrics import classification_report


def majority_baseline(train_labels, labels, class_names):
    """The report of always predicting the most frequent training class."""
    majority = int(np.bincount(np.asarray(train_labels), minlength=len(class_names)).argmax())
    return classification_report(labels, np.full(len(labels), majority), class_names)


def bag_of_words_baseline(train, held_out, class_names, validation=None, max_words=20000,
                          l2_strengths=(1e-5, 1e-4, 1e-3), epochs=30, seed=1):
    """A bag-of-words logistic regression: TF-IDF word features → softmax.

    Texts are normalised with `tfllm.data.text.normalize_text` (lower case, words only,
    stop words removed); the vocabulary holds the `max_words` most frequent training
    words. The L2 strength is chosen by macro-F1 on `validation` (when given).

    Args:
        train: `(texts, labels)` to fit on.
        held_out: `(texts, labels)` to report on.
        class_names: the class names.
        validation: `(texts, labels)` for choosing the L2 strength.

    Returns:
        `(report on held_out, chosen L2 strength)`.
    """
    from tfllm.data.text import normalize_text

    def features(texts):
        return tf.constant([normalize_text(text, remove_stop_words=True) for text in texts])

    train_texts = features(train[0])
    vectorizer = keras.layers.TextVectorization(
        max_tokens=max_words, standardize=None, split="whitespace", output_mode="tf_idf")
    vectorizer.adapt(train_texts)
    train_x = vectorizer(train_texts)
    train_y = np.asarray(train[1], np.int32)

    def fit(l2):
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([
            keras.Input((train_x.shape[1],)),
            keras.layers.Dense(len(class_names),
                               kernel_regularizer=keras.regularizers.L2(l2)),
        ])
        model.compile(optimizer=keras.optimizers.Adam(1e-2),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(train_x, train_y, batch_size=256, epochs=epochs, verbose=0, shuffle=True)
        return model

    def report(model, split):
        logits = model(vectorizer(features(split[0])), training=False)
        return classification_report(split[1], np.argmax(logits, -1), class_names)

    candidates = list(l2_strengths) if validation is not None else [l2_strengths[0]]
    best = None
    for l2 in candidates:
        model = fit(l2)
        score = report(model, validation)["macro_f1"] if validation is not None else 0.0
        if best is None or score > best[0]:
            best = (score, l2, model)
    return report(best[2], held_out), best[1]
