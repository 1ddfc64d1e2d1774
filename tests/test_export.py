"""The SavedModel export, loaded where users load it: a fresh process that imports TensorFlow
only (not tfllm), and TensorFlow's own `saved_model_cli`."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from tfllm.data import CharacterTokenizer
from tfllm.export import export_model
from tfllm.generation import generate_text
from tfllm.models import GPT, LSTMLanguageModel

TEXT = "to be, or not to be, that is the question:\nwhether 'tis nobler in the mind\n"
NEW_TOKENS = 12
MAX_LENGTH = 32
PROMPTS = ["to be", "whether 'tis", "o", ""]
LONG_PROMPT = TEXT[:40]  # longer than MAX_LENGTH = 32 tokens
SCORED = ["to be, or not", "the mind", "t", ""]
TOKEN_IDS = [[5, 6, 7, 8], [9, 10, 0, 0]]

# Runs in a separate process: TensorFlow only.
LOADER = textwrap.dedent('''
    import json, sys
    import tensorflow as tf

    loaded = tf.saved_model.load(sys.argv[1])
    request = json.loads(sys.argv[2])
    def plain(outputs):
        return {key: ([text.decode("utf-8") for text in value.numpy().tolist()]
                      if value.dtype == tf.string else value.numpy().tolist())
                for key, value in outputs.items()}
    answer = {"signatures": sorted(loaded.signatures)}
    answer["serving_default"] = plain(loaded.signatures["serving_default"](
        prompts=tf.constant(request["prompts"])))
    answer["long"] = plain(loaded.signatures["serving_default"](
        prompts=tf.constant([request["long_prompt"]])))
    options = dict(max_new_tokens=tf.constant(7), temperature=tf.constant(0.9),
                   top_k=tf.constant(4), top_p=tf.constant(0.95), seed=tf.constant(11))
    answer["sampled"] = plain(loaded.signatures["generate"](
        prompts=tf.constant(request["prompts"][:2]), **options))
    answer["sampled_again"] = plain(loaded.signatures["generate"](
        prompts=tf.constant(request["prompts"][:2]), **options))
    answer["score"] = plain(loaded.signatures["score"](texts=tf.constant(request["scored"])))
    answer["logits"] = plain(loaded.signatures["logits"](
        token_ids=tf.constant(request["token_ids"], tf.int32)))
    try:
        loaded.signatures["generate"](prompts=tf.constant(["to"]), max_new_tokens=tf.constant(3),
            temperature=tf.constant(-1.0), top_k=tf.constant(0), top_p=tf.constant(1.0),
            seed=tf.constant(0))
        answer["bad_temperature"] = "accepted"
    except tf.errors.InvalidArgumentError as error:
        answer["bad_temperature"] = error.message
    answer["not_utf8"] = plain(loaded.signatures["serving_default"](
        prompts=tf.constant([b"to \\xffbe", b"\\xc3"])))  # plain() decodes strictly
    answer["not_utf8_score"] = plain(loaded.signatures["score"](
        texts=tf.constant([b"to \\xffbe", "to \\ufffdbe".encode()])))
    def failure(call):
        try:
            call()
            return "accepted"
        except tf.errors.InvalidArgumentError as error:
            return error.message
    answer["rank_0_prompt"] = failure(lambda: loaded.signatures["serving_default"](
        prompts=tf.constant("to")))
    answer["rank_0_text"] = failure(lambda: loaded.signatures["score"](texts=tf.constant("to")))
    answer["empty_logits_row"] = failure(lambda: loaded.signatures["logits"](
        token_ids=tf.constant([[5, 6], [0, 0]], tf.int32)))
    answer["no_logits_column"] = failure(lambda: loaded.signatures["logits"](
        token_ids=tf.zeros([2, 0], tf.int32)))
    answer["rank_1_token_ids"] = failure(lambda: loaded.signatures["logits"](
        token_ids=tf.constant([5, 6], tf.int32)))
    answer["tfllm_imported"] = any(name.split(".")[0] == "tfllm" for name in sys.modules)
    print(json.dumps(answer))
''')


def _load_in_fresh_process(path, tmp_path):
    script = tmp_path / "load_export.py"
    script.write_text(LOADER, encoding="utf-8")
    request = {"prompts": PROMPTS, "long_prompt": LONG_PROMPT, "scored": SCORED,
               "token_ids": TOKEN_IDS}
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run([sys.executable, str(script), str(path), json.dumps(request)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _export_kind(kind, *marks):
    """A parameter of `exported`: its tests go to one xdist worker, so that each export is
    made and loaded once (--dist loadgroup)."""
    return pytest.param(kind, marks=[*marks, pytest.mark.xdist_group(f"export_{kind}")])


@pytest.fixture(scope="module", params=[
    _export_kind("gpt"), _export_kind("lstm", pytest.mark.slow),
    _export_kind("gpt_int8", pytest.mark.slow)])
def exported(request, tmp_path_factory):
    """Every test below runs against each export: a GPT, an LSTM, and a GPT whose
    projections were quantized to int8 (`model.quantize("int8")`) before exporting."""
    keras.utils.set_random_seed(7)
    tokenizer = CharacterTokenizer.from_texts([TEXT])
    if request.param.startswith("gpt"):
        model = GPT(vocabulary_size=tokenizer.vocabulary_size, max_length=MAX_LENGTH,
                    num_layers=2, num_heads=2, hidden_dim=16, position_encoding="rotary")
    else:
        model = LSTMLanguageModel(vocabulary_size=tokenizer.vocabulary_size, num_layers=2,
                                  hidden_dim=16)
    model.build((None, None))
    if request.param == "gpt_int8":
        model.quantize("int8")
    tmp_path = tmp_path_factory.mktemp(request.param)
    path = export_model(model, tokenizer, tmp_path / "saved_models" / "tiny",
                        max_new_tokens=NEW_TOKENS)
    return {"kind": request.param, "model": model, "tokenizer": tokenizer, "path": path,
            "answer": _load_in_fresh_process(path, tmp_path)}


def test_the_export_has_four_signatures_and_loads_without_tfllm(exported):
    assert exported["path"].name == "1" and exported["path"].parent.name == "tiny"
    assert exported["answer"]["signatures"] == ["generate", "logits", "score", "serving_default"]
    assert exported["answer"]["tfllm_imported"] is False


def test_greedy_text_equals_the_in_process_model(exported):
    model, tokenizer = exported["model"], exported["tokenizer"]
    served = exported["answer"]["serving_default"]
    for prompt, text, completion in zip(PROMPTS, served["text"], served["completion"]):
        if not prompt:
            continue
        expected = generate_text(model, tokenizer, prompt, NEW_TOKENS, temperature=0)
        assert text == expected
        assert completion == expected[len(prompt):]


def test_an_empty_prompt_continues_from_a_newline(exported):
    model, tokenizer = exported["model"], exported["tokenizer"]
    served = exported["answer"]["serving_default"]
    expected = generate_text(model, tokenizer, "\n", NEW_TOKENS, temperature=0)[1:]
    assert served["text"][-1] == served["completion"][-1] == expected


def test_sampling_with_a_seed_equals_the_in_process_model(exported):
    model, tokenizer = exported["model"], exported["tokenizer"]
    answer = exported["answer"]
    assert answer["sampled"] == answer["sampled_again"]
    expected = generate_text(model, tokenizer, PROMPTS[:2], 7, temperature=0.9, top_k=4,
                             top_p=0.95, seed=11)
    assert answer["sampled"]["text"] == expected


def test_an_over_long_prompt_is_served_as_model_generate_continues_it(exported):
    """40 characters for a GPT of max_length 32: the SavedModel applies the in-process
    model's policy (`Decoder`), so the texts are equal."""
    model, tokenizer = exported["model"], exported["tokenizer"]
    long = exported["answer"]["long"]
    expected = generate_text(model, tokenizer, LONG_PROMPT, NEW_TOKENS, temperature=0)
    assert long["text"][0] == expected
    assert long["completion"][0] == expected[len(LONG_PROMPT):]


