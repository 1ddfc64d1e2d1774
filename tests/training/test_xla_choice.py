"""`jit_compile="auto"`: XLA or not, timed on this machine before a run trains, without
touching the run (it trains exactly as with its choice written out); recorded in the run's
config.json and reused on resuming; refused or fallen back from where it cannot measure."""

import dataclasses
import json
import random
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfllm.runs import RunDirectory
from tfllm.training import (
    CheckpointError,
    TrainingConfig,
    compile_language_model,
    train_and_evaluate,
)
from tfllm.training.classification import compile_classifier
from tfllm.training.resuming import _training_differences
from tfllm.training.xla_choice import (
    JitChoice,
    chosen_jit_compile,
    measure_jit_compile,
    recorded_jit_compile,
)
from tests.training.tiny_runs import CORPUS, TOKENIZER, tiny_gpt

AUTO = TrainingConfig(sequence_length=16, batch_size=4, steps=4, steps_per_epoch=2,
                      warmup_steps=1, jit_compile="auto", validation_batches=2)

pytestmark = pytest.mark.xdist_group("xla_choice")


def _train(run, config=AUTO):
    lines = []
    train_and_evaluate(tiny_gpt, CORPUS, TOKENIZER, config, run, sample_length=0,
                       print_function=lines.append, verbose=0)
    return lines


def _weights(run):
    return [weight.numpy() for weight in RunDirectory(run).load_model().weights]


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("auto") / "run"
    return run, _train(run)


def test_auto_times_both_and_records_what_it_chose(auto_run):
    run, lines = auto_run
    saved = json.loads((run / "config.json").read_text())
    assert saved["training"]["jit_compile"] == "auto"
    choice = saved["jit_compile_choice"]
    assert choice["how"] == "measured"
    seconds = choice["seconds_per_step"]
    assert set(seconds) == {"xla", "no_xla"} and all(value > 0 for value in seconds.values())
    # The faster one is chosen, and the run says so in one line with both times.
    assert choice["jit_compile"] == (seconds["xla"] < seconds["no_xla"])
    said = [line for line in lines if line.startswith("XLA or not, measured")]
    assert len(said) == 1
    assert lines[lines.index(said[0]) - 1].startswith("Timing training steps with and without")
    assert f"(timed in {choice['seconds_timing']:.0f} s)" in said[0]
    chosen = "with XLA" if choice["jit_compile"] else "without XLA"
    assert f"{1000 * seconds['xla']:.1f} ms a training step with XLA" in said[0]
    assert f"training {chosen}" in said[0]
    # The HParams dashboard shows the setting ("auto") and what it resolved to.
    from tensorboard.backend.event_processing import event_multiplexer
    from tensorboard.plugins.hparams import metadata

    logs = event_multiplexer.EventMultiplexer()
    logs.AddRunsFromDirectory(str(run / "logs"))
    logs.Reload()
    session = metadata.parse_session_start_info_plugin_data(
        logs.PluginRunToTagToContent(metadata.PLUGIN_NAME)["."][
            metadata.SESSION_START_INFO_TAG])
    values = {name: getattr(value, value.WhichOneof("kind"))
              for name, value in session.hparams.items()}
    assert values["training.jit_compile"] == "auto"
    assert values["xla"] is choice["jit_compile"]


def test_an_auto_run_trains_exactly_as_its_choice_written_out(auto_run, tmp_path):
    """Timing throwaway copies leaves the run's own model and random state alone."""
    run, _ = auto_run
    chosen = json.loads((run / "config.json").read_text())["jit_compile_choice"]["jit_compile"]
    explicit = tmp_path / "explicit"
    lines = _train(explicit, dataclasses.replace(AUTO, jit_compile=chosen))
    assert not any("XLA or not" in line or "Timing training steps" in line for line in lines)
    for auto_weight, explicit_weight in zip(_weights(run), _weights(explicit), strict=True):
        np.testing.assert_array_equal(auto_weight, explicit_weight)


