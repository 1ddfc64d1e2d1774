"""Train an LSTM language model on Shakespeare's plays, report held-out loss, sample, save.

    python examples/train_lstm.py --quick         # a few minutes on 2 CPU cores
    python examples/train_lstm.py                 # the default run (~10-20 minutes)

The same job as `examples/train_gpt.py` (and `tfllm train --model lstm`) with
`tfllm.models.LSTMLanguageModel`: stacked LSTM layers with residual
connections and layer normalisation, and a tied output head.
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out

from tfllm.data import CharacterTokenizer, CorpusError, load_corpus
from tfllm.models import LSTMLanguageModel
from tfllm.presets import preset
from tfllm.training import CheckpointError, TrainingConfig, resolve_strategy, train_and_evaluate


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run for a first look")
    parser.add_argument("--corpus", default="shakespeare",
                        help="'shakespeare' (bundled) or a .txt file, folder or glob")
    parser.add_argument("--steps", type=int, help="override the number of training steps")
    parser.add_argument("--layers", type=int, help="override the number of LSTM layers")
    parser.add_argument("--width", type=int, help="override the model width (hidden_dim)")
    parser.add_argument("--prompt", default="ROMEO:\n", help="text the sample starts from")
    parser.add_argument("--output", default=None,
                        help="run directory (default runs/lstm-quick or runs/lstm-default)")
    args = parser.parse_args()

    size = "quick" if args.quick else "default"
    settings = preset("lstm", size)
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

    strategy = resolve_strategy("auto")
    try:
        corpus = load_corpus(args.corpus)
        print(corpus.describe())
        tokenizer = CharacterTokenizer.from_texts(corpus.texts("train"))
        train_and_evaluate(
            lambda: LSTMLanguageModel(vocabulary_size=tokenizer.vocabulary_size,
                                      **model_settings),
            corpus,
            tokenizer,
            TrainingConfig(**training_settings),
            run_directory=args.output or f"runs/lstm-{size}",
            strategy=strategy,
            prompt=args.prompt,
        )
    except (CorpusError, CheckpointError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
