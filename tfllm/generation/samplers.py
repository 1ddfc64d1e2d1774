"""Choosing the next token from logits: greedy, temperature, top-k and top-p sampling."""

import numpy as np
import tensorflow as tf

#: Stand-in for "no logit": far below any real logit, finite so softmax stays defined.
MASKED_LOGIT = -1e9


def check_sampling_arguments(max_new_tokens, temperature, top_k=0, top_p=1.0, num_beams=1):
    """Raises a ValueError naming the argument when a sampling value is impossible."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)):
        raise ValueError(f"`max_new_tokens` must be an integer; got {max_new_tokens!r}.")
    if max_new_tokens < 0:
        raise ValueError(f"`max_new_tokens` must be >= 0; got {max_new_tokens}.")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float, np.floating, np.integer))
        or not np.isfinite(temperature)
        or temperature < 0
    ):
        raise ValueError(
            f"`temperature` must be a number >= 0 (0 means greedy); got {temperature!r}."
        )
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise ValueError(f"`top_k` must be an integer >= 0 (0 means no limit); got {top_k!r}.")
    if (
        isinstance(top_p, bool)
        or not isinstance(top_p, (int, float, np.floating))
        or not 0 < top_p <= 1
    ):
        raise ValueError(f"`top_p` must be a number in (0, 1] (1 means no limit); got {top_p!r}.")
    if isinstance(num_beams, bool) or not isinstance(num_beams, (int, np.integer)) or num_beams < 1:
        raise ValueError(f"`num_beams` must be a positive integer; got {num_beams!r}.")


def sample_logits(logits, temperature, top_k, top_p, seed):
    """Picks one token per row of `logits`: greedy, temperature, top-k and top-p sampling.

    All arguments are tensors, so one compiled function serves every setting.

    Args:
        logits: `[B, V]` float tensor.
        temperature: scalar; `0` picks the most likely token (greedy),
            otherwise tokens are drawn from `softmax(logits / temperature)`
            restricted as below.
        top_k: scalar int; `k > 0` keeps only the `k` most likely tokens.
        top_p: scalar float in (0, 1]; keeps the smallest set of most likely
            tokens whose probability reaches `top_p` (the nucleus; always at
            least the most likely token).
        seed: `[2]` int32 tensor for `tf.random.stateless_categorical`; the
            same seed gives the same draw.

    Returns:
        `[B]` int32 token ids.
    """
    logits = tf.cast(logits, tf.float32)
    temperature = tf.cast(temperature, tf.float32)
    # Greedy decoding skips the sort and the draw (a step of the decoding loop).
    return tf.cond(
        temperature > 0,
        lambda: _sample(logits / temperature, top_k, top_p, seed),
        lambda: tf.argmax(logits, axis=-1, output_type=tf.int32),
    )


def _sample(scaled, top_k, top_p, seed):
    """Draws from `softmax(scaled)` restricted to the top-k tokens and the top-p nucleus."""
    # Work in probability order: rank 0 is the most likely token.
    order = tf.argsort(scaled, axis=-1, direction="DESCENDING", stable=True)
    sorted_logits = tf.gather(scaled, order, batch_dims=1)
    ranks = tf.range(tf.shape(scaled)[-1])[None, :]
    top_k = tf.cast(top_k, tf.int32)
    keep = tf.logical_or(top_k <= 0, ranks < top_k)
    probabilities = tf.nn.softmax(tf.where(keep, sorted_logits, MASKED_LOGIT), axis=-1)
    # A token is in the nucleus when the tokens before it hold less than top_p.
    before = tf.cumsum(probabilities, axis=-1, exclusive=True)
    keep = tf.logical_and(keep, tf.logical_or(ranks == 0, before < tf.cast(top_p, tf.float32)))
    # Back to vocabulary order, where the random numbers are drawn (Gumbel-max: the
    # argmax of logits plus Gumbel noise is a draw from their softmax).
    keep = tf.gather(keep, tf.argsort(order, axis=-1), batch_dims=1)
    noise = gumbel_noise(seed, tf.shape(scaled))
    return tf.argmax(tf.where(keep, scaled, MASKED_LOGIT) + noise, axis=-1,
                     output_type=tf.int32)


def _mix32(x):
    """A 32-bit integer hash (a bijection with good avalanche; "lowbias32")."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))
    x = x * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15))
    x = x * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def uniform_noise(seed, shape):
    """`[B, V]` float32 numbers in (0, 1), a function of `seed` (`[2]` int32) and the
    position alone.

    A counter-based hash in integer ops, not `tf.random`: TensorFlow's stateless random
    ops give other numbers under XLA than without it, and generation must draw the
    same tokens in the compiled decoding loop, the streamed steps and the SavedModel.
    """
    seed = tf.cast(tf.bitcast(tf.cast(seed, tf.int32), tf.uint32), tf.uint32)
    key = _mix32(_mix32(seed[0] ^ tf.constant(0x9E3779B9, tf.uint32)) ^ seed[1])
    rows = tf.cast(tf.range(shape[0]), tf.uint32)[:, None]
    columns = tf.cast(tf.range(shape[1]), tf.uint32)[None, :]
    bits = _mix32(_mix32(key ^ _mix32(rows + tf.constant(0x632BE5AB, tf.uint32))) ^ columns)
    # 24 random bits, centred in their interval: never exactly 0 or 1.
    return (tf.cast(tf.bitwise.right_shift(bits, 8), tf.float32) + 0.5) / float(1 << 24)


def gumbel_noise(seed, shape):
    """Standard Gumbel noise `-log(-log(u))` from `uniform_noise`."""
    return -tf.math.log(-tf.math.log(uniform_noise(seed, shape)))


def without_padding(logits, pad_token_id):
    """Logits under which the padding token is never chosen."""
    is_padding = tf.equal(tf.range(tf.shape(logits)[-1]), pad_token_id)[None, :]
    return tf.where(is_padding, tf.cast(MASKED_LOGIT, logits.dtype), logits)
