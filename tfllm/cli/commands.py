"""What `tfllm train`, `tfllm generate` and `tfllm export` do with their options.

Each command checks its options (and the run directory) before TensorFlow loads, then calls
the library: the jobs of `tfllm.training`, `tfllm.generation`, `tfllm.export`.
"""

import os
import sys

from tfllm.cli.options import resolve_model_kind, training_settings


def train(args):
    # The options first, without TensorFlow: a mistake is named in a moment.
    resolve_model_kind(args)
    model_settings, training = training_settings(args)

    from tfllm.training.strategy import resolve_strategy, use_logical_cpus

    # Devices first: nothing may touch TensorFlow's devices before this.
    if args.logical_cpus:
        use_logical_cpus(args.logical_cpus)
    strategy = resolve_strategy(args.strategy, tpu=args.tpu)

    from tfllm.training import TrainingConfig

    job = {"bert": _pretrain_bert, "classifier": _train_classifier}.get(
        args.model, _train_language_model)
    job(args, model_settings, TrainingConfig(**training), _run_directory(args), strategy)
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

    corpus = (bundled_genre_split() if args.corpus == "shakespeare"
              else load_corpus(args.corpus))
    print(corpus.describe())
    pretraining_job(corpus, preset("bert", args.size)["tokenizer"]["vocabulary_size"],
                    model_settings, config, run_dir, strategy=strategy,
                    resume=args.resume, verbose=0 if args.quiet else 1)


def _train_classifier(args, model_settings, config, run_dir, strategy):
    from tfllm.training.classification import genre_classification_job

    if args.corpus != "shakespeare":
        raise ValueError("--model classifier learns the genres of the bundled plays; "
                         "--corpus must be 'shakespeare'")
    genre_classification_job(args.pretrained or os.path.join("runs", f"bert-{args.size}"),
                             model_settings, config, run_dir, strategy=strategy,
                             resume=args.resume, baselines=not args.no_baselines,
                             verbose=0 if args.quiet else 1)


def _train_language_model(args, model_settings, config, run_dir, strategy):
    from tfllm.data import CharacterTokenizer, load_corpus
    from tfllm.models import build_model
    from tfllm.training.language_model import train_and_evaluate

    corpus = load_corpus(args.corpus)
    print(corpus.describe())
    run_config = None
    if args.init_from:
        create_model, tokenizer, run_config = _fine_tuning_start(args, corpus)
    else:
        tokenizer = CharacterTokenizer.from_texts(corpus.texts("train"))

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
    unknown = set("".join(corpus.texts("train"))) - set(tokenizer.vocabulary)
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
        for token in stream_tokens(model, tokenizer.encode_text(args.prompt).tolist(),
                                   args.max_new_tokens, **options):
            sys.stdout.write(tokenizer.decode_ids([token]))
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


