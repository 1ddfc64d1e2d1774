"""The `tfllm` command line: `tfllm train`, `tfllm generate` and `tfllm export`.

    tfllm train --model gpt --size quick                 # runs/gpt-quick/
    tfllm train --model lstm --corpus my_texts/ --steps 500 --run-dir runs/mine
    tfllm train --model bert --size quick                # masked-LM pre-training
    tfllm train --model classifier --size quick          # genre fine-tuning + baselines
    tfllm train --init-from runs/gpt-quick --lora-rank 8 --corpus my.txt   # LoRA fine-tuning
    tfllm generate runs/gpt-quick --prompt "ROMEO:" --max-new-tokens 300 --stream
    tfllm export runs/gpt-quick                          # saved_models/gpt-quick/1/

Running the same `tfllm train` command again resumes an interrupted run
from its last checkpoint. Bad options and impossible values end the program
with one line on stderr that starts with `error:` and a non-zero exit code.
"""

import argparse
import math
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out

EXIT_USAGE = 2
EXIT_FAILURE = 1


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
    from tfllm.constants import GPT_POSITION_ENCODINGS, PRECISIONS, STRATEGY_NAMES
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
                           "bundled plays only)")
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
    how.add_argument("--xla", action=argparse.BooleanOptionalAction, default=None,
                     help="compile train steps with XLA (default: the preset's choice; "
                          "always off with several replicas)")
    how.add_argument("--seed", type=_non_negative_int, default=1,
                     help="seed of initial weights and data order")

    where = train.add_argument_group("distribution")
    where.add_argument("--strategy", choices=STRATEGY_NAMES, default="auto",
                       help="tf.distribute strategy; multi_worker reads TF_CONFIG")
    where.add_argument("--tpu", help="TPU name or grpc:// address for --strategy tpu")
    where.add_argument("--logical-cpus", type=_positive_int,
                       help="split the CPU into N logical devices (replicas for mirrored)")

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
    generate.add_argument("--max-new-tokens", type=_non_negative_int, default=300,
                          help="tokens to add to the prompt")
    generate.add_argument("--temperature", type=_non_negative_float, default=0.8,
                          help="sampling temperature (0: greedy)")
    generate.add_argument("--top-k", type=_non_negative_int, default=0,
                          help="sample among the k most likely tokens only (0: no limit)")
    generate.add_argument("--top-p", type=_probability, default=1.0,
                          help="sample within the nucleus of probability p (1: no limit)")
    generate.add_argument("--num-beams", type=_positive_int, default=1,
                          help="beam search with this many beams (1: sampling / greedy)")
    generate.add_argument("--seed", type=_non_negative_int, help="makes sampling reproducible")
    generate.add_argument("--stream", action="store_true",
                          help="print each token as soon as it is produced")

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
    export.add_argument("--max-new-tokens", type=_non_negative_int, default=100,
                        help="serving_default: tokens to add to each prompt")
    export.add_argument("--temperature", type=_non_negative_float, default=0.0,
                        help="serving_default: sampling temperature (0: greedy)")
    export.add_argument("--top-k", type=_non_negative_int, default=0,
                        help="serving_default: top-k limit (0: none)")
    export.add_argument("--top-p", type=_probability, default=1.0,
                        help="serving_default: nucleus size (1: no limit)")
    return parser


def _resolve_model_kind(args):
    """`args.model` from the options: gpt unless --init-from says otherwise; checks the
    fine-tuning options (`--lora-rank` needs `--init-from`, which needs a gpt / lstm)."""
    if args.lora_rank is not None and not args.init_from:
        raise ValueError("--lora-rank adapts a trained model: give the run to start from "
                         "with --init-from RUN")
    if not args.init_from:
        args.model = args.model or "gpt"
        return
    from tfllm.runs import RunDirectory

    try:
        saved = RunDirectory(args.init_from).read_config()
        kind = {"GPT": "gpt", "LSTMLanguageModel": "lstm"}.get(saved["model_class"])
    except (OSError, ValueError, KeyError, TypeError):
        raise FileNotFoundError(f"--init-from {args.init_from} is not a tfllm run directory "
                                "(no readable config)") from None
    if kind is None:
        raise ValueError(f"--init-from takes a gpt or lstm run; {args.init_from} holds a "
                         f"{saved['model_class']} (classifier: use --pretrained)")
    if args.model not in (None, kind):
        raise ValueError(f"--init-from {args.init_from} holds a {kind} model, not --model "
                         f"{args.model}")
    args.model = kind
    if args.lora_rank is not None and kind != "gpt":
        raise ValueError("--lora-rank adapts attention projections; an lstm has none")
    for option in ("layers", "heads", "width", "dropout", "position_encoding"):
        if getattr(args, option) is not None:
            raise ValueError(f"--{option.replace('_', '-')} does not apply with --init-from: "
                             "the model's settings come from that run")
    args.model_max_length = saved.get("model", {}).get("max_length")


