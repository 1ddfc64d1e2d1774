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

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no start-up chatter (see tfllm.startup_log)

from example_options import parser_for, settings_for  # noqa: E402

from tfllm.data import CorpusError, bundled_genre_split, load_corpus  # noqa: E402
from tfllm.training import CheckpointError, TrainingConfig, resolve_strategy  # noqa: E402
from tfllm.training.masked_lm import pretraining_job  # noqa: E402


def main():
    # --size long pre-trains for 8000 steps (~1.5 hours on 2 cores).
    parser = parser_for(__doc__.splitlines()[0], sizes=("quick", "default", "long"))
    parser.add_argument("--corpus", default="shakespeare",
                        help="'shakespeare' (bundled, split by genre) or a .txt file, folder "
                             "or glob")
    args = parser.parse_args()
    _, settings, run_directory = settings_for("bert", args)
    try:
        corpus = (bundled_genre_split() if args.corpus == "shakespeare"
                  else load_corpus(args.corpus))
        print(corpus.describe())
        pretraining_job(
            corpus,
            settings["tokenizer"]["vocabulary_size"],
            settings["model"],
            TrainingConfig(**settings["training"]),
            run_directory,
            strategy=resolve_strategy("auto"),
        )
    except (CorpusError, CheckpointError, ValueError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
