"""Pre-training BERT with masked language modelling, and fine-tuning it as a classifier.

`pretrain_masked_lm` and `finetune_classifier` are the jobs behind
`examples/pretrain_bert.py`, `examples/finetune_classifier.py` and `tfllm train --model
bert | classifier`. They use the machinery of the GPT path: a `TrainingConfig`, AdamW with
warm-up and cosine decay, `model.fit` under a `tf.distribute` strategy, a checkpoint per
epoch that an interrupted run resumes from, TensorBoard logs and a run directory:

```
runs/NAME/
  config.json  tokenizer.json  checkpoints/  logs/  history.csv  model.keras  metrics.json
```

A classifier run's `metrics.json` holds accuracy, macro-F1, per-class scores and the
confusion matrix of the held-out plays; its TensorBoard logs show them too (HParams and a
Markdown confusion matrix under Text).
"""

import keras
import numpy as np
import tensorflow as tf

from tfllm.data.datasets import (
    classification_dataset,
    encode_passages,
    encode_pieces,
    masked_lm_dataset,
    predictions_per_sequence,
)
from tfllm.metrics import classification_report, confusion_matrix_markdown
from tfllm.training.callbacks import summary_writer
from tfllm.training.checkpoints import KeepBestWeights
from tfllm.runs import RunDirectory
from tfllm.training.baselines import bag_of_words_baseline, majority_baseline  # noqa: F401
from tfllm.training.config import make_optimizer
from tfllm.training.job import TrainingJob, finish_job, run_job
from tfllm.training.strategy import is_chief, jit_compile_for, with_data_sharding

#: Seed of the masks of held-out masked-LM scores: every score uses the same masks.
HELD_OUT_MASK_SEED = 12345


def compile_masked_lm(model, config, strategy=None):
    """Compiles a `BertMaskedLM` for `config`: AdamW, the masked positions' loss, accuracy
    over the masked positions (a weighted metric: `sample_weight` picks them)."""
    return _compile(model, config, strategy, "weighted_metrics")


def compile_classifier(model, config, strategy=None):
    """Compiles a `BertClassifier` for `config`: AdamW, cross-entropy, accuracy."""
    return _compile(model, config, strategy, "metrics")


def _compile(model, config, strategy, metrics_argument):
    strategy = strategy or model.distribute_strategy
    with strategy.scope():
        model.compile(
            optimizer=make_optimizer(config),
            jit_compile=jit_compile_for(strategy, config.jit_compile),
            **{metrics_argument: [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]},
        )
    return model


def masked_lm_score(model, token_ids, tokenizer, sequence_length, batch_size=32):
    """`(loss, accuracy)` of a masked-LM over a whole held-out stream.

    Every full sequence of the stream is scored once, with the masks of
    `HELD_OUT_MASK_SEED` (the same masks each time, so scores before and after
    training compare). The loss is the mean cross-entropy (nats) of the selected pieces.
    """
    data = masked_lm_dataset(token_ids, tokenizer, sequence_length, batch_size,
                             shuffle=False, seed=HELD_OUT_MASK_SEED, drop_remainder=False)

    @tf.function
    def sums(inputs, labels, weights):
        logits = model(inputs, training=False)
        losses = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels),
                          tf.float32)
        return tf.stack([tf.reduce_sum(losses * weights), tf.reduce_sum(correct * weights),
                         tf.reduce_sum(weights)])

    # Sums over all batches, then one division: the mean per selected piece.
    total_loss, total_correct, total_count = np.sum(
        [sums(*batch).numpy() for batch in data], axis=0)
    total_count = max(float(total_count), 1.0)
    return float(total_loss) / total_count, float(total_correct) / total_count


def predict_classes(model, tokenizer, texts, sequence_length, batch_size=64):
    """`[N, C]` class probabilities of `texts` (truncated as `WordPieceTokenizer.encode`)."""
    ids, _ = encode_passages(tokenizer, texts, sequence_length)
    return _probabilities(model, ids, batch_size)


def _probabilities(model, ids, batch_size=64):
    return tf.nn.softmax(model.predict(ids, batch_size=batch_size, verbose=0)).numpy()


