"""Choosing a `tf.distribute` strategy by name: the one place that knows about devices.

`resolve_strategy` turns `auto`, `cpu`, `mirrored`, `multi_worker` or `tpu` into a
`tf.distribute.Strategy`. Everything else creates its model, optimiser and metrics in
`strategy.scope()`, batches its datasets by the global batch size, and never asks which
strategy it got.

A typical program:

    use_logical_cpus(2)                     # optional, CPU-only machines: 2 replicas
    strategy = resolve_strategy("auto")     # first TensorFlow call for multi_worker / tpu
    print(describe_strategy(strategy))
    with strategy.scope():
        model = GPT(...)
        model.compile(optimizer=..., jit_compile=jit_compile_for(strategy))
    model.fit(with_data_sharding(language_model_dataset(..., batch_size=global_batch)))
"""

import glob
import json
import os

import tensorflow as tf

from tfllm.constants import DEFAULT_CLUSTER_TIMEOUT_SECONDS, STRATEGY_NAMES
from tfllm.training.cluster import (
    ClusterTimeoutError,
    coordinated_tasks,
    coordination_settings,
    tasks_named_in,
    wait_for_cluster,
)
from tfllm.training.xla_choice import chosen_jit_compile

TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)

# Environment variables through which Cloud TPU set-ups name their TPU.
_TPU_ENVIRONMENT_VARIABLES = ("TPU_NAME", "KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS")


def resolve_strategy(name="auto", tpu=None, cluster_timeout=DEFAULT_CLUSTER_TIMEOUT_SECONDS):
    """Returns the `tf.distribute.Strategy` called `name`.

    Args:
        name: one of
            - `"auto"`: a TPU if one is reachable; else `"multi_worker"` if
              `TF_CONFIG` is set (training each worker on its own would be silently
              wrong); else `MirroredStrategy` over all GPUs if there are several; else `MirroredStrategy` over the logical CPU
              devices if several were configured (`use_logical_cpus`); else the
              default strategy.
            - `"cpu"`: the default strategy: one replica on the default device.
            - `"mirrored"`: `MirroredStrategy` over all GPUs, or over all logical CPU
              devices when there is no GPU.
            - `"multi_worker"`: `MultiWorkerMirroredStrategy` over the cluster that the
              `TF_CONFIG` environment variable describes (every worker runs the same
              program with its own `task`).
            - `"tpu"`: `TPUStrategy` on the TPU named by `tpu`.
        tpu: the TPU for `"tpu"` and `"auto"`: a name, a `grpc://host:port` address or
            `"local"` (a TPU VM). Defaults to `$TPU_NAME`, else `"local"` when this
            machine has TPU devices (`/dev/accel*`).
        cluster_timeout: seconds a `"multi_worker"` task waits for the other chief and
            worker tasks of `TF_CONFIG` to start (`tfllm.training.cluster`), and then
            for TensorFlow's registration of them all (TensorFlow alone waits forever).

    Returns:
        A `tf.distribute.Strategy`.

    Raises:
        ValueError: for an unknown `name`, or a missing or malformed `TF_CONFIG`.
        ClusterTimeoutError: (a RuntimeError) when some workers never came; it names
            them with their addresses.
        RuntimeError: for `"tpu"` when no TPU is found, and for `"multi_worker"` or
            `"tpu"` when TensorFlow has already initialised its devices (create the
            strategy first thing in the program).
    """
    if name not in STRATEGY_NAMES:
        raise ValueError(
            f"Unknown strategy {name!r}; choose one of {', '.join(STRATEGY_NAMES)}."
        )
    if name == "cpu":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi_worker":
        return _multi_worker_strategy(cluster_timeout)
    if name == "tpu":
        return _tpu_strategy(tpu)
    # auto
    if _tpu_address(tpu) is not None:
        return _tpu_strategy(tpu)
    if os.environ.get("TF_CONFIG"):
        return _multi_worker_strategy(cluster_timeout)
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([device.name for device in gpus])
    cpus = tf.config.list_logical_devices("CPU")
    if not gpus and len(cpus) > 1:
        return tf.distribute.MirroredStrategy([device.name for device in cpus])
    return tf.distribute.get_strategy()


