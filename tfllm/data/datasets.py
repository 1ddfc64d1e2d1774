"""`tf.data` pipelines that feed token streams to `model.fit` and `model.evaluate`."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import tensorflow as tf

from tfllm.data.corpus import Document
from tfllm.data.masking import mask_tokens
from tfllm.data.token_windows import TokenWindows
from tfllm.data.tokenizers import CharacterTokenizer
from tfllm.layers.validation import check_positive_int


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


def _check_one_window_fits(num_tokens: int, window_length: int, one_window: str) -> None:
    if num_tokens < window_length:
        raise ValueError(f"`token_ids` holds {num_tokens} tokens, fewer than one {one_window}")


def _check_one_batch_fits(
    windows_per_pass: int, batch_size: int, drop_remainder: bool, what_it_holds: str
) -> None:
    if drop_remainder and windows_per_pass < batch_size:
        raise ValueError(
            f"`token_ids` holds {what_it_holds}, fewer than `batch_size` = {batch_size}; "
            "with `drop_remainder=True` no batch would be produced"
        )


def _map_and_prefetch(batches: tf.data.Dataset, function) -> tf.data.Dataset:
    # `deterministic=True`: a parallel map that keeps the order, so a seed fixes the batches.
    batches = batches.map(function, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches.prefetch(tf.data.AUTOTUNE)


def language_model_dataset(token_ids, sequence_length: int, batch_size: int, shuffle: bool = True,
                           seed: int | None = None, repeat: bool = False,
                           drop_remainder: bool = True) -> tf.data.Dataset:
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
    check_positive_int("sequence_length", sequence_length)
    check_positive_int("batch_size", batch_size)
    tokens = _as_token_tensor(token_ids)
    windows = _next_token_windows(tokens, sequence_length, shuffle, batch_size, drop_remainder)
    batches = windows.starts(seed, repeat).batch(batch_size, drop_remainder=drop_remainder)
    return _map_and_prefetch(batches, _cut_inputs_and_targets(tokens, windows.length))


def _next_token_windows(tokens, sequence_length, shuffle, batch_size, drop_remainder):
    """The windows of `language_model_dataset`, refusing a stream too short for one batch."""
    num_tokens = int(tokens.shape[0])
    window_length = sequence_length + 1
    window = f"`sequence_length` + 1 = {window_length} tokens"  # as the messages call it
    _check_one_window_fits(num_tokens, window_length, f"window of {window}")
    windows = TokenWindows(num_tokens, window_length, stride=sequence_length, shuffle=shuffle)
    _check_one_batch_fits(windows.per_pass, batch_size, drop_remainder,
                          f"{num_tokens} tokens, {windows.per_pass} window(s) of {window}")
    return windows


def _cut_inputs_and_targets(tokens, window_length):
    """The `map` function from a batch of window starts to `(inputs, targets)`."""
    offsets_in_window = tf.range(window_length, dtype=tf.int64)

    def cut_windows(starts):
        windows = tf.gather(tokens, starts[:, tf.newaxis] + offsets_in_window)
        return windows[:, :-1], windows[:, 1:]

    return cut_windows


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
    text = joined_text(documents, separator)
    if not text:
        return np.zeros([0], np.int32)
    return tokenizer.encode_text(text)


def joined_text(documents: Iterable[Document | str], separator: str = "\n\n") -> str:
    """The text `encode_documents` encodes: documents trimmed of leading and trailing
    newlines, joined by `separator`, ending in one newline ("" for no documents). Its length
    is the character count of bits per character."""
    texts = [
        (document.text if isinstance(document, Document) else document).strip("\n")
        for document in documents
    ]
    return separator.join(texts) + "\n" if texts else ""


# --------------------------------------------------------------------------------------------
# BERT: masked-LM windows and labelled passages.


def encode_pieces(tokenizer, documents: Iterable[Document | str]) -> np.ndarray:
    """Joins documents into one stream of word-piece ids (`WordPieceTokenizer.tokenize`).

    Returns:
        `[N]` int32 NumPy array (empty when there are no documents).
    """
    texts = [document.text if isinstance(document, Document) else document
             for document in documents]
    if not texts:
        return np.zeros([0], np.int32)
    return tokenizer.tokenize(tf.constant(texts)).flat_values.numpy().astype(np.int32)


def masked_lm_dataset(
    token_ids,
    tokenizer,
    sequence_length: int,
    batch_size: int,
    shuffle: bool = True,
    seed: int = 1,
    repeat: bool = False,
    drop_remainder: bool = True,
    rate: float = 0.15,
    max_predictions: int | None = None,
) -> tf.data.Dataset:
    """Batches of `(corrupted ids, original ids, sample_weight)` for masked-LM training.

    Each sequence is `[CLS]`, `sequence_length - 2` consecutive pieces of the stream, and
    `[SEP]`. `tfllm.data.mask_tokens` selects `rate` of the pieces (never the special
    tokens) and corrupts them 80 / 10 / 10 (mask / random / kept); `sample_weight` is 1 at
    the selected positions, so `BertMaskedLM`'s loss scores those only.

    Training (`shuffle=True`) cuts the stream at a fresh random offset on each pass and
    visits the windows in random order, as `language_model_dataset` does. The masks of batch
    `k` come from the stateless seed `[seed, k]`: the same seed gives the same batches, so a
    resumed run sees the batches it would have seen, and with `shuffle=False` a held-out
    score uses the same masks every time.

    Args:
        token_ids: `[N]` integer stream of word-piece ids (`encode_pieces`).
        tokenizer: the `WordPieceTokenizer` (special ids and vocabulary size).
        sequence_length: tokens per sequence `T`, the special tokens included.
        batch_size: sequences per batch.
        shuffle: random offsets and order (training) or consecutive windows (evaluation).
        seed: seed of the offsets, order and masks.
        repeat: repeat the passes forever.
        drop_remainder: drop a last batch smaller than `batch_size`.
        rate: fraction of pieces selected for prediction.
        max_predictions: None for `[B, T]` targets and weights; an int `P` for
            `({"token_ids", "mask_positions" [B, P]}, targets [B, P], weights [B, P])`:
            the selected positions of each row in order, padded with weight-0 positions
            (a row with more than `P` selected keeps its first `P`; see
            `predictions_per_sequence`). `BertMaskedLM` then runs its head on those only.
    """
    check_positive_int("sequence_length", sequence_length)
    check_positive_int("batch_size", batch_size)
    if sequence_length < 3:
        raise ValueError(f"`sequence_length` must be at least 3; got {sequence_length}")
    tokens = _as_token_tensor(token_ids)
    windows = _masked_lm_windows(tokens, sequence_length - 2, shuffle, batch_size, drop_remainder)
    batches = windows.starts(seed, repeat).batch(batch_size, drop_remainder=drop_remainder)
    numbered_batches = tf.data.Dataset.zip(tf.data.Dataset.counter(), batches)
    corrupt = _corrupt_batches(tokens, tokenizer, windows.length, seed, rate, max_predictions)
    return _map_and_prefetch(numbered_batches, corrupt)


def _masked_lm_windows(tokens, body, shuffle, batch_size, drop_remainder):
    """The `body`-piece windows of `masked_lm_dataset`, refusing a stream too short for a batch."""
    num_tokens = int(tokens.shape[0])
    _check_one_window_fits(num_tokens, body, f"sequence of `sequence_length` - 2 = {body} pieces")
    windows = TokenWindows(num_tokens, body, stride=body, shuffle=shuffle)
    _check_one_batch_fits(windows.per_pass, batch_size, drop_remainder,
                          f"{windows.per_pass} sequence(s) of {body} pieces")
    return windows


def _corrupt_batches(tokens, tokenizer, body, seed, rate, max_predictions):
    """The `map` function from `(batch number k, window starts)` to a masked-LM batch."""
    offsets = tf.range(body, dtype=tf.int64)
    special = dict(mask_id=tokenizer.mask_id, vocabulary_size=tokenizer.vocabulary_size,
                   special_ids=tokenizer.special_ids, padding_id=tokenizer.padding_id)

    def corrupt(index, starts):
        pieces = tf.gather(tokens, starts[:, None] + offsets)
        size = tf.shape(pieces)[0]
        ids = tf.concat([tf.fill([size, 1], tokenizer.cls_id), pieces,
                         tf.fill([size, 1], tokenizer.sep_id)], axis=1)
        masked = mask_tokens(ids, seed=tf.stack([tf.cast(seed, tf.int64), index]), rate=rate,
                             **special)
        if max_predictions is None:
            return masked["inputs"], masked["labels"], masked["sample_weight"]
        return _selected_positions_first(masked, max_predictions)

    return corrupt


def _selected_positions_first(masked, max_predictions):
    """`({"token_ids", "mask_positions"}, targets, weights)` at the first `max_predictions`."""
    # Selected positions first (in order), then the others as weight-0 filling.
    order = tf.argsort(-tf.cast(masked["sample_weight"], tf.int32), axis=1, stable=True)
    positions = order[:, :max_predictions]
    return ({"token_ids": masked["inputs"], "mask_positions": positions},
            tf.gather(masked["labels"], positions, batch_dims=1),
            tf.gather(masked["sample_weight"], positions, batch_dims=1))


def predictions_per_sequence(sequence_length: int, rate: float = 0.15) -> int:
    """Room for the selected positions of a sequence: the mean plus three standard
    deviations of the binomial count, so that hardly any selected piece is left out."""
    mean = rate * (sequence_length - 2)
    return min(sequence_length, int(np.ceil(mean + 3 * np.sqrt(mean * (1 - rate)))) + 1)


def encode_passages(tokenizer, texts, sequence_length: int):
    """`WordPieceTokenizer.encode` of passages to classify, refusing empty ones.

    Returns:
        `([N, sequence_length]` int32 ids, `[N]` bool truncated`).

    Raises:
        ValueError: naming the texts that hold no words.
    """
    texts = list(texts)
    empty = [index for index, text in enumerate(texts) if not text.strip()]
    if empty:
        raise ValueError(f"Texts {empty[:5]} are empty; a passage needs words to classify.")
    return tokenizer.encode(tf.constant(texts), sequence_length)


def classification_dataset(
    texts,
    labels,
    tokenizer,
    sequence_length: int,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 1,
    repeat: bool = False,
) -> tf.data.Dataset:
    """Batches of `(token ids [B, T], class ids [B])` of labelled passages.

    Texts become `[CLS] pieces [SEP]` padded to `sequence_length`
    (`WordPieceTokenizer.encode`; longer texts keep their first `sequence_length - 2`
    pieces). With `shuffle` the order is drawn afresh on each pass, from `seed`: the same
    seed, the same sequence of passes (a resumed run `skip`s what it has seen).

    Raises:
        ValueError: texts and labels differ in number, there are none, a text is empty,
            or a label is not an integer >= 0.
    """
    texts = list(texts)
    labels = np.asarray(labels)
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels.")
    if not texts:
        raise ValueError("No labelled texts: the dataset would be empty.")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError("Labels must be class ids (integers >= 0); map names with class_id.")
    ids, _ = encode_passages(tokenizer, texts, sequence_length)
    dataset = tf.data.Dataset.from_tensor_slices((ids, labels.astype(np.int32)))
    if shuffle:
        dataset = dataset.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