def _interrupted_copy(run, destination):
    """`run` as a kill after its first epoch leaves it: the first checkpoint only."""
    shutil.copytree(run, destination)
    for name in ("model.keras", "metrics.json"):
        (destination / name).unlink()
    shutil.rmtree(destination / "checkpoints" / "step-00000004")
    return destination


def test_a_resumed_auto_run_keeps_its_recorded_choice_without_timing(
        auto_run, tmp_path, monkeypatch):
    run, _ = auto_run
    interrupted = _interrupted_copy(run, tmp_path / "interrupted")
    saved = json.loads((interrupted / "config.json").read_text())
    # Record the other choice: the resumed run must compile as recorded, not as timed now.
    flipped = not saved["jit_compile_choice"]["jit_compile"]
    saved["jit_compile_choice"]["jit_compile"] = flipped
    (interrupted / "config.json").write_text(json.dumps(saved))

    def refuse(*arguments, **keywords):
        raise AssertionError("a resumed run timed XLA again")

    monkeypatch.setattr("tfllm.training.xla_choice.measure_jit_compile", refuse)
    lines = _train(interrupted)
    assert any("Resuming" in line and "step 2" in line for line in lines)
    chosen = "with XLA" if flipped else "without XLA"
    assert f"Training {chosen}, as this run chose when it started." in lines
    # The recorded choice is kept in config.json as it was.
    kept = json.loads((interrupted / "config.json").read_text())["jit_compile_choice"]
    assert kept == saved["jit_compile_choice"]


def test_resuming_compares_auto_as_the_choice_it_made(auto_run, tmp_path):
    run, _ = auto_run
    chosen = json.loads((run / "config.json").read_text())["jit_compile_choice"]["jit_compile"]
    interrupted = _interrupted_copy(run, tmp_path / "interrupted")
    # Its choice written out resumes it...
    lines = _train(interrupted, dataclasses.replace(AUTO, jit_compile=chosen))
    assert any("Resuming" in line for line in lines)
    # ...the other one is refused, and the message says what the run chose.
    other = _interrupted_copy(run, tmp_path / "other")
    with pytest.raises(CheckpointError, match=rf"jit_compile: saved 'auto' \(it chose "
                                              rf"{chosen}\), now {not chosen}"):
        _train(other, dataclasses.replace(AUTO, jit_compile=not chosen))


def test_differences_of_jit_compile_settings():
    chose_xla = JitChoice(True, "measured")
    # A run started with XLA on (before "auto" existed) resumes under "auto".
    assert _training_differences({"jit_compile": True}, {"jit_compile": "auto"},
                                 recorded_jit_compile({"training": {"jit_compile": True}})) == []
    assert _training_differences({"jit_compile": "auto"}, {"jit_compile": True}, chose_xla) == []
    assert _training_differences({"jit_compile": "auto"}, {"jit_compile": "auto"}, None) == []
    assert _training_differences({"jit_compile": "auto"}, {"jit_compile": False},
                                 chose_xla) == ["jit_compile: saved 'auto' (it chose True), "
                                                "now False"]
    assert _training_differences({"jit_compile": True, "steps": 4},
                                 {"jit_compile": False, "steps": 4}) == [
        "jit_compile: saved True, now False"]


def test_timing_stops_early_only_when_the_two_are_clearly_apart():
    from tfllm.training.xla_choice import _separated

    assert _separated([0.10, 0.11], [0.13, 0.15]) and _separated([0.13, 0.15], [0.10, 0.11])
    assert not _separated([0.10, 0.12], [0.13, 0.15])  # 0.12 * 1.1 > 0.13
    assert not _separated([0.10, 0.20], [0.15, 0.16])


def test_recorded_choices():
    assert recorded_jit_compile({"training": {"jit_compile": False}}) == JitChoice(False, "set")
    assert recorded_jit_compile({"training": {"jit_compile": "auto"},
                                 "jit_compile_choice": {"jit_compile": True,
                                                        "how": "measured"}}).jit_compile is True
    # Nothing (or something unreadable) recorded: None, and the run times again.
    assert recorded_jit_compile({"training": {"jit_compile": "auto"}}) is None
    assert recorded_jit_compile({"training": {"jit_compile": "auto"},
                                 "jit_compile_choice": {"jit_compile": "yes"}}) is None
    choice = JitChoice(True, "measured", {"xla": 0.1, "no_xla": 0.2}, seconds_timing=3.5)
    assert JitChoice.from_json(json.loads(json.dumps(choice.as_json()))) == choice


