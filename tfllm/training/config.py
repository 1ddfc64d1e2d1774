"""How to train: `TrainingConfig`, the optimiser it makes, and the precision it runs in."""

import contextlib
import dataclasses
import math

import keras

from tfllm.constants import PRECISIONS
from tfllm.layers.validation import check_positive_int
from tfllm.training.schedules import WarmupCosineDecay


@dataclasses.dataclass
class TrainingConfig:
    """How to train: window, batch, length of training, optimiser and precision.

    Attributes:
        sequence_length: tokens per training window `T`.
        batch_size: windows per step: the global batch, split between the
            replicas of a `tf.distribute` strategy.
        steps: optimiser steps in total.
        steps_per_epoch: steps between validations, checkpoints, text samples
            and epoch summaries.
        peak_learning_rate: AdamW's rate after warm-up.
        warmup_steps: steps of linear warm-up (then cosine decay to 10 %).
        weight_decay: AdamW's decoupled weight decay; not applied to biases
            and normalisation parameters.
        clip_norm: global gradient-norm clipping (see the README on clipping
            under several replicas).
        jit_compile: compile train steps with XLA (True), not (False), or whichever
            trains faster on this machine, measured before the run starts
            (`"auto"`, `tfllm.training.xla_choice`); XLA only with one replica.
        precision: `"float32"`, `"mixed_bfloat16"` or `"mixed_float16"`
            (Keras adds dynamic loss scaling for the latter).
        validation_batches: batches of held-out text scored after each epoch
            (the full held-out score comes from `held_out_loss`).
        seed: seed of the initial weights, window offsets and order.
    """

    sequence_length: int = 256
    batch_size: int = 32
    steps: int = 2000
    steps_per_epoch: int = 200
    peak_learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.1
    clip_norm: float = 1.0
    jit_compile: bool | str = "auto"
    precision: str = "float32"
    validation_batches: int = 16
    seed: int = 1

    def __post_init__(self):
        for name in ("sequence_length", "batch_size", "steps", "steps_per_epoch",
                     "validation_batches"):
            check_positive_int(name, getattr(self, name))
        if not self.peak_learning_rate > 0:
            raise ValueError(
                f"`peak_learning_rate` must be positive; got {self.peak_learning_rate}.")
        if self.warmup_steps >= self.steps:
            raise ValueError(
                f"`warmup_steps` ({self.warmup_steps}) must be smaller than `steps` ({self.steps})."
            )
        if not self.weight_decay >= 0:
            raise ValueError(f"`weight_decay` must be >= 0; got {self.weight_decay}.")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"`clip_norm` must be positive or None; got {self.clip_norm}.")
        if not isinstance(self.jit_compile, bool) and self.jit_compile != "auto":
            raise ValueError(
                f"`jit_compile` must be True, False or 'auto'; got {self.jit_compile!r}.")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"Unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}."
            )

    @property
    def epochs(self):
        """Epochs of `fit`: `steps` rounded up to whole epochs."""
        return max(1, math.ceil(self.steps / self.steps_per_epoch))

    @property
    def epoch_steps(self):
        """Steps in each epoch, so that `epochs * epoch_steps` covers `steps`."""
        return math.ceil(self.steps / self.epochs)


@contextlib.contextmanager
def precision_scope(precision):
    """Layers created inside use the Keras dtype policy `precision`."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


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
