"""Training and evaluating next-token language models with `model.fit`."""

import dataclasses
import math
import time

import keras

from tfllm.data.datasets import encode_documents, language_model_dataset
from tfllm.generation import generate_text
from tfllm.layers.validation import check_positive_int
from tfllm.training.runs import save_run
from tfllm.training.schedules import WarmupCosineDecay


@dataclasses.dataclass
class TrainingConfig:
    """How to train: window, batch, length of training and the optimiser.

    Attributes:
        sequence_length: tokens per training window `T`.
        batch_size: windows per step (the global batch under tf.distribute).
        steps: optimiser steps in total.
        steps_per_epoch: steps between validations and progress summaries.
        peak_learning_rate: AdamW's rate after warm-up.
        warmup_steps: steps of linear warm-up (then cosine decay to 10 %).
        weight_decay: AdamW's decoupled weight decay; not applied to biases
            and normalisation parameters.
        clip_norm: global gradient-norm clipping.
        jit_compile: compile train steps with XLA (faster on this CPU).
        validation_batches: batches of held-out text scored after each epoch
            (the full held-out score comes from `held_out_loss`).
        seed: seed of window offsets and order.
    """

    sequence_length: int = 256
    batch_size: int = 32
    steps: int = 2000
    steps_per_epoch: int = 200
    peak_learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    jit_compile: bool = True
    validation_batches: int = 16
    seed: int = 1

    def __post_init__(self):
        for name in ("sequence_length", "batch_size", "steps", "steps_per_epoch"):
            check_positive_int(name, getattr(self, name))
        if not self.peak_learning_rate > 0:
            raise ValueError(f"`peak_learning_rate` must be positive; got {self.peak_learning_rate}.")
        if self.warmup_steps >= self.steps:
            raise ValueError(
                f"`warmup_steps` ({self.warmup_steps}) must be smaller than `steps` ({self.steps})."
            )

    @property
    def epochs(self):
        return max(1, math.ceil(self.steps / self.steps_per_epoch))


def make_optimizer(config):
    """AdamW with warm-up + cosine decay, clipping, and no decay on norms / biases."""
    schedule = WarmupCosineDecay(
        config.peak_learning_rate,
        warmup_steps=config.warmup_steps,
        decay_steps=config.steps - config.warmup_steps,
    )
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=config.weight_decay,
        beta_2=0.99,
        global_clipnorm=config.clip_norm,
    )
    # Decaying LayerNorm scales and biases towards 0 only hurts.
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def fit_language_model(model, train_ids, validation_ids, config, callbacks=None, verbose=1):
    """Compiles `model` for `config` and trains it on a token stream.

    Args:
        model: a tfllm language model (not yet compiled).
        train_ids: `[N]` integer training token stream.
        validation_ids: `[M]` held-out token stream, or None.
        config: a `TrainingConfig`.
        callbacks: extra Keras callbacks.
        verbose: Keras progress output (1 = progress bar).

    Returns:
        The Keras `History` of the run.
    """
    model.compile(optimizer=make_optimizer(config), jit_compile=config.jit_compile)
    train_data = language_model_dataset(
        train_ids,
        config.sequence_length,
        config.batch_size,
        shuffle=True,
        seed=config.seed,
        repeat=True,
    )
    validation_data = None
    if validation_ids is not None:
        validation_data = language_model_dataset(
            validation_ids, config.sequence_length, config.batch_size, shuffle=False,
            drop_remainder=False,  # a short held-out text still gives one (partial) batch
        ).take(config.validation_batches)
    return model.fit(
        train_data,
        epochs=config.epochs,
        steps_per_epoch=math.ceil(config.steps / config.epochs),
        validation_data=validation_data,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the dataset shuffles its windows itself
    )


