"""Export a model and its tokenizer as a SavedModel that takes strings.

A text classifier (`BertClassifier`) goes out with `export_classifier`: passages in, genre
label and class probabilities out (see its docstring). A language model goes out with
`export_model`, described below.

The export lands in the TensorFlow Serving layout, `saved_models/NAME/VERSION/`,
and needs TensorFlow alone to load (no tfllm, no Keras). Its signatures:

- `serving_default`: `prompts` (string `[B]`) → `text` (prompt + continuation)
  and `completion` (the continuation alone), with the export's defaults for
  every sampling option (greedy, 100 new tokens, unless set at export);
- `generate`: the same, with every option as an input: `max_new_tokens`
  (int32), `temperature` (float32), `top_k` (int32), `top_p` (float32) and
  `seed` (int32) scalars. A SavedModel signature has no optional inputs, so
  the options live in this second signature;
- `score`: `texts` (string `[B]`) → `log_likelihood` (float32 `[B]`, nats,
  of every token after the first given the ones before it),
  `num_tokens_scored` (int32 `[B]`) and `perplexity`
  (`exp(-log_likelihood / num_tokens_scored)`; NaN for a text of fewer
  than two tokens);
- `logits`: `token_ids` (int32 `[B, T]`, right-padded with 0) → `logits`
  (float32 `[B, V]`, the next-token logits after each row's last token).

Edge cases, as the README documents them:

- an empty prompt starts the continuation from a newline (`completion` is
  the continuation, `text` equals it);
- a model with a `max_length` (the GPT) continues past it as `model.generate`
  does (`tfllm.generation.Decoder`: a row that reaches `max_length` tokens, a
  long prompt included, continues from its last `max_length // 2`), so the
  served text equals the in-process text; `score` reads the first
  `max_length` tokens of each text;
- impossible values (`max_new_tokens < 0`, `temperature < 0`, `top_k < 0`,
  `top_p` outside (0, 1], token ids outside the vocabulary) fail the call
  with an `InvalidArgumentError` that names the value.
"""

import json
import os
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from tfllm import generation

DEFAULT_EXPORT_DIRECTORY = "saved_models"
METADATA_FILE = "assets.extra/tfllm.json"


def _next_version(directory):
    versions = [int(path.name) for path in directory.iterdir()
                if path.is_dir() and path.name.isdigit()] if directory.is_dir() else []
    return max(versions, default=0) + 1


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
        tokenizer: its `tfllm.data.CharacterTokenizer`.
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
    directory, version = _check_version(directory, version)
    if not model.built:
        model.build((None, None))

    archive = _build_archive(
        model, tokenizer,
        defaults={"max_new_tokens": int(max_new_tokens), "temperature": float(temperature),
                  "top_k": int(top_k), "top_p": float(top_p), "seed": int(seed)},
        empty_prompt=empty_prompt,
    )
    metadata = {
        "model_class": type(model).__name__,
        "model_config": json.loads(json.dumps(model.get_config(), default=str)),
        "vocabulary": tokenizer.vocabulary,
        "serving_defaults": {"max_new_tokens": max_new_tokens, "temperature": temperature,
                             "top_k": top_k, "top_p": top_p, "seed": seed},
        "signatures": ["serving_default", "generate", "score", "logits"],
    }
    return _write_version(archive, directory, version, metadata)


def _write_version(archive, directory, version, metadata):
    """Writes `archive` to `directory/version/` under a temporary name, then renames it."""
    final = directory / str(version)
    directory.mkdir(parents=True, exist_ok=True)
    temporary = directory / f".{version}.tmp-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        archive.write_out(str(temporary), verbose=False)
        (temporary / METADATA_FILE).parent.mkdir(parents=True, exist_ok=True)
        (temporary / METADATA_FILE).write_text(
            json.dumps(metadata, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.rename(temporary, final)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return final


def _check_version(directory, version):
    """`(directory as a Path, version)`: the next free version by default; refuses a taken one."""
    directory = Path(directory)
    if version is None:
        version = _next_version(directory)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"`version` must be a positive integer; got {version!r}.")
    if (directory / str(version)).exists():
        raise ValueError(f"{directory / str(version)} exists already; choose another version.")
    return directory, version


def export_run(run_directory, directory=None, version=None, **defaults):
    """Exports the model of a run directory (`tfllm.runs.RunDirectory.load`).

    `directory` defaults to `saved_models/RUN_NAME`. A language model goes through
    `export_model` (`defaults` are its serving defaults), a classifier run (its config
    names classes) through `export_classifier`.
    """
    from tfllm.runs import RunDirectory

    run = RunDirectory(run_directory)
    model, tokenizer = run.load()
    if directory is None:
        directory = Path(DEFAULT_EXPORT_DIRECTORY) / run.path.resolve().name
    if run.is_classifier():
        return export_classifier(model, tokenizer, directory, run.class_names(),
                                 version=version)
    return export_model(model, tokenizer, directory, version=version, **defaults)


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
    directory, version = _check_version(directory, version)
    if not model.built:
        model.build((None, None))
    length = model.max_length
    names = tf.constant(class_names)

    def classify(texts):
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
        "model_config": json.loads(json.dumps(model.get_config(), default=str)),
        "class_names": class_names,
        "max_length": length,
        "requires": ["tensorflow", "tensorflow_text"],
        "signatures": ["serving_default"],
    }
    return _write_version(archive, directory, version, metadata)


