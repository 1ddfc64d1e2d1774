"""Export a model and its tokenizer as a SavedModel that takes strings.

A text classifier (`BertClassifier`) goes out with `export_classifier`: passages in, genre
label and class probabilities out (see its docstring). A language model goes out with
`export_model`, described below. `export_run` exports the model of a run directory,
whichever it is.

The export lands in the TensorFlow Serving layout, `saved_models/NAME/VERSION/`,
and needs TensorFlow alone to load (no tfllm, no Keras). A language model's signatures:

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
  `top_p` outside (0, 1], token ids outside the vocabulary, a `logits` row
  without a token id other than 0) fail the call with an `InvalidArgumentError`
  that names the value; so does an input of another rank than its signature's
  (a single prompt not wrapped in a list: "Shape of tensor prompts [] is not
  compatible with expected shape [?]"), which a loaded signature does not check;
- bytes that are not UTF-8 in prompts and texts are replaced with U+FFFD
  before the model sees them, so every output string is valid UTF-8 (a JSON
  client can read it).

The package's modules: `language_model.py` (`export_model` and its four signatures),
`classifier.py` (`export_classifier`), `versions.py` (version numbers and the atomic write
of a version folder).
"""

from pathlib import Path

from tfllm.export.classifier import export_classifier
from tfllm.export.language_model import export_model
from tfllm.export.versions import DEFAULT_EXPORT_DIRECTORY, METADATA_FILE


def export_run(run_directory, directory=None, version=None, weights="float32", **defaults):
    """Exports the model of a run directory (`tfllm.runs.RunDirectory.load`).

    `directory` defaults to `saved_models/RUN_NAME`. A language model goes through
    `export_model` (`defaults` are its serving defaults) with the decoding `weights`
    of `tfllm.generation.with_decoding_weights` ("float32", "int8", "bfloat16"); a
    classifier run (its config names classes) through `export_classifier`. The run's lock
    is held, shared, while it exports: a run being trained is refused
    (`tfllm.runs.RunBusyError`, naming the trainer's pid); two exports of one run get
    distinct versions (`tfllm.export.versions.reserve_version`).
    """
    from tfllm.runs import RunDirectory

    run = RunDirectory(run_directory).require()
    if directory is None:
        directory = Path(DEFAULT_EXPORT_DIRECTORY) / run.path.resolve().name
    if run.is_classifier() and weights != "float32":
        raise ValueError("--weights applies to language models; a classifier exports "
                         "its float32 weights")
    # Shared: exports of one run may run side by side, but not beside its training.
    with run.lock(shared=True, purpose="export"):
        model, tokenizer = run.load()
        if run.is_classifier():
            return export_classifier(model, tokenizer, directory, run.class_names(),
                                     version=version)
        from tfllm.generation import with_decoding_weights

        model = with_decoding_weights(model, weights)
        return export_model(model, tokenizer, directory, version=version, **defaults)


__all__ = ["DEFAULT_EXPORT_DIRECTORY", "METADATA_FILE", "export_classifier", "export_model",
           "export_run"]
