"""Generation speed: tfllm's cached GPT decoder against KerasHub's GPT2CausalLM, and the
exported SavedModel against the in-process model.

What it measures
    Both models have the same shape (4 layers, 4 heads, width 256, feed-forward 1024,
    vocabulary 512, 512 positions) and random weights (nothing is downloaded). Each
    generates greedily from an 8-token prompt up to 128 or 512 positions, for a batch of 1
    and of 8 prompts:

        tfllm      GPT.generate(prompt, max_new_tokens=N, temperature=0)
        KerasHub   GPT2CausalLM.generate({"token_ids", "padding_mask"}) with the "greedy"
                   sampler and no preprocessor; it generates up to the padded length

    Every contender is called once to compile, then the script runs `--rounds` rounds; in
    each round every contender generates once, in an order that rotates from round to
    round, so slow and fast minutes of a shared machine fall on all alike. Figures are
    medians.

    Then the same prompt through the export: `tfllm.export.export_model` of a GPT with a
    character vocabulary, loaded with `tf.saved_model.load` and called through its
    `generate` signature (greedy, 128 new tokens), against `generate_text` in process.

How to run
    PYTHONPATH=. python benchmarks/generate_throughput.py            # ~5 minutes on 2 cores
    PYTHONPATH=. python benchmarks/generate_throughput.py --quick    # one batch, 128 positions

How to read the numbers
    tokens/s   new tokens per second, summed over the batch
    ms/step    median time of one generated position (a step produces B tokens)
    ratio      tfllm tokens/s / KerasHub tokens/s in the same case
    512/128    per-step time at 512 positions over that at 128 (1.0: the step does not
               grow with the sequence)
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SHAPE = {"vocabulary_size": 512, "num_layers": 4, "num_heads": 4, "hidden_dim": 256,
         "intermediate_dim": 1024}
MAX_LENGTH = 512
PROMPT_LENGTH = 8


def log(message):
    print(message, file=sys.stderr, flush=True)


def build_tfllm():
    from tfllm.models import GPT

    model = GPT(max_length=MAX_LENGTH, **SHAPE)
    model.build((None, None))
    return model


def build_keras_hub():
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=SHAPE["vocabulary_size"], num_layers=SHAPE["num_layers"],
        num_heads=SHAPE["num_heads"], hidden_dim=SHAPE["hidden_dim"],
        intermediate_dim=SHAPE["intermediate_dim"], max_sequence_length=MAX_LENGTH)
    causal_lm = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    causal_lm.compile(sampler="greedy")
    return causal_lm


def contenders(tfllm_model, keras_hub_model, batch_size, positions):
    rng = np.random.default_rng(0)
    prompt = rng.integers(1, SHAPE["vocabulary_size"], size=(batch_size, PROMPT_LENGTH))
    prompt = prompt.astype("int32")
    new_tokens = positions - PROMPT_LENGTH
    token_ids = np.zeros((batch_size, positions), "int32")
    token_ids[:, :PROMPT_LENGTH] = prompt
    padding_mask = np.zeros((batch_size, positions), bool)
    padding_mask[:, :PROMPT_LENGTH] = True

    def run_tfllm():
        output = tfllm_model.generate(prompt, max_new_tokens=new_tokens, temperature=0)
        assert output.shape == (batch_size, positions), output.shape

    def run_keras_hub():
        output = keras_hub_model.generate(
            {"token_ids": token_ids, "padding_mask": padding_mask}, stop_token_ids=None)
        assert np.asarray(output["token_ids"]).shape == (batch_size, positions)

    return {"tfllm": run_tfllm, "KerasHub": run_keras_hub}


def measure(functions, rounds, label):
    """Median seconds per call of each function, interleaved in rotating order."""
    names = list(functions)
    for name in names:
        log(f"  {label}: compiling {name} ...")
        functions[name]()
    times = {name: [] for name in names}
    for round_index in range(rounds):
        order = names[round_index % len(names):] + names[: round_index % len(names)]
        for name in order:
            start = time.perf_counter()
            functions[name]()
            times[name].append(time.perf_counter() - start)
        log(f"  {label}: round {round_index + 1}/{rounds}")
    return {name: statistics.median(values) for name, values in times.items()}


def export_comparison(rounds):
    """(exported seconds, in-process seconds) for one greedy prompt, 128 new tokens."""
    from tfllm.data import CharacterTokenizer
    from tfllm.export import export_model
    from tfllm.generation import generate_text
    from tfllm.models import GPT

    text = "".join(chr(code) for code in range(32, 127)) + "\n"
    tokenizer = CharacterTokenizer.from_texts([text])
    model = GPT(vocabulary_size=tokenizer.vocabulary_size, max_length=MAX_LENGTH,
                **{key: value for key, value in SHAPE.items() if key != "vocabulary_size"})
    model.build((None, None))
    prompt = "ROMEO:\n"
    with tempfile.TemporaryDirectory() as directory:
        path = export_model(model, tokenizer, os.path.join(directory, "gpt"), max_new_tokens=128)
        served = tf.saved_model.load(str(path)).signatures["generate"]
        options = {"max_new_tokens": tf.constant(128), "temperature": tf.constant(0.0),
                   "top_k": tf.constant(0), "top_p": tf.constant(1.0), "seed": tf.constant(0)}
        expected = generate_text(model, tokenizer, prompt, 128, temperature=0)
        got = served(prompts=tf.constant([prompt]), **options)["text"].numpy()[0].decode()
        if got != expected:
            log("  warning: the export's text differs from the in-process text")
        medians = measure({
            "exported": lambda: served(prompts=tf.constant([prompt]), **options)["text"].numpy(),
            "in-process": lambda: generate_text(model, tokenizer, prompt, 128, temperature=0),
        }, rounds, "export")
    return medians["exported"], medians["in-process"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per case")
    parser.add_argument("--quick", action="store_true", help="batch 1, 128 positions only")
    parser.add_argument("--no-export", action="store_true", help="skip the SavedModel part")
    args = parser.parse_args()
    keras.utils.set_random_seed(1)

    cases = [(1, 128)] if args.quick else [(1, 128), (1, 512), (8, 128), (8, 512)]
    tfllm_model, keras_hub_model = build_tfllm(), build_keras_hub()
    results = {}
    for batch_size, positions in cases:
        label = f"batch {batch_size}, {positions} positions"
        medians = measure(contenders(tfllm_model, keras_hub_model, batch_size, positions),
                          args.rounds, label)
        steps = positions - PROMPT_LENGTH
        results[(batch_size, positions)] = {
            name: {"tokens_per_second": steps * batch_size / seconds,
                   "ms_per_step": 1000 * seconds / steps}
            for name, seconds in medians.items()
        }

    print(f"Greedy generation, {SHAPE}, prompt {PROMPT_LENGTH} tokens, medians of "
          f"{args.rounds} rounds")
    print(f"{'case':<24}{'tfllm tok/s':>13}{'KerasHub tok/s':>16}{'ratio':>8}"
          f"{'tfllm ms/step':>15}{'KerasHub ms/step':>18}")
    for (batch_size, positions), figures in results.items():
        ours, theirs = figures["tfllm"], figures["KerasHub"]
        print(f"{f'batch {batch_size}, {positions} pos':<24}{ours['tokens_per_second']:>13.0f}"
              f"{theirs['tokens_per_second']:>16.0f}"
              f"{ours['tokens_per_second'] / theirs['tokens_per_second']:>8.2f}"
              f"{ours['ms_per_step']:>15.2f}{theirs['ms_per_step']:>18.2f}")
    for batch_size in (1, 8):
        if (batch_size, 128) in results and (batch_size, 512) in results:
            growth = {name: results[(batch_size, 512)][name]["ms_per_step"]
                      / results[(batch_size, 128)][name]["ms_per_step"]
                      for name in ("tfllm", "KerasHub")}
            print(f"per-step time 512/128 positions, batch {batch_size}: "
                  f"tfllm {growth['tfllm']:.2f}, KerasHub {growth['KerasHub']:.2f}")
    if not args.no_export:
        exported, in_process = export_comparison(args.rounds)
        print(f"export vs in-process, batch 1, 128 new tokens: {exported * 1000:.0f} ms vs "
              f"{in_process * 1000:.0f} ms, ratio {exported / in_process:.2f}")


if __name__ == "__main__":
    main()
