"""Train a small GPT on Shakespeare's plays, report held-out loss, sample, save.

    python examples/train_gpt.py --quick          # a few minutes on 2 CPU cores
    python examples/train_gpt.py                  # the default run (~10-15 minutes)
    python examples/train_gpt.py --corpus my_texts/   # your own .txt files

Held-out loss is measured on whole plays the model never saw (the corpus is
split by play), in nats per character. The run directory (default
`runs/gpt-quick` or `runs/gpt-default`) gets checkpoints and TensorBoard logs;
running the same command again resumes an interrupted run. This is what
`tfllm train --model gpt` does, spelled out with the library's calls.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out

from tfllm.data import CharacterTokenizer, CorpusError, load_corpus
from tfllm.models import GPT
from tfllm.presets import preset
from tfllm.training import CheckpointError, TrainingConfig, resolve_strategy, train_and_evaluate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run for a first look")
    parser.add_argument("--corpus", default="shakespeare",
                        help="'shakespeare' (bundled) or a .txt file, folder or glob")
    parser.add_argument("--steps", type=int, help="override the number of training steps")
    parser.add_argument("--layers", type=int, help="override the number of Transformer blocks")
    parser.add_argument("--width", type=int, help="override the model width (hidden_dim)")
    parser.add_argument("--position-encoding", default="learned",
                        choices=["learned", "sinusoidal", "rotary"])
    parser.add_argument("--prompt", default="ROMEO:\n", help="text the sample starts from")
    parser.add_argument("--output", default=None,
                        help="run directory (default runs/gpt-quick or runs/gpt-default)")
    parser.add_argument("--export", default="",
                        help="also export the trained model as a SavedModel version under "
                             "this folder (e.g. saved_models/gpt-quick); '' (default) skips it")
    args = parser.parse_args()

    size = "quick" if args.quick else "default"
    settings = preset("gpt", size)
    model_settings, training_settings = settings["model"], settings["training"]
    if args.steps:
        training_settings.update(
            steps=args.steps,
            steps_per_epoch=min(args.steps, training_settings["steps_per_epoch"]),
            warmup_steps=min(training_settings["warmup_steps"], args.steps // 10),
        )
    if args.layers:
        model_settings["num_layers"] = args.layers
    if args.width:
        model_settings["hidden_dim"] = args.width

    strategy = resolve_strategy("auto")  # one CPU here; several GPUs, TF_CONFIG or a TPU elsewhere
    try:
        corpus = load_corpus(args.corpus)
        print(corpus.describe())
        tokenizer = CharacterTokenizer.from_texts(corpus.texts("train"))
        run_directory = args.output or f"runs/gpt-{size}"
        train_and_evaluate(
            # A function, so that the model is created in the strategy's scope.
            lambda: GPT(vocabulary_size=tokenizer.vocabulary_size,
                        position_encoding=args.position_encoding, **model_settings),
            corpus,
            tokenizer,
            TrainingConfig(**training_settings),
            run_directory=run_directory,
            strategy=strategy,
            prompt=args.prompt,
        )
        if args.export:
            from tfllm.export import export_run

            path = export_run(run_directory, args.export)
            print(f"Exported the model for serving to {path}/ "
                  f"(inspect it: saved_model_cli show --dir {path} --all).")
    except (CorpusError, CheckpointError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
