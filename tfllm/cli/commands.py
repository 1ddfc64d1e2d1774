"""What `tfllm train`, `generate`, `export` and `convert` do with their options.

Each command checks its options (and the run directory) before TensorFlow loads, then calls
the library: the jobs of `tfllm.training`, `tfllm.generation`, `tfllm.export`.
"""

import os
import sys

from tfllm.cli import interrupts
from tfllm.cli.options import (check_labelled_data_options, resolve_model_kind,
                               tokenizer_settings, training_settings)
from tfllm.startup_log import import_tensorflow


def train(args):
    # The options first, without TensorFlow: a mistake is named in a moment.
    resolve_model_kind(args)
    check_labelled_data_options(args)
    model_settings, training = training_settings(args)
    args.tokenizer, args.vocabulary_size = tokenizer_settings(args)
    run_dir = _run_directory(args)
    if args.strategy != "multi_worker" and not os.environ.get("TF_CONFIG"):
        # Held until the process ends: a second trainer of this run is refused at once.
        # (Under multi-worker training only the chief locks it, in the job.)
        from tfllm.runs import RunDirectory

        RunDirectory(run_dir).lock(purpose="train")

    import_tensorflow()
    from tfllm.training.strategy import resolve_strategy, use_logical_cpus

    # Devices first: nothing may touch TensorFlow's devices before this.
    if args.logical_cpus:
        use_logical_cpus(args.logical_cpus)
    strategy = resolve_strategy(args.strategy, tpu=args.tpu,
                                cluster_timeout=args.cluster_timeout)
    interrupts.install()  # a multi-worker strategy replaces the SIGTERM handler

    from tfllm.training import TrainingConfig

    job = {"bert": _pretrain_bert, "classifier": _train_classifier}.get(
        args.model, _train_language_model)
    job(args, model_settings, TrainingConfig(**training), run_dir, strategy)
    return 0


def _run_directory(args):
    """`--run-dir`, or `runs/MODEL-SIZE` (`RUN-lora` / `RUN-finetuned` with --init-from)."""
    if not args.init_from:
        return args.run_dir or os.path.join("runs", f"{args.model}-{args.size}")
    run_dir = args.run_dir or (args.init_from.rstrip("/\\")
                               + ("-lora" if args.lora_rank else "-finetuned"))
    if os.path.abspath(run_dir) == os.path.abspath(args.init_from):
        raise ValueError("--run-dir must differ from --init-from: fine-tuning never "
                         "writes into the run it starts from")
    return run_dir


def _pretrain_bert(args, model_settings, config, run_dir, strategy):
    from tfllm.data import bundled_genre_split, load_corpus
    from tfllm.presets import preset
    from tfllm.training.masked_lm import pretraining_job

    if args.data is not None:
        # The texts of the labelled examples, split as the classifier will split them:
        # its held-out examples stay unread by the encoder.
        corpus = _labelled_data(args).as_corpus()
    elif args.corpus == "shakespeare":
        corpus = bundled_genre_split()
    else:
        corpus = load_corpus(args.corpus)
    print(corpus.describe())
    pretraining_job(corpus, args.vocabulary_size
                    or preset("bert", args.size)["tokenizer"]["vocabulary_size"],
                    model_settings, config, run_dir, strategy=strategy,
                    resume=args.resume, verbose=0 if args.quiet else 1)


def _labelled_data(args):
    """The `LabelledData` of `--data` and its companions."""
    from tfllm.data.labelled_files import load_labelled_data

    return load_labelled_data(args.data, args.text_column, args.label_column,
                              validation_data=args.validation_data, test_data=args.test_data)


def _train_classifier(args, model_settings, config, run_dir, strategy):
    from tfllm.training.classification import classification_job, genre_classification_job

    pretrained = args.pretrained or os.path.join("runs", f"bert-{args.size}")
    options = {"baselines": not args.no_baselines, "strategy": strategy,
               "resume": args.resume, "verbose": 0 if args.quiet else 1}
    if args.data is None:
        genre_classification_job(pretrained, model_settings, config, run_dir, **options)
        return
    data = _labelled_data(args)
    print(data.describe())
    classification_job(
        pretrained, data.splits, data.class_names, model_settings, config, run_dir,
        run_config={"data": {split: os.path.abspath(source)
                             for split, source in data.sources.items()},
                    "text_column": args.text_column, "label_column": args.label_column},
        **options)


