"""Generation throughput of tfllm's GPT against KerasHub's GPT2CausalLM, and of the export.

What it measures
    The same GPT-2-shaped decoder (same layers, heads, width, feed-forward
    width and vocabulary; random weights, nothing is downloaded) generates
    greedily from a random `--prompt-length`-token prompt until the sequence
    holds P positions, for a batch of B prompts. Each case is one (B, P)
    pair; by default batch 1 and 8, at 128 and 512 positions. Contenders:

        tfllm GPT             `model.generate(prompt_ids, max_new_tokens=P - prompt,
                              temperature=0.0)` with int32 prompt ids [B, prompt];
                              it returns the [B, P] ids, prompt included
        KerasHub GPT2         `GPT2CausalLM(backbone, preprocessor=None)` compiled with
                              `sampler="greedy"`, called as `generate({"token_ids",
                              "padding_mask"}, stop_token_ids=None)`: token_ids is
                              [B, P] with the prompt first, padding_mask is True over
                              the prompt only, and KerasHub fills every position after
                              it (it generates up to the padded length)
        KerasHub GPT2 + XLA   the same, compiled with jit_compile=True

    KerasHub wraps `generate_step` in a `tf.function` whose `jit_compile` is
    the model's: with `compile(jit_compile="auto")`, its default, Keras turns
    XLA off on a machine without an accelerator, so the plain contender is
    what a KerasHub user gets on a CPU, and the "+ XLA" one is its best.
    Both KerasHub contenders start from the same seed, so they hold the same
    weights and must produce the same tokens (the script checks it).

    Every contender is called once per case before timing (the first call
    traces, and with XLA compiles, a function for that shape). Then the
    script runs `--rounds` rounds; in each round every (case, contender)
    pair generates once, in an order that rotates from round to round, so
    slow and fast minutes of a noisy machine fall on all of them alike.

    Then, if `tfllm.export` is importable: a GPT with a character vocabulary
    is exported with `tfllm.export.export_model`, loaded back with
    `tf.saved_model.load` and called through its `generate` signature
    (greedy, batch 1, `--export-new-tokens` new tokens), against
    `tfllm.generation.generate_text` on the same prompt in this process,
    in the same warm-up-then-rotating-rounds way.

How to run
    PYTHONPATH=. python benchmarks/generate_throughput.py           # 4 cases: ~5.5 min, 2 cores
    PYTHONPATH=. python benchmarks/generate_throughput.py --quick   # sanity run: ~1 min
    PYTHONPATH=. python benchmarks/generate_throughput.py --cases 1x128,1x512 --no-keras-hub-xla
    PYTHONPATH=. python benchmarks/generate_throughput.py --json runs/generate.json

    A case is BATCHxPOSITIONS. Progress goes to stderr; the tables go to stdout.

How to read the numbers
    call ms       median wall time of one generate call, prompt reading
                  (prefill) included; the call returns NumPy arrays, so the
                  work has finished.
    IQR %         spread of the call times: (p75 - p25) / median.
    ms/step       call ms / new tokens: the time per generated position (a
                  step produces B tokens, one per row).
    tokens/s      new tokens per second summed over the batch:
                  B x new tokens / call time.

    Ratios are tfllm tokens/s divided by KerasHub tokens/s in the same case:
    above 1 tfllm generates faster. The range next to each ratio is the lowest
    and highest ratio over the rounds, a guide to how much the machine's noise
    moves it. "ms/step 512 / 128" is a library's ms/step at the longer case
    over the shorter one (same batch): 1.0 means a step costs the same however
    long the sequence already is; a decoder without a key/value cache grows
    about linearly with the positions.

    The export table gives the exported signature's and the in-process call's
    medians; "exported / in-process" above 1 means the SavedModel is slower.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from timing import (  # noqa: E402
    add_gpt_shape_arguments,
    check_at_least_one,
    interquartile_fraction,
    log,
    median,
    parse_cases,
    quiet_native_stderr,
)


with quiet_native_stderr():
    import numpy as np
    import tensorflow as tf
    import keras
    import keras_hub

    tf.constant(0.0).numpy()  # creates the devices, where the CUDA probe logs once more

# KerasHub's generate_step is one tf.function retraced per input shape (one per case);
# TensorFlow's Python logger would warn about that "excessive retracing".
tf.get_logger().setLevel("ERROR")

try:
    from tfllm.models import GPT
except ImportError:
    # Run from a checkout without PYTHONPATH: the repository root is one level up.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tfllm.models import GPT

from tfllm.data import CharacterTokenizer  # noqa: E402
from tfllm.generation import generate_text  # noqa: E402

DEFAULT_CASES = "1x128,1x512,8x128,8x512"
QUICK_CASES = "1x128,8x128"
EXPORT_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
    "ROMEO:\nBut, soft! what light through yonder window breaks?\n"
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?\n"
)
EXPORT_PROMPT = "ROMEO:\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    shape = parser.add_argument_group("model shape (same for every contender)")
    add_gpt_shape_arguments(shape, training=False)
    shape.add_argument("--max-length", type=int, default=512,
                       help="positions the models accept (raised to the longest case)")
    work = parser.add_argument_group("what is generated")
    work.add_argument("--cases", type=parse_cases, default=DEFAULT_CASES,
                      help=f"comma-separated BATCHxPOSITIONS cases (--quick: {QUICK_CASES})")
    work.add_argument("--prompt-length", type=int, default=8, help="prompt tokens per row")
    work.add_argument("--no-keras-hub-xla", action="store_true",
                      help="skip the KerasHub contender compiled with XLA")
    work.add_argument("--no-export", action="store_true",
                      help="skip the exported SavedModel vs in-process comparison")
    work.add_argument("--export-new-tokens", type=int, default=128,
                      help="new tokens per call in the export comparison (batch 1)")
    run = parser.add_argument_group("measurement")
    run.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    run.add_argument("--warmup", type=int, default=1,
                     help="untimed calls per contender and case before round 1")
    run.add_argument("--quick", action="store_true",
                     help=f"sanity run: 2 rounds, cases {QUICK_CASES}")
    run.add_argument("--seed", type=int, default=1234, help="weights and prompts")
    run.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds = min(args.rounds, 2)
        if args.cases == parse_cases(DEFAULT_CASES):  # --cases not given
            args.cases = parse_cases(QUICK_CASES)
    check_at_least_one(parser, args, (
        "num_layers", "num_heads", "hidden_dim", "intermediate_dim", "vocabulary_size",
        "max_length", "prompt_length", "export_new_tokens", "rounds"))
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first call traces and compiles")
    if args.hidden_dim % args.num_heads:
        parser.error("--hidden-dim must be divisible by --num-heads")
    if args.vocabulary_size < 2:
        parser.error("--vocabulary-size must be at least 2 (id 0 is tfllm's padding)")
    for batch, positions in args.cases:
        if positions <= args.prompt_length:
            parser.error(f"case {batch}x{positions}: positions must exceed the prompt "
                         f"({args.prompt_length} tokens)")
    args.max_length = max([args.max_length] + [p for _, p in args.cases])
    if args.export_new_tokens >= args.max_length:
        parser.error("--export-new-tokens must be smaller than the max length")
    return args


def case_name(case):
    return f"B={case[0]}, {case[1]} pos"


class Contender:
    """One generate call, for one model and one case, and the times measured for it."""

    def __init__(self, name, library, case, call, label=None):
        self.name, self.library, self.case, self.call = name, library, case, call
        self.label = label or f"{name}, {case_name(case)}"
        self.times = []  # seconds per call, one per round

    def run(self):
        start = time.perf_counter()
        self.last_output = self.call()  # NumPy: the generation has finished
        return time.perf_counter() - start


def build_tfllm(args):
    keras.utils.set_random_seed(args.seed)
    model = GPT(
        vocabulary_size=args.vocabulary_size,
        max_length=args.max_length,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        hidden_dim=args.hidden_dim,
        intermediate_dim=args.intermediate_dim,
        dropout=0.0,
        position_encoding="learned",
    )
    model.build((None, None))
    return model


def build_keras_hub(args, xla):
    keras.utils.set_random_seed(args.seed + 1)  # the same weights for both KerasHub contenders
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=args.vocabulary_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        hidden_dim=args.hidden_dim,
        intermediate_dim=args.intermediate_dim,
        max_sequence_length=args.max_length,
        dropout=0.0,
    )
    causal_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    # generate() wraps generate_step in tf.function(jit_compile=model.jit_compile).
    causal_lm.compile(sampler="greedy", jit_compile=True if xla else "auto")
    if bool(causal_lm.jit_compile) != xla:
        log(f"note: KerasHub resolved jit_compile to {causal_lm.jit_compile} (asked xla={xla})")
    return causal_lm


def make_calls(args, case, tfllm_model, keras_hub_models):
    """The contenders' generate calls for one (batch, positions) case."""
    batch_size, positions = case
    prompt_length, new_tokens = args.prompt_length, positions - args.prompt_length
    rng = np.random.default_rng([args.seed, batch_size, positions])
    # Ids from 1: 0 is tfllm's padding id, which its decoder never generates.
    prompt_ids = rng.integers(1, args.vocabulary_size, (batch_size, prompt_length)).astype(np.int32)
    token_ids = np.zeros((batch_size, positions), np.int32)
    token_ids[:, :prompt_length] = prompt_ids
    padding_mask = np.zeros((batch_size, positions), bool)
    padding_mask[:, :prompt_length] = True

    def tfllm_call():
        output = tfllm_model.generate(prompt_ids, max_new_tokens=new_tokens, temperature=0.0)
        return np.asarray(output)

    def keras_hub_call(causal_lm):
        def call():
            output = causal_lm.generate(
                {"token_ids": token_ids, "padding_mask": padding_mask}, stop_token_ids=None)
            return np.asarray(output["token_ids"])
        return call

    calls = [("tfllm GPT", "tfllm", tfllm_call)]
    for name, causal_lm in keras_hub_models:
        calls.append((name, "KerasHub", keras_hub_call(causal_lm)))
    return [Contender(name, library, case, call) for name, library, call in calls], prompt_ids