def use_logical_cpus(count):
    """Splits the physical CPU into `count` logical devices, one replica each.

    Lets `MirroredStrategy` run several replicas on a CPU-only machine (to test
    distributed code, or to measure it). The replicas share the CPU's cores and
    thread pools, so this is not a way to train faster.

    Must run before TensorFlow initialises its devices, that is before the first
    tensor, model or strategy is created. Calling it again with the same count is
    harmless.

    Args:
        count: positive int, the number of logical CPU devices.

    Raises:
        ValueError: when `count` is not a positive integer.
        RuntimeError: when TensorFlow's devices are already initialised with another
            configuration.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"`count` must be a positive integer; got {count!r}.")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if (current is None and count == 1) or (current is not None and len(current) == count):
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError as error:
        raise RuntimeError(
            f"use_logical_cpus({count}) came too late: TensorFlow has already initialised "
            "its devices. Call it at the start of the program, before creating any tensor, "
            "model or strategy."
        ) from error


def describe_strategy(strategy):
    """A short description for progress output, e.g. `MirroredStrategy: 2 replicas
    (CPU:0, CPU:1), 1 worker`."""
    replicas = strategy.num_replicas_in_sync
    text = f"{_kind(strategy)}: {replicas} replica{'s' if replicas != 1 else ''}"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        devices = [device.rsplit("device:", 1)[-1] for device in strategy.extended.worker_devices]
        text += f" ({', '.join(devices)})"
    workers, this_task = _workers(strategy)
    text += f", {workers} worker{'s' if workers != 1 else ''}"
    if workers > 1 and this_task:
        text += f" (this is {this_task})"
    return text


def with_data_sharding(dataset):
    """Shards `dataset` between workers by its elements: each worker takes its own part
    of every global batch.

    The batches must be the global batch size. Under `MultiWorkerMirroredStrategy`,
    `tf.distribute` splits each global batch into one piece per replica, and every
    worker keeps its own replicas' pieces; together the workers consume each global
    batch exactly once, in the same steps as a single process would. Every worker
    runs the whole input pipeline, so it must yield the same sequence of batches on
    every worker (seeded, as `language_model_dataset` is).

    Without it, the default policy (AUTO) looks for files to shard by first and,
    finding none in a token-stream pipeline, falls back to the same DATA policy with
    a warning. Under every other strategy the setting changes nothing.

    Args:
        dataset: a `tf.data.Dataset` batched by the global batch size.

    Returns:
        The same dataset with the auto-shard policy `DATA`.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def jit_compile_for(strategy, requested=True, model=None):
    """Whether to compile train steps with XLA (`model.compile(jit_compile=...)`) under
    `strategy`: `requested` with one replica, False with several.

    Keras compiles the whole step, `strategy.run` over every replica included, as one
    XLA cluster; with replicas on several devices that fails ("Trying to access
    resource ... located in device CPU:1 from device CPU:0"). TPUs compile their
    replicas with XLA in any case.

    `requested="auto"` is the choice measured for `model` (`tfllm.training.xla_choice`);
    a ValueError says so when none was made.
    """
    if strategy.num_replicas_in_sync != 1:
        return False
    if requested == "auto":
        choice = chosen_jit_compile(model) if model is not None else None
        if choice is None:
            raise ValueError(
                "jit_compile='auto' is chosen by timing training steps with and without "
                "XLA, which needs a batch: train through a job (`run_job`, "
                "`train_and_evaluate`), use `tfllm.training.compile_language_model`, or "
                "set jit_compile to True or False.")
        return choice.jit_compile
    return bool(requested)


