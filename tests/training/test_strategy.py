"""Choosing a tf.distribute strategy by name, and training under MirroredStrategy.

Logical CPU devices must be configured before TensorFlow initialises, so the
MirroredStrategy job runs in a fresh process (tests/training/distributed_jobs.py); its
single-replica reference runs here, on the same initial weights and global batches.
"""

import glob
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training import distributed_jobs as jobs
from tfllm.models import GPT
from tfllm.training.strategy import (
    describe_strategy,
    jit_compile_for,
    read_tf_config,
    resolve_strategy,
    use_logical_cpus,
    with_data_sharding,
)

REPOSITORY = Path(__file__).resolve().parents[2]
# One xdist worker runs the tests that share the module's trained jobs, so each is
# trained once (setup.cfg: --dist loadgroup).
SHARED_JOBS = pytest.mark.xdist_group("strategy_jobs")
HAS_LOCAL_TPU = bool(glob.glob("/dev/accel[0-9]*"))


@pytest.fixture
def no_cluster_environment(monkeypatch):
    for variable in ("TF_CONFIG", "TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS"):
        monkeypatch.delenv(variable, raising=False)


def test_cpu_is_the_default_one_replica_strategy():
    strategy = resolve_strategy("cpu")
    assert strategy is tf.distribute.get_strategy()
    assert describe_strategy(strategy) == "default strategy: 1 replica, 1 worker"


@pytest.mark.skipif(HAS_LOCAL_TPU, reason="this machine has a TPU")
def test_auto_on_one_cpu_is_the_default_strategy(no_cluster_environment):
    if tf.config.list_logical_devices("GPU") or len(tf.config.list_logical_devices("CPU")) > 1:
        pytest.skip("this process sees more than one device")
    assert resolve_strategy() is tf.distribute.get_strategy()


def test_auto_with_tf_config_means_multi_worker(no_cluster_environment, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(ValueError, match="TF_CONFIG is malformed"):
        resolve_strategy("auto")


def test_unknown_name_lists_the_choices():
    choices = "auto, cpu, mirrored, multi_worker, tpu"
    with pytest.raises(ValueError, match=f"'gpu'; choose one of {choices}"):
        resolve_strategy("gpu")


def test_multi_worker_without_tf_config_shows_an_example(no_cluster_environment):
    with pytest.raises(ValueError, match="needs the TF_CONFIG environment variable") as error:
        resolve_strategy("multi_worker")
    example = str(error.value).split("TF_CONFIG=", 1)[1].split("\n")[0].strip("'")
    assert read_tf_config_from(example)["task"] == {"type": "worker", "index": 0}


def read_tf_config_from(text):
    """`read_tf_config` on `text` as TF_CONFIG."""
    saved = os.environ.get("TF_CONFIG")
    os.environ["TF_CONFIG"] = text
    try:
        return read_tf_config()
    finally:
        if saved is None:
            del os.environ["TF_CONFIG"]
        else:
            os.environ["TF_CONFIG"] = saved


TASK = '"task": {"type": "worker", "index": 0}'


@pytest.mark.parametrize(
    "tf_config, problem",
    [
        ("{not json", "not valid JSON"),
        ('["worker"]', "must be a JSON object"),
        ("{" + TASK + "}", 'needs a "cluster" object'),
        ('{"cluster": {"worker": "127.0.0.1:1"}, ' + TASK + "}", "non-empty list"),
        ('{"cluster": {"worker": ["127.0.0.1"]}, ' + TASK + "}", '"host:port"'),
        ('{"cluster": {"ps": ["127.0.0.1:1"]}, ' + TASK + "}", 'needs "worker"'),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}}', 'needs a "task" object'),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "chief", "index": 0}}',
         'task type "chief" is not in the cluster'),
        ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}',
         'task index 1 is not a position in cluster["worker"]'),
    ],
)
def test_malformed_tf_config_is_explained(monkeypatch, tf_config, problem):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match="TF_CONFIG is malformed") as error:
        resolve_strategy("multi_worker")
    assert problem in str(error.value)
    assert '"task": {"type": "worker", "index": 0}' in str(error.value)  # the example


def test_well_formed_tf_config_is_read():
    config = read_tf_config_from(
        '{"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, '
        '"task": {"type": "worker", "index": 1}}'
    )
    assert config["cluster"]["worker"] == ["b:1", "c:1"]


@pytest.mark.skipif(HAS_LOCAL_TPU, reason="this machine has a TPU")
def test_tpu_without_a_tpu_says_so(no_cluster_environment):
    with pytest.raises(RuntimeError, match="No TPU found: set TPU_NAME"):
        resolve_strategy("tpu")


def test_logical_cpus_after_devices_exist_are_refused():
    tf.constant(0.0)  # TensorFlow has initialised its devices
    with pytest.raises(RuntimeError, match=r"use_logical_cpus\(3\) came too late"):
        use_logical_cpus(3)
    use_logical_cpus(len(tf.config.list_logical_devices("CPU")))  # what is there: fine


@pytest.mark.parametrize("count", [0, -2, 2.0, True, "2"])
def test_logical_cpu_count_must_be_a_positive_integer(count):
    with pytest.raises(ValueError, match="`count` must be a positive integer"):
        use_logical_cpus(count)


def test_data_sharding_keeps_the_batches_and_asks_for_the_data_policy():
    dataset = tf.data.Dataset.range(6).batch(2)
    sharded = with_data_sharding(dataset)
    policy = sharded.options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA
    assert [list(b) for b in sharded.as_numpy_iterator()] == [[0, 1], [2, 3], [4, 5]]


def test_xla_is_kept_for_one_replica():
    assert jit_compile_for(resolve_strategy("cpu")) is True
    assert jit_compile_for(resolve_strategy("cpu"), requested=False) is False