def check_outputs(contenders, prompt_ids, case):
    """Every contender returned [B, positions] ids starting with the prompt."""
    batch_size, positions = case
    keras_hub_outputs = []
    for contender in contenders:
        output = contender.last_output
        if output.shape != (batch_size, positions):
            raise SystemExit(f"{contender.name}, {case_name(case)}: output shape {output.shape}, "
                             f"expected {(batch_size, positions)}")
        if not np.array_equal(output[:, : prompt_ids.shape[1]], prompt_ids):
            raise SystemExit(f"{contender.name}, {case_name(case)}: the prompt was not kept")
        if contender.library == "tfllm" and (output[:, prompt_ids.shape[1]:] == 0).any():
            log(f"warning: tfllm GPT, {case_name(case)}: padding in the output; it stopped "
                "early, and tokens/s counts tokens it did not generate")
        if contender.library == "KerasHub":
            keras_hub_outputs.append(output)
    if len(keras_hub_outputs) == 2 and not np.array_equal(*keras_hub_outputs):
        differ = int((keras_hub_outputs[0] != keras_hub_outputs[1]).sum())
        log(f"note: KerasHub with and without XLA differ in {differ} tokens at "
            f"{case_name(case)} (float rounding near a tie can flip a greedy choice)")


def run_rounds(contenders, rounds):
    """Times each contender once per round, in an order rotating by one each round."""
    for round_index in range(rounds):
        shift = round_index % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            seconds = contender.run()
            contender.times.append(seconds)
            log(f"round {round_index + 1}/{rounds}  {contender.label:<36} "
                f"{seconds * 1e3:9.1f} ms/call")


