"""Masked-LM pre-training and genre fine-tuning runs, end to end, on a small made-up corpus."""

import json
import random

import numpy as np
import pytest

from tfllm.data import Document, split_by_genre
from tfllm.presets import preset
from tfllm.training import TrainingConfig
from tfllm.training.baselines import bag_of_words_baseline, majority_baseline
from tfllm.training.classification import genre_classification_job
from tfllm.training.masked_lm import pretraining_job

# One xdist worker runs them all: the pre-training run is trained once.
pytestmark = pytest.mark.xdist_group("bert_training")

WORDS = {
    "comedies": "love jest wedding merry fool dance sweet",
    "histories": "king crown england war battle duke throne",
    "tragedies": "death blood grave murder poison dagger ghost",
}
FILLER = "the and of to my lord good sir what this with".split()


def _play(genre, index):
    rng = random.Random(f"{genre}{index}")
    words = WORDS[genre].split() + FILLER * 2
    lines = [" ".join(rng.choice(words) for _ in range(9)).capitalize() + "."
             for _ in range(160)]
    return Document(f"{genre}-{index}", "\n".join(lines) + "\n", genre)


@pytest.fixture(scope="module")
def corpus():
    return split_by_genre([_play(genre, index) for genre in WORDS for index in range(4)],
                          validation_per_class=1, test_per_class=1)


def _tiny(kind, **overrides):
    settings = preset(kind, "tiny")
    settings["training"].update(overrides)
    return settings


QUIET = {"print_function": lambda *_: None, "verbose": 0}


@pytest.fixture(scope="module")
def pretrained(corpus, tmp_path_factory):
    """`(run directory, metrics, settings)` of a tiny masked-LM pre-training: 2 epochs of
    10 steps, trained once for the tests below."""
    settings = _tiny("bert", steps=20, steps_per_epoch=10)
    run = tmp_path_factory.mktemp("pretrained") / "bert"
    metrics = pretraining_job(corpus, 200, settings["model"],
                              TrainingConfig(**settings["training"]), run, **QUIET)
    return run, metrics, settings


@pytest.mark.slow
def test_pretraining_then_fine_tuning_writes_runs_and_comparisons(corpus, pretrained, tmp_path):
    bert_run, metrics, _ = pretrained
    assert metrics["validation_loss"] < metrics["initial_validation_loss"] - 0.3
    for name in ("config.json", "tokenizer.json", "model.keras", "metrics.json", "history.csv"):
        assert (bert_run / name).is_file()

    classifier = _tiny("classifier", steps=10, steps_per_epoch=10)
    lines = []
    results = genre_classification_job(
        bert_run, classifier["model"], TrainingConfig(**classifier["training"]),
        tmp_path / "classifier", corpus=corpus, passage_length=200,
        print_function=lines.append, verbose=0)
    assert {"pretrained", "no_pretraining", "bag_of_words", "majority"} <= set(results)
    for key in ("pretrained", "no_pretraining", "bag_of_words", "majority"):
        assert 0 <= results[key]["macro_f1"] <= 1 and results[key]["count"] > 0
        assert np.sum(results[key]["confusion_matrix"]) == results[key]["count"]
    # The made-up genres differ in their words: counting them must be enough.
    assert results["bag_of_words"]["macro_f1"] > 0.9
    saved = json.loads((tmp_path / "classifier" / "metrics.json").read_text())
    assert saved["test"]["macro_f1"] == results["pretrained"]["macro_f1"]
    assert (tmp_path / "classifier-scratch" / "model.keras").is_file()
    assert json.loads((tmp_path / "classifier" / "comparison.json").read_text())["table"]
    assert any("| majority class |" in line for line in lines)

    # TensorBoard's own reader finds the confusion matrices and the held-out macro-F1.
    from tensorboard.backend.event_processing import event_accumulator, event_multiplexer
    from tensorboard.util import tensor_util

    logs = event_multiplexer.EventMultiplexer(
        size_guidance={event_accumulator.TENSORS: 0})
    logs.AddRunsFromDirectory(str(tmp_path / "classifier" / "logs"))
    logs.Reload()
    text = tensor_util.make_ndarray(
        logs.Tensors("evaluation", "confusion_matrix/test")[-1].tensor_proto)
    assert "| **history** |" in text.item().decode()
    final = {tag: tensor_util.make_ndarray(logs.Tensors(".", tag)[-1].tensor_proto)
             for tag in logs.GetAccumulator(".").Tags()["tensors"]}
    assert float(final["final/heldout_test_macro_f1"]) == pytest.approx(
        results["pretrained"]["macro_f1"], rel=1e-5)

    # Run again, the finished classifier is evaluated, not retrained: model.keras (its best
    # epoch) is the same file, its figures the same, its recorded time kept.
    model_file = tmp_path / "classifier" / "model.keras"
    before = model_file.read_bytes()
    again = genre_classification_job(
        bert_run, classifier["model"], TrainingConfig(**classifier["training"]),
        tmp_path / "classifier", corpus=corpus, passage_length=200, baselines=False,
        print_function=lines.append, verbose=0)
    assert model_file.read_bytes() == before
    assert again["pretrained"]["confusion_matrix"] == results["pretrained"]["confusion_matrix"]
    resaved = json.loads((tmp_path / "classifier" / "metrics.json").read_text())
    for name in ("best_epoch", "training_seconds", "tokens_per_second", "test"):
        assert resaved[name] == saved[name], name


@pytest.mark.slow
def test_an_interrupted_pretraining_resumes_to_the_same_weights(corpus, pretrained, tmp_path):
    import shutil

    import keras

    whole, _, settings = pretrained
    config = TrainingConfig(**settings["training"])
    # The same run interrupted after its first epoch: only that epoch's checkpoint kept,
    # as a kill would leave it (a copy of the finished run: the same job, already run).
    interrupted = tmp_path / "interrupted"
    shutil.copytree(whole, interrupted)
    for name in ("model.keras", "metrics.json"):
        (interrupted / name).unlink()
    shutil.rmtree(interrupted / "checkpoints" / "step-00000020")
    lines = []
    metrics = pretraining_job(corpus, 200, settings["model"], config, interrupted,
                              print_function=lines.append, verbose=0)
    assert metrics["resumed_from_step"] == 10
    assert any("Resuming" in line and "step 10" in line for line in lines)
    first = keras.saving.load_model(whole / "model.keras")
    second = keras.saving.load_model(interrupted / "model.keras")
    for a, b in zip(first.weights, second.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_baselines_on_separable_texts():
    texts = [f"{word} {word} filler" for word in ("apple", "pear", "plum") for _ in range(20)]
    labels = [index for index in range(3) for _ in range(20)]
    names = ["a", "b", "c"]
    report, _ = bag_of_words_baseline((texts, labels), (texts, labels), names, epochs=20)
    assert report["accuracy"] == 1.0
    majority = majority_baseline([2, 2, 1], labels, names)
    assert majority["accuracy"] == pytest.approx(1 / 3)
    assert majority["per_class"]["c"]["recall"] == 1.0
