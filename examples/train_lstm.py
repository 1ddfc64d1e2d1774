"""Train an LSTM language model on Shakespeare's plays, report held-out loss, sample, save.

    python examples/train_lstm.py --quick         # a few minutes on 2 CPU cores
    python examples/train_lstm.py                 # the default run (~20 minutes)

Held-out loss is measured on whole plays the model never saw (the corpus is
split by play), in nats per character. XLA is off: Keras' LSTM loop ran
2.7× slower under XLA than without it on our 2-core CPU.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out

from tfllm.data import CharacterTokenizer, CorpusError, load_corpus
from tfllm.models import LSTMLanguageModel
from tfllm.training import TrainingConfig, train_and_evaluate

# (model settings, training settings) of the two runs this script knows.
RUNS = {
    "default": (
        {"num_layers": 2, "hidden_dim": 256},
        {"steps": 1100, "steps_per_epoch": 100, "batch_size": 32, "sequence_length": 128,
         "peak_learning_rate": 5e-3, "warmup_steps": 50, "jit_compile": False},
    ),
    "quick": (
        {"num_layers": 2, "hidden_dim": 256},
        {"steps": 200, "steps_per_epoch": 50, "batch_size": 32, "sequence_length": 128,
         "peak_learning_rate": 5e-3, "warmup_steps": 20, "jit_compile": False},
    ),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run for a first look")
    parser.add_argument("--corpus", default="shakespeare",
                        help="'shakespeare' (bundled) or a .txt file, folder or glob")
    parser.add_argument("--steps", type=int, help="override the number of training steps")
    parser.add_argument("--prompt", default="ROMEO:\n", help="text the sample starts from")
    parser.add_argument("--output", default=None, help="run directory (default runs/lstm[-quick])")
    args = parser.parse_args()

    model_settings, training_settings = RUNS["quick" if args.quick else "default"]
    if args.steps:
        training_settings = {
            **training_settings,
            "steps": args.steps,
            "steps_per_epoch": min(args.steps, training_settings["steps_per_epoch"]),
            "warmup_steps": min(training_settings["warmup_steps"], args.steps // 10),
        }
    try:
        corpus = load_corpus(args.corpus)
    except CorpusError as error:
        sys.exit(f"error: {error}")
    print(corpus.describe())
    tokenizer = CharacterTokenizer.from_texts(corpus.texts("train"))
    model = LSTMLanguageModel(vocabulary_size=tokenizer.vocabulary_size, **model_settings)
    train_and_evaluate(
        model,
        corpus,
        tokenizer,
        TrainingConfig(**training_settings),
        run_directory=args.output or ("runs/lstm-quick" if args.quick else "runs/lstm"),
        prompt=args.prompt,
    )


if __name__ == "__main__":
    main()