def warm_up(contender, count):
    start = time.perf_counter()
    for _ in range(count):
        contender.run()
    log(f"warm-up  {contender.label:<36} {count} call(s) in "
        f"{time.perf_counter() - start:6.1f} s")


def ratio_summary(numerator, denominator):
    """Speed of `numerator` over `denominator` (time ratio inverted), and its range per round."""
    per_round = [d / n for n, d in zip(numerator.times, denominator.times)]
    return {
        "numerator": numerator.name,
        "denominator": denominator.name,
        "case": list(numerator.case),
        "ratio": median(denominator.times) / median(numerator.times),
        "round_min": min(per_round),
        "round_max": max(per_round),
    }


def export_comparison(args):
    """Exported `generate` signature vs `generate_text` in process; None when skipped."""
    try:
        from tfllm.export import export_model
    except ImportError as error:
        log(f"export comparison skipped: tfllm.export cannot be imported ({error})")
        return None

    tokenizer = CharacterTokenizer.from_texts([EXPORT_TEXT])
    keras.utils.set_random_seed(args.seed)
    model = GPT(
        vocabulary_size=tokenizer.vocabulary_size,
        max_length=args.max_length,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        hidden_dim=args.hidden_dim,
        intermediate_dim=args.intermediate_dim,
        dropout=0.0,
    )
    model.build((None, None))
    new_tokens = args.export_new_tokens
    with tempfile.TemporaryDirectory(prefix="generate_throughput_") as directory:
        start = time.perf_counter()
        with quiet_native_stderr():
            version_directory = export_model(model, tokenizer, os.path.join(directory, "gpt"))
            served = tf.saved_model.load(str(version_directory)).signatures["generate"]
        log(f"export   wrote and loaded {version_directory} in "
            f"{time.perf_counter() - start:6.1f} s")
        options = {
            "max_new_tokens": tf.constant(new_tokens, tf.int32),
            "temperature": tf.constant(0.0, tf.float32),
            "top_k": tf.constant(0, tf.int32),
            "top_p": tf.constant(1.0, tf.float32),
            "seed": tf.constant(0, tf.int32),
        }
        prompts = tf.constant([EXPORT_PROMPT])

        def exported_call():
            return served(prompts=prompts, **options)["text"].numpy()[0].decode("utf-8")

        def in_process_call():
            return generate_text(model, tokenizer, EXPORT_PROMPT, max_new_tokens=new_tokens,
                                 temperature=0.0)

        case = (1, len(EXPORT_PROMPT) + new_tokens)
        contenders = [
            Contender("exported SavedModel", "export", case, exported_call,
                      label="export: exported SavedModel"),
            Contender("in-process generate_text", "tfllm", case, in_process_call,
                      label="export: in-process generate_text"),
        ]
        for contender in contenders:
            warm_up(contender, args.warmup)
        exported, in_process = (c.last_output for c in contenders)
        if exported != in_process:
            log("warning: the exported text differs from the in-process text "
                f"({exported[:40]!r}... vs {in_process[:40]!r}...)")
        run_rounds(contenders, args.rounds)
    rows = [{
        "name": c.name,
        "call_ms_median": median(c.times) * 1e3,
        "call_iqr_fraction": interquartile_fraction(c.times),
        "ms_per_token": median(c.times) * 1e3 / new_tokens,
        "tokens_per_second": new_tokens / median(c.times),
        "call_ms": [t * 1e3 for t in c.times],
    } for c in contenders]
    # Time ratio exported / in-process: the inverse of the speed ratio.
    speed = ratio_summary(contenders[1], contenders[0])
    return {
        "prompt": EXPORT_PROMPT,
        "new_tokens": new_tokens,
        "vocabulary_size": tokenizer.vocabulary_size,
        "texts_equal": exported == in_process,
        "rows": rows,
        "exported_over_in_process": speed["ratio"],
        "round_min": speed["round_min"],
        "round_max": speed["round_max"],
    }


