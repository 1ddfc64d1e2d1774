"""int8 and bfloat16 copies of a model to decode with (`tfllm.generation.weights`)."""

import keras
import numpy as np
import pytest

from tfllm.cli import main
from tfllm.data import CharacterTokenizer
from tfllm.generation import with_decoding_weights
from tfllm.models import GPT, LSTMLanguageModel
from tfllm.runs import RunDirectory


def _greedy_by_recomputing(model, prompt, new_tokens):
    """Greedy decoding without a cache: the whole sequence through `model` at each step."""
    sequence = np.asarray(prompt)
    for _ in range(new_tokens):
        logits = np.array(keras.ops.cast(model(sequence), "float32"))[:, -1]
        logits[:, 0] = -np.inf  # the padding id is never generated
        sequence = np.concatenate([sequence, logits.argmax(-1)[:, None]], axis=1)
    return sequence


@pytest.fixture
def gpt(tiny_gpt_config):
    model = GPT(**tiny_gpt_config)
    model.build((None, None))
    return model


@pytest.mark.parametrize("weights, tolerance", [("int8", 0.05), ("bfloat16", 0.05)])
def test_a_copy_computes_nearly_the_same_logits_and_leaves_the_model_alone(
        gpt, rng, weights, tolerance):
    tokens = rng.integers(1, 37, (2, 12))
    before = [np.array(w) for w in gpt.get_weights()]
    reference = np.asarray(gpt(tokens))
    copy = with_decoding_weights(gpt, weights)
    assert copy is not gpt
    logits = np.asarray(keras.ops.cast(copy(tokens), "float32"))
    scale = np.abs(reference).max()
    np.testing.assert_allclose(logits / scale, reference / scale, atol=tolerance)
    assert not np.array_equal(logits, reference)  # the copy really has other weights
    for old, new in zip(before, gpt.get_weights()):
        np.testing.assert_array_equal(old, new)
    if weights == "int8":
        assert any(getattr(layer, "quantization_mode", None) == "int8"
                   for layer in copy._flatten_layers())
    else:
        assert copy.compute_dtype == "bfloat16"


@pytest.mark.parametrize("weights", ["int8", "bfloat16"])
def test_cached_greedy_decoding_of_a_copy_equals_recomputing_with_it(gpt, rng, weights):
    copy = with_decoding_weights(gpt, weights)
    prompt = rng.integers(1, 37, (2, 4))
    generated = np.asarray(copy.generate(prompt, max_new_tokens=6, temperature=0.0))
    np.testing.assert_array_equal(generated, _greedy_by_recomputing(copy, prompt, 6))


def test_float32_is_the_model_itself(gpt):
    assert with_decoding_weights(gpt, "float32") is gpt


def test_what_cannot_be_copied_is_named(gpt, tiny_lstm_config):
    with pytest.raises(ValueError, match="weights must be one of float32, int8, bfloat16"):
        with_decoding_weights(gpt, "float16")
    with pytest.raises(ValueError, match="already quantized"):
        with_decoding_weights(with_decoding_weights(gpt, "int8"), "int8")
    lstm = LSTMLanguageModel(**tiny_lstm_config)
    lstm.build((None, None))
    with pytest.raises(ValueError, match="no layer that Keras quantizes"):
        with_decoding_weights(lstm, "int8")
    with pytest.raises(ValueError, match="cannot decode with bfloat16"):
        with_decoding_weights(lstm, "bfloat16")


def test_the_command_line_generates_with_int8_weights(tmp_path, capsys):
    """`tfllm generate --weights int8` prints what the int8 copy generates greedily."""
    tokenizer = CharacterTokenizer.from_texts(["to be or not to be, that is the question"])
    model = GPT(vocabulary_size=tokenizer.vocabulary_size, max_length=32, num_layers=1,
                num_heads=2, hidden_dim=16, intermediate_dim=32)
    model.build((None, None))
    run = RunDirectory(tmp_path / "run")
    run.write_config({"model_class": "GPT", "model": model.get_config()})
    run.save_tokenizer(tokenizer)
    run.save_model(model)
    arguments = ["generate", str(run.path), "--prompt", "to be", "--max-new-tokens", "8",
                 "--temperature", "0"]
    assert main(arguments + ["--weights", "int8"]) == 0
    printed = capsys.readouterr().out.rstrip("\n")
    prompt = tokenizer.encode_text("to be")[None]
    expected = with_decoding_weights(run.load_model(), "int8").generate(
        prompt, max_new_tokens=8, temperature=0.0)
    assert printed == tokenizer.decode_ids(np.asarray(expected)[0])
    with pytest.raises(SystemExit):
        main(arguments + ["--weights", "int4"])
    assert "invalid choice: 'int4'" in capsys.readouterr().err
