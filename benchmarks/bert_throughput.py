"""Masked-LM training throughput of tfllm's BertMaskedLM against KerasHub's BertMaskedLM.

What it measures
    Both libraries train the same BERT-shaped encoder with a masked-LM head on the
    masked positions only (same layers, heads, width, feed-forward width, sequence length,
    batch, vocabulary and number of predicted positions per sequence), with and without
    XLA:

        tfllm BERT (+ XLA)      `tfllm.models.BertMaskedLM`, inputs
                                `{"token_ids", "mask_positions"}`
        KerasHub BERT (+ XLA)   `keras_hub.models.BertMaskedLM` on a `BertBackbone`, inputs
                                `{"token_ids", "segment_ids", "padding_mask", "mask_positions"}`

    Each trains with `train_on_batch` on one fixed random batch (AdamW 1e-4, sparse
    cross-entropy on logits, sample weights 1 at the predicted positions), no dropout.
    The two are not the same network in every detail: KerasHub's BERT is post-LN with an
    embedding LayerNorm and segment embeddings, tfllm's is pre-LN with a final LayerNorm;
    the matmuls, which dominate, are the same.

    After a warm-up, `--rounds` rounds run a burst of `--steps` steps of every
    contender, in an order that rotates each round; medians over all steps.

How to run
    PYTHONPATH=. python benchmarks/bert_throughput.py            # ~5 min on 2 CPU cores
    PYTHONPATH=. python benchmarks/bert_throughput.py --quick    # ~1 min

Reading the table
    step ms = median wall time of one training step; tokens/s = batch x sequence / step;
    ratio = tfllm tokens/s / KerasHub tokens/s (above 1: tfllm faster), with its lowest and
    highest value over the rounds.
"""

import argparse
import json
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
    import keras_hub
    import numpy as np
    import tensorflow as tf

    tf.constant(0.0).numpy()

try:
    from tfllm.models import BertEncoder, BertMaskedLM
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tfllm.models import BertEncoder, BertMaskedLM


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--hidden-dim", type=int, default=128)
    parser.add_argument("--intermediate-dim", type=int, default=512)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--vocabulary-size", type=int, default=4096)
    parser.add_argument("--predictions", type=int, default=32,
                        help="masked positions per sequence that go through the head")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="steps per burst")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 4 steps")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps = 2, 4
    return args


class Contender:
    def __init__(self, name, library, model, x, y, weights):
        self.name, self.library, self.model = name, library, model
        self.x, self.y, self.weights = x, y, weights
        self.times, self.round_medians = [], []

    def step(self):
        start = time.perf_counter()
        self.model.train_on_batch(self.x, self.y, sample_weight=self.weights)
        return time.perf_counter() - start


def compile_model(model, xla):
    model.compile(optimizer=keras.optimizers.AdamW(1e-4),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=xla)
    return model


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(1)
    B, T, P = args.batch_size, args.sequence_length, args.predictions
    token_ids = rng.integers(5, args.vocabulary_size, size=(B, T)).astype("int32")
    positions = np.sort(rng.random((B, T)).argsort(axis=1)[:, :P], axis=1).astype("int32")
    labels = np.take_along_axis(token_ids, positions, axis=1)
    weights = np.ones((B, P), "float32")
    log(f"tensorflow {tf.__version__}, keras {keras.__version__}, keras-hub "
        f"{keras_hub.__version__}; {args.num_layers} layers x {args.hidden_dim}, "
        f"sequence {T}, batch {B}, vocabulary {args.vocabulary_size}, {P} predictions")

    contenders = []
    for xla in (False, True):
        suffix = " + XLA" if xla else ""
        keras.utils.set_random_seed(1)
        ours = BertMaskedLM(BertEncoder(
            vocabulary_size=args.vocabulary_size, max_length=T, num_layers=args.num_layers,
            num_heads=args.num_heads, hidden_dim=args.hidden_dim,
            intermediate_dim=args.intermediate_dim, dropout=0.0))
        contenders.append(Contender(
            "tfllm BERT" + suffix, "tfllm", compile_model(ours, xla),
            {"token_ids": token_ids, "mask_positions": positions}, labels, weights))
        backbone = keras_hub.models.BertBackbone(
            vocabulary_size=args.vocabulary_size, num_layers=args.num_layers,
            num_heads=args.num_heads, hidden_dim=args.hidden_dim,
            intermediate_dim=args.intermediate_dim, dropout=0.0, max_sequence_length=T)
        theirs = keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)
        contenders.append(Contender(
            "KerasHub BERT" + suffix, "KerasHub", compile_model(theirs, xla),
            {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids),
             "padding_mask": np.ones_like(token_ids), "mask_positions": positions},
            labels, weights))

    for contender in contenders:
        start = time.perf_counter()
        for _ in range(args.warmup):
            contender.step()
        log(f"warm-up  {contender.name:<20} {time.perf_counter() - start:6.1f} s")
    for round_index in range(args.rounds):
        shift = round_index % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            times = [contender.step() for _ in range(args.steps)]
            contender.times.extend(times)
            contender.round_medians.append(median(times))
            log(f"round {round_index + 1}/{args.rounds}  {contender.name:<20} "
                f"{median(times) * 1e3:8.1f} ms/step")

    rows = []
    print("| contender | step ms (median) | IQR % | tokens/s |")
    print("|---|---|---|---|")
    for contender in contenders:
        step = median(contender.times)
        rows.append({"name": contender.name, "step_ms_median": step * 1e3,
                     "tokens_per_second": B * T / step,
                     "step_iqr_fraction": interquartile_fraction(contender.times)})
        print(f"| {contender.name} | {step * 1e3:.1f} | "
              f"{interquartile_fraction(contender.times) * 100:.0f} | {B * T / step:,.0f} |")
    plain_ours, plain_theirs, xla_ours, xla_theirs = contenders
    ratios = [ratio_summary(plain_ours, plain_theirs), ratio_summary(xla_ours, xla_theirs)]
    print()
    for label, summary in zip(("without XLA", "with XLA"), ratios):
        print(f"tfllm / KerasHub {label}: {summary['ratio']:.2f} "
              f"(rounds {summary['round_min']:.2f}-{summary['round_max']:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows,
                                               "ratios": ratios}, indent=2) + "\n")


if __name__ == "__main__":
    main()
