"""Pre-train a small BERT on Shakespeare's plays with masked language modelling.

    python examples/pretrain_bert.py --quick       # a few minutes on 2 CPU cores
    python examples/pretrain_bert.py               # the default run (20-40 minutes)
    python examples/pretrain_bert.py --corpus my_texts/

A WordPiece vocabulary is learned from the training plays; 15 % of the word pieces of
each sequence are chosen, 80 % of those replaced by [MASK], 10 % by a random piece, 10 %
kept, and the model learns to restore them. The bundled plays are split by play *and
genre* (`tfllm.data.bundled_genre_split`): the plays held out here are the plays the
genre classifier (examples/finetune_classifier.py) is tested on, so its encoder never
read them. Held-out masked-LM loss is printed before and after training. Running the
same command again resumes an interrupted run. `tfllm train --model bert` does the same.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out

from tfllm.data import CorpusError, bundled_genre_split, load_corpus
from tfllm.presets import preset
from tfllm.training import CheckpointError, TrainingConfig, resolve_strategy
from tfllm.training.masked_lm import pretraining_job


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run for a first look")
    parser.add_argument("--size", choices=["quick", "default", "long"],
                        help="the preset (default: default, or quick with --quick); long "
                             "pre-trains for 8000 steps (~1.5 hours on 2 cores)")
    parser.add_argument("--corpus", default="shakespeare",
                        help="'shakespeare' (bundled, split by genre) or a .txt file, folder "
                             "or glob")
    parser.add_argument("--steps", type=int, help="override the number of training steps")
    parser.add_argument("--output", help="run directory (default runs/bert-quick or "
                                         "runs/bert-default)")
    args = parser.parse_args()

    size = args.size or ("quick" if args.quick else "default")
    settings = preset("bert", size)
    training = settings["training"]
    if args.steps:
        training.update(steps=args.steps,
                        steps_per_epoch=min(args.steps, training["steps_per_epoch"]),
                        warmup_steps=min(training["warmup_steps"], args.steps // 10))
    try:
        corpus = (bundled_genre_split() if args.corpus == "shakespeare"
                  else load_corpus(args.corpus))
        print(corpus.describe())
        pretraining_job(
            corpus,
            settings["tokenizer"]["vocabulary_size"],
            settings["model"],
            TrainingConfig(**training),
            args.output or f"runs/bert-{size}",
            strategy=resolve_strategy("auto"),
        )
    except (CorpusError, CheckpointError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