def test_score_is_the_models_loss(exported):
    model, tokenizer = exported["model"], exported["tokenizer"]
    score = exported["answer"]["score"]
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for index, text in enumerate(SCORED):
        ids = tokenizer.encode_text(text)[None, :]
        count = score["num_tokens_scored"][index]
        assert count == max(ids.shape[1] - 1, 0)
        if count == 0:
            assert np.isnan(score["perplexity"][index])
            continue
        mean = float(loss(ids[:, 1:], model(ids[:, :-1])))
        assert -score["log_likelihood"][index] / count == pytest.approx(mean, rel=1e-4)
        assert score["perplexity"][index] == pytest.approx(np.exp(mean), rel=1e-4)


def test_logits_are_the_next_token_logits_after_each_row(exported):
    model = exported["model"]
    served = np.array(exported["answer"]["logits"]["logits"])
    np.testing.assert_allclose(served[0], np.asarray(model(np.array([TOKEN_IDS[0]])))[0, -1],
                               atol=1e-5)
    np.testing.assert_allclose(served[1], np.asarray(model(np.array([TOKEN_IDS[1][:2]])))[0, -1],
                               atol=1e-5)


def test_impossible_sampling_values_are_named(exported):
    assert "temperature must be >= 0" in exported["answer"]["bad_temperature"]


