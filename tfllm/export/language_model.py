"""The language model's SavedModel: `serving_default`, `generate`, `score` and `logits`
(the package docstring describes each)."""

import keras
import tensorflow as tf

from tfllm import generation
from tfllm.export.versions import check_version, model_config_json, write_version

SIGNATURES = ["serving_default", "generate", "score", "logits"]


def export_model(
    model,
    tokenizer,
    directory,
    version=None,
    max_new_tokens=100,
    temperature=0.0,
    top_k=0,
    top_p=1.0,
    seed=0,
    empty_prompt="\n",
):
    """Writes `model` + `tokenizer` as `directory/VERSION/`, a SavedModel for serving.

    The version folder is written under a temporary name and renamed into
    place, so it is complete or absent.

    Args:
        model: a tfllm language model (`GPT`, `LSTMLanguageModel`), built.
        tokenizer: its tokenizer (`tfllm.data.CharacterTokenizer`, `BytePairTokenizer`,
            `SentencePieceTokenizer`, `WordPieceTokenizer`); the subword ones need
            `import tensorflow_text` where the export is loaded (`tokenizer_requirements`).
        directory: the model's folder in a TensorFlow Serving model base
            path, e.g. `saved_models/shakespeare`.
        version: int, the version number; default: one more than the
            highest version in `directory` (1 for the first).
        max_new_tokens, temperature, top_k, top_p, seed: the defaults of the
            `serving_default` signature (greedy by default: the same prompt
            gives the same text).
        empty_prompt: the text an empty prompt is continued from.

    Returns:
        The version folder as a `Path`.

    Raises:
        ValueError: a bad default, or `version` already exists.
    """
    generation.check_sampling_arguments(max_new_tokens, temperature, top_k, top_p)
    if not empty_prompt:
        raise ValueError("`empty_prompt` must be a non-empty string.")
    directory, version = check_version(directory, version)
    if not model.built:
        model.build((None, None))
    defaults = {"max_new_tokens": int(max_new_tokens), "temperature": float(temperature),
                "top_k": int(top_k), "top_p": float(top_p), "seed": int(seed)}
    archive = _LanguageModelSignatures(model, tokenizer, defaults, empty_prompt).archive()
    metadata = {
        "model_class": type(model).__name__,
        "model_config": model_config_json(model),
        **tokenizer_requirements(tokenizer),
        "vocabulary": tokenizer.vocabulary,
        "serving_defaults": {"max_new_tokens": max_new_tokens, "temperature": temperature,
                             "top_k": top_k, "top_p": top_p, "seed": seed},
        "signatures": SIGNATURES,
    }
    return write_version(archive, directory, version, metadata)


def tokenizer_requirements(tokenizer):
    """What loading and serving an export of `tokenizer` needs, for its metadata file.

    A character tokenizer uses core TensorFlow ops only. The subword tokenizers use
    TensorFlow Text ops (`import tensorflow_text` before `tf.saved_model.load`); stock
    TensorFlow Serving links TensorFlow Text's ops but not SentencePiece's, so a
    SentencePiece export needs a model server built with them.
    """
    from tfllm.data import tokenizer_kind

    kind = tokenizer_kind(tokenizer)
    requires = ["tensorflow"] if kind == "char" else ["tensorflow", "tensorflow_text"]
    return {"tokenizer": kind, "requires": requires,
            "stock_tensorflow_serving": kind != "sentencepiece"}


def _scalar(dtype, name):
    return tf.TensorSpec([], dtype, name=name)


