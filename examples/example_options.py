"""The command-line options the example scripts share, so that they agree.

Each example reads top to bottom; what it needs from its options is the preset it runs
(`settings`), where its run goes, and the data it reads.
"""

import argparse

from tfllm.presets import preset


def parser_for(description, sizes=("quick", "default")):
    """An argument parser with `--quick`, `--steps` and `--output` (and `--size` when the
    example has more sizes than quick and default)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short run for a first look")
    if len(sizes) > 2:
        parser.add_argument("--size", choices=sizes,
                            help="the preset (default: default, or quick with --quick)")
    parser.add_argument("--steps", type=int, help="override the number of training steps")
    parser.add_argument("--output", help="run directory (default runs/KIND-quick or "
                                         "runs/KIND-default)")
    return parser


def add_language_model_options(parser):
    """`--corpus`, `--layers`, `--width` and `--prompt`: what a language model example reads."""
    parser.add_argument("--corpus", default="shakespeare",
                        help="'shakespeare' (bundled) or a .txt file, folder or glob")
    parser.add_argument("--layers", type=int,
                        help="override the number of layers (Transformer blocks or LSTMs)")
    parser.add_argument("--width", type=int, help="override the model width (hidden_dim)")
    parser.add_argument("--prompt", default="ROMEO:\n", help="text the sample starts from")
    parser.add_argument("--tokenizer", default="char",
                        choices=["char", "bpe", "sentencepiece", "wordpiece"],
                        help="characters, or subwords learned from the training split")
    parser.add_argument("--vocabulary-size", type=int,
                        help="ids of the tokenizer (default: 1024 for subwords, every "
                             "character for char)")
    return parser


def settings_for(kind, args, **model_overrides):
    """`(size, preset settings, run directory)` for the parsed `args` of a `kind` example."""
    size = getattr(args, "size", None) or ("quick" if args.quick else "default")
    if hasattr(args, "layers"):
        model_overrides.update(num_layers=args.layers, hidden_dim=args.width)
    settings = preset(kind, size, steps=args.steps, **model_overrides)
    return size, settings, args.output or f"runs/{kind}-{size}"
