"""Fine-tuning a pre-trained BERT encoder as a classifier, and the jobs that run it.

`finetune_classifier` trains a `BertClassifier` on labelled passages through the job runner
(`tfllm.training.job`: checkpoints, resuming, TensorBoard logs, a run directory);
`classification_job`, the job behind `tfllm train --model classifier`, runs it beside its
baselines on any labelled passages (your files: `tfllm.data.load_labelled_data`);
`genre_classification_job` (also behind `examples/finetune_classifier.py`) gives it the
bundled plays' genres.

A classifier run's `metrics.json` holds accuracy, macro-F1, per-class scores and the
confusion matrix of the held-out passages; its TensorBoard logs show them too (HParams and
a Markdown confusion matrix under Text).
"""

import keras
import numpy as np
import tensorflow as tf

from tfllm.data.datasets import classification_dataset, encode_passages
from tfllm.metrics import classification_report, confusion_matrix_markdown
from tfllm.runs import RunDirectory
from tfllm.training.baselines import bag_of_words_baseline, majority_baseline
from tfllm.training.callbacks import summary_writer
from tfllm.training.checkpoints import KeepBestWeights
from tfllm.training.job import (
    TrainingJob,
    compile_for_training,
    finish_job,
    first_batch,
    fit_hook,
    run_job,
)
from tfllm.training.strategy import is_chief