@pytest.fixture(scope="module")
def initial_weights():
    return jobs.build_model().get_weights()


@pytest.fixture(scope="module")
def single_replica(initial_weights):
    """The tiny job on one replica: `fit` with validation, then `evaluate`."""
    return jobs.train(resolve_strategy("cpu"), initial_weights)


@SHARED_JOBS
def test_distribute_overrides_change_nothing_on_one_device(initial_weights, single_replica):
    """`LanguageModel`'s tf.distribute overrides against Keras's own methods: the same
    numbers, bit for bit."""
    upstream = jobs.train(resolve_strategy("cpu"), initial_weights,
                          model_class=jobs.GPTWithUpstreamKeras)
    for key in ("loss", "val_loss", "evaluate_loss"):
        assert single_replica[key] == upstream[key], key
    for ours, theirs in zip(single_replica["weights"], upstream["weights"]):
        np.testing.assert_array_equal(ours, theirs)


@pytest.fixture(scope="module")
def mirrored_job(tmp_path_factory, initial_weights):
    """The tiny job under MirroredStrategy on two logical CPUs, in a fresh process."""
    directory = tmp_path_factory.mktemp("mirrored")
    np.savez(directory / "initial_weights.npz", *initial_weights)
    completed = subprocess.run(
        [sys.executable, "-m", "tests.training.distributed_jobs", "mirrored",
         str(directory / "mirrored"), str(directory / "initial_weights.npz")],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY), "CUDA_VISIBLE_DEVICES": ""},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    figures = json.loads((directory / "mirrored.json").read_text())
    with np.load(directory / "mirrored.npz") as arrays:
        weights = [arrays[f"weight_{index}"] for index in range(len(arrays.files) // 2)]
        figures["clipped_weights"] = [arrays[f"clipped_weight_{index}"]
                                      for index in range(len(arrays.files) // 2)]
    figures["saved_model"] = directory / "mirrored.keras"
    return figures, weights


@pytest.mark.slow
@SHARED_JOBS
def test_mirrored_on_two_logical_cpus_trains_like_one_replica(mirrored_job, single_replica):
    figures, weights = mirrored_job
    assert figures["description"] == "MirroredStrategy: 2 replicas (CPU:0, CPU:1), 1 worker"
    np.testing.assert_allclose(figures["loss"], single_replica["loss"], rtol=1e-5)
    np.testing.assert_allclose(figures["val_loss"], single_replica["val_loss"], rtol=1e-5)
    assert figures["evaluate_loss"] == pytest.approx(single_replica["evaluate_loss"], rel=1e-5)
    for mirrored, single in zip(weights, single_replica["weights"]):
        np.testing.assert_allclose(mirrored, single, atol=1e-5)
    assert figures["loss"][-1] < figures["loss"][0]  # it trained


@pytest.mark.slow
@SHARED_JOBS
def test_model_trained_under_mirrored_saves_and_loads_on_one_device(mirrored_job):
    figures, weights = mirrored_job
    restored = keras.saving.load_model(figures["saved_model"])
    assert type(restored) is GPT and restored.compiled
    for loaded, trained in zip(restored.get_weights(), weights):
        np.testing.assert_array_equal(loaded, trained)
    loss = restored.evaluate(jobs.validation_data(), verbose=0)
    assert loss == pytest.approx(figures["evaluate_loss"], rel=1e-5)


@pytest.mark.slow
@SHARED_JOBS
def test_auto_chooses_mirrored_over_configured_logical_cpus(mirrored_job):
    figures, _ = mirrored_job
    assert figures["auto_description"] == figures["description"]


@pytest.mark.slow
@SHARED_JOBS
def test_keras_still_averages_token_ids_to_build_under_mirrored(mirrored_job):
    """Fails when upstream Keras builds from the batch's real dtypes under
    MirroredStrategy: then `LanguageModel._maybe_symbolic_build` may go (see the comment
    in tfllm/models/base.py)."""
    figures, _ = mirrored_job
    error = figures["upstream_build_error"]
    assert error is not None, "Keras now builds GPT under MirroredStrategy by itself"
    assert "must be integer token ids" in error and "got dtype float32" in error, error


@pytest.mark.slow
@SHARED_JOBS
def test_xla_still_fails_across_devices_so_it_is_turned_off(mirrored_job):
    """Fails when Keras's XLA-compiled step works under MirroredStrategy: then
    `jit_compile_for` may keep XLA for several replicas too."""
    figures, _ = mirrored_job
    assert figures["jit_compile"] is False
    assert figures["xla_error"] is not None, "XLA now works under MirroredStrategy"
    assert "Trying to access resource" in figures["xla_error"], figures["xla_error"]


@pytest.mark.slow
@SHARED_JOBS
def test_keras_still_clips_each_replicas_share_of_the_gradient(mirrored_job, initial_weights,
                                                               single_replica):
    """Keras 3 applies `global_clipnorm` to each replica's share of the gradient before
    summing the shares (keras/src/optimizers/base_optimizer.py, `_backend_apply_gradients`;
    tensorflow/tensorflow#33929 on why that is the wrong place), so once clipping acts,
    two replicas train differently from one. Fails when upstream clips the summed
    gradient: then `TrainingConfig.clip_norm` means the same under every strategy."""
    figures, _ = mirrored_job
    clipped_single = jobs.train(resolve_strategy("cpu"), initial_weights,
                                config=jobs.CLIPPED_TRAINING)
    assert clipped_single["loss"] != single_replica["loss"]  # clipping acted
    difference = max(np.abs(mirrored - single).max() for mirrored, single in
                     zip(figures["clipped_weights"], clipped_single["weights"]))
    assert difference > 1e-3, "clipping now gives the same weights on 1 and 2 replicas"
