"""Fine-tune a pre-trained BERT to tell a passage's genre: comedy, history or tragedy.

    python examples/pretrain_bert.py --quick                  # first: pre-training
    python examples/finetune_classifier.py --quick            # then this
    python examples/finetune_classifier.py --pretrained runs/bert-default

The 38 plays are split by play and genre: the test plays (two per class) were seen
neither in pre-training nor here. Passages of 400 characters are labelled with their
play's coarse genre (`tfllm.data.COARSE_GENRES`). The script then scores three baselines
on the same split: the majority class, a bag-of-words logistic regression and the same
classifier trained from random weights, and prints accuracy and macro-F1 side by side.
The fine-tuned classifier is exported for serving to saved_models/genre-classifier/.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no start-up chatter (see tfllm.startup_log)

from example_options import parser_for, settings_for  # noqa: E402

from tfllm.export import export_run  # noqa: E402
from tfllm.training import CheckpointError, TrainingConfig, resolve_strategy  # noqa: E402
from tfllm.training.classification import genre_classification_job  # noqa: E402


def main():
    parser = parser_for(__doc__.splitlines()[0], sizes=("quick", "default", "long"))
    parser.add_argument("--pretrained", help="the pre-training run (default runs/bert-quick "
                                             "or runs/bert-default)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the baselines")
    parser.add_argument("--export", default="saved_models/genre-classifier",
                        help="where the SavedModel versions go ('' to skip the export)")
    args = parser.parse_args()
    size, settings, run = settings_for("classifier", args)
    try:
        genre_classification_job(
            args.pretrained or f"runs/bert-{size}",
            settings["model"],
            TrainingConfig(**settings["training"]),
            run,
            baselines=not args.no_baselines,
            strategy=resolve_strategy("auto"),
        )
        if args.export:
            path = export_run(run, args.export)
            print(f"Exported the classifier to {path}/ (load it after `import tensorflow_text`).")
    except (CheckpointError, ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
