import numpy as np
import pytest

from tfllm.data import CharacterTokenizer, Corpus, Document
from tfllm.models import GPT, LSTMLanguageModel
from tfllm.training import (
    TrainingConfig,
    fit_language_model,
    held_out_loss,
    load_run,
    make_optimizer,
    train_and_evaluate,
)


def _log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def test_held_out_loss_is_the_mean_over_every_window(rng, tiny_gpt_config):
    """Compared with cross-entropy computed in NumPy over all full windows."""
    model = GPT(**tiny_gpt_config)
    stream = rng.integers(1, 37, size=16 * 7 + 1 + 5).astype("int32")  # 7 windows + a tail
    loss = held_out_loss(model, stream, sequence_length=16, batch_size=3)  # last batch of 1
    windows = np.stack([stream[i * 16 : i * 16 + 17] for i in range(7)])
    log_probabilities = _log_softmax(np.asarray(model(windows[:, :-1]), "float64"))
    targets = windows[:, 1:]
    expected = -np.take_along_axis(log_probabilities, targets[..., None], -1).mean()
    assert loss == pytest.approx(expected, rel=1e-4)


def test_fit_lowers_held_out_loss_on_text(tiny_lstm_config):
    text = "to be or not to be, that is the question. " * 60
    tokenizer = CharacterTokenizer.from_texts([text])
    ids = tokenizer.encode_text(text)
    model = LSTMLanguageModel(**{**tiny_lstm_config, "vocabulary_size": tokenizer.vocabulary_size})
    config = TrainingConfig(sequence_length=32, batch_size=8, steps=60, steps_per_epoch=30,
                            peak_learning_rate=1e-2, warmup_steps=5, jit_compile=False)
    before = held_out_loss(model, ids[:400], 32, 8)
    history = fit_language_model(model, ids, ids[:400], config, verbose=0)
    after = held_out_loss(model, ids[:400], 32, 8)
    assert len(history.history["loss"]) == 2 and "val_loss" in history.history
    assert after < before - 1.0


def test_weight_decay_spares_norms_and_biases(tiny_gpt_config):
    """One step with zero gradients: only decayed weights shrink."""
    model = GPT(**tiny_gpt_config)
    model.build()
    config = TrainingConfig(steps=10, warmup_steps=0, peak_learning_rate=0.1, weight_decay=0.5)
    optimizer = make_optimizer(config)
    before = {weight.path: weight.numpy().copy() for weight in model.trainable_weights}
    optimizer.apply_gradients(
        [(np.zeros(weight.shape, "float32"), weight) for weight in model.trainable_weights]
    )
    for weight in model.trainable_weights:
        changed = not np.allclose(weight.numpy(), before[weight.path])
        spared = any(part in weight.path for part in ("bias", "gamma", "beta"))
        assert changed != spared, weight.path


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps"),
    ({"batch_size": -1}, "batch_size"),
    ({"steps": 10, "warmup_steps": 10}, "warmup_steps"),
    ({"peak_learning_rate": 0}, "peak_learning_rate"),
])
def test_bad_config_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainingConfig(**kwargs)


def test_train_and_evaluate_saves_a_run_that_reloads(tmp_path, tiny_gpt_config):
    text = "O Romeo, Romeo, wherefore art thou Romeo?\n" * 40
    corpus = Corpus(
        train=[Document("a", text)], validation=[Document("b", text[:500])],
        test=[Document("c", text[:500])],
    )
    tokenizer = CharacterTokenizer.from_texts(corpus.texts("train"))
    model = GPT(**{**tiny_gpt_config, "vocabulary_size": tokenizer.vocabulary_size})
    config = TrainingConfig(sequence_length=16, batch_size=4, steps=6, steps_per_epoch=3,
                            warmup_steps=1, jit_compile=False)
    lines = []
    metrics = train_and_evaluate(model, corpus, tokenizer, config, tmp_path / "run",
                                 prompt="O", sample_length=12, print_function=lines.append)
    assert {"validation_loss", "test_loss", "tokens_per_second", "sample"} <= set(metrics)
    # An untrained model may sample padding (id 0), which detokenizing drops.
    assert 1 < len(metrics["sample"]) <= 13 and metrics["sample"].startswith("O")
    assert any("Held-out test loss" in line for line in lines)
    restored, restored_tokenizer = load_run(tmp_path / "run")
    ids = tokenizer.encode_text(text[:16])[None, :]
    np.testing.assert_allclose(restored(ids), model(ids), atol=1e-6)
    assert restored_tokenizer.vocabulary == tokenizer.vocabulary


def test_loading_an_incomplete_run_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_run(tmp_path)
    CharacterTokenizer.from_texts(["abc"]).save(tmp_path / "tokenizer.json")
    with pytest.raises(FileNotFoundError, match="missing model.keras and it holds no checkpoint"):
        load_run(tmp_path)
