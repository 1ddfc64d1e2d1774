"""int8 weights against float32: decoding speed and held-out loss of one GPT, in one process.

What it measures
    Decoding: a GPT of the benchmark shape (4 layers x 256, 4 heads, feed-forward 1024,
    vocabulary 512, random weights) and its copy after `model.quantize("int8")` generate
    greedily from random 8-token prompts to 128 positions, at batch 1 and 8. Every
    contender is called once per case before timing (tracing and XLA compilation), then
    `--rounds` rounds run every (case, contender) pair once, in an order that rotates from
    round to round; the tables give medians.

    Quality (with `--run RUN`, a finished GPT run such as runs/gpt-default): the run's
    model is scored on the held-out test plays (`held_out_loss`, nats per character)
    as it is and after `quantize("int8")`, and both greedily continue the same prompt.

How to run
    PYTHONPATH=. python benchmarks/int8_decode.py                          # ~3 min, 2 cores
    PYTHONPATH=. python benchmarks/int8_decode.py --run runs/gpt-default   # + held-out loss
    PYTHONPATH=. python benchmarks/int8_decode.py --quick                  # sanity run

How to read the numbers
    tokens/s   new tokens per second summed over the batch (prompt reading included);
    int8 / float32   the int8 model's tokens/s over the float32 model's, with the lowest
               and highest per-round ratio: above 1 int8 decodes faster.
    Which units the CPU has matters (`lscpu`: avx512_vnni / amx_int8 speed int8 up; an
    AVX2-only CPU has neither): the script prints the CPU model and its flags of note.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from timing import cpu_description, log, median, quiet_native_stderr  # noqa: E402

with quiet_native_stderr():
    import keras  # noqa: E402
    import numpy as np  # noqa: E402
    import tensorflow as tf  # noqa: E402

from tfllm.models import GPT  # noqa: E402

from tensorflow_measures import int8_copy  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="a finished GPT run: also compare held-out test loss")
    parser.add_argument("--cases", default="1x128,8x128", help="BATCHxPOSITIONS,...")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--quick", action="store_true", help="2 rounds, batch 1 only")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.cases = 2, "1x128"
    args.cases = [tuple(int(part) for part in case.split("x")) for case in args.cases.split(",")]
    return args


def benchmark_model(seed):
    keras.utils.set_random_seed(seed)
    model = GPT(vocabulary_size=512, max_length=512, num_layers=4, num_heads=4, hidden_dim=256,
                intermediate_dim=1024)
    model.build((None, None))
    return model


def decoding(args):
    models = {"float32": benchmark_model(args.seed)}
    models["int8"] = int8_copy(models["float32"])
    times = {}
    calls = []
    for batch_size, positions in args.cases:
        prompts = np.random.default_rng([args.seed, batch_size]).integers(
            1, 512, (batch_size, 8)).astype(np.int32)
        for name, model in models.items():
            def call(model=model, prompts=prompts, positions=positions):
                return model.generate(prompts, max_new_tokens=positions - 8, temperature=0)
            calls.append(((batch_size, positions), name, call))
    for case, name, call in calls:
        start = time.perf_counter()
        call()
        log(f"warm-up  {name:<8} {case[0]}x{case[1]}  {time.perf_counter() - start:6.1f} s")
    for round_index in range(args.rounds):
        shift = round_index % len(calls)
        for case, name, call in calls[shift:] + calls[:shift]:
            start = time.perf_counter()
            call()
            times.setdefault((case, name), []).append(time.perf_counter() - start)
        log(f"round {round_index + 1}/{args.rounds} done")
    print("\nGreedy decoding, 4 x 256, vocabulary 512, 8-token prompts (medians):\n")
    print("| case | float32 tokens/s | int8 tokens/s | int8 / float32 (range) |")
    print("|---|---|---|---|")
    for batch_size, positions in args.cases:
        case = (batch_size, positions)
        new = batch_size * (positions - 8)
        floats, ints = times[(case, "float32")], times[(case, "int8")]
        per_round = [f / i for f, i in zip(floats, ints)]
        print(f"| batch {batch_size}, {positions} positions | {new / median(floats):,.0f} | "
              f"{new / median(ints):,.0f} | {median(floats) / median(ints):.2f} "
              f"({min(per_round):.2f}-{max(per_round):.2f}) |")


def quality(run):
    from tfllm.data import load_corpus
    from tfllm.data.datasets import encode_documents
    from tfllm.generation import generate_text
    from tfllm.training.language_model import held_out_loss
    from tfllm.runs import RunDirectory

    model, tokenizer = RunDirectory(run).load()
    training = RunDirectory(run).read_config()["training"]
    corpus = load_corpus("shakespeare")
    test_ids = encode_documents(tokenizer, corpus.documents("test"))
    losses, samples = {}, {}
    for name in ("float32", "int8"):
        if name == "int8":
            model.quantize("int8")
        losses[name] = held_out_loss(model, test_ids, training["sequence_length"],
                                     training["batch_size"])
        samples[name] = generate_text(model, tokenizer, "ROMEO:\n", max_new_tokens=120,
                                      temperature=0.0)
    print(f"\nHeld-out test loss of {run} over {len(corpus.documents('test'))} plays "
          "(nats per character):\n")
    print("| weights | test loss |\n|---|---|")
    for name, loss in losses.items():
        print(f"| {name} | {loss:.4f} |")
    print(f"\nint8 - float32: {losses['int8'] - losses['float32']:+.4f} nats")
    for name, text in samples.items():
        print(f"\nGreedy sample, {name}:\n{text}")


def main(argv=None):
    args = parse_args(argv)
    print(f"CPU: {cpu_description()}")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}")
    decoding(args)
    if args.run:
        quality(args.run)


if __name__ == "__main__":
    main()
