"""Training throughput of tfllm's GPT against KerasHub's GPT-2, with and without XLA.

What it measures
    Four contenders train the same GPT-2-shaped decoder (same layers, heads,
    width, feed-forward width, sequence length, batch and vocabulary):

        tfllm GPT             `tfllm.models.GPT`                compiled with jit_compile=False
        tfllm GPT + XLA       the same                          compiled with jit_compile=True
        KerasHub GPT2         `keras_hub.models.GPT2CausalLM`   compiled with jit_compile=False
        KerasHub GPT2 + XLA   the same                          compiled with jit_compile=True

    All four use AdamW (learning rate 1e-4), sparse categorical cross-entropy
    on logits and no metrics, and train with `model.train_on_batch` on one
    fixed random batch: inputs are `tokens[:, :-1]`, labels `tokens[:, 1:]`.
    KerasHub's causal LM takes `{"token_ids", "padding_mask"}` as x; it gets an
    all-ones padding mask (every position is a real token). Its own
    preprocessor would also pass that mask as `sample_weight`; with all ones
    that weighting changes nothing, so neither contender gets sample weights
    and both compute the loss over all B x T positions. Both models start
    from random weights (nothing is downloaded).

    Every contender is built and warmed up first (the first steps trace the
    graph and, with XLA, compile it). Then the script runs `--rounds` rounds;
    in each round every contender runs a burst of `--steps` training steps,
    in an order that rotates from round to round, so slow and fast minutes
    of a noisy machine fall on all contenders alike. A float32 matmul burst
    (`--matmul-size` square matrices, chained inside a `tf.function`) runs in
    the same rotation and gives the machine's practical peak.

How to run
    PYTHONPATH=. python benchmarks/train_throughput.py           # defaults: ~8 min on 2 CPU cores
    PYTHONPATH=. python benchmarks/train_throughput.py --quick   # sanity run: ~2 min
    PYTHONPATH=. python benchmarks/train_throughput.py --hidden-dim 512 --json runs/throughput.json

    Progress goes to stderr; the table goes to stdout.

How to read the numbers
    step ms       median wall time of one `train_on_batch` call (the call
                  returns the loss as a Python number, so the step has
                  finished). Medians, because the machine may be shared.
    IQR %         spread of the step times: (p75 - p25) / median.
    tokens/s      batch x sequence / median step time.
    params        trainable parameters of the model.
    FLOP/token    training FLOPs per token estimated as in nanoGPT's
                  `estimate_mfu`: 6 x N + 12 x layers x T x D, where N is
                  the parameter count without the lookup-only embedding
                  tables (position embeddings; the token table too when the
                  output head is a separate matrix). A tied head is a real
                  matmul and stays in N.
    GFLOP/s       FLOP/token x tokens/s.
    % peak        GFLOP/s as a fraction of the matmul peak measured in the
                  same run: the model-FLOP utilisation (MFU) on this machine.

    Ratios are tfllm tokens/s divided by KerasHub tokens/s: above 1 tfllm
    trains faster. "with XLA" compares the two XLA contenders, "without XLA"
    the two others, "best vs best" the faster configuration of each library.
    The range next to each ratio is the lowest and highest ratio over the
    rounds (each round's contenders ran minutes apart at most), a guide to how
    much the machine's noise moves the figure. "XLA speed-up" is a library's
    XLA tokens/s over its non-XLA tokens/s.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from timing import (  # noqa: E402
    add_gpt_shape_arguments,
    check_at_least_one,
    interquartile_fraction,
    log,
    median,
    quiet_native_stderr,
    ratio_summary,
)


with quiet_native_stderr():
    import numpy as np
    import tensorflow as tf
    import keras
    import keras_hub

    tf.constant(0.0).numpy()  # creates the devices, where the CUDA probe logs once more

try:
    from tfllm.models import GPT
except ImportError:
    # Run from a checkout without PYTHONPATH: the repository root is one level up.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tfllm.models import GPT

from tensorflow_measures import flops_per_token, matmul_peak_kernel  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_gpt_shape_arguments(
        parser.add_argument_group("model and batch shape (same for every contender)"))
    run = parser.add_argument_group("measurement")
    run.add_argument("--rounds", type=int, default=8, help="interleaved rounds")
    run.add_argument("--steps", type=int, default=4, help="training steps per contender per round")
    run.add_argument("--warmup", type=int, default=3,
                     help="untimed steps per contender before round 1")
    run.add_argument("--matmul-size", type=int, default=1024,
                     help="side of the square peak matmuls")
    run.add_argument("--quick", action="store_true",
                     help="sanity run: 2 rounds of 2 steps, 1 warm-up step")
    run.add_argument("--seed", type=int, default=1234, help="weights and batch")
    run.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.warmup = 2, 2, 1
    check_at_least_one(parser, args, (
        "num_layers", "num_heads", "hidden_dim", "intermediate_dim", "sequence_length",
        "batch_size", "vocabulary_size", "rounds", "steps", "matmul_size"))
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first step traces and compiles")
    if args.hidden_dim % args.num_heads:
        parser.error("--hidden-dim must be divisible by --num-heads")
    return args


class Contender:
    """One model, compiled one way, and the step times measured for it."""

    def __init__(self, name, library, xla, model, x, y):
        self.name, self.library, self.xla = name, library, xla
        self.model, self.x, self.y = model, x, y
        self.times = []  # seconds per step
        self.round_medians = []

    def step(self):
        start = time.perf_counter()
        self.model.train_on_batch(self.x, self.y)  # returns the loss as a number: the step is done
        return time.perf_counter() - start


def compile_for_training(model, xla):
    # KerasHub's CausalLM.compile defaults to Adam(2e-5) and an accuracy
    # metric; override both so that every contender does the same work.
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=1e-4),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=None,
        jit_compile=xla,
    )
    if bool(model.jit_compile) != xla:
        log(f"warning: asked for jit_compile={xla}, Keras resolved it to {model.jit_compile}")


def build_tfllm(args, xla):
    keras.utils.set_random_seed(args.seed)
    model = GPT(
        vocabulary_size=args.vocabulary_size,
        max_length=args.sequence_length,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        hidden_dim=args.hidden_dim,
        intermediate_dim=args.intermediate_dim,
        dropout=0.0,
        position_encoding="learned",
    )
    compile_for_training(model, xla)
    return model


def build_keras_hub(args, xla):
    keras.utils.set_random_seed(args.seed)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=args.vocabulary_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        hidden_dim=args.hidden_dim,
        intermediate_dim=args.intermediate_dim,
        max_sequence_length=args.sequence_length,
        dropout=0.0,
    )
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    compile_for_training(model, xla)
    return model


def make_batch(args):
    """One fixed batch: inputs `tokens[:, :-1]`, next-token labels `tokens[:, 1:]`."""
    rng = np.random.default_rng(args.seed)
    tokens = rng.integers(0, args.vocabulary_size, (args.batch_size, args.sequence_length + 1))
    token_ids = tf.constant(tokens[:, :-1], tf.int32)
    labels = tf.constant(tokens[:, 1:], tf.int32)
    padding_mask = tf.ones_like(token_ids)  # every position is a real token
    return token_ids, padding_mask, labels


def main(argv=None):
    args = parse_args(argv)
    tokens_per_step = args.batch_size * args.sequence_length
    np.random.seed(args.seed)
    token_ids, padding_mask, labels = make_batch(args)
    keras_hub_x = {"token_ids": token_ids, "padding_mask": padding_mask}

    log(f"tensorflow {tf.__version__}, keras {keras.__version__}, "
        f"keras-hub {keras_hub.__version__}, {os.cpu_count()} CPUs")
    log(f"shape: {args.num_layers} layers, {args.num_heads} heads, width {args.hidden_dim}, "
        f"feed-forward {args.intermediate_dim}, sequence {args.sequence_length}, "
        f"batch {args.batch_size}, vocabulary {args.vocabulary_size}")
    contenders = []
    for library, builder, x in (("tfllm", build_tfllm, token_ids),
                                ("KerasHub", build_keras_hub, keras_hub_x)):
        for xla in (False, True):
            name = ("KerasHub GPT2" if library == "KerasHub" else "tfllm GPT") + (
                " + XLA" if xla else ""
            )
            contenders.append(Contender(name, library, xla, builder(args, xla), x, labels))

    for contender in contenders:
        start = time.perf_counter()
        for _ in range(args.warmup):
            contender.step()
        seconds = time.perf_counter() - start
        log(f"warm-up  {contender.name:<20} {args.warmup} steps in {seconds:6.1f} s")
        contender.params, contender.matmul_params, contender.flops_per_token = flops_per_token(
            contender.model, args
        )

    matmul_run, matmul_flops = matmul_peak_kernel(args.matmul_size, args.seed)
    matmul_run()  # trace
    matmul_times = []

    # A burst is one contender's steps, or the matmul kernel; the order rotates each round.
    bursts = [("contender", c) for c in contenders] + [("matmul", None)]
    for round_index in range(args.rounds):
        shift = round_index % len(bursts)
        for kind, contender in bursts[shift:] + bursts[:shift]:
            if kind == "matmul":
                times = [matmul_run() for _ in range(max(args.steps, 3))]
                matmul_times.extend(times)
                log(f"round {round_index + 1}/{args.rounds}  {'matmul peak':<20} "
                    f"{matmul_flops / median(times) / 1e9:8.1f} GFLOP/s")
                continue
            times = [contender.step() for _ in range(args.steps)]
            contender.times.extend(times)
            contender.round_medians.append(median(times))
            log(f"round {round_index + 1}/{args.rounds}  {contender.name:<20} "
                f"{median(times) * 1e3:8.1f} ms/step")

    peak_gflops = matmul_flops / median(matmul_times) / 1e9
    rows = []
    for c in contenders:
        step = median(c.times)
        tokens_per_second = tokens_per_step / step
        gflops = c.flops_per_token * tokens_per_second / 1e9
        rows.append({
            "name": c.name,
            "library": c.library,
            "xla": c.xla,
            "step_ms_median": step * 1e3,
            "step_iqr_fraction": interquartile_fraction(c.times),
            "tokens_per_second": tokens_per_second,
            "params": c.params,
            "matmul_params": c.matmul_params,
            "flops_per_token": c.flops_per_token,
            "gflops_per_second": gflops,
            "fraction_of_peak": gflops / peak_gflops,
            "step_ms": [t * 1e3 for t in c.times],
        })

    tf_plain, tf_xla, kh_plain, kh_xla = contenders  # the build order above
    best_tf = min((tf_plain, tf_xla), key=lambda c: median(c.times))
    best_kh = min((kh_plain, kh_xla), key=lambda c: median(c.times))
    ratios = {
        "tfllm / KerasHub, with XLA": ratio_summary(tf_xla, kh_xla),
        "tfllm / KerasHub, without XLA": ratio_summary(tf_plain, kh_plain),
        "tfllm / KerasHub, best vs best": ratio_summary(best_tf, best_kh),
        "XLA speed-up, tfllm": ratio_summary(tf_xla, tf_plain),
        "XLA speed-up, KerasHub": ratio_summary(kh_xla, kh_plain),
    }

    print()
    print(f"Training throughput: {args.num_layers} layers, {args.num_heads} heads, "
          f"width {args.hidden_dim}, feed-forward {args.intermediate_dim}, "
          f"T={args.sequence_length}, B={args.batch_size}, V={args.vocabulary_size}")
    print(f"{args.rounds} rounds x {args.steps} steps per contender "
          f"(after {args.warmup} warm-up steps); medians. Matmul peak "
          f"({args.matmul_size}x{args.matmul_size} float32): {peak_gflops:.1f} GFLOP/s")
    print()
    header = (f"{'contender':<20} {'step ms':>9} {'IQR %':>6} {'tokens/s':>9} {'params':>10} "
              f"{'FLOP/token':>11} {'GFLOP/s':>8} {'% peak':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:<20} {r['step_ms_median']:9.1f} {100 * r['step_iqr_fraction']:6.1f} "
              f"{r['tokens_per_second']:9.0f} {r['params']:10,d} "
              f"{r['flops_per_token'] / 1e6:10.2f}M "
              f"{r['gflops_per_second']:8.1f} {100 * r['fraction_of_peak']:7.1f}")
    print()
    print(f"{'ratio (tokens/s)':<32} {'value':>6}   {'per-round range':<15}  compares")
    print("-" * 96)
    for label, r in ratios.items():
        print(f"{label:<32} {r['ratio']:6.2f}   {r['round_min']:5.2f} .. {r['round_max']:<5.2f}   "
              f"{r['numerator']} / {r['denominator']}")

    if args.json:
        report = {
            "config": {k: v for k, v in vars(args).items() if k != "json"},
            "environment": {
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "keras_hub": keras_hub.__version__,
                "python": platform.python_version(),
                "machine": platform.machine(),
                "cpu_count": os.cpu_count(),
            },
            "tokens_per_step": tokens_per_step,
            "matmul_peak": {
                "size": args.matmul_size,
                "gflops_per_second": peak_gflops,
                "call_ms": [t * 1e3 for t in matmul_times],
                "flops_per_call": matmul_flops,
            },
            "contenders": rows,
            "ratios": ratios,
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {path}")


if __name__ == "__main__":
    main()
