"""The `tfllm` command line: `tfllm train`, `tfllm generate` and `tfllm export`.

    tfllm train --model gpt --size quick                 # runs/gpt-quick/
    tfllm train --model lstm --corpus my_texts/ --steps 500 --run-dir runs/mine
    tfllm train --model bert --size quick                # masked-LM pre-training
    tfllm train --model classifier --size quick          # genre fine-tuning + baselines
    tfllm train --model bert --data reviews.csv --run-dir runs/bert-reviews
    tfllm train --model classifier --data reviews.csv --pretrained runs/bert-reviews
    tfllm train --init-from runs/gpt-quick --lora-rank 8 --corpus my.txt   # LoRA fine-tuning
    tfllm generate runs/gpt-quick --prompt "ROMEO:" --max-new-tokens 300 --stream
    tfllm export runs/gpt-quick                          # saved_models/gpt-quick/1/

Running the same `tfllm train` command again resumes an interrupted run
from its last checkpoint. Bad options and impossible values end the program
with one line on stderr that starts with `error:` and a non-zero exit code.

The package: `parser.py` (the options), `options.py` (options to model and training
settings), `commands.py` (what each command does). Nothing in it loads TensorFlow before
the options are checked.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out

from tfllm.cli import commands  # noqa: E402
from tfllm.cli.parser import EXIT_USAGE, build_parser  # noqa: E402

EXIT_FAILURE = 1


def main(argv=None):
    """Runs `tfllm ARGS`; returns the exit code (0 on success)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return {"train": commands.train, "generate": commands.generate,
                "export": commands.export}[args.command](args)
    except KeyboardInterrupt:
        print("\nInterrupted; run the same command again to resume from the last checkpoint.",
              file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        # Our errors name the problem; a traceback would only bury it.
        message = str(error).strip() or type(error).__name__
        print(f"error: {message}", file=sys.stderr)
        return EXIT_FAILURE


__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "build_parser", "main"]