def held_out_loss(model, token_ids, sequence_length, batch_size=32):
    """Mean next-token loss (nats per token) over a whole held-out stream.

    The stream is cut into consecutive windows of `sequence_length`, every
    full window is scored, none twice; `exp` of the result is the perplexity.
    """
    data = language_model_dataset(
        token_ids, sequence_length, batch_size, shuffle=False, drop_remainder=False
    )
    if not model.compiled:
        model.compile()
    return float(model.evaluate(data, verbose=0))


class Stopwatch(keras.callbacks.Callback):
    """Measures a `fit` run: total seconds, and tokens per second of training.

    The first step traces and compiles the train function, so throughput is
    measured from its end; `seconds` is the whole run, validation included.
    """

    def __init__(self, tokens_per_step):
        super().__init__()
        self.tokens_per_step = tokens_per_step
        self.seconds = 0.0
        self.steps = 0
        self._training_seconds = 0.0

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps > 1:
            self._training_seconds += time.perf_counter() - self._step_start

    def on_train_end(self, logs=None):
        self.seconds = time.perf_counter() - self._start

    @property
    def tokens_per_second(self):
        """Training tokens per second, the first (compiling) step left out."""
        return (self.steps - 1) * self.tokens_per_step / max(self._training_seconds, 1e-9)


def train_and_evaluate(
    model,
    corpus,
    tokenizer,
    config,
    run_directory=None,
    prompt="\n",
    sample_length=300,
    temperature=0.8,
    print_function=print,
):
    """The whole job: train on `corpus.train`, score the held-out plays, sample, save.

    Held-out losses are over the whole validation and test documents (see
    `held_out_loss`), in nats per token.

    Args:
        model: a tfllm language model (not yet compiled).
        corpus: a `tfllm.data.Corpus`.
        tokenizer: the tokenizer the model's vocabulary comes from.
        config: a `TrainingConfig`.
        run_directory: where to save the run (`save_run`); None to not save.
        prompt: text to start the sample from.
        sample_length: tokens to generate after the prompt.
        temperature: sampling temperature of the sample.
        print_function: where progress lines go.

    Returns:
        A dict of figures: held-out losses, time, tokens per second, the sample.
    """
    streams = {split: encode_documents(tokenizer, corpus.documents(split)) for split in
               ("train", "validation", "test")}
    print_function(
        f"Training on {len(streams['train']):,} tokens for {config.steps} steps of "
        f"{config.batch_size} × {config.sequence_length} tokens "
        f"({config.steps * config.batch_size * config.sequence_length / len(streams['train']):.2f} "
        "passes over the training text)."
    )
    stopwatch = Stopwatch(config.batch_size * config.sequence_length)
    history = fit_language_model(
        model,
        streams["train"],
        streams["validation"] if len(streams["validation"]) > config.sequence_length else None,
        config,
        callbacks=[stopwatch],
    )
    metrics = {
        "train_loss_last_epoch": float(history.history["loss"][-1]),
        "training_seconds": round(stopwatch.seconds, 1),
        "tokens_per_second": round(stopwatch.tokens_per_second, 1),
    }
    for split in ("validation", "test"):
        if len(streams[split]) > config.sequence_length:
            metrics[f"{split}_loss"] = held_out_loss(
                model, streams[split], config.sequence_length, config.batch_size
            )
            print_function(
                f"Held-out {split} loss over {len(corpus.documents(split))} whole documents: "
                f"{metrics[f'{split}_loss']:.4f} nats/token "
                f"(perplexity {math.exp(metrics[f'{split}_loss']):.2f})"
            )
    print_function(
        f"Trained in {metrics['training_seconds']:.0f} s, "
        f"{metrics['tokens_per_second']:,.0f} tokens/s."
    )
    metrics["sample"] = generate_text(
        model, tokenizer, prompt, max_new_tokens=sample_length, temperature=temperature, seed=1
    )
    print_function("Sample:\n" + metrics["sample"])
    if run_directory is not None:
        save_run(
            run_directory,
            model,
            tokenizer,
            config={"model": model.get_config(), "training": dataclasses.asdict(config)},
            metrics=metrics,
        )
        print_function(f"Saved the run to {run_directory}/")
    return metrics
