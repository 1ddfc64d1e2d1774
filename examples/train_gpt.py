"""Train a small GPT on Shakespeare's plays, report held-out loss, sample, save.

    python examples/train_gpt.py --quick          # a few minutes on 2 CPU cores
    python examples/train_gpt.py                  # the default run (~20 minutes)
    python examples/train_gpt.py --corpus my_texts/   # your own .txt files

Held-out loss is measured on whole plays the model never saw (the corpus is
split by play), in nats per character.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out

from tfllm.data import CharacterTokenizer, CorpusError, load_corpus
from tfllm.models import GPT
from tfllm.training import TrainingConfig, train_and_evaluate

# (model settings, training settings) of the two runs this script knows.
RUNS = {
    "default": (
        {"num_layers": 4, "num_heads": 4, "hidden_dim": 128, "max_length": 128},
        {"steps": 1800, "steps_per_epoch": 150, "batch_size": 32, "sequence_length": 128,
         "peak_learning_rate": 3e-3, "warmup_steps": 100},
    ),
    "quick": (
        {"num_layers": 2, "num_heads": 4, "hidden_dim": 128, "max_length": 128},
        {"steps": 400, "steps_per_epoch": 100, "batch_size": 32, "sequence_length": 128,
         "peak_learning_rate": 4e-3, "warmup_steps": 40},
    ),
}


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
    parser.add_argument("--output", default=None, help="run directory (default runs/gpt[-quick])")
    args = parser.parse_args()

    model_settings, training_settings = RUNS["quick" if args.quick else "default"]
    if args.steps:
        training_settings = {
            **training_settings,
            "steps": args.steps,
            "steps_per_epoch": min(args.steps, training_settings["steps_per_epoch"]),
            "warmup_steps": min(training_settings["warmup_steps"], args.steps // 10),
        }
    if args.layers:
        model_settings = {**model_settings, "num_layers": args.layers}
    if args.width:
        model_settings = {**model_settings, "hidden_dim": args.width}
    try:
        corpus = load_corpus(args.corpus)
    except CorpusError as error:
        sys.exit(f"error: {error}")
    print(corpus.describe())
    tokenizer = CharacterTokenizer.from_texts(corpus.texts("train"))
    model = GPT(vocabulary_size=tokenizer.vocabulary_size,
                position_encoding=args.position_encoding, **model_settings)
    train_and_evaluate(
        model,
        corpus,
        tokenizer,
        TrainingConfig(**training_settings),
        run_directory=args.output or ("runs/gpt-quick" if args.quick else "runs/gpt"),
        prompt=args.prompt,
    )


if __name__ == "__main__":
    main()
