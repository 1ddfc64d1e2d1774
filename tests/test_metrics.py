import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from tfllm.metrics import Perplexity
from tfllm.models import GPT


def _token_losses(logits, targets):
    """Cross-entropy of every target token, in float64 NumPy."""
    logits = np.asarray(logits, "float64")
    shifted = logits - logits.max(-1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -np.take_along_axis(log_probabilities, targets[..., None], -1)[..., 0]


def test_perplexity_is_exp_of_the_mean_over_every_token_seen(rng):
    """Two batches of different sizes: every token weighs alike, not every batch."""
    batches = [(rng.integers(0, 11, (3, 5)), rng.normal(size=(3, 5, 11)) * 3),
               (rng.integers(0, 11, (1, 5)), rng.normal(size=(1, 5, 11)) * 3)]
    perplexity = Perplexity()
    for targets, logits in batches:
        perplexity.update_state(targets, logits.astype("float32"))
    losses = np.concatenate([_token_losses(logits, targets).ravel() for targets, logits in batches])
    assert float(perplexity.result()) == pytest.approx(np.exp(losses.mean()), rel=1e-5)


def test_uniform_logits_give_the_vocabulary_size():
    perplexity = Perplexity()
    perplexity.update_state(np.array([[1, 2, 3]]), np.zeros((1, 3, 7), "float32"))
    assert float(perplexity.result()) == pytest.approx(7.0, rel=1e-6)


def test_sample_weight_and_mask_token_id_leave_tokens_out(rng):
    targets = rng.integers(0, 9, (4, 6))
    targets[:, -2:] = 0  # padding at the end of every row
    logits = (rng.normal(size=(4, 6, 9)) * 2).astype("float32")
    weights = (targets != 0).astype("float32")
    losses = _token_losses(logits, targets)
    expected = np.exp((losses * weights).sum() / weights.sum())

    weighted = Perplexity()
    weighted.update_state(targets, logits, sample_weight=weights)
    masked = Perplexity(mask_token_id=0)
    masked.update_state(targets, logits)
    assert float(weighted.result()) == pytest.approx(expected, rel=1e-5)
    assert float(masked.result()) == pytest.approx(expected, rel=1e-5)


def test_probabilities_give_the_same_perplexity_as_logits(rng):
    targets = rng.integers(0, 6, (2, 4))
    logits = rng.normal(size=(2, 4, 6)).astype("float32")
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    from_logits, from_probabilities = Perplexity(), Perplexity(from_logits=False)
    from_logits.update_state(targets, logits)
    from_probabilities.update_state(targets, probabilities)
    assert float(from_probabilities.result()) == pytest.approx(
        float(from_logits.result()), rel=1e-5
    )


def test_reset_forgets_what_was_seen_and_an_empty_metric_reports_zero(rng):
    perplexity = Perplexity()
    assert float(perplexity.result()) == 0.0
    perplexity.update_state(rng.integers(0, 5, (2, 3)), rng.normal(size=(2, 3, 5)))
    perplexity.reset_state()
    assert float(perplexity.result()) == 0.0
    perplexity.update_state(np.array([[0]]), np.zeros((1, 1, 5), "float32"))
    assert float(perplexity.result()) == pytest.approx(5.0, rel=1e-6)


def test_perplexity_round_trips_through_keras_serialization():
    perplexity = Perplexity(mask_token_id=0, name="masked_perplexity")
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(perplexity)
    )
    assert isinstance(restored, Perplexity)
    assert restored.get_config() == perplexity.get_config()


def test_in_evaluate_perplexity_is_exp_of_the_loss(rng, tiny_gpt_config):
    """The default loss is the token mean, so the two must agree."""
    model = GPT(**tiny_gpt_config)
    model.compile(metrics=[Perplexity()], jit_compile=False)
    tokens = rng.integers(0, 37, (10, 16))
    results = model.evaluate(tokens[:, :-1], tokens[:, 1:], batch_size=4, return_dict=True,
                             verbose=0)
    assert results["perplexity"] == pytest.approx(np.exp(results["loss"]), rel=1e-5)


@pytest.mark.parametrize("kwargs, name", [
    ({"from_logits": 1}, "from_logits"),
    ({"mask_token_id": "0"}, "mask_token_id"),
    ({"mask_token_id": True}, "mask_token_id"),
])
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Perplexity(**kwargs)


def test_wrong_shapes_are_explained():
    with pytest.raises(ValueError, match=r"\[B, T, V\]"):
        Perplexity().update_state(np.zeros((2, 3), "int32"), np.zeros((2, 3), "float32"))


_MIRRORED_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfllm.metrics import Perplexity

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 7, (6, 4)).astype("int32")
    logits = rng.normal(size=(6, 4, 7)).astype("float32")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        perplexity = Perplexity()
    data = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((targets, logits)).batch(4))

    @tf.function
    def update(batch):
        strategy.run(perplexity.update_state, args=batch)

    for batch in data:
        update(batch)
    print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                      "perplexity": float(perplexity.result())}))
""")


@pytest.mark.slow
def test_perplexity_sums_over_replicas_under_mirrored_strategy():
    """Two replicas each see part of every batch; the result is that of all tokens."""
    completed = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT], capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 7, (6, 4))
    logits = rng.normal(size=(6, 4, 7)).astype("float32")
    assert result["replicas"] == 2
    assert result["perplexity"] == pytest.approx(
        np.exp(_token_losses(logits, targets).mean()), rel=1e-5
    )


def test_classification_report_matches_a_hand_computed_example():
    from tfllm.metrics import classification_report, confusion_matrix_markdown

    labels = [0, 0, 0, 1, 1, 2]
    predictions = [0, 0, 1, 1, 2, 1]
    report = classification_report(labels, predictions, ["a", "b", "c"])
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 1, 0]]
    assert report["accuracy"] == pytest.approx(3 / 6)
    # a: p 2/2, r 2/3, f1 0.8; b: p 1/3, r 1/2, f1 0.4; c: never right, f1 0.
    assert report["per_class"]["a"]["f1"] == pytest.approx(0.8)
    assert report["per_class"]["b"]["f1"] == pytest.approx(0.4)
    assert report["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["macro_f1"] == pytest.approx((0.8 + 0.4 + 0.0) / 3)
    assert "| **b** | 0 | 1 | 1 |" in confusion_matrix_markdown(report)


def test_perfect_and_constant_predictions():
    from tfllm.metrics import classification_report

    labels = np.array([0, 1, 2, 2, 1])
    perfect = classification_report(labels, labels, ["x", "y", "z"])
    assert perfect["accuracy"] == perfect["macro_f1"] == 1.0
    constant = classification_report(labels, np.full(5, 2), ["x", "y", "z"])
    # Only "z" is ever predicted: precision 2/5, recall 1, F1 4/7; the others 0.
    assert constant["macro_f1"] == pytest.approx((4 / 7) / 3)
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\)"):
        classification_report([0, 3], [0, 1], ["x", "y", "z"])