class _LanguageModelSignatures:
    """The four signature functions of a language model's export, over one model and its
    tokenizer. Decoding goes through `model.decoder`: the same context policy and seeds
    as `model.generate`."""

    def __init__(self, model, tokenizer, defaults, empty_prompt):
        self.model = model
        self.tokenizer = tokenizer
        self.defaults = defaults
        self.capacity = model.max_length
        self.pad = tokenizer.padding_id
        self.empty_ids = tokenizer.tokenize(tf.constant([empty_prompt]))[0]

    def archive(self):
        """A `keras.export.ExportArchive` tracking the model and the tokenizer's tables,
        with the four endpoints."""
        archive = keras.export.ExportArchive()
        archive.track(self.model)
        for table in self.tokenizer.lookup_tables:
            archive.track(table)
        prompts = tf.TensorSpec([None], tf.string, name="prompts")
        archive.add_endpoint("serving_default", self.serve, [prompts])
        archive.add_endpoint("generate", self.generate, [
            prompts,
            _scalar(tf.int32, "max_new_tokens"), _scalar(tf.float32, "temperature"),
            _scalar(tf.int32, "top_k"), _scalar(tf.float32, "top_p"), _scalar(tf.int32, "seed"),
        ])
        archive.add_endpoint("score", self.score,
                             [tf.TensorSpec([None], tf.string, name="texts")])
        archive.add_endpoint("logits", self.next_logits,
                             [tf.TensorSpec([None, None], tf.int32, name="token_ids")])
        return archive

    def serve(self, prompts):
        """`generate` with the export's defaults."""
        values = self.defaults
        return self.generate(prompts, tf.constant(values["max_new_tokens"]),
                             tf.constant(values["temperature"]), tf.constant(values["top_k"]),
                             tf.constant(values["top_p"]), tf.constant(values["seed"]))

    def generate(self, prompts, max_new_tokens, temperature, top_k, top_p, seed):
        prompts = valid_utf8(tf.ensure_shape(prompts, [None]))
        max_new_tokens, temperature, top_k, top_p, seed = (
            tf.ensure_shape(value, []) for value in (max_new_tokens, temperature, top_k, top_p,
                                                     seed))
        checks = [
            tf.debugging.assert_greater_equal(
                max_new_tokens, 0, message="max_new_tokens must be >= 0"),
            tf.debugging.assert_greater_equal(
                temperature, 0.0, message="temperature must be >= 0 (0 is greedy)"),
            tf.debugging.assert_greater_equal(
                top_k, 0, message="top_k must be >= 0 (0 is no limit)"),
            tf.debugging.assert_greater(top_p, 0.0, message="top_p must be in (0, 1]"),
            tf.debugging.assert_less_equal(top_p, 1.0, message="top_p must be in (0, 1]"),
        ]
        with tf.control_dependencies(checks):
            ids = self._prompt_ids(prompts)
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        batch_size = tf.shape(prompts)[0]
        sequences, ends = self.model.decoder.continue_graph(
            ids.to_tensor(default_value=self.pad), lengths,
            tf.fill([batch_size], max_new_tokens), temperature, top_k, top_p, seed,
            tf.zeros([0], tf.int32), tf.constant(self.pad))
        positions = tf.range(tf.shape(sequences)[1])[None, :]
        new = tf.logical_and(positions >= lengths[:, None], positions < ends[:, None])
        completion = self.tokenizer.detokenize(tf.ragged.boolean_mask(sequences, new))
        return {"text": tf.strings.join([prompts, completion]), "completion": completion}

    def _prompt_ids(self, prompts):
        """The prompts' token ids (ragged); an empty prompt continues from `empty_prompt`."""
        ids = self.tokenizer.tokenize(prompts)
        empty = tf.equal(ids.row_lengths(), 0)
        filler = tf.RaggedTensor.from_tensor(
            tf.tile(self.empty_ids[None, :], [tf.shape(prompts)[0], 1]))
        return _choose_rows(empty, filler, ids)

    def score(self, texts):
        ids = self.tokenizer.tokenize(valid_utf8(tf.ensure_shape(texts, [None])))
        if self.capacity is not None:
            ids = ids[:, :self.capacity]
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        dense = ids.to_tensor(default_value=self.pad)
        positions = tf.range(tf.shape(dense)[1])[None, :]
        mask = positions < lengths[:, None]
        logits = self.model(dense, padding_mask=mask, training=False)
        log_probs = tf.nn.log_softmax(tf.cast(logits[:, :-1], tf.float32), axis=-1)
        picked = tf.gather(log_probs, dense[:, 1:], batch_dims=2)
        scored = mask[:, 1:]
        log_likelihood = tf.reduce_sum(tf.where(scored, picked, 0.0), axis=-1)
        count = tf.reduce_sum(tf.cast(scored, tf.int32), axis=-1)
        perplexity = tf.where(
            count > 0,
            tf.exp(-log_likelihood / tf.cast(tf.maximum(count, 1), tf.float32)),
            float("nan"),
        )
        return {"log_likelihood": log_likelihood, "num_tokens_scored": count,
                "perplexity": perplexity}

    def next_logits(self, token_ids):
        token_ids = tf.ensure_shape(token_ids, [None, None])
        vocabulary_size = self.model.vocabulary_size
        checks = [
            tf.debugging.assert_equal(
                tf.reduce_all(tf.reduce_any(tf.not_equal(token_ids, self.pad), axis=1)), True,
                message=f"token_ids: every row needs at least one token id other than the "
                        f"padding id {self.pad} (an empty row has no next token)"),
            tf.debugging.assert_greater_equal(
                token_ids, 0, message=f"token ids must lie in [0, {vocabulary_size})"),
            tf.debugging.assert_less(
                token_ids, vocabulary_size,
                message=f"token ids must lie in [0, {vocabulary_size})"),
        ]
        if self.capacity is not None:
            checks.append(tf.debugging.assert_less_equal(
                tf.shape(token_ids)[1], self.capacity,
                message=f"at most max_length ({self.capacity}) token ids per row"))
        with tf.control_dependencies(checks):
            # The ids too, not only the mask: otherwise the model may run on a bad input
            # before a check fails and raise its own error first (an LSTM's did).
            token_ids = tf.identity(token_ids)
            mask = tf.not_equal(token_ids, self.pad)
        logits = self.model(token_ids, padding_mask=mask, training=False)
        last = tf.maximum(tf.reduce_sum(tf.cast(mask, tf.int32), axis=-1) - 1, 0)
        return {"logits": tf.gather(tf.cast(logits, tf.float32), last, batch_dims=1)}


def valid_utf8(strings):
    """`strings` with every invalid UTF-8 sequence replaced by U+FFFD, before the model
    sees them: what a signature returns (the prompt among it) is always valid UTF-8."""
    return tf.strings.unicode_transcode(strings, "UTF-8", "UTF-8", errors="replace",
                                        replacement_char=0xFFFD)


def _choose_rows(condition, if_true, if_false):
    """Row-wise `where` for two `[B, None]` ragged tensors."""
    true_rows = tf.ragged.boolean_mask(if_true, condition)
    false_rows = tf.ragged.boolean_mask(if_false, tf.logical_not(condition))
    order = tf.concat([tf.where(condition)[:, 0], tf.where(tf.logical_not(condition))[:, 0]], 0)
    stacked = tf.concat([true_rows, false_rows], axis=0)
    return tf.gather(stacked, tf.argsort(order))