def is_chief(strategy=None):
    """Whether this process writes shared files: True unless it is a non-chief worker.

    The chief is the `chief` task, or worker 0 of a cluster without one. The task comes
    from `strategy`'s cluster resolver (default: the strategy in scope) or, outside any
    strategy's scope, from `TF_CONFIG` (read by `read_tf_config`; a malformed one counts
    as "chief": `resolve_strategy` reports it).
    """
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is not None and resolver.task_type:
        task_type, task_id = resolver.task_type, resolver.task_id
        cluster = resolver.cluster_spec().as_dict()
    else:
        if not os.environ.get("TF_CONFIG"):
            return True
        try:
            config = read_tf_config()
        except ValueError:
            return True
        task_type, task_id, cluster = config["task"]["type"], config["task"]["index"], \
            config["cluster"]
    if task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def read_tf_config():
    """`TF_CONFIG` as a dict, checked; a `ValueError` in plain words when it is wrong."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        raise ValueError(
            "The multi_worker strategy needs the TF_CONFIG environment variable, which "
            "describes the cluster and this process's place in it, for example on the "
            f"first of two workers:\n  {TF_CONFIG_EXAMPLE}\n(the second worker uses "
            '"index": 1).'
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise _tf_config_error(f"it is not valid JSON ({error})") from None
    if not isinstance(config, dict):
        raise _tf_config_error("it must be a JSON object")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise _tf_config_error('it needs a "cluster" object mapping task types to addresses')
    for task_type, addresses in cluster.items():
        if (
            not isinstance(addresses, list)
            or not addresses
            or not all(isinstance(address, str) and ":" in address for address in addresses)
        ):
            raise _tf_config_error(
                f'cluster["{task_type}"] must be a non-empty list of "host:port" addresses'
            )
    if not ({"worker", "chief"} & set(cluster)):
        raise _tf_config_error('the cluster needs "worker" (and optionally "chief") tasks')
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise _tf_config_error('it needs a "task" object with "type" and "index"')
    task_type, index = task["type"], task["index"]
    if task_type not in cluster and task_type != "evaluator":
        raise _tf_config_error(
            f'task type "{task_type}" is not in the cluster ({", ".join(cluster)})'
        )
    if isinstance(index, bool) or not isinstance(index, int) or index < 0 or (
        task_type in cluster and index >= len(cluster[task_type])
    ):
        raise _tf_config_error(
            f'task index {index!r} is not a position in cluster["{task_type}"]'
        )
    return config


def _tf_config_error(problem):
    return ValueError(
        f"TF_CONFIG is malformed: {problem}. It should look like this (on the first of two "
        f"workers):\n  {TF_CONFIG_EXAMPLE}"
    )


def _multi_worker_strategy(cluster_timeout):
    config = read_tf_config()
    if config["task"]["type"] in ("chief", "worker") and len(coordinated_tasks(config)) > 1:
        wait_for_cluster(config, cluster_timeout)
        _bound_registration(config, cluster_timeout)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except tf.errors.DeadlineExceededError as error:
        # A peer answered `wait_for_cluster` but never registered with TensorFlow.
        named = tasks_named_in(str(error), config) or [
            task for task in coordinated_tasks(config)
            if task[:2] != (config["task"]["type"], config["task"]["index"])]
        raise ClusterTimeoutError(named, cluster_timeout) from None
    except RuntimeError as error:
        raise RuntimeError(
            "MultiWorkerMirroredStrategy must be created before TensorFlow initialises its "
            "devices: call resolve_strategy('multi_worker') at the start of the program."
        ) from error


def _bound_registration(config, timeout):
    """Configures TensorFlow's coordination service as `MultiWorkerMirroredStrategy` would,
    with its registration bounded by `timeout` (the strategy keeps a configuration it
    finds; there is no public API for it)."""
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    if context.context().coordination_service is not None:
        return  # the program configured it itself
    settings = coordination_settings(config, timeout)
    barrier = settings.pop("cluster_register_with_barrier")
    settings["coordinated_jobs"] = [
        coordination_config_pb2.CoordinatedJob(name=job, num_tasks=count)
        for job, count in settings["coordinated_jobs"].items()]
    context.context().configure_coordination_service(**settings)
    # Without the barrier the leader registers at once and waits later, unbounded.
    context.context().coordination_service.cluster_register_with_barrier = barrier


def _tpu_address(tpu):
    """The TPU to connect to, or None when this machine shows no sign of one."""
    if tpu:
        return tpu
    for variable in _TPU_ENVIRONMENT_VARIABLES:
        if os.environ.get(variable):
            return os.environ[variable]
    if glob.glob("/dev/accel[0-9]*"):
        return "local"
    return None


def _tpu_strategy(tpu):
    address = _tpu_address(tpu)
    if address is None:
        raise RuntimeError(
            "No TPU found: set TPU_NAME (or pass tpu='NAME' or tpu='grpc://HOST:8470'), "
            "or run on a TPU VM (tpu='local'). Use 'auto', 'mirrored' or 'cpu' elsewhere."
        )
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        if address != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as error:
        raise RuntimeError(f"Could not reach the TPU {address!r}: {error}") from error
    return tf.distribute.TPUStrategy(resolver)


def _kind(strategy):
    """The public name of the strategy's class (TensorFlow's own names differ)."""
    for name, public_class in (
        ("MultiWorkerMirroredStrategy", tf.distribute.MultiWorkerMirroredStrategy),
        ("MirroredStrategy", tf.distribute.MirroredStrategy),
        ("TPUStrategy", tf.distribute.TPUStrategy),
        ("OneDeviceStrategy", tf.distribute.OneDeviceStrategy),
    ):
        if isinstance(strategy, public_class):
            return name
    if type(strategy).__name__ == "_DefaultDistributionStrategy":
        return "default strategy"
    return type(strategy).__name__


def _workers(strategy):
    """(number of workers, "worker 1"-style name of this task or None)."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return strategy.extended.num_hosts, None
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return 1, None
    cluster = resolver.cluster_spec().as_dict()
    workers = sum(len(cluster.get(task_type, [])) for task_type in ("chief", "worker"))
    return max(workers, 1), f"{resolver.task_type} {resolver.task_id}"
