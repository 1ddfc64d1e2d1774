"""`tf.data` pipelines that feed token streams to `model.fit` and `model.evaluate`."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import tensorflow as tf

from tfllm.data.corpus import Document
from tfllm.data.tokenizers import CharacterTokenizer


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}")


def _as_token_tensor(token_ids) -> tf.Tensor:
    if isinstance(token_ids, (tf.Tensor, tf.Variable)):
        dtype = tf.as_dtype(token_ids.dtype)
        is_integer = dtype.is_integer
    else:
        token_ids = np.asarray(token_ids)
        dtype = token_ids.dtype
        # An empty list becomes float64 in NumPy; let the length check report it instead.
        is_integer = np.issubdtype(dtype, np.integer) or token_ids.size == 0
    if not is_integer:
        raise ValueError(f"`token_ids` must hold integers; got dtype {dtype.name}")
    token_ids = tf.cast(tf.convert_to_tensor(token_ids), tf.int32)
    if token_ids.shape.rank != 1:
        raise ValueError(f"`token_ids` must be a 1-D token stream; got shape {token_ids.shape}")
    return token_ids


def language_model_dataset(
    token_ids,
    sequence_length: int,
    batch_size: int,
    shuffle: bool = True,
    seed: int | None = None,
    repeat: bool = False,
    drop_remainder: bool = True,
) -> tf.data.Dataset:
    """Batches of next-token prediction windows cut from one token stream.

    A window is `sequence_length + 1` consecutive tokens; its first `T` tokens are the inputs
    and its last `T` the targets, so `targets[:, t]` is the token after `inputs[:, t]`.
    Consecutive windows overlap by one token (window `k` starts at token `k * T`), so every
    token but the first is a target exactly once per pass.

    Training (`shuffle=True`): each pass over the dataset (each epoch of `model.fit`) starts its
    windows at a fresh random offset in `[0, T)`, so the cuts differ from epoch to epoch, and
    visits the windows in a fresh random order. Every pass yields the same number of windows
    (the count for the largest offset), so Keras knows the steps per epoch. With a `seed` the
    sequence of passes is the same in every run, and on every worker of a multi-worker job,
    which is what lets `tf.distribute` shard the batches between workers without overlap.

    Evaluation (`shuffle=False`): the windows start at token 0 and follow one another in order,
    covering the stream. The last `(N - 1) % T` tokens, too few for a window, are left out;
    with `drop_remainder=True` so is a last batch of fewer than `batch_size` windows. Use
    `drop_remainder=False` to score every full window of the held-out text.

    Windows are cut by `tf.gather` on whole batches of start positions, not by `Dataset.window`.

    Args:
        token_ids: the `[N]` token stream: a 1-D integer NumPy array, list or tensor (for
            example `encode_documents(tokenizer, corpus.train)`).
        sequence_length: `T`, the tokens per example.
        batch_size: `B`, windows per batch: the global batch size under `tf.distribute`.
        shuffle: `True` for training order (random offsets and order), `False` for
            evaluation order.
        seed: seed of the offsets and order when `shuffle`; `None` for a different sequence
            every run.
        repeat: repeat forever (then pass `steps_per_epoch` to `model.fit`); with `shuffle`,
            every repetition draws a new offset and order.
        drop_remainder: drop a last batch smaller than `batch_size`, so every batch has the
            static shape `[B, T]` (needed by TPUs and XLA).

    Returns:
        A `tf.data.Dataset` of `(inputs, targets)`, both `[B, T]` int32, prefetched.

    Raises:
        ValueError: for a non-positive `sequence_length` or `batch_size`, a stream that is not
            1-D integers, a stream shorter than one window, or (with `drop_remainder`) too few
            windows for one batch.

    Example:

    >>> tokens = np.arange(1000, dtype="int32")
    >>> dataset = language_model_dataset(tokens, sequence_length=64, batch_size=8, seed=1)
    >>> inputs, targets = next(iter(dataset))                 # both [8, 64] int32
    >>> bool(tf.reduce_all(inputs[:, 1:] == targets[:, :-1]))
    True
    """
    _check_positive_int("sequence_length", sequence_length)
    _check_positive_int("batch_size", batch_size)
    tokens = _as_token_tensor(token_ids)
    num_tokens = int(tokens.shape[0])
    window_length = sequence_length + 1
    if num_tokens < window_length:
        raise ValueError(
            f"`token_ids` holds {num_tokens} tokens, fewer than one window of "
            f"`sequence_length` + 1 = {window_length} tokens"
        )

    if shuffle:
        # Offsets beyond `N - 1 - T` would leave no full window, hence the cap for short streams.
        num_offsets = min(sequence_length, num_tokens - window_length + 1)
        windows_per_pass = (num_tokens - 1 - (num_offsets - 1)) // sequence_length
    else:
        windows_per_pass = (num_tokens - 1) // sequence_length
    if drop_remainder and windows_per_pass < batch_size:
        raise ValueError(
            f"`token_ids` holds {num_tokens} tokens, {windows_per_pass} window(s) of "
            f"`sequence_length` + 1 = {window_length} tokens, fewer than `batch_size` = "
            f"{batch_size}; with `drop_remainder=True` no batch would be produced"
        )

    if shuffle:
        window_starts = _shuffled_window_starts(
            num_tokens, sequence_length, num_offsets, windows_per_pass, seed, repeat
        )
    else:
        window_starts = tf.data.Dataset.range(windows_per_pass).map(
            lambda index: index * sequence_length
        )
        if repeat:
            window_starts = window_starts.repeat()

    offsets_in_window = tf.range(window_length, dtype=tf.int64)

    def cut_windows(starts):
        windows = tf.gather(tokens, starts[:, tf.newaxis] + offsets_in_window)
        return windows[:, :-1], windows[:, 1:]

    dataset = window_starts.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(cut_windows, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _shuffled_window_starts(
    num_tokens: int,
    sequence_length: int,
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
        starts = offset + tf.range(windows_per_pass, dtype=tf.int64) * sequence_length
        order_seed = tf.stack([random_pair[1], tf.constant(0, tf.int64)])
        order = tf.argsort(tf.random.stateless_uniform([windows_per_pass], seed=order_seed))
        return tf.data.Dataset.from_tensor_slices(tf.gather(starts, order))

    starts = pass_randomness.flat_map(starts_of_one_pass)
    if not repeat:
        starts = starts.apply(tf.data.experimental.assert_cardinality(windows_per_pass))
    return starts


def encode_documents(
    tokenizer: CharacterTokenizer,
    documents: Iterable[Document | str],
    separator: str = "\n\n",
) -> np.ndarray:
    """Joins documents into one token stream, with the tokenizer's fast NumPy path.

    Leading and trailing newlines of each text are trimmed first, so `separator` alone sets
    the gap between documents (the default leaves one blank line, as between speeches); the
    joined text ends with one newline, like a text file.

    Args:
        tokenizer: a tokenizer with `encode_text`, such as `CharacterTokenizer`.
        documents: `Document`s (or plain strings), for example `corpus.train`.
        separator: text placed between consecutive documents.

    Returns:
        `[N]` int32 NumPy array of token ids (empty when there are no documents).

    Example:

    >>> corpus = load_shakespeare()
    >>> tokenizer = CharacterTokenizer.from_texts(corpus.texts("train"))
    >>> train_ids = encode_documents(tokenizer, corpus.train)
    """
    texts = [
        (document.text if isinstance(document, Document) else document).strip("\n")
        for document in documents
    ]
    if not texts:
        return np.zeros([0], np.int32)
    return tokenizer.encode_text(separator.join(texts) + "\n")
