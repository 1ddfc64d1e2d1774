"""Waiting for the workers that `TF_CONFIG` names: bounded, interruptible, and naming the
workers that never came (no TensorFlow).

`MultiWorkerMirroredStrategy()` waits for its peers inside one TensorFlow call that holds
Python's interpreter lock: by default it waits forever, and while it waits no Python
code runs, so SIGINT is only acted on when the wait ends (and TensorFlow's coordination
service replaces the SIGTERM handler, so SIGTERM is dropped). `wait_for_cluster` therefore
waits first, in Python: every task listens on its own `TF_CONFIG` address (the host named
there, not every interface) and connects to each of its peers' until all have answered.
Only then does TensorFlow start, with its own registration bounded as well
(`coordination_settings`), so that a peer which dies in between is named too.

    config = read_tf_config()              # tfllm.training.strategy
    wait_for_cluster(config, timeout=300)  # ClusterTimeoutError naming the missing workers
"""

import errno
import re
import socket
import threading
import time

from tfllm.constants import DEFAULT_CLUSTER_TIMEOUT_SECONDS

#: The task types that `MultiWorkerMirroredStrategy` trains with and waits for.
COORDINATED_TASK_TYPES = ("chief", "worker")


class ClusterTimeoutError(RuntimeError):
    """Some workers of the cluster did not start within the timeout; `missing` holds their
    `(task type, index, address)`."""

    def __init__(self, missing, timeout):
        self.missing, self.timeout = list(missing), timeout
        names = ", ".join(describe_task(*task) for task in self.missing)
        super().__init__(
            f"the cluster did not form within {timeout:g} s: {names} never came (start "
            "the same command there with its own TF_CONFIG task, or raise --cluster-timeout)")


def describe_task(task_type, index, address):
    """`worker 1 (10.0.0.2:12345)`."""
    return f"{task_type} {index} ({address})"


def coordinated_tasks(config):
    """`[(task type, index, address)]` of the chief and workers of a `TF_CONFIG` dict."""
    return [(task_type, index, address)
            for task_type in COORDINATED_TASK_TYPES
            for index, address in enumerate(config["cluster"].get(task_type, []))]


def this_task(config):
    """`(task type, index)` of this process in a `TF_CONFIG` dict."""
    return config["task"]["type"], config["task"]["index"]


def coordination_leader(config):
    """The task that hosts TensorFlow's coordination service: the chief, else worker 0."""
    task_type = "chief" if config["cluster"].get("chief") else "worker"
    return task_type, 0, config["cluster"][task_type][0]


def coordination_settings(config, timeout):
    """Keyword arguments of TensorFlow's `context.configure_coordination_service` that bound
    its registration by `timeout` seconds (TensorFlow's default waits forever): every
    task registers at a barrier that fails, naming the tasks that never reached it, when the
    time is up."""
    jobs = {task_type: len(config["cluster"][task_type])
            for task_type in COORDINATED_TASK_TYPES if config["cluster"].get(task_type)}
    leader_type = coordination_leader(config)[0]
    return {"service_type": "standalone",
            "service_leader": f"/job:{leader_type}/replica:0/task:0",
            "coordinated_jobs": jobs,
            "cluster_register_timeout_in_ms": max(1, int(timeout * 1000)),
            "cluster_register_with_barrier": True}


def tasks_named_in(message, config):
    """The tasks of `config` that a TensorFlow error `message` names (`/job:worker/
    replica:0/task:1`), in cluster order; the coordination leader when it names none (the
    leader never answered)."""
    named = {(job, int(index)) for job, index in
             re.findall(r"/job:(\w+)/replica:\d+/task:(\d+)", message)}
    own = this_task(config)
    tasks = [task for task in coordinated_tasks(config)
             if task[:2] in named and task[:2] != own]
    if tasks:
        return tasks
    leader = coordination_leader(config)
    return [] if leader[:2] == own else [leader]


def wait_for_cluster(config, timeout=DEFAULT_CLUSTER_TIMEOUT_SECONDS, poll_seconds=0.5,
                     print_function=print):
    """Returns once every chief and worker of `config` (a `TF_CONFIG` dict) listens on its
    address; raises `ClusterTimeoutError` naming those that did not within `timeout` s.

    This task listens on its own address meanwhile (on the host `TF_CONFIG` names, where it
    is one of this machine's; else on every interface, as TensorFlow's server does), so
    that its peers see it. The wait is plain Python: SIGINT and SIGTERM handlers run.

    Args:
        config: the checked `TF_CONFIG` (`tfllm.training.strategy.read_tf_config()`).
        timeout: positive number of seconds.
        poll_seconds: time between two rounds of connection attempts.
        print_function: where the one "Waiting for ..." line goes (None: nowhere).

    Raises:
        ValueError: for a timeout that is not a positive number.
        ClusterTimeoutError: when some workers never answered.
        RuntimeError: when this task's own port is taken by another program.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"the cluster timeout must be a positive number of seconds; "
                         f"got {timeout!r}")
    own = this_task(config)
    tasks = coordinated_tasks(config)
    peers = [task for task in tasks if task[:2] != own]
    mine = [task for task in tasks if task[:2] == own]
    listener = _Listener(mine[0][2]) if mine else None
    try:
        if print_function is not None and peers:
            print_function(f"Waiting up to {timeout:g} s for the cluster: "
                           f"{', '.join(describe_task(*task) for task in peers)}.", flush=True)
        deadline = time.monotonic() + timeout
        while True:
            peers = [task for task in peers if not _answers(task[2])]
            if not peers:
                return
            if time.monotonic() >= deadline:
                raise ClusterTimeoutError(peers, timeout)
            time.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))
    finally:
        if listener is not None:
            listener.close()


def _host_and_port(address):
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "localhost", int(port)


def _answers(address):
    """Whether something accepts TCP connections at `address` (the peer closes first, so
    that its side, not ours, keeps the TIME_WAIT state of the connection)."""
    try:
        with socket.create_connection(_host_and_port(address), timeout=1.0):
            return True
    except OSError:
        return False


class _Listener:
    """Accepts (and drops) connections on this task's address until `close()`."""

    def __init__(self, address):
        host, port = _host_and_port(address)
        self._socket = _bound_socket(host, port, address)
        self._socket.listen(16)
        self._socket.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="tfllm-cluster-wait",
                                        daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                continue  # timed out, or closed
            with connection:
                connection.settimeout(1.0)
                try:
                    connection.recv(1)  # until the peer closes
                except OSError:
                    pass

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self._socket.close()


def _bound_socket(host, port, address):
    """A TCP socket bound to `host:port`, or to every interface when `host` is not one of
    this machine's (a load balancer's or a container's public name)."""
    try:
        candidates = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise RuntimeError(f"this task's TF_CONFIG address {address} does not resolve: "
                           f"{error}") from None
    last_error = None
    every_interface = (socket.AF_INET, socket.SOCK_STREAM, 0, "", ("", port))
    for family, kind, protocol, _, where in candidates + [every_interface]:
        server = socket.socket(family, kind, protocol)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(where)
            return server
        except OSError as error:
            server.close()
            if error.errno == errno.EADDRINUSE:
                raise RuntimeError(
                    f"this task's TF_CONFIG address {address} is in use by another program: "
                    "choose another port, or stop that program") from None
            last_error = error
    raise RuntimeError(f"cannot listen on this task's TF_CONFIG address {address}: "
                       f"{last_error}")
