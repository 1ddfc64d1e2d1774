import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator, event_multiplexer
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

import tfllm.training.callbacks as callbacks_module
from tfllm.data import CharacterTokenizer
from tfllm.generation import generate_text
from tfllm.metrics import Perplexity
from tfllm.models import GPT
from tfllm.training.callbacks import TextSamples, TrainingSummaries
from tfllm.training.hparams import HParamsSummary, flatten_hparams
from tfllm.training.schedules import WarmupCosineDecay

TEXT = "to be, or not to be, that is the question: whether 'tis nobler in the mind. " * 4
BATCH, LENGTH, STEPS_PER_EPOCH, EPOCHS, UPDATE_FREQ = 4, 16, 3, 2, 2
HPARAMS = {"model": {"num_layers": 2, "position_encoding": "learned"}, "batch_size": BATCH,
           "peak_learning_rate": 1e-2, "jit_compile": False}


class _FakeClock:
    """Time that passes only when told: the first step takes 100 s, the others 1 s."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class _AdvanceClock(keras.callbacks.Callback):
    """Placed before `TrainingSummaries`, so its batch end comes first."""

    def __init__(self, clock):
        super().__init__()
        self.clock, self.steps = clock, 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        self.clock.now += 100.0 if self.steps == 1 else 1.0


class _RecordLosses(keras.callbacks.Callback):
    """Keras' running-mean `loss` after every step, grouped by epoch."""

    def on_train_begin(self, logs=None):
        self.running_means = []

    def on_epoch_begin(self, epoch, logs=None):
        self.running_means.append([])

    def on_train_batch_end(self, batch, logs=None):
        self.running_means[-1].append(logs["loss"])


def _windows(ids, count):
    return np.stack([ids[i * LENGTH: i * LENGTH + LENGTH + 1] for i in range(count)])


def _train(log_dir, gpt_config, extra_callbacks=(), samples=True, hparams=True):
    """Trains a tiny GPT on a few windows of text with the TensorBoard callbacks."""
    tokenizer = CharacterTokenizer.from_texts([TEXT])
    ids = tokenizer.encode_text(TEXT)
    train, validation = _windows(ids, BATCH * STEPS_PER_EPOCH), _windows(ids[50:], BATCH)
    model = GPT(**{**gpt_config, "vocabulary_size": tokenizer.vocabulary_size})
    schedule = WarmupCosineDecay(1e-2, warmup_steps=2, decay_steps=10)
    model.compile(optimizer=keras.optimizers.AdamW(schedule), metrics=[Perplexity()],
                  jit_compile=False)
    clock, recorder = _FakeClock(), _RecordLosses()

    def sample():
        return generate_text(model, tokenizer, ["to", "be"], max_new_tokens=6, temperature=0,
                             seed=1)

    hparams_summary = HParamsSummary(log_dir, HPARAMS,
                                     metrics=["val_loss", "val_perplexity", "loss", "test_loss"])
    callbacks = [*extra_callbacks, _AdvanceClock(clock), recorder,
                 TrainingSummaries(log_dir, tokens_per_step=BATCH * LENGTH,
                                   update_freq=UPDATE_FREQ)]
    callbacks += [TextSamples(log_dir, sample)] if samples else []
    callbacks += [hparams_summary] if hparams else []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(callbacks_module, "perf_counter", clock)
        history = model.fit(train[:, :-1], train[:, 1:], batch_size=BATCH, epochs=EPOCHS,
                            validation_data=(validation[:, :-1], validation[:, 1:]),
                            shuffle=False, verbose=0, callbacks=callbacks)
    if hparams:
        hparams_summary.write_metrics({"test_loss": 1.25})
        hparams_summary.close()
    return {"log_dir": Path(log_dir), "history": history.history, "model": model,
            "schedule": schedule, "running_means": recorder.running_means,
            "final_sample": sample()}


_RUNS = {}
# The tests that read the shared run go to one xdist worker (--dist loadgroup).
SHARED_RUN = pytest.mark.xdist_group("callbacks_run")


@pytest.fixture
def run(tmp_path_factory, tiny_gpt_config):
    """One training run shared by the tests that read its logs (trained once)."""
    if "run" not in _RUNS:
        keras.utils.set_random_seed(1234)
        _RUNS["run"] = _train(tmp_path_factory.mktemp("run") / "logs", tiny_gpt_config)
    return _RUNS["run"]


def _read_logs(log_dir):
    """Every run under `log_dir`, read by TensorBoard's own reader, keeping all points."""
    multiplexer = event_multiplexer.EventMultiplexer(
        size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0}
    )
    multiplexer.AddRunsFromDirectory(str(log_dir))
    multiplexer.Reload()
    return multiplexer


