"""Training throughput of tfllm's GPT: one replica against MirroredStrategy, float32 against
mixed_bfloat16.

What it measures
    Four contenders train the same GPT (same layers, heads, width, sequence length, global
    batch and vocabulary) with AdamW (learning rate 1e-4) and the language-model loss:

        1 replica, float32           the default strategy
        1 replica, mixed_bfloat16    the same, with the "mixed_bfloat16" dtype policy
        2 replicas, float32          MirroredStrategy over 2 logical CPU devices
        2 replicas, mixed_bfloat16   the same, with the "mixed_bfloat16" dtype policy

    The logical CPU devices (`tfllm.training.strategy.use_logical_cpus`) split one
    machine's cores into two replicas that share its thread pools: this measures what
    MirroredStrategy's split, all-reduce and merge cost on a CPU, not a second machine.

    Every contender trains with `model.fit` on one fixed random global batch, repeated,
    passed as a `tf.data` dataset batched by the global batch size (each MirroredStrategy
    replica gets half of it), exactly as `fit_language_model` feeds data. Steps are timed
    by a callback from batch begin to batch end, the loss read back to Python so that the
    step has finished. Models are built and their train function traced in a warm-up
    `fit`; then the script runs `--rounds` rounds; in each round every contender runs a
    burst of `--steps` steps, in an order that rotates from round to round, so slow and
    fast minutes of a shared machine fall on all contenders alike.

    XLA: off by default for every contender, so that the comparison is like for like;
    `--xla` compiles the one-replica contenders with XLA (`jit_compile_for` keeps it off
    under MirroredStrategy, where Keras's compiled step fails).

How to run
    PYTHONPATH=. python benchmarks/strategy_throughput.py            # ~5 min on 2 CPU cores
    PYTHONPATH=. python benchmarks/strategy_throughput.py --quick    # sanity run: ~2 min
    PYTHONPATH=. python benchmarks/strategy_throughput.py --xla --rounds 8

    Progress goes to stderr; the table goes to stdout.

How to read the numbers
    step ms    median wall time of one training step. Medians, because the machine may
               be shared.
    IQR %      spread of the step times: (p75 - p25) / median.
    tokens/s   global batch x sequence length / median step time.

    A ratio is the tokens/s of one contender over another's: above 1 the first trains
    faster. The range next to it is the lowest and highest ratio over the rounds, a guide
    to how much the machine's noise moves the figure.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from timing import (  # noqa: E402
    interquartile_fraction,
    log,
    median,
    quiet_native_stderr,
    ratio_summary,
)


with quiet_native_stderr():
    import keras
    import numpy as np
    import tensorflow as tf

try:
    from tfllm.models import GPT
except ImportError:
    # Run from a checkout without PYTHONPATH: the repository root is one level up.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tfllm.models import GPT
from tfllm.training.strategy import (  # noqa: E402
    describe_strategy,
    jit_compile_for,
    resolve_strategy,
    use_logical_cpus,
    with_data_sharding,
)

REPLICAS = 2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    shape = parser.add_argument_group("model and batch shape (same for every contender)")
    shape.add_argument("--num-layers", type=int, default=4, help="Transformer blocks")
    shape.add_argument("--num-heads", type=int, default=4, help="attention heads")
    shape.add_argument("--hidden-dim", type=int, default=128, help="model width D")
    shape.add_argument("--sequence-length", type=int, default=128, help="tokens per sequence T")
    shape.add_argument("--batch-size", type=int, default=32,
                       help="global batch: sequences per step, over all replicas")
    shape.add_argument("--vocabulary-size", type=int, default=512, help="token ids V")
    run = parser.add_argument_group("measurement")
    run.add_argument("--rounds", type=int, default=6, help="interleaved rounds")
    run.add_argument("--steps", type=int, default=4, help="training steps per contender per round")
    run.add_argument("--warmup", type=int, default=2,
                     help="untimed steps per contender before round 1")
    run.add_argument("--xla", action="store_true",
                     help="compile the one-replica contenders with XLA")
    run.add_argument("--quick", action="store_true",
                     help="sanity run: 2 rounds of 2 steps, 1 warm-up step")
    run.add_argument("--seed", type=int, default=1234, help="weights and batch")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup = 2, 2, 1
    for name in ("num_layers", "num_heads", "hidden_dim", "sequence_length", "batch_size",
                 "vocabulary_size", "rounds", "steps", "warmup"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.hidden_dim % args.num_heads:
        parser.error("--hidden-dim must be divisible by --num-heads")
    if args.batch_size % REPLICAS:
        parser.error(f"--batch-size must be divisible by {REPLICAS} (the replicas)")
    return args


class StepTimer(keras.callbacks.Callback):
    """Wall time of each `fit` step, the loss read back so that the step has finished."""

    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])
        self.times.append(time.perf_counter() - self._start)


class Contender:
    """One model under one strategy and dtype policy, and the step times measured for it."""

    def __init__(self, name, strategy, dtype, args, batch):
        self.name, self.strategy, self.dtype = name, strategy, dtype
        keras.utils.set_random_seed(args.seed)
        with strategy.scope():
            self.model = GPT(
                vocabulary_size=args.vocabulary_size,
                max_length=args.sequence_length,
                num_layers=args.num_layers,
                num_heads=args.num_heads,
                hidden_dim=args.hidden_dim,
                dtype=dtype,
            )
            self.model.compile(
                optimizer=keras.optimizers.AdamW(learning_rate=1e-4),
                jit_compile=jit_compile_for(strategy, args.xla),
            )
        self.data = with_data_sharding(tf.data.Dataset.from_tensors(batch).repeat())
        self.times = []
        self.round_medians = []

    def run(self, steps):
        timer = StepTimer()
        self.model.fit(self.data, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False,
                       callbacks=[timer])
        return timer.times


def main(argv=None):
    args = parse_args(argv)
    with quiet_native_stderr():  # device set-up probes CUDA and says so on stderr
        use_logical_cpus(REPLICAS)  # before TensorFlow initialises its devices
        single, mirrored = resolve_strategy("cpu"), resolve_strategy("mirrored")
    tokens_per_step = args.batch_size * args.sequence_length
    rng = np.random.default_rng(args.seed)
    tokens = rng.integers(0, args.vocabulary_size, (args.batch_size, args.sequence_length + 1))
    batch = (tf.constant(tokens[:, :-1], tf.int32), tf.constant(tokens[:, 1:], tf.int32))

    log(f"tensorflow {tf.__version__}, keras {keras.__version__}, {os.cpu_count()} CPUs")
    log(f"1 replica: {describe_strategy(single)}; 2 replicas: {describe_strategy(mirrored)}")
    xla_note = " + XLA" if args.xla else ""
    contenders = [
        Contender(f"1 replica, float32{xla_note}", single, "float32", args, batch),
        Contender(f"1 replica, bfloat16{xla_note}", single, "mixed_bfloat16", args, batch),
        Contender("2 replicas, float32", mirrored, "float32", args, batch),
        Contender("2 replicas, bfloat16", mirrored, "mixed_bfloat16", args, batch),
    ]
    log(f"shape: {args.num_layers} layers, {args.num_heads} heads, width {args.hidden_dim}, "
        f"sequence {args.sequence_length}, global batch {args.batch_size}, "
        f"vocabulary {args.vocabulary_size}")

    for contender in contenders:
        start = time.perf_counter()
        contender.run(args.warmup)
        log(f"warm-up  {contender.name:<28} {args.warmup} steps in "
            f"{time.perf_counter() - start:6.1f} s")

    for round_index in range(args.rounds):
        shift = round_index % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            times = contender.run(args.steps)
            contender.times.extend(times)
            contender.round_medians.append(median(times))
            log(f"round {round_index + 1}/{args.rounds}  {contender.name:<28} "
                f"{median(times) * 1e3:8.1f} ms/step")

    single_f32, single_bf16, mirrored_f32, mirrored_bf16 = contenders
    ratios = {
        "2 replicas / 1, float32": ratio_summary(mirrored_f32, single_f32),
        "2 replicas / 1, bfloat16": ratio_summary(mirrored_bf16, single_bf16),
        "bfloat16 / float32, 1 replica": ratio_summary(single_bf16, single_f32),
        "bfloat16 / float32, 2 replicas": ratio_summary(mirrored_bf16, mirrored_f32),
    }

    print()
    print(f"Training throughput under tf.distribute: GPT {args.num_layers} layers, "
          f"{args.num_heads} heads, width {args.hidden_dim}, T={args.sequence_length}, "
          f"global batch {args.batch_size}, V={args.vocabulary_size}; "
          f"{os.cpu_count()} CPU cores")
    print(f"{args.rounds} rounds x {args.steps} steps per contender (after {args.warmup} "
          "warm-up steps); medians. bfloat16 = the mixed_bfloat16 policy.")
    print()
    header = f"{'contender':<28} {'step ms':>9} {'IQR %':>6} {'tokens/s':>9}"
    print(header)
    print("-" * len(header))
    for c in contenders:
        step = median(c.times)
        print(f"{c.name:<28} {step * 1e3:9.1f} {100 * interquartile_fraction(c.times):6.1f} "
              f"{tokens_per_step / step:9.0f}")
    print()
    print(f"{'ratio (tokens/s)':<32} {'value':>6}   {'per-round range':<15}")
    print("-" * 58)
    for label, r in ratios.items():
        print(f"{label:<32} {r['ratio']:6.2f}   {r['round_min']:5.2f} .. {r['round_max']:<5.2f}")


if __name__ == "__main__":
    main()
