"""Running a job again never destroys its run: a finished run is evaluated, not retrained
or re-saved; what cannot be continued safely is refused; a diverged run keeps its last good
checkpoint as its model. Tiny GPT runs, in this process (one shared finished run)."""

import json
import shutil

import keras
import numpy as np
import pytest

from tfllm.data.datasets import encode_documents, language_model_dataset
from tfllm.runs import RunDirectory
from tfllm.training import (
    CheckpointError,
    TrainingConfig,
    TrainingDivergedError,
    TrainingJob,
    compile_language_model,
    held_out_loss,
    train_and_evaluate,
)
from tfllm.training.checkpoints import load_checkpoint_model
from tfllm.training.job import finish_job, fit_hook, run_job
from tests.test_locks import Holder
from tests.training.tiny_runs import CORPUS, TEXT, TOKENIZER, tiny_gpt

CONFIG = TrainingConfig(sequence_length=16, batch_size=4, steps=4, steps_per_epoch=2,
                        warmup_steps=1, jit_compile=False, validation_batches=2)


def _train(run, **kwargs):
    lines = []
    metrics = train_and_evaluate(tiny_gpt, CORPUS, TOKENIZER, CONFIG, run, sample_length=0,
                                 print_function=lines.append, verbose=0, **kwargs)
    return metrics, lines


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    _train(run)
    return run


@pytest.fixture
def copy(finished, tmp_path):
    """A copy of the finished run, to change as a test likes."""
    return RunDirectory(shutil.copytree(finished, tmp_path / "run"))


def _files(run):
    return {name: (run.path / name).read_bytes()
            for name in ("model.keras", "metrics.json", "history.csv", "config.json",
                         "tokenizer.json")}


def test_a_finished_run_run_again_is_evaluated_not_rewritten(copy):
    """Its model.keras is what is evaluated (here the step-2 checkpoint's model, as a
    classifier keeps its best epoch), not its last checkpoint; no file but metrics.json is
    written, and that keeps the recorded training time and speed."""
    best = load_checkpoint_model(copy.checkpoints / "step-00000002")
    copy.save_model(best)
    before = _files(copy)
    expected = held_out_loss(best, encode_documents(TOKENIZER, CORPUS.validation), 16, 4)
    metrics, lines = _train(copy.path)
    assert any("has finished training; evaluating its model.keras again" in line
               for line in lines)
    after = _files(copy)
    assert {name: after[name] == before[name] for name in before} == {
        "model.keras": True, "metrics.json": False, "history.csv": True, "config.json": True,
        "tokenizer.json": True}
    assert metrics["validation_loss"] == pytest.approx(expected, rel=1e-5)
    recorded = json.loads(before["metrics.json"])
    for name in ("training_seconds", "tokens_per_second", "resumed_from_step",
                 "train_loss_last_epoch"):
        assert metrics[name] == recorded[name] and recorded[name] is not None, name
    assert json.loads(after["metrics.json"]) == json.loads(json.dumps(metrics))


def test_what_would_overwrite_a_finished_model_is_refused(copy):
    before = _files(copy)
    with pytest.raises(CheckpointError) as error:
        _train(copy.path, resume=False)
    assert str(error.value) == (
        f"{copy.path} already holds a trained model (model.keras); starting it anew would "
        f"overwrite it. Use another run directory (--run-dir), or delete {copy.path} to "
        "train it again.")
    shutil.rmtree(copy.checkpoints)
    with pytest.raises(CheckpointError, match="holds a finished model but no checkpoints/"):
        _train(copy.path)
    assert _files(copy) == before


def test_a_damaged_model_file_is_replaced_by_the_last_checkpoints_model(copy):
    copy.model_file.write_bytes(bytes(copy.model_file.stat().st_size))
    _, lines = _train(copy.path)
    assert any(line.startswith(f"{copy.model_file} is damaged (") for line in lines)
    expected = load_checkpoint_model(copy.checkpoints / "step-00000004").get_weights()
    for weight, value in zip(copy.load_model().get_weights(), expected):
        np.testing.assert_array_equal(weight, value)


class NaNWeightsAtStep(keras.callbacks.Callback):
    """What a diverging optimiser does, at a known step: a weight becomes NaN before
    global step `step` (counted from 1)."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) == self.step - 1:
            weight = self.model.trainable_weights[0]
            weight.assign(np.full(weight.shape, np.nan, "float32"))


def test_divergence_keeps_the_last_good_checkpoint_and_valid_json(tmp_path):
    run = RunDirectory(tmp_path / "run")
    ids = TOKENIZER.encode_text(TEXT)
    job = TrainingJob(
        create_model=tiny_gpt, compile_model=compile_language_model,
        fit=fit_hook(lambda step: language_model_dataset(ids, 16, 4, shuffle=True, seed=1,
                                                         repeat=True).skip(step),
                     None, CONFIG, 0),
        tokens_per_step=64, callbacks=(NaNWeightsAtStep(3),))
    lines = []
    outcome = run_job(job, CONFIG, TOKENIZER, run, print_function=lines.append)
    with pytest.raises(TrainingDivergedError) as error:
        finish_job(outcome, TOKENIZER, {"train_loss_last_epoch": outcome.losses[-1]},
                   print_function=lines.append)
    message = str(error.value)
    assert message.startswith("training diverged at step 3 (loss nan); the model saved is "
                              "that of its last good checkpoint (step 2). Try a lower "
                              "learning rate (--learning-rate; this run: 0.001)")
    assert "\n" not in message
    metrics = json.loads(run.metrics_file.read_text(),
                         parse_constant=lambda name: pytest.fail(f"{name} in metrics.json"))
    assert metrics["diverged"] == {"step": 3, "loss": "nan", "kept_step": 2}
    assert metrics["train_loss_last_epoch"] is None
    expected = load_checkpoint_model(run.checkpoints / "step-00000002").get_weights()
    for weight, value in zip(run.load_model().get_weights(), expected):
        assert np.isfinite(weight).all()
        np.testing.assert_array_equal(weight, value)
    holder = Holder(run.lock_file)  # the job released the run's lock
    try:
        assert holder.answer == ["locked"]
    finally:
        holder.kill()
