"""LoRA and int8 weights through Keras's own EinsumDense / Dense support."""

import keras
import numpy as np
import pytest

from tfllm.models import GPT, BertClassifier, BertEncoder, BertMaskedLM, LSTMLanguageModel

CONFIG = {"vocabulary_size": 41, "max_length": 24, "num_layers": 2, "num_heads": 2,
          "hidden_dim": 16, "intermediate_dim": 32}


def _built(model):
    model.build((None, None))
    return model


def _windows(rng, count=32, length=13):
    stream = np.tile(rng.integers(2, CONFIG["vocabulary_size"], size=7), 80).astype("int32")
    return np.stack([stream[start:start + length] for start in range(0, 3 * count, 3)])


def _values(model):
    return {variable.path: np.asarray(variable) for variable in model.variables}


def test_lora_adapts_query_and_value_and_freezes_the_rest():
    model = _built(GPT(**CONFIG))
    adapted = model.enable_lora(4)
    assert sorted(layer.name for layer in adapted) == ["query", "query", "value", "value"]
    trainable = [variable.path for variable in model.trainable_variables]
    assert len(trainable) == 2 * 2 * CONFIG["num_layers"]
    assert all(path.endswith(("lora_kernel_a", "lora_kernel_b")) for path in trainable)


def test_lora_training_changes_only_the_adapters(rng):
    model = _built(GPT(**CONFIG))
    before = _values(model)
    model.enable_lora(4)
    logits_before = np.asarray(model(_windows(rng)[:, :-1]))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    windows = _windows(rng)
    model.fit(windows[:, :-1], windows[:, 1:], epochs=3, batch_size=8, verbose=0)
    after = _values(model)
    for path, value in before.items():
        np.testing.assert_array_equal(after[path], value, err_msg=path)
    adapters = [layer.lora_kernel_b for layer in model.lora_layers]
    assert all(np.abs(np.asarray(b)).max() > 0 for b in adapters)
    assert not np.allclose(np.asarray(model(windows[:, :-1])), logits_before, atol=1e-4)


def test_a_lora_model_saves_merged_and_reloads_as_a_plain_model(tmp_path, rng):
    model = _built(GPT(**CONFIG))
    model.enable_lora(2)
    for layer in model.lora_layers:  # adapters as training would leave them
        layer.lora_kernel_b.assign(rng.normal(size=layer.lora_kernel_b.shape) * 0.3)
    inputs = _windows(rng)[:4, :-1]
    expected = np.asarray(model(inputs))
    merged = model.merge_lora()
    assert not merged.lora_layers and len(merged.trainable_variables) == len(
        [variable for variable in merged.variables])
    np.testing.assert_allclose(merged(inputs), expected, atol=1e-6)
    model.save(tmp_path / "lora.keras")
    reloaded = keras.saving.load_model(tmp_path / "lora.keras")
    np.testing.assert_allclose(reloaded(inputs), expected, atol=1e-6)
    # Generation uses the adapters too (its compiled functions were rebuilt).
    prompts = inputs[:2, :3]
    np.testing.assert_array_equal(model.generate(prompts, max_new_tokens=5, temperature=0),
                                  merged.generate(prompts, max_new_tokens=5, temperature=0))


@pytest.mark.parametrize("model_class", [BertMaskedLM, BertClassifier])
def test_lora_on_the_bert_models(rng, model_class):
    model = _built(model_class(BertEncoder(**CONFIG),
                               **({"num_classes": 3} if model_class is BertClassifier else {})))
    model.enable_lora(3)
    trainable = {variable.path for variable in model.trainable_variables}
    lora = {path for path in trainable if "lora_kernel" in path}
    assert len(lora) == 2 * 2 * CONFIG["num_layers"]
    if model_class is BertClassifier:  # its new head trains in full
        assert trainable - lora == {model.output_dense.kernel.path, model.output_dense.bias.path}
    else:
        assert trainable == lora


