"""Learning-rate schedules."""

import math

import keras
from keras import ops

from tfllm.layers.validation import check_positive_int


@keras.saving.register_keras_serializable(package="tfllm")
class WarmupCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to a peak, then cosine decay to a floor.

    For step `s` (counted from 0): `peak * (s + 1) / (warmup_steps + 1)` while
    `s < warmup_steps`, so that the very first step already learns; then
    `floor + (peak - floor) * (1 + cos(pi * progress)) / 2` with `progress`
    going from 0 to 1 over the next `decay_steps` steps; `floor` after that.
    Warm-up keeps Adam's first, poorly estimated steps small; the cosine
    tail lets the model settle into a minimum at the end of training.

    Args:
        peak_learning_rate: float, the rate reached after warm-up.
        warmup_steps: int >= 0, steps of linear warm-up.
        decay_steps: int > 0, steps of cosine decay after warm-up.
        final_fraction: float in [0, 1], `floor = peak * final_fraction`.

    Example:

    >>> schedule = WarmupCosineDecay(1e-3, warmup_steps=100, decay_steps=900)
    >>> optimizer = keras.optimizers.AdamW(learning_rate=schedule)
    """

    def __init__(self, peak_learning_rate, warmup_steps, decay_steps, final_fraction=0.1):
        if not peak_learning_rate > 0:
            raise ValueError(f"`peak_learning_rate` must be positive; got {peak_learning_rate!r}.")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"`warmup_steps` must be an integer >= 0; got {warmup_steps!r}.")
        if not 0 <= final_fraction <= 1:
            raise ValueError(f"`final_fraction` must be in [0, 1]; got {final_fraction!r}.")
        self.peak_learning_rate = float(peak_learning_rate)
        self.warmup_steps = warmup_steps
        self.decay_steps = check_positive_int("decay_steps", decay_steps)
        self.final_fraction = float(final_fraction)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        peak = self.peak_learning_rate
        floor = peak * self.final_fraction
        warmup = peak * (step + 1.0) / (self.warmup_steps + 1)
        progress = ops.clip((step - self.warmup_steps) / self.decay_steps, 0.0, 1.0)
        decayed = floor + (peak - floor) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        return ops.where(step < self.warmup_steps, warmup, decayed)

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "warmup_steps": self.warmup_steps,
            "decay_steps": self.decay_steps,
            "final_fraction": self.final_fraction,
        }