def fill_masks_sample(model, tokenizer, text, sequence_length, seed=7):
    """A text with 15 % of its pieces masked, and the model's guesses in brackets."""
    ids, _ = tokenizer.encode(tf.constant([text]), sequence_length)
    from tfllm.data.masking import mask_tokens

    masked = mask_tokens(ids, tokenizer.mask_id, tokenizer.vocabulary_size, seed=[seed, 0],
                         mask_fraction=1.0, random_fraction=0.0,
                         special_ids=tokenizer.special_ids)
    guesses = tf.argmax(model(masked["inputs"], training=False), -1, output_type=tf.int32)
    vocabulary = tokenizer.vocabulary
    pieces = []
    for original, selected, guess in zip(ids[0].numpy(), masked["sample_weight"][0].numpy(),
                                         guesses[0].numpy()):
        if original in tokenizer.special_ids:
            continue
        piece = vocabulary[original]
        pieces.append(f"[{vocabulary[guess]} / {piece}]" if selected else piece)
    return " ".join(pieces).replace(" ##", "")


def _fit(train_data_for, validation_data, config, verbose):
    """A `fit(model, callbacks, initial_step)` hook (`TrainingJob.fit`) over these datasets."""

    def fit(model, callbacks, initial_step):
        history = model.fit(
            with_data_sharding(train_data_for(initial_step)),
            epochs=config.epochs,
            initial_epoch=initial_step // config.epoch_steps,
            steps_per_epoch=config.epoch_steps,
            validation_data=(with_data_sharding(validation_data)
                             if validation_data is not None else None),
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the datasets shuffle themselves, reproducibly
        )
        return history.history.get("loss", [])

    return fit


def pretrain_masked_lm(model, corpus, tokenizer, config, run_directory=None, *, strategy=None,
                       resume=True, sample_text=None, print_function=print, verbose=1):
    """Pre-trains a `BertMaskedLM` on `corpus.train`; scores held-out plays before and after.

    Args:
        model: a function of no arguments that creates the `BertMaskedLM` (called in the
            strategy's scope), or a model created there.
        corpus: a `tfllm.data.Corpus` (e.g. `bundled_genre_split()`).
        tokenizer: the `WordPieceTokenizer` (learned from `corpus.train`).
        config: a `TrainingConfig`; `sequence_length` counts `[CLS]` and `[SEP]`.
        run_directory: where the run lives; None keeps nothing.
        strategy: a `tf.distribute.Strategy`; default: the one in scope.
        resume: continue from the run's latest checkpoint.
        sample_text: a held-out passage whose masked pieces TensorBoard shows the model
            guessing after each epoch.
        print_function: where progress lines go.
        verbose: Keras progress output.

    Returns:
        A dict of figures: held-out masked-LM loss and accuracy before (`initial_...`) and
        after training, time and tokens per second.
    """
    streams = {split: encode_pieces(tokenizer, corpus.documents(split))
               for split in ("train", "validation", "test")}
    length = config.sequence_length
    held_out = [split for split in ("validation", "test") if len(streams[split]) >= length - 2]
    print_function(
        f"Pre-training on {len(streams['train']):,} word pieces for {config.steps} steps of "
        f"{config.batch_size} × {length} tokens ("
        f"{config.steps * config.batch_size * (length - 2) / len(streams['train']):.2f} "
        "passes)."
    )
    builder = model if not isinstance(model, keras.Model) else (lambda: model)
    initial = {}

    def create_model():
        created = builder()
        # The score of the initial weights (the seed makes them the same on resuming).
        for split in held_out:
            initial[split] = masked_lm_score(created, streams[split], tokenizer, length,
                                             config.batch_size)
        return created

    job = TrainingJob(
        create_model=create_model, compile_model=compile_masked_lm,
        fit=_fit(*_masked_lm_data(streams, tokenizer, config, held_out), config, verbose),
        tokens_per_step=config.batch_size * length, run_config={"job": "masked_lm"},
        hparams_metrics=("loss", "accuracy", "val_loss", "val_accuracy",
                         "heldout_validation_loss", "heldout_test_loss"),
        sample=(None if not sample_text else
                lambda trained: fill_masks_sample(trained, tokenizer, sample_text, length)))
    outcome = run_job(job, config, tokenizer, run_directory, strategy=strategy, resume=resume,
                      print_function=print_function)
    metrics = outcome.figures(config)
    for split in held_out:
        metrics[f"initial_{split}_loss"], metrics[f"initial_{split}_accuracy"] = initial[split]
        loss, accuracy = masked_lm_score(outcome.model, streams[split], tokenizer, length,
                                         config.batch_size)
        metrics[f"{split}_loss"], metrics[f"{split}_accuracy"] = loss, accuracy
        print_function(
            f"Held-out {split} masked-LM loss over {len(corpus.documents(split))} plays: "
            f"{loss:.3f} nats per masked piece (before training {initial[split][0]:.3f}), "
            f"accuracy {accuracy:.1%}.")
    print_function(f"Trained in {metrics['training_seconds']:.0f} s, "
                   f"{metrics['tokens_per_second']:,.0f} tokens/s.")
    finish_job(outcome, tokenizer, metrics, print_function=print_function,
               held_out={f"heldout_{split}_loss": metrics[f"{split}_loss"] for split in held_out})
    return metrics


