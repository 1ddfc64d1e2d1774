"""From `tfllm train`'s options to the settings of a model and its training (no TensorFlow).

Everything here runs before TensorFlow loads, so that a mistake in the options is named in
a moment.
"""


def resolve_model_kind(args):
    """`args.model` from the options: gpt unless --init-from says otherwise; checks the
    fine-tuning options (`--lora-rank` needs `--init-from`, which needs a gpt / lstm)."""
    if args.lora_rank is not None and not args.init_from:
        raise ValueError("--lora-rank adapts a trained model: give the run to start from "
                         "with --init-from RUN")
    if not args.init_from:
        args.model = args.model or "gpt"
        return
    from tfllm.runs import RunDirectory

    try:
        saved = RunDirectory(args.init_from).read_config()
        kind = {"GPT": "gpt", "LSTMLanguageModel": "lstm"}.get(saved["model_class"])
    except (OSError, ValueError, KeyError, TypeError):
        raise FileNotFoundError(f"--init-from {args.init_from} is not a tfllm run directory "
                                "(no readable config)") from None
    if kind is None:
        raise ValueError(f"--init-from takes a gpt or lstm run; {args.init_from} holds a "
                         f"{saved['model_class']} (classifier: use --pretrained)")
    if args.model not in (None, kind):
        raise ValueError(f"--init-from {args.init_from} holds a {kind} model, not --model "
                         f"{args.model}")
    args.model = kind
    if args.lora_rank is not None and kind != "gpt":
        raise ValueError("--lora-rank adapts attention projections; an lstm has none")
    for option in ("layers", "heads", "width", "dropout", "position_encoding"):
        if getattr(args, option) is not None:
            raise ValueError(f"--{option.replace('_', '-')} does not apply with --init-from: "
                             "the model's settings come from that run")
    args.model_max_length = saved.get("model", {}).get("max_length")


def check_labelled_data_options(args):
    """Checks `--data` and its companions (`--text-column`, `--label-column`,
    `--validation-data`, `--test-data`) and fills the column defaults (text, label)."""
    from pathlib import Path

    from tfllm.constants import LABELLED_DELIMITERS, LABELLED_JSON_LINES

    companions = ("text_column", "label_column", "validation_data", "test_data")
    given = [name for name in companions if getattr(args, name) is not None]
    if args.data is None:
        if given:
            raise ValueError(f"--{given[0].replace('_', '-')} goes with --data PATH (your "
                             "labelled examples)")
        if args.model == "classifier" and args.corpus != "shakespeare":
            raise ValueError("--model classifier reads labelled examples: give them with "
                             "--data FILE (.csv, .tsv, .jsonl or a folder of class folders); "
                             "--corpus only takes unlabelled text")
        return
    if args.model not in ("classifier", "bert"):
        raise ValueError(f"--data holds labelled examples for --model classifier (or bert, "
                         f"to pre-train on their texts), not --model {args.model}")
    if args.corpus != "shakespeare":
        raise ValueError("give --data or --corpus, not both")
    extensions = (*LABELLED_DELIMITERS, *LABELLED_JSON_LINES)
    for option in ("data", "validation_data", "test_data"):
        path = getattr(args, option)
        if path is None:
            continue
        path = Path(path).expanduser()
        flag = f"--{option.replace('_', '-')}"
        if not path.exists():
            raise FileNotFoundError(f"{flag} {path}: no such file or folder")
        if path.is_file() and path.suffix.lower() not in extensions:
            raise ValueError(f"{flag} {path}: unknown extension {path.suffix or '(none)'!r}; "
                             f"give a {', '.join(extensions)} file or a folder with one "
                             "sub-folder of .txt files per class")
        if path.is_dir() and (args.text_column or args.label_column):
            raise ValueError(f"{flag} {path} is a folder of class folders: its labels are "
                             "the folder names, so --text-column / --label-column do not "
                             "apply")
    args.text_column = args.text_column or "text"
    args.label_column = args.label_column or "label"