def test_compile_language_model_times_a_model_of_its_own(capsys):
    model = tiny_gpt()
    state = random.getstate()
    compile_language_model(model, AUTO)
    assert random.getstate() == state  # the copies' seeds came from a restored generator
    choice = chosen_jit_compile(model)
    assert choice.how == "measured" and model.jit_compile == choice.jit_compile
    assert not model.built, "the model itself was built (or trained) while timing"
    assert "XLA or not, measured on this machine" in capsys.readouterr().out


@keras.saving.register_keras_serializable(package="test_xla_choice")
class _HostRoundTrip(keras.layers.Layer):
    """Doubles its input through NumPy: a step XLA cannot compile."""

    def call(self, inputs):
        doubled = tf.numpy_function(lambda array: array * 2, [inputs], inputs.dtype)
        return tf.ensure_shape(doubled, inputs.shape)


def test_a_step_xla_cannot_compile_trains_without_it():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(_HostRoundTrip()(inputs)))
    lines = []

    def compile_model(copy, config, strategy):
        copy.compile(optimizer="sgd", loss="mse", jit_compile=config.jit_compile)

    batch = (np.ones((4, 4), "float32"), np.ones((4, 1), "float32"))
    choice = measure_jit_compile(model, compile_model, AUTO, tf.distribute.get_strategy(),
                                 batch, print_function=lines.append)
    assert choice.jit_compile is False and choice.how == "XLA failed"
    assert choice.detail  # the error, named
    assert lines[0].startswith("Timing training steps with and without XLA")
    assert lines[1:] == [choice.describe()] and "XLA could not compile" in lines[1]


class _Unregistered(keras.layers.Layer):
    def call(self, inputs):
        return inputs


def test_a_model_that_cannot_be_copied_trains_without_xla_and_says_why():
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(1)(_Unregistered()(inputs)))
    lines = []
    batch = (np.ones((4, 4), "float32"), np.ones((4, 1), "float32"))
    choice = measure_jit_compile(model, None, AUTO, tf.distribute.get_strategy(), batch,
                                 print_function=lines.append)
    assert (choice.jit_compile, choice.how) == (False, "not copyable")
    assert "_Unregistered" in choice.detail
    assert lines[-1].startswith("Could not copy the model to time XLA")


def test_auto_without_a_choice_is_refused_in_plain_words():
    from tfllm.models import BertClassifier, BertEncoder

    model = BertClassifier(BertEncoder(vocabulary_size=50, max_length=8, num_layers=1,
                                       num_heads=2, hidden_dim=8, intermediate_dim=16),
                           num_classes=2)
    with pytest.raises(ValueError, match="jit_compile='auto' is chosen by timing"):
        compile_classifier(model, AUTO)


def test_jit_compile_must_be_true_false_or_auto():
    with pytest.raises(ValueError, match="`jit_compile` must be True, False or 'auto'"):
        TrainingConfig(jit_compile="yes")


@pytest.mark.parametrize("arguments, expected", [
    ([], "auto"), (["--size", "tiny"], True), (["--xla"], True), (["--xla", "on"], True),
    (["--xla", "off"], False), (["--no-xla"], False), (["--xla", "auto"], "auto"),
    (["--model", "lstm"], "auto"), (["--model", "lstm", "--size", "tiny"], False),
])
def test_the_command_line_xla_option(arguments, expected):
    from tfllm.cli.options import resolve_model_kind, training_settings
    from tfllm.cli.parser import build_parser

    args = build_parser().parse_args(["train", *arguments])
    resolve_model_kind(args)
    _, training = training_settings(args)
    assert training.get("jit_compile", "auto") == expected
    TrainingConfig(**training)  # accepted