def _training_settings(args):
    """(model kind, model settings, TrainingConfig keyword arguments) from the options."""
    from tfllm.constants import BERT_POSITION_ENCODINGS
    from tfllm.presets import preset

    settings = preset(args.model, args.size)
    model_settings, training = settings["model"], settings["training"]
    overrides = {"num_layers": args.layers, "num_heads": args.heads, "hidden_dim": args.width,
                 "dropout": args.dropout, "position_encoding": args.position_encoding}
    for name, value in overrides.items():
        if value is None:
            continue
        option = f"--{name.replace('num_', '').replace('hidden_dim', 'width').replace('_', '-')}"
        if args.model == "classifier" and name != "dropout":
            raise ValueError(f"{option} does not apply to --model classifier: its encoder's "
                             "settings come from the --pretrained run")
        if args.model not in ("gpt", "bert") and name == "num_heads" or (
                args.model not in ("gpt", "bert") and name == "position_encoding"):
            raise ValueError(f"{option} does not apply to --model {args.model}")
        if (args.model == "bert" and name == "position_encoding"
                and value not in BERT_POSITION_ENCODINGS):
            raise ValueError(f"--position-encoding {value} does not apply to --model bert "
                             f"({' or '.join(BERT_POSITION_ENCODINGS)})")
        model_settings[name] = value
    if args.steps is not None:
        training["steps"] = args.steps
        training["steps_per_epoch"] = min(training["steps_per_epoch"], args.steps)
        training["warmup_steps"] = min(training["warmup_steps"], args.steps // 10)
    for option, name in (("steps_per_epoch", "steps_per_epoch"), ("batch_size", "batch_size"),
                         ("sequence_length", "sequence_length"),
                         ("learning_rate", "peak_learning_rate"),
                         ("warmup_steps", "warmup_steps"), ("precision", "precision"),
                         ("xla", "jit_compile"), ("seed", "seed")):
        value = getattr(args, option)
        if value is not None:
            training[name] = value
    if getattr(args, "model_max_length", None):
        # Fine-tuning: the windows must fit the model being fine-tuned.
        if args.sequence_length is not None and args.sequence_length > args.model_max_length:
            raise ValueError(f"--sequence-length {args.sequence_length} is longer than the "
                             f"max_length ({args.model_max_length}) of --init-from's model")
        training["sequence_length"] = min(training["sequence_length"], args.model_max_length)
    elif args.model in ("gpt", "bert"):
        # The position table must hold a whole training window.
        model_settings["max_length"] = max(model_settings["max_length"],
                                           training["sequence_length"])
    return model_settings, training


def _train(args):
    # The options first, without TensorFlow: a mistake is named in a moment.
    _resolve_model_kind(args)
    model_settings, training = _training_settings(args)

    from tfllm.training.strategy import resolve_strategy, use_logical_cpus

    # Devices first: nothing may touch TensorFlow's devices before this.
    if args.logical_cpus:
        use_logical_cpus(args.logical_cpus)
    strategy = resolve_strategy(args.strategy, tpu=args.tpu)

    from tfllm.data import CharacterTokenizer, load_corpus
    from tfllm.models import build_model
    from tfllm.training.language_model import TrainingConfig, train_and_evaluate

    config = TrainingConfig(**training)
    run_dir = args.run_dir or os.path.join("runs", f"{args.model}-{args.size}")
    if args.init_from:
        run_dir = args.run_dir or (args.init_from.rstrip("/\\")
                                   + ("-lora" if args.lora_rank else "-finetuned"))
        if os.path.abspath(run_dir) == os.path.abspath(args.init_from):
            raise ValueError("--run-dir must differ from --init-from: fine-tuning never "
                             "writes into the run it starts from")
    verbose = 0 if args.quiet else 1
    if args.model == "bert":
        from tfllm.data import bundled_genre_split
        from tfllm.presets import preset
        from tfllm.training.masked_lm import pretraining_job

        corpus = (bundled_genre_split() if args.corpus == "shakespeare"
                  else load_corpus(args.corpus))
        print(corpus.describe())
        pretraining_job(corpus, preset("bert", args.size)["tokenizer"]["vocabulary_size"],
                        model_settings, config, run_dir, strategy=strategy,
                        resume=args.resume, verbose=verbose)
        return 0
    if args.model == "classifier":
        from tfllm.training.classification import genre_classification_job

        if args.corpus != "shakespeare":
            raise ValueError("--model classifier learns the genres of the bundled plays; "
                             "--corpus must be 'shakespeare'")
        genre_classification_job(args.pretrained or os.path.join("runs", f"bert-{args.size}"),
                                 model_settings, config, run_dir, strategy=strategy,
                                 resume=args.resume, baselines=not args.no_baselines,
                                 verbose=verbose)
        return 0
    corpus = load_corpus(args.corpus)
    print(corpus.describe())
    run_config = None
    if args.init_from:
        from tfllm.training.runs import fine_tuning_start

        create_model, tokenizer, _ = fine_tuning_start(args.init_from, args.lora_rank)
        unknown = set("".join(corpus.texts("train"))) - set(tokenizer.vocabulary)
        if unknown:
            print(f"{len(unknown)} characters of the corpus are not in the vocabulary of "
                  f"{args.init_from}; they read as the unknown token.")
        run_config = {"init_from": os.path.abspath(args.init_from),
                      "lora_rank": args.lora_rank}
        print(f"Fine-tuning {args.init_from}"
              + (f" with rank-{args.lora_rank} LoRA adapters." if args.lora_rank else "."))
    else:
        tokenizer = CharacterTokenizer.from_texts(corpus.texts("train"))

        def create_model():
            return build_model(args.model, tokenizer.vocabulary_size, **model_settings)
    print(f"Precision: {config.precision}.")
    train_and_evaluate(
        create_model,
        corpus,
        tokenizer,
        config,
        run_directory=run_dir,
        strategy=strategy,
        resume=args.resume,
        prompt=args.prompt,
        sample_length=args.sample_length,
        temperature=args.temperature,
        verbose=verbose,
        run_config=run_config,
    )
    return 0


def _generate(args):
    from tfllm.runs import RunDirectory

    if not args.prompt:
        raise ValueError("--prompt must not be empty")
    run = RunDirectory(args.run_dir).require()  # (before TensorFlow loads)
    from tfllm.generation import generate_text, stream_tokens

    model, tokenizer = run.load()
    if not hasattr(model, "generate"):
        raise ValueError(f"{args.run_dir} holds a {type(model).__name__}, which does not "
                         "generate text; export it to serve it (`tfllm export`)")
    options = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
               "seed": args.seed}
    if args.stream:
        if args.num_beams > 1:
            raise ValueError("--stream cannot show a beam search; drop one of them")
        sys.stdout.write(args.prompt)
        sys.stdout.flush()
        for token in stream_tokens(model, tokenizer.encode_text(args.prompt).tolist(),
                                   args.max_new_tokens, **options):
            sys.stdout.write(tokenizer.decode_ids([token]))
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    text = generate_text(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens,
                         num_beams=args.num_beams, **options)
    print(text)
    return 0


def _export(args):
    import json
    from pathlib import Path

    from tfllm.runs import RunDirectory

    RunDirectory(args.run_dir).require()  # (before TensorFlow loads)
    from tfllm.export import export_run

    name = args.name or Path(args.run_dir).resolve().name
    path = export_run(args.run_dir, Path(args.output) / name, version=args.version,
                      max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                      top_k=args.top_k, top_p=args.top_p)
    metadata = json.loads((path / "assets.extra" / "tfllm.json").read_text(encoding="utf-8"))
    print(f"Exported {args.run_dir} to {path}/ (signatures: "
          f"{', '.join(metadata['signatures'])}).")
    if "tensorflow_text" in metadata.get("requires", []):
        print("Load it after `import tensorflow_text` (its tokenizer uses TensorFlow Text ops).")
    print(f"Inspect it with: saved_model_cli show --dir {path} --all")
    return 0


def main(argv=None):
    """Runs `tfllm ARGS`; returns the exit code (0 on success)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return {"train": _train, "generate": _generate, "export": _export}[args.command](args)
    except KeyboardInterrupt:
        print("\nInterrupted; run the same command again to resume from the last checkpoint.",
              file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        # Our errors name the problem; a traceback would only bury it.
        message = str(error).strip() or type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
