"""Where the fixed-length windows of a token stream start, pass after pass.

`language_model_dataset` and `masked_lm_dataset` both cut their examples this way. A pass is
one iteration over a dataset (an epoch of `model.fit`); every pass yields the same number of
windows, so Keras knows the steps per epoch.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class TokenWindows:
    """Windows of `length` tokens, `stride` apart, cut from a stream of `num_tokens` tokens.

    A training pass (`shuffle`) starts at a random one of `num_offsets` offsets and visits its
    windows in a random order; an evaluation pass starts at token 0 and keeps them in order.
    """

    num_tokens: int
    length: int
    stride: int
    shuffle: bool

    @property
    def num_offsets(self) -> int:
        # Offsets beyond `N - length` would leave no full window, hence the cap for short streams.
        return min(self.stride, self.num_tokens - self.length + 1) if self.shuffle else 1

    @property
    def per_pass(self) -> int:
        """Windows in every pass: the count for the largest offset, so all passes have as many."""
        return (self.num_tokens - self.length - (self.num_offsets - 1)) // self.stride + 1

    def starts(self, seed: int | None, repeat: bool) -> tf.data.Dataset:
        """The windows' start positions (int64 scalars), pass after pass."""
        if self.shuffle:
            return _shuffled_window_starts(
                self.stride, self.num_offsets, self.per_pass, seed, repeat
            )
        stride = self.stride
        starts = tf.data.Dataset.range(self.per_pass).map(lambda index: index * stride)
        return starts.repeat() if repeat else starts


def _shuffled_window_starts(
    stride: int,
    num_offsets: int,
    windows_per_pass: int,
    seed: int | None,
    repeat: bool,
) -> tf.data.Dataset:
    # One pair of random numbers per pass: an offset and the seed of that pass's order.
    # `rerandomize_each_iteration` draws new pairs each time Keras re-iterates the dataset.
    pass_randomness = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    if not repeat:
        pass_randomness = pass_randomness.take(1)

    def starts_of_one_pass(random_pair):
        offset = tf.math.floormod(random_pair[0], num_offsets)
        starts = offset + tf.range(windows_per_pass, dtype=tf.int64) * stride
        order_seed = tf.stack([random_pair[1], tf.constant(0, tf.int64)])
        order = tf.argsort(tf.random.stateless_uniform([windows_per_pass], seed=order_seed))
        return tf.data.Dataset.from_tensor_slices(tf.gather(starts, order))

    starts = pass_randomness.flat_map(starts_of_one_pass)
    if not repeat:
        starts = starts.apply(tf.data.experimental.assert_cardinality(windows_per_pass))
    return starts
