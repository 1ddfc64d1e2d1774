"""The argument parser of `tfllm` and the types of its options (no TensorFlow)."""

import argparse
import math
import sys

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line: `error: ... (see --help)`."""

    def error(self, message):
        sys.stderr.write(f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")
        sys.exit(EXIT_USAGE)


def _argument_type(convert, accept, expected):
    """An argparse `type`: `convert(text)`, refused unless `accept(value)`."""

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _argument_type(int, lambda value: value >= 1, "a positive integer")
_non_negative_int = _argument_type(int, lambda value: value >= 0, "an integer >= 0")
_positive_float = _argument_type(
    float, lambda value: math.isfinite(value) and value > 0, "a positive number")
_non_negative_float = _argument_type(
    float, lambda value: math.isfinite(value) and value >= 0, "a number >= 0")
_probability = _argument_type(
    float, lambda value: math.isfinite(value) and 0 < value <= 1, "a number in (0, 1]")
_dropout = _argument_type(
    float, lambda value: math.isfinite(value) and 0 <= value < 1, "a rate in [0, 1)")


def build_parser():
    """The argument parser of `tfllm` (also used to document the options)."""
    from tfllm.constants import (
        DEFAULT_CLUSTER_TIMEOUT_SECONDS,
        DEFAULT_SUBWORD_VOCABULARY_SIZE,
        GPT_POSITION_ENCODINGS,
        PRECISIONS,
        STRATEGY_NAMES,
        TOKENIZERS,
        XLA_CHOICES,
    )
    from tfllm.presets import PRESETS

    sizes = sorted({size for kind in PRESETS.values() for size in kind})

    parser = _Parser(
        prog="tfllm",
        description="Train language models and generate text with them.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `tfllm COMMAND --help` for the options of a command.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    train = commands.add_parser(
        "train",
        help="train a model (resumes the run if it was interrupted)",
        description=(
            "Train a language model with model.fit under a tf.distribute strategy, write "
            "checkpoints and TensorBoard logs into the run directory, report held-out loss, "
            "sample text and save the model. Running the same command again resumes from "
            "the last checkpoint."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    what = train.add_argument_group("model")
    what.add_argument("--model", choices=sorted(PRESETS),
                      help="the kind of model (default: gpt, or the kind of --init-from)")
    what.add_argument("--size", choices=sizes, default="quick",
                      help="a preset of model and training settings: tiny (seconds), quick "
                           "(minutes), default (10-20 minutes on 2 CPU cores)")
    what.add_argument("--layers", type=_positive_int, help="override the number of layers")
    what.add_argument("--heads", type=_positive_int, help="override attention heads (gpt)")
    what.add_argument("--width", type=_positive_int, help="override the hidden width")
    what.add_argument("--dropout", type=_dropout, help="dropout rate in [0, 1)")
    what.add_argument("--position-encoding", choices=GPT_POSITION_ENCODINGS,
                      help="position encoding of the gpt (default: learned) or bert (learned "
                           "or rotary; default: rotary)")

    data = train.add_argument_group("data")
    data.add_argument("--corpus", default="shakespeare",
                      help="'shakespeare' (the bundled plays) or a .txt file, folder or glob "
                           "(bert: the bundled plays are split by genre; classifier: the "
                           "bundled plays' genres, or your labels with --data)")
    data.add_argument("--tokenizer", choices=TOKENIZERS,
                      help="gpt / lstm: characters (default), GPT-2's byte-level BPE, "
                           "SentencePiece or WordPiece, learned from the training split; "
                           "bert: wordpiece only")
    data.add_argument("--vocabulary-size", type=_positive_int,
                      help="ids of the tokenizer, special ones included (default: "
                           f"{DEFAULT_SUBWORD_VOCABULARY_SIZE} for a subword tokenizer, every "
                           "character for char, the preset's for bert)")
    data.add_argument("--data", metavar="PATH",
                      help="classifier: your labelled examples, a .csv / .tsv file (a header "
                           "row names the columns), a .jsonl file, or a folder with one "
                           "sub-folder of .txt files per class; held-out examples are cut "
                           "from it (10 %% validation, 10 %% test per class, seeded) unless "
                           "given below. bert: pre-train on its texts (the same split)")
    data.add_argument("--text-column", metavar="C",
                      help="with --data: the column (or JSON key) of the texts "
                           "(default: text)")
    data.add_argument("--label-column", metavar="L",
                      help="with --data: the column (or JSON key) of the labels "
                           "(default: label)")
    data.add_argument("--validation-data", metavar="PATH",
                      help="with --data: held-out examples for validation, in the same form")
    data.add_argument("--test-data", metavar="PATH",
                      help="with --data: held-out examples for the final test figures")
    data.add_argument("--pretrained",
                      help="classifier: the bert pre-training run to start from "
                           "(default: runs/bert-SIZE)")
    data.add_argument("--init-from", metavar="RUN",
                      help="gpt / lstm: fine-tune the finished model of this run (its "
                           "settings and vocabulary) on --corpus")
    data.add_argument("--lora-rank", type=_positive_int,
                      help="with --init-from (gpt): train only rank-R LoRA adapters of the "
                           "attention's query and value projections; the saved model has "
                           "them merged")
    data.add_argument("--no-baselines", action="store_true",
                      help="classifier: skip the majority, bag-of-words and "
                           "no-pre-training baselines")

    how = train.add_argument_group("training")
    how.add_argument("--steps", type=_positive_int, help="optimiser steps in total")
    how.add_argument("--steps-per-epoch", type=_positive_int,
                     help="steps between validation, checkpoints and samples")
    how.add_argument("--batch-size", type=_positive_int,
                     help="global batch size (split between replicas)")
    how.add_argument("--sequence-length", type=_positive_int, help="tokens per window")
    how.add_argument("--learning-rate", type=_positive_float, help="peak learning rate")
    how.add_argument("--warmup-steps", type=_non_negative_int, help="linear warm-up steps")
    how.add_argument("--precision", choices=PRECISIONS, default="float32",
                     help="float32, or mixed precision (mixed_float16 adds loss scaling)")
    how.add_argument("--xla", nargs="?", const="on", choices=XLA_CHOICES, default=None,
                     help="compile train steps with XLA: on (also bare --xla), off, or auto: "
                          "time steps both ways on this machine first and keep the faster "
                          "(default: the preset's choice, auto but for tiny; always off "
                          "with several replicas)")
    how.add_argument("--no-xla", dest="xla", action="store_const", const="off",
                     help="the same as --xla off")
    how.add_argument("--seed", type=_non_negative_int, default=1,
                     help="seed of initial weights and data order")

    where = train.add_argument_group("distribution")
    where.add_argument("--strategy", choices=STRATEGY_NAMES, default="auto",
                       help="tf.distribute strategy; multi_worker reads TF_CONFIG")
    where.add_argument("--tpu", help="TPU name or grpc:// address for --strategy tpu")
    where.add_argument("--logical-cpus", type=_positive_int,
                       help="split the CPU into N logical devices (replicas for mirrored)")
    where.add_argument("--cluster-timeout", type=_positive_float, metavar="SECONDS",
                       default=DEFAULT_CLUSTER_TIMEOUT_SECONDS,
                       help="multi_worker: how long to wait for the other workers of "
                            "TF_CONFIG to start; then one line names those that never came")

    run = train.add_argument_group("run")
    run.add_argument("--run-dir", help="run directory (default: runs/MODEL-SIZE)")
    run.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                     help="continue from the run's last checkpoint; --no-resume refuses a run "
                          "directory that holds checkpoints")
    run.add_argument("--prompt", default="ROMEO:\n", help="text the samples start from")
    run.add_argument("--sample-length", type=_non_negative_int, default=300,
                     help="tokens of the final sample (0: no samples, none in TensorBoard)")
    run.add_argument("--temperature", type=_non_negative_float, default=0.8,
                     help="sampling temperature of the samples (0: greedy)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")

    generate = commands.add_parser(
        "generate",
        help="generate text from a trained run",
        description="Generate text from a run directory written by `tfllm train`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    generate.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, e.g. runs/gpt-quick")
    generate.add_argument("--prompt", default="ROMEO:\n", help="text to continue")
    _add_sampling_options(generate, max_new_tokens=300, temperature=0.8)
    generate.add_argument("--num-beams", type=_positive_int, default=1,
                          help="beam search with this many beams (1: sampling / greedy)")
    generate.add_argument("--seed", type=_non_negative_int, help="makes sampling reproducible")
    generate.add_argument("--stream", action="store_true",
                          help="print each token as soon as it is produced")
    _add_weights_option(generate)

    export = commands.add_parser(
        "export",
        help="export a run as a SavedModel for TensorFlow Serving",
        description=(
            "Export the model of a run directory, with its tokenizer, as a SavedModel in "
            "TensorFlow Serving's layout (OUTPUT/NAME/VERSION/) whose signatures take strings "
            "and return text: serving_default, generate, score and logits."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    export.add_argument("run_dir", metavar="RUN_DIR", help="a run directory, e.g. runs/gpt-quick")
    export.add_argument("--name", help="the model's name (default: the run directory's name)")
    export.add_argument("--output", default="saved_models", help="the model base path")
    export.add_argument("--version", type=_positive_int,
                        help="version number (default: the next free one)")
    _add_sampling_options(export, max_new_tokens=100, temperature=0.0,
                          prefix="serving_default: ")
    _add_weights_option(export)

    convert = commands.add_parser(
        "convert",
        help="turn a Hugging Face GPT-2 or BERT folder into a run directory",
        description=(
            "Read a local folder as `save_pretrained` writes it (config.json, "
            "model.safetensors and the tokenizer's files: vocab.json + merges.txt for GPT-2, "
            "vocab.txt for BERT) and write a finished run directory that generate, export, "
            "train --init-from (GPT-2) and train --pretrained (BERT) take. Nothing downloads."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    convert.add_argument("source", metavar="DIR", help="the Hugging Face checkpoint folder")
    convert.add_argument("--run-dir", help="the new run directory (default: runs/DIR_NAME)")
    for command in (train, generate, export, convert):
        command.add_argument("--verbose", action="store_true",
                             help="show TensorFlow's log, and the traceback of a failure")
    return parser


def _add_weights_option(parser):
    from tfllm.constants import DECODING_WEIGHTS

    parser.add_argument("--weights", choices=DECODING_WEIGHTS, default="float32",
                        help="decode with these weights: the model's float32 ones, or an int8 "
                             "(Keras's quantization) or bfloat16 copy; int8 reads a quarter of "
                             "the bytes per token")


def _add_sampling_options(parser, max_new_tokens, temperature, prefix=""):
    """`--max-new-tokens`, `--temperature`, `--top-k`, `--top-p` (`generate` and `export`,
    whose values become the `serving_default` signature's)."""
    parser.add_argument("--max-new-tokens", type=_non_negative_int, default=max_new_tokens,
                        help=f"{prefix}tokens to add to each prompt")
    parser.add_argument("--temperature", type=_non_negative_float, default=temperature,
                        help=f"{prefix}sampling temperature (0: greedy)")
    parser.add_argument("--top-k", type=_non_negative_int, default=0,
                        help=f"{prefix}sample among the k most likely tokens only (0: no limit)")
    parser.add_argument("--top-p", type=_probability, default=1.0,
                        help=f"{prefix}sample within the nucleus of probability p (1: no limit)")
