"""The `tfllm` command line: `tfllm train`, `generate`, `export` and `convert`.

    tfllm train --model gpt --size quick                 # runs/gpt-quick/
    tfllm train --model lstm --corpus my_texts/ --steps 500 --run-dir runs/mine
    tfllm train --model bert --size quick                # masked-LM pre-training
    tfllm train --model classifier --size quick          # genre fine-tuning + baselines
    tfllm train --model bert --data reviews.csv --run-dir runs/bert-reviews
    tfllm train --model classifier --data reviews.csv --pretrained runs/bert-reviews
    tfllm train --init-from runs/gpt-quick --lora-rank 8 --corpus my.txt   # LoRA fine-tuning
    tfllm generate runs/gpt-quick --prompt "ROMEO:" --max-new-tokens 300 --stream
    tfllm export runs/gpt-quick                          # saved_models/gpt-quick/1/
    tfllm convert my-gpt2-folder --run-dir runs/gpt2     # a Hugging Face checkpoint

Running the same `tfllm train` command again resumes an interrupted run
from its last checkpoint. Bad options and impossible values end the program
with one line on stderr that starts with `error:` and a non-zero exit code.

The package: `parser.py` (the options), `options.py` (options to model and training
settings), `commands.py` (what each command does). Nothing in it loads TensorFlow before
the options are checked.
"""

import signal
import sys
import traceback

from tfllm.cli import commands, interrupts
from tfllm.cli.parser import EXIT_USAGE, build_parser
from tfllm.startup_log import quiet_tensorflow

EXIT_FAILURE = 1
#: Longest `error:` line printed for a failure from a library underneath (TensorFlow,
#: Keras); `--verbose` shows all of it, with its traceback.
MAX_ERROR_CHARACTERS = 600


def main(argv=None):
    """Runs `tfllm ARGS`; returns the exit code (0 on success)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    verbose = getattr(args, "verbose", False)
    quiet_tensorflow(verbose=verbose)  # before TensorFlow loads
    interrupts.install(lambda number: _interrupted_line(args.command, number))
    try:
        return {"train": commands.train, "generate": commands.generate,
                "export": commands.export, "convert": commands.convert}[args.command](args)
    except KeyboardInterrupt as interruption:
        number = getattr(interruption, "signal_number", interrupts.SIGNALS[0])
        print(file=sys.stdout, flush=True)  # ends a progress bar's line
        interrupts.say(number)
        return interrupts.exit_code(number)
    except Exception as error:  # noqa: BLE001 (every failure ends in one line)
        if verbose:
            traceback.print_exc()
        print(f"error: {_one_line(error)}", file=sys.stderr, flush=True)
        return EXIT_FAILURE
    finally:
        interrupts.uninstall()


def _interrupted_line(command, signal_number):
    line = f"Interrupted ({signal.Signals(signal_number).name})"
    if command == "train":
        return line + "; run the same command again to resume from the last checkpoint."
    return line + "."


def _one_line(error):
    """The error's message on one line; a failure of ours (ValueError, FileNotFoundError,
    RuntimeError: they name the problem) whole, any other with its type's name, cut at
    `MAX_ERROR_CHARACTERS`."""
    message = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    if not isinstance(error, (ValueError, OSError, RuntimeError)):
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    if len(message) > MAX_ERROR_CHARACTERS:
        message = message[:MAX_ERROR_CHARACTERS].rstrip() + " ... (--verbose shows all of it)"
    return message or type(error).__name__


__all__ = ["EXIT_FAILURE", "EXIT_USAGE", "MAX_ERROR_CHARACTERS", "build_parser", "main"]