@pytest.mark.parametrize("rank", [0, -2, 1.5, "4"])
def test_a_bad_lora_rank_is_named(rank):
    with pytest.raises(ValueError, match="rank"):
        _built(GPT(**CONFIG)).enable_lora(rank)


def test_lora_needs_a_built_model_with_projections():
    with pytest.raises(ValueError, match="never built"):
        GPT(**CONFIG).enable_lora(4)
    with pytest.raises(ValueError, match="query, value"):
        _built(LSTMLanguageModel(vocabulary_size=41, num_layers=1, hidden_dim=16)).enable_lora(4)
    model = _built(GPT(**CONFIG))
    model.enable_lora(4)
    with pytest.raises(ValueError, match="already"):
        model.enable_lora(4)


# The tests of the trained GPT go to one xdist worker (--dist loadgroup).
TRAINED = pytest.mark.xdist_group("trained_gpt")


@pytest.fixture(scope="module")
def trained_weights():
    """Weights of a GPT trained on a repeating stream (trained once for the module)."""
    keras.utils.set_random_seed(5)
    model = GPT(**CONFIG)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    windows = _windows(np.random.default_rng(5))
    model.fit(windows[:, :-1], windows[:, 1:], epochs=4, batch_size=8, verbose=0)
    return model.get_weights(), windows


@pytest.fixture
def trained(trained_weights):
    """A fresh copy of the trained GPT (tests quantize it), and its training windows."""
    weights, windows = trained_weights
    model = _built(GPT(**CONFIG))
    model.set_weights(weights)
    return model, windows


@TRAINED
def test_int8_logits_stay_close_to_float32(trained):
    model, windows = trained
    inputs = windows[:, :-1]
    float_logits = np.asarray(model(inputs))
    model.quantize("int8")
    quantized = [layer for layer in model._flatten_layers() if layer.quantization_mode]
    assert len(quantized) == 6 * CONFIG["num_layers"]  # 4 projections + 2 feed-forward
    assert all(keras.backend.standardize_dtype(layer._kernel.dtype) == "int8"
               for layer in quantized)
    int8_logits = np.asarray(model(inputs))
    scale = np.abs(float_logits).max()
    assert np.abs(int8_logits - float_logits).max() < 0.03 * scale
    probabilities = keras.ops.softmax(float_logits)
    int8_probabilities = keras.ops.softmax(int8_logits)
    np.testing.assert_allclose(int8_probabilities, probabilities, atol=0.02)
    assert (int8_logits.argmax(-1) == float_logits.argmax(-1)).mean() > 0.97


@TRAINED
def test_int8_generation_uses_the_int8_weights(trained):
    """Greedy decoding after `quantize` equals greedy recomputation with the int8 model
    (compiled decoding made before quantizing is not reused)."""
    model, windows = trained
    prompts = windows[:3, :4]
    model.generate(prompts, max_new_tokens=6, temperature=0)  # compiles for float32
    model.quantize("int8")
    generated = model.generate(prompts, max_new_tokens=6, temperature=0)
    sequence = prompts
    for _ in range(6):
        next_token = np.asarray(model(sequence))[:, -1].argmax(-1)
        sequence = np.concatenate([sequence, next_token[:, None].astype("int32")], axis=1)
    np.testing.assert_array_equal(generated, sequence)


@TRAINED
def test_an_int8_model_saves_and_loads(tmp_path, trained):
    model, windows = trained
    model.quantize("int8")
    expected = np.asarray(model(windows[:, :-1]))
    model.save(tmp_path / "int8.keras")
    reloaded = keras.saving.load_model(tmp_path / "int8.keras")
    assert sum(1 for layer in reloaded._flatten_layers() if layer.quantization_mode == "int8") \
        == 6 * CONFIG["num_layers"]
    np.testing.assert_allclose(reloaded(windows[:, :-1]), expected, atol=1e-6)


def test_quantizing_an_unbuilt_model_is_refused():
    with pytest.raises(ValueError, match="not built"):
        GPT(**CONFIG).quantize("int8")