def _masked_lm_data(streams, tokenizer, config, held_out):
    """`(train_data(initial_step), validation data or None)` of masked-LM pre-training."""
    length = config.sequence_length

    def train_data(initial_step):
        data = masked_lm_dataset(streams["train"], tokenizer, length, config.batch_size,
                                 shuffle=True, seed=config.seed, repeat=True,
                                 max_predictions=predictions_per_sequence(length))
        return data.skip(initial_step) if initial_step else data

    validation_data = None
    if "validation" in held_out:
        validation_data = masked_lm_dataset(
            streams["validation"], tokenizer, length, config.batch_size, shuffle=False,
            seed=HELD_OUT_MASK_SEED, drop_remainder=False,
            max_predictions=predictions_per_sequence(length)).take(config.validation_batches)
    return train_data, validation_data


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

    def train_data(initial_step):
        data = classification_dataset(texts, labels, tokenizer, length, config.batch_size,
                                      shuffle=True, seed=config.seed, repeat=True)
        return data.skip(initial_step) if initial_step else data

    validation_data = None
    if "validation" in passages:
        validation_data = classification_dataset(
            *passages["validation"], tokenizer, length, config.batch_size)
    keep_best = KeepBestWeights("val_accuracy") if validation_data is not None else None
    job = TrainingJob(
        create_model=model, compile_model=compile_classifier,
        fit=_fit(train_data, validation_data, config, verbose),
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
                       f"the best on the validation plays (accuracy {keep_best.best:.3f}).")
    metrics.update(_held_out_reports(outcome.model, passages, tokenizer, length, class_names,
                                     print_function))
    held_out = {f"heldout_{split}_macro_f1": metrics[split]["macro_f1"]
                for split in ("validation", "test") if split in metrics}
    if "test" in metrics:
        held_out["heldout_test_accuracy"] = metrics["test"]["accuracy"]
    if outcome.run is not None and is_chief(outcome.strategy):
        write_confusion_matrices(outcome.run.logs, metrics, config.epochs * config.epoch_steps)
    finish_job(outcome, tokenizer, metrics, held_out=held_out, print_function=print_function)
    return metrics


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


def pretraining_job(corpus, vocabulary_size, model_settings, config, run_directory, *,
                    strategy=None, resume=True, print_function=print, verbose=1):
    """Learns a WordPiece vocabulary from `corpus.train`, then `pretrain_masked_lm`.

    A resumed run reuses the vocabulary saved in its run directory. Returns the metrics.
    """
    import time
    from tfllm.data.wordpiece import WordPieceTokenizer
    from tfllm.models.bert import BertEncoder, BertMaskedLM

    saved = RunDirectory(run_directory).tokenizer_file if run_directory is not None else None
    if resume and saved is not None and saved.is_file():
        tokenizer = WordPieceTokenizer.load(saved)
        print_function(f"Word pieces: {tokenizer.vocabulary_size} (from {saved}).")
    else:
        start = time.perf_counter()
        print_function(f"Learning a WordPiece vocabulary of up to {vocabulary_size} pieces "
                       f"from {len(corpus.train)} training texts...")
        tokenizer = WordPieceTokenizer.from_texts(corpus.texts("train"), vocabulary_size)
        print_function(f"Word pieces: {tokenizer.vocabulary_size} "
                       f"({time.perf_counter() - start:.0f} s).")
    settings = dict(model_settings)
    settings["max_length"] = max(settings.get("max_length", 0), config.sequence_length)
    sample = None
    if corpus.validation:
        sample = corpus.validation[0].text[1000:1400]
    return pretrain_masked_lm(
        lambda: BertMaskedLM(BertEncoder(vocabulary_size=tokenizer.vocabulary_size,
                                         seed=config.seed, **settings)),
        corpus, tokenizer, config, run_directory, strategy=strategy, resume=resume,
        sample_text=sample, print_function=print_function, verbose=verbose,
    )