def _series(multiplexer, run, tag):
    """`{step: value}` of a summary written with TF 2 `tf.summary`."""
    return {event.step: tensor_util.make_ndarray(event.tensor_proto)
            for event in multiplexer.Tensors(run, tag)}


def _step_losses(running_means):
    """Each step's own loss, recovered from Keras' running means (equal batches)."""
    losses = []
    for means in running_means:
        sums = np.arange(1, len(means) + 1) * np.asarray(means, "float64")
        losses.extend(np.diff(sums, prepend=0.0))
    return np.asarray(losses)


@SHARED_RUN
def test_logs_have_train_validation_samples_and_the_session_folder(run):
    runs = set(_read_logs(run["log_dir"]).Runs())
    assert runs == {".", "train", "validation", "samples"}


@SHARED_RUN
def test_step_loss_is_the_mean_over_the_steps_since_the_last_write(run):
    """Written every 2 steps and at each epoch's last step (3 steps per epoch)."""
    logs = _read_logs(run["log_dir"])
    step_losses = _step_losses(run["running_means"])
    intervals = {2: [1, 2], 3: [3], 4: [4], 6: [5, 6]}
    loss = _series(logs, "train", "step/loss")
    perplexity = _series(logs, "train", "step/perplexity")
    assert sorted(loss) == sorted(intervals) == sorted(perplexity)
    for step, steps in intervals.items():
        assert float(loss[step]) == pytest.approx(step_losses[np.array(steps) - 1].mean(), rel=1e-4)
        assert float(perplexity[step]) == pytest.approx(math.exp(float(loss[step])), rel=1e-5)


@SHARED_RUN
def test_learning_rate_is_the_schedule_at_the_step(run):
    rates = _series(_read_logs(run["log_dir"]), "train", "step/learning_rate")
    assert sorted(rates) == [2, 3, 4, 6]
    for step, rate in rates.items():
        assert float(rate) == pytest.approx(float(run["schedule"](step)), rel=1e-6)


@SHARED_RUN
def test_tokens_per_second_leaves_out_the_compiling_step(run):
    """The clock gives 100 s to the first step and 1 s to every other one."""
    speeds = _series(_read_logs(run["log_dir"]), "train", "step/tokens_per_second")
    assert sorted(speeds) == [2, 3, 4, 6]
    for speed in speeds.values():
        assert float(speed) == pytest.approx(BATCH * LENGTH)


@SHARED_RUN
def test_epoch_scalars_of_train_and_validation_share_tags(run):
    """Same tags in train/ and validation/: TensorBoard draws them on one chart."""
    logs, history = _read_logs(run["log_dir"]), run["history"]
    epoch_ends = [STEPS_PER_EPOCH * (epoch + 1) for epoch in range(EPOCHS)]
    for folder, prefix in (("train", ""), ("validation", "val_")):
        loss = _series(logs, folder, "epoch/loss")
        perplexity = _series(logs, folder, "epoch/perplexity")
        assert sorted(loss) == sorted(perplexity) == epoch_ends
        for step, expected_loss, metric in zip(
            epoch_ends, history[prefix + "loss"], history[prefix + "perplexity"]
        ):
            assert float(loss[step]) == pytest.approx(expected_loss, rel=1e-6)
            assert float(perplexity[step]) == pytest.approx(math.exp(expected_loss), rel=1e-5)
            # The Perplexity metric measured the same thing its own way.
            assert float(perplexity[step]) == pytest.approx(metric, rel=1e-4)


@SHARED_RUN
def test_text_samples_hold_the_generated_text(run):
    samples = _series(_read_logs(run["log_dir"]), "samples", "samples")
    assert sorted(samples) == [3, 6]
    last = [text.decode("utf-8") for text in samples[6]]
    # Each sample is a Markdown code block: every line indented by four spaces.
    assert ["\n".join(line[4:] for line in text.split("\n")) for text in last] == (
        run["final_sample"]
    )
    assert all(line.startswith("    ") for text in last for line in text.split("\n"))


@SHARED_RUN
def test_hparams_dashboard_gets_hyperparameters_and_final_metrics(run):
    logs, history = _read_logs(run["log_dir"]), run["history"]
    content = logs.PluginRunToTagToContent(hparams_metadata.PLUGIN_NAME)["."]
    session = hparams_metadata.parse_session_start_info_plugin_data(
        content[hparams_metadata.SESSION_START_INFO_TAG]
    )
    values = {name: getattr(value, value.WhichOneof("kind"))
              for name, value in session.hparams.items()}
    assert values == {"model.num_layers": 2, "model.position_encoding": "learned",
                      "batch_size": BATCH, "peak_learning_rate": 1e-2, "jit_compile": False}
    experiment = hparams_metadata.parse_experiment_plugin_data(
        content[hparams_metadata.EXPERIMENT_TAG]
    )
    assert sorted(info.name for info in experiment.hparam_infos) == sorted(values)
    assert [info.name.tag for info in experiment.metric_infos] == [
        "final/val_loss", "final/val_perplexity", "final/loss", "final/test_loss"
    ]
    final = {tag: _series(logs, ".", tag) for tag in logs.GetAccumulator(".").Tags()["tensors"]
             if tag.startswith("final/")}
    last_step = STEPS_PER_EPOCH * EPOCHS
    assert final == {
        "final/val_loss": {last_step: pytest.approx(history["val_loss"][-1], rel=1e-6)},
        "final/val_perplexity": {
            last_step: pytest.approx(math.exp(history["val_loss"][-1]), rel=1e-5)
        },
        "final/loss": {last_step: pytest.approx(history["loss"][-1], rel=1e-6)},
        "final/test_loss": {last_step: pytest.approx(1.25)},
    }