def _train_language_model(args, model_settings, config, run_dir, strategy):
    from tfllm.data import build_tokenizer, load_corpus
    from tfllm.models import build_model
    from tfllm.training.language_model import train_and_evaluate

    corpus = load_corpus(args.corpus)
    print(corpus.describe())
    run_config = None
    if args.init_from:
        create_model, tokenizer, run_config = _fine_tuning_start(args, corpus)
    else:
        tokenizer = build_tokenizer(args.tokenizer, corpus.texts("train"), args.vocabulary_size)
        print(f"Tokenizer: {args.tokenizer}, {tokenizer.vocabulary_size:,} ids, learned from "
              "the training split.")

        def create_model():
            return build_model(args.model, tokenizer.vocabulary_size, **model_settings)
    print(f"Precision: {config.precision}.")
    train_and_evaluate(
        create_model, corpus, tokenizer, config, run_directory=run_dir, strategy=strategy,
        resume=args.resume, prompt=args.prompt, sample_length=args.sample_length,
        temperature=args.temperature, verbose=0 if args.quiet else 1, run_config=run_config)


def _fine_tuning_start(args, corpus):
    """`(create_model, tokenizer, run config)` of fine-tuning `--init-from` on `corpus`."""
    from tfllm.training.runs import fine_tuning_start

    create_model, tokenizer, _ = fine_tuning_start(args.init_from, args.lora_rank)
    from tfllm.data import CharacterTokenizer

    unknown = (set("".join(corpus.texts("train"))) - set(tokenizer.vocabulary)
               if isinstance(tokenizer, CharacterTokenizer) else ())
    if unknown:
        print(f"{len(unknown)} characters of the corpus are not in the vocabulary of "
              f"{args.init_from}; they read as the unknown token.")
    print(f"Fine-tuning {args.init_from}"
          + (f" with rank-{args.lora_rank} LoRA adapters." if args.lora_rank else "."))
    return create_model, tokenizer, {"init_from": os.path.abspath(args.init_from),
                                     "lora_rank": args.lora_rank}


def generate(args):
    from tfllm.runs import RunDirectory

    if not args.prompt:
        raise ValueError("--prompt must not be empty")
    run = RunDirectory(args.run_dir).require()  # (before TensorFlow loads)
    import_tensorflow()
    from tfllm.data import stream_text
    from tfllm.generation import generate_text, stream_tokens, with_decoding_weights

    model, tokenizer = run.load()
    if not hasattr(model, "generate"):
        raise ValueError(f"{args.run_dir} holds a {type(model).__name__}, which does not "
                         "generate text; export it to serve it (`tfllm export`)")
    model = with_decoding_weights(model, args.weights)
    options = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
               "seed": args.seed}
    if args.stream:
        if args.num_beams > 1:
            raise ValueError("--stream cannot show a beam search; drop one of them")
        sys.stdout.write(args.prompt)
        sys.stdout.flush()
        tokens = stream_tokens(model, tokenizer.encode_text(args.prompt).tolist(),
                               args.max_new_tokens, **options)
        for piece in stream_text(tokenizer, tokens):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return 0
    text = generate_text(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens,
                         num_beams=args.num_beams, **options)
    print(text)
    return 0


def export(args):
    import json
    from pathlib import Path

    from tfllm.runs import RunDirectory

    RunDirectory(args.run_dir).require()  # (before TensorFlow loads)
    import_tensorflow()
    from tfllm.export import export_run

    name = args.name or Path(args.run_dir).resolve().name
    path = export_run(args.run_dir, Path(args.output) / name, version=args.version,
                      max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                      top_k=args.top_k, top_p=args.top_p, weights=args.weights)
    metadata = json.loads((path / "assets.extra" / "tfllm.json").read_text(encoding="utf-8"))
    print(f"Exported {args.run_dir} to {path}/ (signatures: "
          f"{', '.join(metadata['signatures'])}).")
    if "tensorflow_text" in metadata.get("requires", []):
        print("Load it after `import tensorflow_text` (its tokenizer uses TensorFlow Text ops).")
    print(f"Inspect it with: saved_model_cli show --dir {path} --all")
    return 0


def convert(args):
    from pathlib import Path

    from tfllm.convert import check_checkpoint_folder
    from tfllm.runs import RunDirectory

    folder = check_checkpoint_folder(args.source)  # (before TensorFlow loads)
    run_dir = args.run_dir or os.path.join("runs", folder.path.resolve().name)
    RunDirectory(run_dir).lock(purpose="convert")  # held until the process ends
    import_tensorflow()
    from tfllm.convert import convert_checkpoint

    run, report = convert_checkpoint(folder.path, run_dir)
    print(f"Converted {args.source} ({report['model_type']}, {report['parameters']:,} "
          f"parameters) into {run.path}/.")
    if report["model_type"] == "gpt2":
        print(f"Generate with `tfllm generate {run.path}`; fine-tune with "
              f"`tfllm train --init-from {run.path} --corpus FILE`.")
    else:
        lacking = [part for part in ("pooler", "masked_lm_head") if not report[part]]
        if lacking:
            print(f"The checkpoint has no {' and no '.join(lacking)}: "
                  "those weights start fresh.")
        print(f"Fine-tune a classifier with `tfllm train --model classifier --pretrained "
              f"{Path(run.path)}`.")
    return 0
