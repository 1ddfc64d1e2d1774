"""Pre-training BERT with masked language modelling: the job and its pieces.

`pretraining_job` (a WordPiece vocabulary, then `pretrain_masked_lm`) is the job behind
`examples/pretrain_bert.py` and `tfllm train --model bert`. It uses the machinery of the
GPT path: a `TrainingConfig`, AdamW with warm-up and cosine decay, `model.fit` under a
`tf.distribute` strategy, a checkpoint per epoch that an interrupted run resumes from,
TensorBoard logs and a run directory:

```
runs/NAME/
  config.json  tokenizer.json  checkpoints/  logs/  history.csv  model.keras  metrics.json
```

The pieces (`compile_masked_lm`, `masked_lm_score`, `fill_masks_sample`) are there for your
own loops. Fine-tuning the pre-trained encoder is `tfllm.training.classification`.
"""

import keras
import numpy as np
import tensorflow as tf

from tfllm.data.datasets import encode_pieces, masked_lm_dataset, predictions_per_sequence
from tfllm.runs import RunDirectory
from tfllm.training.job import (
    TrainingJob,
    compile_for_training,
    finish_job,
    first_batch,
    fit_hook,
    held_out_losses,
    print_training_speed,
    run_job,
)

#: Seed of the masks of held-out masked-LM scores: every score uses the same masks.
HELD_OUT_MASK_SEED = 12345


def compile_masked_lm(model, config, strategy=None):
    """Compiles a `BertMaskedLM` for `config`: AdamW, the masked positions' loss, accuracy
    over the masked positions (a weighted metric: `sample_weight` picks them)."""
    return compile_for_training(model, config, strategy, weighted_metrics=[
        keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


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
    print_function(_plan(len(streams["train"]), config))
    job, initial = _masked_lm_job(model, streams, held_out, tokenizer, config, sample_text,
                                  verbose)
    outcome = run_job(job, config, tokenizer, run_directory, strategy=strategy, resume=resume,
                      print_function=print_function)
    metrics = outcome.figures(config)
    final = _held_out_scores(outcome.model, streams, held_out, tokenizer, config)
    for split in held_out:
        metrics[f"initial_{split}_loss"], metrics[f"initial_{split}_accuracy"] = initial[split]
        metrics[f"{split}_loss"], metrics[f"{split}_accuracy"] = loss, accuracy = final[split]
        print_function(
            f"Held-out {split} masked-LM loss over {len(corpus.documents(split))} plays: "
            f"{loss:.3f} nats per masked piece (before training {initial[split][0]:.3f}), "
            f"accuracy {accuracy:.1%}.")
    print_training_speed(metrics, print_function)
    finish_job(outcome, tokenizer, metrics, print_function=print_function,
               held_out=held_out_losses(metrics, held_out))
    return metrics


def _plan(train_pieces, config):
    """The line that says how long pre-training is, in steps and passes over the text."""
    length = config.sequence_length
    return (f"Pre-training on {train_pieces:,} word pieces for {config.steps} steps of "
            f"{config.batch_size} × {length} tokens ("
            f"{config.steps * config.batch_size * (length - 2) / train_pieces:.2f} passes).")


def _masked_lm_job(model, streams, held_out, tokenizer, config, sample_text, verbose):
    """`(TrainingJob, initial)` of `pretrain_masked_lm`: `initial` receives the held-out
    scores of the initial weights when the job creates its model."""
    builder = model if not isinstance(model, keras.Model) else (lambda: model)
    length = config.sequence_length
    initial = {}

    def create_model():
        created = builder()
        # The score of the initial weights (the seed makes them the same on resuming).
        initial.update(_held_out_scores(created, streams, held_out, tokenizer, config))
        return created

    train_data, validation_data = _masked_lm_data(streams, tokenizer, config, held_out)
    job = TrainingJob(
        create_model=create_model, compile_model=compile_masked_lm,
        fit=fit_hook(train_data, validation_data, config, verbose),
        example_batch=lambda: first_batch(train_data(0)),
        tokens_per_step=config.batch_size * length, run_config={"job": "masked_lm"},
        hparams_metrics=("loss", "accuracy", "val_loss", "val_accuracy",
                         "heldout_validation_loss", "heldout_test_loss"),
        sample=(None if not sample_text else
                lambda trained: fill_masks_sample(trained, tokenizer, sample_text, length)))
    return job, initial


def _held_out_scores(model, streams, splits, tokenizer, config):
    """`{split: (loss, accuracy)}` of `masked_lm_score` over the held-out streams."""
    return {split: masked_lm_score(model, streams[split], tokenizer, config.sequence_length,
                                   config.batch_size)
            for split in splits}


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
