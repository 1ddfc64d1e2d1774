"""Train a small GPT on Shakespeare's plays, report held-out loss, sample, save.

    python examples/train_gpt.py --quick          # a few minutes on 2 CPU cores
    python examples/train_gpt.py                  # the default run (~10-15 minutes)
    python examples/train_gpt.py --corpus my_texts/   # your own .txt files
    python examples/train_gpt.py --quick --tokenizer bpe --vocabulary-size 1024

Held-out loss is measured on whole plays the model never saw (the corpus is
split by play), in nats per token and in bits per character (comparable across
tokenizers). The run directory (default
`runs/gpt-quick` or `runs/gpt-default`) gets checkpoints and TensorBoard logs;
running the same command again resumes an interrupted run. This is what
`tfllm train --model gpt` does, spelled out with the library's calls
(`examples/train_lstm.py` runs the same job with an LSTM).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no start-up chatter (see tfllm.startup_log)

from example_options import add_language_model_options, parser_for, settings_for  # noqa: E402

from tfllm.data import CorpusError, build_tokenizer, load_corpus  # noqa: E402
from tfllm.models import build_model  # noqa: E402
from tfllm.training import (  # noqa: E402
    CheckpointError,
    TrainingConfig,
    resolve_strategy,
    train_and_evaluate,
)


def main(kind="gpt", description=__doc__.splitlines()[0]):
    """Trains a `kind` ("gpt" or "lstm") language model with the example's options."""
    parser = add_language_model_options(parser_for(description))
    if kind == "gpt":
        parser.add_argument("--position-encoding", default="learned",
                            choices=["learned", "sinusoidal", "rotary"])
    parser.add_argument("--export", default="",
                        help="also export the trained model as a SavedModel version under "
                             "this folder (e.g. saved_models/gpt-quick); '' (default) skips it")
    args = parser.parse_args()
    _, settings, run_directory = settings_for(
        kind, args, position_encoding=getattr(args, "position_encoding", None))

    strategy = resolve_strategy("auto")  # one CPU here; several GPUs, TF_CONFIG or a TPU elsewhere
    try:
        corpus = load_corpus(args.corpus)
        print(corpus.describe())
        vocabulary_size = args.vocabulary_size or (None if args.tokenizer == "char" else 1024)
        tokenizer = build_tokenizer(args.tokenizer, corpus.texts("train"), vocabulary_size)
        train_and_evaluate(
            # A function, so that the model is created in the strategy's scope.
            lambda: build_model(kind, tokenizer.vocabulary_size, **settings["model"]),
            corpus,
            tokenizer,
            TrainingConfig(**settings["training"]),
            run_directory=run_directory,
            strategy=strategy,
            prompt=args.prompt,
        )
        if args.export:
            from tfllm.export import export_run

            path = export_run(run_directory, args.export)
            print(f"Exported the model for serving to {path}/ "
                  f"(inspect it: saved_model_cli show --dir {path} --all).")
    except (ValueError, CheckpointError) as error:  # CorpusError is a ValueError
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
