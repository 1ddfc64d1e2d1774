"""Where a GPT training step (or a decoding call) spends its time: TensorFlow's own trace.

Runs the benchmark GPT (the shape of `vs_pytorch.py`) under `tf.profiler.experimental`,
reads the trace it writes (the `.xplane.pb` of the host plane) and prints the time of
each kind of operation, summed over the traced steps, as a share of their total: without
XLA the TensorFlow kernels (`MatMul`, `_MklFusedMatMul`, `Softmax`, ...), with XLA the
compiled program's thunks (named by the HLO instruction: `dot`, `fusion`, ...).
Shares, not seconds: a profile on a shared machine is noisy in time but its shares hold.

How to run
    PYTHONPATH=. python benchmarks/profile_step.py                       # float32, no XLA
    PYTHONPATH=. python benchmarks/profile_step.py --xla --precision mixed_bfloat16
    PYTHONPATH=. python benchmarks/profile_step.py --decode 1x512        # a decode call
    --top N lists the N costliest names (default 25); --by name groups by instruction
    name instead of kind; --logdir keeps the trace for TensorBoard's profile plugin.
"""

import argparse
import collections
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from timing import (  # noqa: E402
    add_gpt_shape_arguments,
    cpu_description,
    parse_cases,
    quiet_native_stderr,
    repository_on_path,
)

with quiet_native_stderr():
    import numpy as np
    import tensorflow as tf
    import keras
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    tf.constant(0.0).numpy()

repository_on_path(__file__)
from tfllm.models import GPT  # noqa: E402
from tfllm.training.config import TrainingConfig, make_optimizer, precision_scope  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_gpt_shape_arguments(parser)
    parser.add_argument("--xla", action="store_true", help="compile the step with XLA")
    parser.add_argument("--precision", default="float32",
                        choices=["float32", "mixed_bfloat16", "mixed_float16"])
    parser.add_argument("--decode", type=parse_cases, metavar="BxP",
                        help="profile greedy decoding of this case instead of training")
    parser.add_argument("--steps", type=int, default=3, help="traced steps (or calls)")
    parser.add_argument("--top", type=int, default=25, help="names listed")
    parser.add_argument("--by", choices=["kind", "part", "name"], default="kind",
                        help="group by operation type (_MklMatMul, fusion, ...), by part "
                             "of the step and type, or by full name")
    parser.add_argument("--logdir", help="keep the trace here (default: a temporary folder)")
    return parser.parse_args(argv)


def build(args):
    """`(model, one_step)`: the benchmark GPT and a call that runs one step or decode."""
    keras.utils.set_random_seed(1234)
    max_length = args.decode[0][1] if args.decode else args.sequence_length
    with precision_scope(args.precision):
        model = GPT(vocabulary_size=args.vocabulary_size, max_length=max_length,
                    num_layers=args.num_layers, num_heads=args.num_heads,
                    hidden_dim=args.hidden_dim, intermediate_dim=args.intermediate_dim,
                    position_encoding="learned")
    model.build((None, None))
    rng = np.random.default_rng(1234)
    if args.decode:
        batch_size, positions = args.decode[0]
        prompts = rng.integers(1, args.vocabulary_size, (batch_size, 8)).astype(np.int32)
        return model, lambda: model.generate(prompts, max_new_tokens=positions - 8,
                                             temperature=0.0)
    tokens = rng.integers(0, args.vocabulary_size, (args.batch_size, args.sequence_length + 1))
    x, y = tf.constant(tokens[:, :-1], tf.int32), tf.constant(tokens[:, 1:], tf.int32)
    config = TrainingConfig(sequence_length=args.sequence_length, batch_size=args.batch_size)
    model.compile(optimizer=make_optimizer(config), jit_compile=args.xla)
    return model, lambda: float(model.train_on_batch(x, y))


#: Parts of a thunk or kernel name that vary between instances of one kind.
_NUMBERED = re.compile(r"[._]\d+$")


def kind_of(name):
    """The operation's type: `"_MklMatMul"` for a kernel event `"gpt/.../MatMul:_MklMatMul"`
    (TensorFlow names them `node:type`), `"loop_fusion"` for an XLA thunk
    `"loop_fusion.12"`."""
    name = name.rsplit(":", 1)[-1] if ":" in name else name.rsplit("/", 1)[-1]
    while _NUMBERED.search(name):
        name = _NUMBERED.sub("", name)
    return name


def part_of(name):
    """Which part of the step an event belongs to: the optimizer, the backward pass (the
    gradient tape's ops) or the forward pass, by its node name."""
    node = name.split(":")[0]
    if node.startswith(("adam", "SGD", "sgd")) or "/adam" in node:
        return "optimizer"
    return "backward" if "gradient_tape" in node else "forward"


def op_times(logdir):
    """Seconds per event name on the host plane's thread lines, from the newest trace."""
    traces = sorted(Path(logdir).rglob("*.xplane.pb"), key=lambda path: path.stat().st_mtime)
    if not traces:
        raise SystemExit(f"no trace was written under {logdir}")
    space = xplane_pb2.XSpace()
    space.ParseFromString(traces[-1].read_bytes())
    times = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        names = {key: metadata.name for key, metadata in plane.event_metadata.items()}
        for line in plane.lines:
            if "python" in line.name.lower():  # the Python tracer's frames, not kernels
                continue
            for event in line.events:
                times[names.get(event.metadata_id, "?")] += event.duration_ps * 1e-12
    return times


#: Events that enclose others (a whole step, a function call, an executor run): their
#: time is their children's, so they are left out of the shares.
_ENCLOSING = re.compile(r"^(__inference|__forward|__backward|Iterator|EagerExecute|"
                        r"EagerLocalExecute|FunctionRun|ExecutorState|TraceMe|"
                        r"ThreadpoolListener|train_function|one_step|\$)|XlaLaunch|"
                        r"_XlaRun|_XlaCompile|StatefulPartitionedCall|PartitionedCall|"
                        r"CpuExecutable|ThunkExecutor|BlockUntilReady|while|cluster_")


def main(argv=None):
    args = parse_args(argv)
    model, step = build(args)
    for _ in range(2):  # tracing, compilation, oneDNN's first calls
        step()
    logdir = args.logdir or tempfile.mkdtemp(prefix="tfllm-profile-")
    tf.profiler.experimental.start(logdir)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    wall = time.perf_counter() - start
    tf.profiler.experimental.stop()
    times = op_times(logdir)
    grouped = collections.Counter()
    for name, seconds in times.items():
        if not _ENCLOSING.search(name):
            key = {"name": name, "kind": kind_of(name),
                   "part": f"{part_of(name)} {kind_of(name)}"}[args.by]
            grouped[key] += seconds
    total = sum(grouped.values())
    what = (f"decode {args.decode[0][0]}x{args.decode[0][1]}" if args.decode else
            f"train B={args.batch_size} T={args.sequence_length}")
    print(f"{cpu_description()}\n{what}, {args.precision}, {'XLA' if args.xla else 'no XLA'}: "
          f"{wall / args.steps * 1e3:.1f} ms per step (traced), {total / args.steps * 1e3:.1f} "
          f"ms of kernel time per step over every thread")
    print(f"{'share':>6}  {'ms/step':>8}  name")
    for name, seconds in grouped.most_common(args.top):
        print(f"{seconds / total:6.1%}  {seconds / args.steps * 1e3:8.2f}  {name}")
    if not args.logdir:
        print(f"(trace: {logdir})", file=sys.stderr)


if __name__ == "__main__":
    main()