def _pretraining_run(directory):
    """`(RunDirectory, WordPieceTokenizer)` of a masked-LM pre-training run, checked."""
    from tfllm.data.wordpiece import WordPieceTokenizer

    run = RunDirectory(directory)
    if not run.has_tokenizer():
        raise FileNotFoundError(
            f"{run.path} is not a pre-training run (no {run.TOKENIZER}); run "
            "examples/pretrain_bert.py or `tfllm train --model bert` first."
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


def _comparison_table(results):
    """The Markdown table of the test plays: the classifier and its baselines."""
    lines = ["| test plays | accuracy | macro-F1 |", "|---|---|---|",
             _report_line("pre-trained BERT classifier", results["pretrained"])]
    for key, name in (("no_pretraining", "same classifier, no pre-training"),
                      ("bag_of_words", "bag-of-words logistic regression"),
                      ("majority", "majority class")):
        if key in results:
            lines.append(_report_line(name, results[key]))
    return "\n".join(lines)


def _report_line(name, report):
    return f"| {name} | {report['accuracy']:.3f} | {report['macro_f1']:.3f} |"


def genre_classification_job(pretrained, classifier_settings, config, run_directory, *,
                             corpus=None, passage_length=400, baselines=True, strategy=None,
                             resume=True, print_function=print, verbose=1):
    """Fine-tunes a pre-trained encoder to tell comedy / history / tragedy passages apart.

    The plays are split by `bundled_genre_split` (the split the pre-training run should
    have used: its held-out plays are the classifier's held-out plays). With `baselines`,
    the same script scores, on the same split: the majority class, a bag-of-words
    logistic regression and the same classifier fine-tuned from random weights (a second
    run directory, `RUN-scratch`). Everything lands in `RUN/metrics.json` and
    `RUN/comparison.json`; a Markdown table is printed.

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
        `{"pretrained": report, "majority": ..., "bag_of_words": ..., "no_pretraining": ...}`
        of the test plays, plus `"validation"` reports of the pre-trained classifier.
    """
    from tfllm.data.genres import CLASS_NAMES, bundled_genre_split
    from tfllm.models import BertClassifier

    pretrained, tokenizer = _pretraining_run(pretrained)
    passages = _genre_passages(corpus if corpus is not None else bundled_genre_split(),
                               passage_length, print_function)
    common = dict(strategy=strategy, resume=resume, print_function=print_function,
                  verbose=verbose)
    results = {}
    metrics = finetune_classifier(
        lambda: BertClassifier.from_pretrained(pretrained, num_classes=len(CLASS_NAMES),
                                               seed=config.seed, **classifier_settings),
        passages, tokenizer, config, CLASS_NAMES, run_directory,
        run_config={"pretrained": str(pretrained.path), "passage_length": passage_length},
        **common)
    results["pretrained"] = metrics["test"]
    results["validation"] = metrics["validation"]
    results["seconds"] = {"pretrained": metrics["training_seconds"]}
    if baselines:
        print_function("Baselines on the same split:")
        results["majority"] = majority_baseline(passages["train"][1], passages["test"][1],
                                                CLASS_NAMES)
        results["bag_of_words"], l2 = bag_of_words_baseline(
            passages["train"], passages["test"], CLASS_NAMES, validation=passages["validation"])
        results["bag_of_words"]["l2"] = l2
        scratch_directory = (None if run_directory is None
                             else RunDirectory(run_directory).sibling("-scratch"))
        scratch = finetune_classifier(
            lambda: BertClassifier.shaped_like(pretrained, num_classes=len(CLASS_NAMES),
                                               seed=config.seed, **classifier_settings),
            passages, tokenizer, config, CLASS_NAMES, scratch_directory,
            run_config={"pretrained": None, "passage_length": passage_length}, **common)
        results["no_pretraining"] = scratch["test"]
        results["seconds"]["no_pretraining"] = scratch["training_seconds"]
    results["table"] = _comparison_table(results)
    print_function(results["table"])
    if run_directory is not None:
        RunDirectory(run_directory).write_comparison(results)
    return results