def compile_classifier(model, config, strategy=None):
    """Compiles a `BertClassifier` for `config`: AdamW, cross-entropy, accuracy."""
    return compile_for_training(model, config, strategy, metrics=[
        keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


def predict_classes(model, tokenizer, texts, sequence_length, batch_size=64):
    """`[N, C]` class probabilities of `texts` (truncated as `WordPieceTokenizer.encode`)."""
    ids, _ = encode_passages(tokenizer, texts, sequence_length)
    return _probabilities(model, ids, batch_size)


def _probabilities(model, ids, batch_size=64):
    return tf.nn.softmax(model.predict(ids, batch_size=batch_size, verbose=0)).numpy()


def finetune_classifier(model, passages, tokenizer, config, class_names, run_directory=None,
                        *, strategy=None, resume=True, run_config=None, print_function=print,
                        verbose=1):
    """Fine-tunes a `BertClassifier` on labelled passages; evaluates the held-out ones.

    With validation passages, the classifier keeps the weights of the epoch with the best
    validation accuracy (`KeepBestWeights`): fine-tuning on a few plays over-fits them
    within a few epochs.

    Args:
        model: a function of no arguments that creates the classifier (called in the
            strategy's scope, e.g. `lambda: BertClassifier.from_pretrained(run, 3)`), or a
            model created there.
        passages: `{"train": (texts, labels), "validation": ..., "test": ...}`; held-out
            splits may be missing.
        tokenizer: the `WordPieceTokenizer` of the encoder.
        config: a `TrainingConfig`; `sequence_length` is the classifier's input length
            (longer passages keep their first `sequence_length - 2` pieces).
        class_names: the names of the class ids.
        run_directory: where the run lives; None keeps nothing.
        run_config: extra JSON-friendly facts for `config.json` (e.g. the pre-training run).

    Returns:
        A dict: `{split}: classification_report(...)` for each held-out split, time, and
        the fraction of passages truncated.
    """
    texts, labels = passages["train"]
    length = config.sequence_length
    print_function(
        f"Fine-tuning on {len(texts):,} passages for {config.steps} steps of "
        f"{config.batch_size} ({config.steps * config.batch_size / len(texts):.1f} passes)."
    )
    train_data, validation_data = _classification_data(passages, tokenizer, config)
    keep_best = KeepBestWeights("val_accuracy") if validation_data is not None else None
    job = TrainingJob(
        create_model=model, compile_model=compile_classifier,
        fit=fit_hook(train_data, validation_data, config, verbose),
        example_batch=lambda: first_batch(train_data(0)),
        tokens_per_step=config.batch_size * length,
        run_config={"job": "classifier", "class_names": list(class_names), **(run_config or {})},
        hparams_metrics=("loss", "accuracy", "val_loss", "val_accuracy",
                         "heldout_validation_macro_f1", "heldout_test_macro_f1",
                         "heldout_test_accuracy"),
        callbacks=(keep_best,) if keep_best is not None else ())
    outcome = run_job(job, config, tokenizer, run_directory, strategy=strategy, resume=resume,
                      print_function=print_function)
    metrics = {**outcome.figures(config), "class_names": list(class_names)}
    if keep_best is not None and keep_best.best_epoch is not None:
        metrics["best_epoch"] = keep_best.best_epoch
        print_function(f"Kept the weights of epoch {keep_best.best_epoch} of {config.epochs}, "
                       f"the best on the validation passages (accuracy {keep_best.best:.3f}).")
    metrics.update(_held_out_reports(outcome.model, passages, tokenizer, length, class_names,
                                     print_function))
    if outcome.run is not None and is_chief(outcome.strategy):
        write_confusion_matrices(outcome.run.logs, metrics, config.epochs * config.epoch_steps)
    finish_job(outcome, tokenizer, metrics, held_out=_held_out_hparams(metrics),
               print_function=print_function)
    return metrics


def _classification_data(passages, tokenizer, config):
    """`(train_data(initial_step), validation data or None)` of classifier fine-tuning."""
    texts, labels = passages["train"]
    length = config.sequence_length

    def train_data(initial_step):
        data = classification_dataset(texts, labels, tokenizer, length, config.batch_size,
                                      shuffle=True, seed=config.seed, repeat=True)
        return data.skip(initial_step) if initial_step else data

    validation_data = None
    if "validation" in passages:
        validation_data = classification_dataset(
            *passages["validation"], tokenizer, length, config.batch_size)
    return train_data, validation_data


def _held_out_hparams(metrics):
    """The held-out figures of a classifier run, as the HParams dashboard names them."""
    held_out = {f"heldout_{split}_macro_f1": metrics[split]["macro_f1"]
                for split in ("validation", "test") if split in metrics}
    if "test" in metrics:
        held_out["heldout_test_accuracy"] = metrics["test"]["accuracy"]
    return held_out


def _held_out_reports(model, passages, tokenizer, length, class_names, print_function):
    """`{split: classification_report}` of the held-out passages (truncated as encoded)."""
    reports = {}
    for split in ("validation", "test"):
        if split not in passages:
            continue
        held_texts, held_labels = passages[split]
        ids, truncated = encode_passages(tokenizer, held_texts, length)
        probabilities = _probabilities(model, ids)
        report = classification_report(held_labels, probabilities.argmax(-1), class_names)
        report["truncated_fraction"] = float(np.mean(truncated.numpy()))
        reports[split] = report
        print_function(f"Held-out {split}: accuracy {report['accuracy']:.3f}, macro-F1 "
                       f"{report['macro_f1']:.3f} over {report['count']} passages.")
    return reports


def write_confusion_matrices(log_dir, reports, step, tag="confusion_matrix"):
    """Writes each held-out split's confusion matrix as Markdown to TensorBoard's Text tab."""
    writer = summary_writer(log_dir / "evaluation")
    with writer.as_default():
        for split in ("validation", "test"):
            if split in reports:
                report = reports[split]
                text = (f"accuracy {report['accuracy']:.3f}, macro-F1 "
                        f"{report['macro_f1']:.3f}\n\n" + confusion_matrix_markdown(report))
                tf.summary.text(f"{tag}/{split}", text, step=step)
    writer.flush()


def genre_classification_job(pretrained, classifier_settings, config, run_directory, *,
                             corpus=None, passage_length=400, baselines=True, strategy=None,
                             resume=True, print_function=print, verbose=1):
    """Fine-tunes a pre-trained encoder to tell comedy / history / tragedy passages apart.

    The plays are split by `bundled_genre_split` (the split the pre-training run should
    have used: its held-out plays are the classifier's held-out plays), cut into passages
    and handed to `classification_job` (the classifier and its baselines).

    Args:
        pretrained: the run directory of a masked-LM pre-training run.
        classifier_settings: `BertClassifier` head settings (`pooling`,
            `classifier_dropout`).
        config: the fine-tuning `TrainingConfig`.
        run_directory: the classifier's run directory.
        corpus: the plays, split by play (default: `bundled_genre_split()`); documents
            need a `genre`.
        passage_length: characters per passage.

    Returns:
        What `classification_job` returns.
    """
    from tfllm.data.genres import CLASS_NAMES, bundled_genre_split

    passages = _genre_passages(corpus if corpus is not None else bundled_genre_split(),
                               passage_length, print_function)
    return classification_job(
        pretrained, passages, CLASS_NAMES, classifier_settings, config, run_directory,
        run_config={"passage_length": passage_length}, baselines=baselines,
        held_out_name="test plays", strategy=strategy, resume=resume,
        print_function=print_function, verbose=verbose)


def classification_job(pretrained, passages, class_names, classifier_settings, config,
                       run_directory, *, run_config=None, baselines=True,
                       held_out_name="test examples", strategy=None, resume=True,
                       print_function=print, verbose=1):
    """Fine-tunes a pre-trained encoder on labelled passages, beside its baselines.

    With `baselines`, the same script scores, on the same split: the majority class, a
    bag-of-words logistic regression and the same classifier fine-tuned from random
    weights (a second run directory, `RUN-scratch`). Everything lands in
    `RUN/metrics.json` and `RUN/comparison.json`; a Markdown table is printed. The job
    behind `tfllm train --model classifier` (the genres, or `--data FILE`).

    Args:
        pretrained: the run directory of a masked-LM pre-training run.
        passages: `{"train": (texts, class ids), "validation": ..., "test": ...}`
            (e.g. `tfllm.data.load_labelled_data(...).splits`); all three splits.
        class_names: the names of the class ids.
        classifier_settings: `BertClassifier` head settings (`pooling`,
            `classifier_dropout`).
        config: the fine-tuning `TrainingConfig`.
        run_directory: the classifier's run directory.
        run_config: extra JSON-friendly facts for the run's `config.json`.
        held_out_name: what the comparison table calls the test split.

    Returns:
        `{"pretrained": report, "majority": ..., "bag_of_words": ..., "no_pretraining": ...}`
        of the test passages, plus `"validation"` reports of the pre-trained classifier.
    """
    from tfllm.models import BertClassifier

    pretrained, tokenizer = _pretraining_run(pretrained)
    missing = [split for split in ("train", "validation", "test")
               if split not in passages or not passages[split][0]]
    if missing:
        raise ValueError(f"The classifier job needs {' and '.join(missing)} passages.")

    def fine_tune(create, directory, pretrained_path):
        """`finetune_classifier` of the `BertClassifier` that `create` makes from the run."""
        return finetune_classifier(
            lambda: create(pretrained, num_classes=len(class_names), seed=config.seed,
                           **classifier_settings),
            passages, tokenizer, config, class_names, directory,
            run_config={"pretrained": pretrained_path, **(run_config or {})},
            strategy=strategy, resume=resume, print_function=print_function, verbose=verbose)

    metrics = fine_tune(BertClassifier.from_pretrained, run_directory, str(pretrained.path))
    results = {"pretrained": metrics["test"], "validation": metrics["validation"],
               "seconds": {"pretrained": metrics["training_seconds"]}}
    if baselines:
        print_function("Baselines on the same split:")
        results.update(_baseline_reports(passages, class_names))
        # The same classifier from random weights, in a run directory of its own.
        scratch_directory = (None if run_directory is None
                             else RunDirectory(run_directory).sibling("-scratch"))
        scratch = fine_tune(BertClassifier.shaped_like, scratch_directory, None)
        results["no_pretraining"] = scratch["test"]
        results["seconds"]["no_pretraining"] = scratch["training_seconds"]
    results["table"] = _comparison_table(results, held_out_name)
    print_function(results["table"])
    if run_directory is not None:
        RunDirectory(run_directory).write_comparison(results)
    return results


def _baseline_reports(passages, class_names):
    """`{"majority": report, "bag_of_words": report with its "l2"}` of the test passages."""
    majority = majority_baseline(passages["train"][1], passages["test"][1], class_names)
    bag_of_words, l2 = bag_of_words_baseline(
        passages["train"], passages["test"], class_names, validation=passages["validation"])
    return {"majority": majority, "bag_of_words": {**bag_of_words, "l2": l2}}


def _pretraining_run(directory):
    """`(RunDirectory, WordPieceTokenizer)` of a masked-LM pre-training run, checked."""
    from tfllm.data.wordpiece import WordPieceTokenizer

    run = RunDirectory(directory)
    if not run.has_tokenizer():
        raise FileNotFoundError(
            f"{run.path} is not a pre-training run (no {run.TOKENIZER}); pre-train one "
            f"first: `tfllm train --model bert --run-dir {run.path}` (the bundled plays; "
            "add --corpus TEXTS or --data LABELLED_FILE for your own text), then give "
            "it with --pretrained"
        )
    if run.model_class() != "BertMaskedLM":
        raise ValueError(f"{run.path} holds a {run.model_class()}, not a "
                         "BertMaskedLM pre-training run.")
    return run, WordPieceTokenizer.load(run.tokenizer_file)


def _genre_passages(corpus, passage_length, print_function):
    """`{split: (texts, labels)}` of the plays' passages, their class balance printed."""
    from tfllm.data.genres import class_balance, labelled_passages

    passages = {}
    for split in ("train", "validation", "test"):
        texts, labels, _ = labelled_passages(corpus.documents(split), passage_length)
        passages[split] = (texts, labels)
        balance = ", ".join(f"{name} {count} ({fraction:.0%})"
                            for name, (count, fraction) in class_balance(labels).items())
        print_function(f"{split}: {len(corpus.documents(split))} plays, {len(texts)} "
                       f"passages: {balance}")
    return passages


def _comparison_table(results, held_out_name="test plays"):
    """The Markdown table of the test split: the classifier and its baselines."""
    lines = [f"| {held_out_name} | accuracy | macro-F1 |", "|---|---|---|",
             _report_line("pre-trained BERT classifier", results["pretrained"])]
    for key, name in (("no_pretraining", "same classifier, no pre-training"),
                      ("bag_of_words", "bag-of-words logistic regression"),
                      ("majority", "majority class")):
        if key in results:
            lines.append(_report_line(name, results[key]))
    return "\n".join(lines)


def _report_line(name, report):
    return f"| {name} | {report['accuracy']:.3f} | {report['macro_f1']:.3f} |"