def training_settings(args):
    """(model kind, model settings, TrainingConfig keyword arguments) from the options."""
    from tfllm.constants import BERT_POSITION_ENCODINGS
    from tfllm.presets import preset, with_steps

    settings = preset(args.model, args.size)
    model_settings, training = settings["model"], settings["training"]
    overrides = {"num_layers": args.layers, "num_heads": args.heads, "hidden_dim": args.width,
                 "dropout": args.dropout, "position_encoding": args.position_encoding}
    for name, value in overrides.items():
        if value is None:
            continue
        option = f"--{name.replace('num_', '').replace('hidden_dim', 'width').replace('_', '-')}"
        if args.model == "classifier" and name != "dropout":
            raise ValueError(f"{option} does not apply to --model classifier: its encoder's "
                             "settings come from the --pretrained run")
        if args.model not in ("gpt", "bert") and name == "num_heads" or (
                args.model not in ("gpt", "bert") and name == "position_encoding"):
            raise ValueError(f"{option} does not apply to --model {args.model}")
        if (args.model == "bert" and name == "position_encoding"
                and value not in BERT_POSITION_ENCODINGS):
            raise ValueError(f"--position-encoding {value} does not apply to --model bert "
                             f"({' or '.join(BERT_POSITION_ENCODINGS)})")
        model_settings[name] = value
    if args.steps is not None:
        with_steps(training, args.steps)
    for option, name in (("steps_per_epoch", "steps_per_epoch"), ("batch_size", "batch_size"),
                         ("sequence_length", "sequence_length"),
                         ("learning_rate", "peak_learning_rate"),
                         ("warmup_steps", "warmup_steps"), ("precision", "precision"),
                         ("xla", "jit_compile"), ("seed", "seed")):
        value = getattr(args, option)
        if option == "xla" and value is not None:
            from tfllm.constants import XLA_CHOICES

            value = XLA_CHOICES[value]
        if value is not None:
            training[name] = value
    if getattr(args, "model_max_length", None):
        # Fine-tuning: the windows must fit the model being fine-tuned.
        if args.sequence_length is not None and args.sequence_length > args.model_max_length:
            raise ValueError(f"--sequence-length {args.sequence_length} is longer than the "
                             f"max_length ({args.model_max_length}) of --init-from's model")
        training["sequence_length"] = min(training["sequence_length"], args.model_max_length)
    elif args.model in ("gpt", "bert"):
        # The position table must hold a whole training window.
        model_settings["max_length"] = max(model_settings["max_length"],
                                           training["sequence_length"])
    return model_settings, training


def tokenizer_settings(args):
    """`(tokenizer kind, vocabulary size or None)` from `--tokenizer` / `--vocabulary-size`.

    gpt / lstm: `char` unless told, a subword vocabulary of
    `DEFAULT_SUBWORD_VOCABULARY_SIZE` unless told; bert: WordPiece of the preset's size
    unless told; a classifier and `--init-from` take the tokenizer of the run they start from.
    """
    from tfllm.constants import (DEFAULT_SUBWORD_VOCABULARY_SIZE, MINIMUM_VOCABULARY_SIZES)

    kind, size = args.tokenizer, args.vocabulary_size
    given = [option for option, value in (("--tokenizer", kind), ("--vocabulary-size", size))
             if value is not None]
    if given and (args.model == "classifier" or args.init_from):
        source = "--pretrained" if args.model == "classifier" else "--init-from"
        raise ValueError(f"{' and '.join(given)} does not apply here: the tokenizer comes "
                         f"from the {source} run")
    if args.model == "bert":
        if kind not in (None, "wordpiece"):
            raise ValueError(f"--tokenizer {kind} does not apply to --model bert: its masked "
                             "language model reads WordPiece ids (--tokenizer wordpiece)")
        kind = "wordpiece"
    kind = kind or "char"
    if size is None and kind != "char" and args.model != "bert":
        size = DEFAULT_SUBWORD_VOCABULARY_SIZE
    minimum = MINIMUM_VOCABULARY_SIZES[kind]
    if size is not None and size < minimum:
        raise ValueError(f"--vocabulary-size {size} is below the {minimum} ids a {kind} "
                         "tokenizer needs (its special tokens and at least one learned token)")
    return kind, size