def test_non_chief_workers_write_nothing(tmp_path, tiny_gpt_config, monkeypatch):
    monkeypatch.setattr(callbacks_module, "is_chief", lambda: False)
    _train(tmp_path / "logs", tiny_gpt_config)
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert written == []


def test_sample_fn_must_return_text(tiny_gpt_config, tmp_path):
    model = GPT(**tiny_gpt_config)
    model.compile(jit_compile=False)
    samples = TextSamples(tmp_path, lambda: 42)
    samples.set_model(model)
    samples.on_train_begin()
    with pytest.raises(TypeError, match="sample_fn"):
        samples.on_epoch_end(0)
    samples.on_train_end()


def test_nested_hparams_become_dotted_names_tensorboard_can_hold():
    flat = flatten_hparams({"model": {"layers": np.int64(2), "dims": (4, 8)}, "seed": None,
                            "jit": True})
    assert flat == {"model.layers": 2, "model.dims": "(4, 8)", "seed": "None", "jit": True}
    assert type(flat["model.layers"]) is int


@pytest.mark.parametrize("make, name", [
    (lambda d: TrainingSummaries(d, tokens_per_step=0), "tokens_per_step"),
    (lambda d: TrainingSummaries(d, 64, update_freq="epoch"), "update_freq"),
    (lambda d: TrainingSummaries(None, 64), "log_dir"),
    (lambda d: TextSamples(d, "not a function"), "sample_fn"),
    (lambda d: TextSamples(d, lambda: "", every_epochs=0), "every_epochs"),
    (lambda d: HParamsSummary(d, [("layers", 2)]), "hparams"),
    (lambda d: HParamsSummary(d, {}, metrics="val_loss"), "metrics"),
])
def test_bad_arguments_are_named(make, name, tmp_path):
    with pytest.raises(ValueError, match=name):
        make(tmp_path)


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _post_json(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode("utf-8"),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _wait_for(check, seconds, process):
    """Calls `check()` until it returns something truthy, the process dies, or time is up."""
    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, "tensorboard exited early"
        try:
            result = check()
            if result:
                return result
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            pass
        assert time.monotonic() < deadline, f"tensorboard did not answer within {seconds} s"
        time.sleep(0.5)


@pytest.mark.slow
@SHARED_RUN
def test_tensorboard_serves_the_run_over_http(run, tmp_path):
    """A real `tensorboard` process: scalar and text tags, and the HParams session."""
    port = _free_port()
    tensorboard = Path(sys.executable).with_name("tensorboard")
    command = [str(tensorboard), "--logdir", str(run["log_dir"]), "--host", "127.0.0.1",
               "--port", str(port), "--reload_interval", "1"]
    with open(tmp_path / "tensorboard.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        try:
            base = f"http://127.0.0.1:{port}/data"
            plugins = _wait_for(lambda: _get_json(base + "/plugins_listing"), 60, process)
            assert plugins["scalars"]["enabled"] and plugins["text"]["enabled"]

            def scalar_tags():
                tags = _get_json(base + "/plugin/scalars/tags")
                return tags if {"train", "validation"} <= set(tags) else None

            tags = _wait_for(scalar_tags, 60, process)
            assert {"step/loss", "step/perplexity", "step/learning_rate",
                    "step/tokens_per_second", "epoch/loss", "epoch/perplexity"} <= set(
                tags["train"])
            assert {"epoch/loss", "epoch/perplexity"} <= set(tags["validation"])
            text_tags = _get_json(base + "/plugin/text/tags")
            assert text_tags["samples"] == ["samples"]
            groups = _post_json(base + "/plugin/hparams/session_groups", {
                "experimentName": "", "startIndex": 0, "sliceSize": 10,
                "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_RUNNING"],
            })["sessionGroups"]
            assert len(groups) == 1 and groups[0]["hparams"]["model.num_layers"] == 2
            final = {value["name"]["tag"]: value["value"] for value in groups[0]["metricValues"]}
            assert final["final/val_loss"] == pytest.approx(run["history"]["val_loss"][-1])
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)