def main(argv=None):
    args = parse_args(argv)
    wall_start = time.perf_counter()
    log(f"tensorflow {tf.__version__}, keras {keras.__version__}, "
        f"keras-hub {keras_hub.__version__}, {os.cpu_count()} CPUs")
    log(f"shape: {args.num_layers} layers, {args.num_heads} heads, width {args.hidden_dim}, "
        f"feed-forward {args.intermediate_dim}, vocabulary {args.vocabulary_size}, "
        f"max length {args.max_length}; prompt {args.prompt_length} tokens; cases "
        + ", ".join(f"{b}x{p}" for b, p in args.cases))

    tfllm_model = build_tfllm(args)
    keras_hub_models = [("KerasHub GPT2", build_keras_hub(args, xla=False))]
    if not args.no_keras_hub_xla:
        keras_hub_models.append(("KerasHub GPT2 + XLA", build_keras_hub(args, xla=True)))

    by_case = {}
    for case in args.cases:
        contenders, prompt_ids = make_calls(args, case, tfllm_model, keras_hub_models)
        for contender in contenders:
            warm_up(contender, args.warmup)
        check_outputs(contenders, prompt_ids, case)
        by_case[case] = contenders

    # Every (case, contender) pair is one burst of the rotation.
    everything = [c for contenders in by_case.values() for c in contenders]
    run_rounds(everything, args.rounds)

    rows = []
    for case, contenders in by_case.items():
        batch_size, positions = case
        new_tokens = positions - args.prompt_length
        for c in contenders:
            call = median(c.times)
            rows.append({
                "name": c.name,
                "library": c.library,
                "batch_size": batch_size,
                "positions": positions,
                "new_tokens": new_tokens,
                "call_ms_median": call * 1e3,
                "call_iqr_fraction": interquartile_fraction(c.times),
                "ms_per_step": call * 1e3 / new_tokens,
                "tokens_per_second": batch_size * new_tokens / call,
                "call_ms": [t * 1e3 for t in c.times],
            })

    ratios = []
    for case, contenders in by_case.items():
        tfllm_contender = contenders[0]
        for other in contenders[1:]:
            ratios.append(ratio_summary(tfllm_contender, other))

    growth = []
    positions_by_batch = {}
    for batch_size, positions in args.cases:
        positions_by_batch.setdefault(batch_size, []).append(positions)
    for batch_size, all_positions in positions_by_batch.items():
        if len(all_positions) < 2:
            continue
        short, long = min(all_positions), max(all_positions)
        for index, c_long in enumerate(by_case[(batch_size, long)]):
            c_short = by_case[(batch_size, short)][index]
            per_step = lambda c: median(c.times) / (c.case[1] - args.prompt_length)  # noqa: E731
            growth.append({"name": c_long.name, "batch_size": batch_size, "short": short,
                           "long": long, "ratio": per_step(c_long) / per_step(c_short)})

    export = None if args.no_export else export_comparison(args)

    print()
    print(f"Greedy generation throughput: {args.num_layers} layers, {args.num_heads} heads, "
          f"width {args.hidden_dim}, feed-forward {args.intermediate_dim}, "
          f"V={args.vocabulary_size}, prompt {args.prompt_length} tokens")
    print(f"{args.rounds} round(s), one call per contender and case per round "
          f"(after {args.warmup} warm-up call(s)); medians")
    print()
    header = (f"{'case':<16} {'contender':<20} {'call ms':>9} {'IQR %':>6} "
              f"{'ms/step':>8} {'tokens/s':>9}")
    print(header)
    print("-" * len(header))
    previous_case = None
    for r in rows:
        case = case_name((r["batch_size"], r["positions"]))
        print(f"{case if case != previous_case else '':<16} {r['name']:<20} "
              f"{r['call_ms_median']:9.1f} {100 * r['call_iqr_fraction']:6.1f} "
              f"{r['ms_per_step']:8.2f} {r['tokens_per_second']:9.0f}")
        previous_case = case
    print()
    print(f"{'ratio (tokens/s)':<16} {'compares':<38} {'value':>6}   per-round range")
    print("-" * 80)
    for r in ratios:
        print(f"{case_name(r['case']):<16} {r['numerator'] + ' / ' + r['denominator']:<38} "
              f"{r['ratio']:6.2f}   {r['round_min']:5.2f} .. {r['round_max']:.2f}")
    if growth:
        print()
        print(f"{'ms/step long / short':<24} {'contender':<20} {'value':>6}")
        print("-" * 52)
        for g in growth:
            label = f"B={g['batch_size']}, {g['long']} / {g['short']}"
            print(f"{label:<24} {g['name']:<20} {g['ratio']:6.2f}")
    if export is not None:
        print()
        print(f"Export: batch 1, greedy, {export['new_tokens']} new tokens from "
              f"{export['prompt']!r} (character vocabulary of {export['vocabulary_size']}); "
              f"texts {'equal' if export['texts_equal'] else 'DIFFER'}")
        header = f"{'contender':<26} {'call ms':>9} {'IQR %':>6} {'ms/token':>9} {'tokens/s':>9}"
        print(header)
        print("-" * len(header))
        for r in export["rows"]:
            print(f"{r['name']:<26} {r['call_ms_median']:9.1f} "
                  f"{100 * r['call_iqr_fraction']:6.1f} {r['ms_per_token']:9.2f} "
                  f"{r['tokens_per_second']:9.0f}")
        print(f"exported / in-process time: {export['exported_over_in_process']:.2f} "
              f"(per-round range {export['round_min']:.2f} .. {export['round_max']:.2f})")
    elif not args.no_export:
        print()
        print("Export: skipped (tfllm.export is not available)")
    log(f"total wall time {time.perf_counter() - wall_start:.0f} s")

    if args.json:
        report = {
            "config": {k: (v if k != "cases" else [list(c) for c in v])
                       for k, v in vars(args).items() if k != "json"},
            "environment": {
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "keras_hub": keras_hub.__version__,
                "python": platform.python_version(),
                "machine": platform.machine(),
                "cpu_count": os.cpu_count(),
            },
            "contenders": rows,
            "ratios": ratios,
            "per_step_growth": growth,
            "export": export,
        }
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        log(f"wrote {path}")


if __name__ == "__main__":
    main()