def test_bytes_that_are_not_utf8_are_replaced_before_the_model_sees_them(exported):
    """The served text is valid UTF-8 (the loader decodes it strictly), the prompt's bad
    bytes are U+FFFD, and the continuation is the in-process model's of that prompt."""
    model, tokenizer = exported["model"], exported["tokenizer"]
    served = exported["answer"]["not_utf8"]
    for prompt, text in zip(["to \ufffdbe", "\ufffd"], served["text"]):
        assert text == generate_text(model, tokenizer, prompt, NEW_TOKENS, temperature=0)
    first, second = exported["answer"]["not_utf8_score"]["log_likelihood"]
    assert first == pytest.approx(second)


def test_wrong_ranks_and_empty_rows_fail_naming_the_input(exported):
    answer = exported["answer"]
    assert "Shape of tensor prompts [] is not compatible" in answer["rank_0_prompt"]
    assert "Shape of tensor texts [] is not compatible" in answer["rank_0_text"]
    assert "Shape of tensor token_ids [2] is not compatible" in answer["rank_1_token_ids"]
    for key in ("empty_logits_row", "no_logits_column"):
        assert "token_ids: every row needs at least one token id" in answer[key], key


# The GPT export only: the LSTM and int8 exports have the same signatures, and the fresh
# process above loads and runs every one of them already.
@pytest.mark.parametrize("exported", [_export_kind("gpt")], indirect=True)
def test_saved_model_cli_lists_and_runs_the_signatures(exported, tmp_path):
    cli = Path(sys.executable).with_name("saved_model_cli")
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    shown = subprocess.run([str(cli), "show", "--dir", str(exported["path"]), "--all"],
                           capture_output=True, text=True, timeout=300, env=environment)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for name in ("serving_default", "generate", "score", "logits"):
        assert f"signature_def['{name}']" in shown.stdout
    for name in ("prompts", "max_new_tokens", "temperature", "top_k", "top_p", "seed",
                 "texts", "token_ids"):
        assert f"inputs['{name}']" in shown.stdout
    ran = subprocess.run([str(cli), "run", "--dir", str(exported["path"]), "--tag_set", "serve",
                          "--signature_def", "score", "--input_exprs", "texts=['to be, or not']"],
                         capture_output=True, text=True, timeout=300, env=environment)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "perplexity" in ran.stdout


def test_versions_count_up_and_are_never_overwritten(tmp_path):
    tokenizer = CharacterTokenizer.from_texts([TEXT])
    model = LSTMLanguageModel(vocabulary_size=tokenizer.vocabulary_size, num_layers=1,
                              hidden_dim=8)
    model.build((None, None))
    first = export_model(model, tokenizer, tmp_path / "m", max_new_tokens=3)
    second = export_model(model, tokenizer, tmp_path / "m", max_new_tokens=3)
    assert (first.name, second.name) == ("1", "2")
    assert sorted(path.name for path in (tmp_path / "m").iterdir()) == [".lock", "1", "2"]
    with pytest.raises(ValueError, match="exists already"):
        export_model(model, tokenizer, tmp_path / "m", version=2)
    metadata = json.loads((second / "assets.extra" / "tfllm.json").read_text(encoding="utf-8"))
    assert metadata["model_class"] == "LSTMLanguageModel"
    assert metadata["serving_defaults"]["max_new_tokens"] == 3


def test_bad_export_settings_are_named(tmp_path):
    tokenizer = CharacterTokenizer.from_texts([TEXT])
    model = GPT(vocabulary_size=tokenizer.vocabulary_size, max_length=16, num_layers=1,
                num_heads=2, hidden_dim=8)
    with pytest.raises(ValueError, match="top_p"):
        export_model(model, tokenizer, tmp_path / "m", top_p=0)
    assert not (tmp_path / "m").exists()