def _build_archive(model, tokenizer, defaults, empty_prompt):
    capacity = model.max_length
    vocabulary_size = model.vocabulary_size
    pad = tokenizer.padding_id
    empty_ids = tokenizer.tokenize(tf.constant([empty_prompt]))[0]
    decoder = model.decoder  # the same decoding (context policy, seeds) as model.generate

    def generate(prompts, max_new_tokens, temperature, top_k, top_p, seed):
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
            ids = tokenizer.tokenize(prompts)
        # An empty prompt continues from `empty_prompt`.
        empty = tf.equal(ids.row_lengths(), 0)
        batch_size = tf.shape(prompts)[0]
        filler = tf.RaggedTensor.from_tensor(
            tf.tile(empty_ids[None, :], [batch_size, 1]))
        ids = _choose_rows(empty, filler, ids)
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        sequences, ends = decoder.continue_graph(
            ids.to_tensor(default_value=pad), lengths, tf.fill([batch_size], max_new_tokens),
            temperature, top_k, top_p, seed, tf.zeros([0], tf.int32), tf.constant(pad))
        positions = tf.range(tf.shape(sequences)[1])[None, :]
        new = tf.logical_and(positions >= lengths[:, None], positions < ends[:, None])
        completion = tokenizer.detokenize(
            tf.ragged.boolean_mask(sequences, new))
        return {"text": tf.strings.join([prompts, completion]), "completion": completion}

    def serve(prompts):
        return generate(prompts, tf.constant(defaults["max_new_tokens"]),
                        tf.constant(defaults["temperature"]), tf.constant(defaults["top_k"]),
                        tf.constant(defaults["top_p"]), tf.constant(defaults["seed"]))

    def score(texts):
        ids = tokenizer.tokenize(texts)
        if capacity is not None:
            ids = ids[:, :capacity]
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        dense = ids.to_tensor(default_value=pad)
        positions = tf.range(tf.shape(dense)[1])[None, :]
        mask = positions < lengths[:, None]
        logits = model(dense, padding_mask=mask, training=False)
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

    def next_logits(token_ids):
        checks = [
            tf.debugging.assert_greater_equal(
                token_ids, 0, message=f"token ids must lie in [0, {vocabulary_size})"),
            tf.debugging.assert_less(
                token_ids, vocabulary_size,
                message=f"token ids must lie in [0, {vocabulary_size})"),
        ]
        if capacity is not None:
            checks.append(tf.debugging.assert_less_equal(
                tf.shape(token_ids)[1], capacity,
                message=f"at most max_length ({capacity}) token ids per row"))
        with tf.control_dependencies(checks):
            mask = tf.not_equal(token_ids, pad)
        logits = model(token_ids, padding_mask=mask, training=False)
        last = tf.maximum(tf.reduce_sum(tf.cast(mask, tf.int32), axis=-1) - 1, 0)
        return {"logits": tf.gather(tf.cast(logits, tf.float32), last, batch_dims=1)}

    archive = keras.export.ExportArchive()
    archive.track(model)
    for table in tokenizer.lookup_tables:
        archive.track(table)
    scalar = lambda dtype, name: tf.TensorSpec([], dtype, name=name)  # noqa: E731
    archive.add_endpoint("serving_default", serve,
                         [tf.TensorSpec([None], tf.string, name="prompts")])
    archive.add_endpoint("generate", generate, [
        tf.TensorSpec([None], tf.string, name="prompts"),
        scalar(tf.int32, "max_new_tokens"), scalar(tf.float32, "temperature"),
        scalar(tf.int32, "top_k"), scalar(tf.float32, "top_p"), scalar(tf.int32, "seed"),
    ])
    archive.add_endpoint("score", score, [tf.TensorSpec([None], tf.string, name="texts")])
    archive.add_endpoint("logits", next_logits,
                         [tf.TensorSpec([None, None], tf.int32, name="token_ids")])
    return archive


def _choose_rows(condition, if_true, if_false):
    """Row-wise `where` for two `[B, None]` ragged tensors."""
    true_rows = tf.ragged.boolean_mask(if_true, condition)
    false_rows = tf.ragged.boolean_mask(if_false, tf.logical_not(condition))
    order = tf.concat([tf.where(condition)[:, 0], tf.where(tf.logical_not(condition))[:, 0]], 0)
    stacked = tf.concat([true_rows, false_rows], axis=0)
    return tf.gather(stacked, tf.argsort(order))
