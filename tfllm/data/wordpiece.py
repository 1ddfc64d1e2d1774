"""A WordPiece subword tokenizer for the BERT models, learned from a corpus.

KerasHub does the work: `keras_hub.tokenizers.compute_word_piece_vocabulary` learns the
vocabulary and `keras_hub.tokenizers.WordPieceTokenizer` splits text with TensorFlow Text
ops (`FastWordpieceTokenizer`), in the graph. What this module adds is what a BERT run
needs around them: fixed special tokens with fixed ids, `[CLS] ... [SEP]` sequences of a
set length with documented truncation, a readable JSON file that lives in the run
directory, and clear errors.

Special tokens: `[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]`. A learned vocabulary starts
with them (ids 0-4); a vocabulary from elsewhere (a Hugging Face `vocab.txt`, read by
`from_vocabulary_file`) holds them wherever it does, and their ids are where they stand.

Because the splitting uses TensorFlow Text ops, a SavedModel holding this tokenizer is
loaded after `import tensorflow_text` (it registers the ops); the `tensorflow-text` wheel
comes with `keras-hub`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfllm.data.tokenizer_json import read_tokenizer_file

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: The `"format"` entry of a WordPiece tokenizer file (`tfllm.data.load_tokenizer` reads it).
FILE_FORMAT = "tfllm.WordPieceTokenizer"
_FILE_FORMAT = FILE_FORMAT
_FILE_FORMAT_VERSION = 1


def _check_vocabulary(vocabulary) -> list[str]:
    if isinstance(vocabulary, str):
        raise ValueError("`vocabulary` must be a list of word pieces, got a string.")
    vocabulary = list(vocabulary)
    missing = [token for token in SPECIAL_TOKENS if token not in vocabulary]
    if missing:
        raise ValueError(
            f"`vocabulary` must hold the special tokens {list(SPECIAL_TOKENS)}; it lacks "
            f"{missing}."
        )
    if len(vocabulary) <= len(SPECIAL_TOKENS):
        raise ValueError(
            f"`vocabulary` holds only the {len(SPECIAL_TOKENS)} special tokens; it needs word "
            "pieces too."
        )
    bad = [piece for piece in vocabulary if not isinstance(piece, str) or not piece]
    if bad:
        raise ValueError(f"`vocabulary` entries must be non-empty strings; got {bad[:5]!r}.")
    if len(set(vocabulary)) != len(vocabulary):
        raise ValueError("`vocabulary` holds duplicate word pieces.")
    return vocabulary


@keras.saving.register_keras_serializable(package="tfllm")
class WordPieceTokenizer(keras.layers.Layer):
    """Splits text into WordPiece ids in the TensorFlow graph, and back.

    Learn one from texts with `WordPieceTokenizer.from_texts`; keep it in a run directory
    with `save` / `load`. `tokenize` gives ragged word-piece ids; `encode` gives the model
    inputs: `[CLS] pieces [SEP]` padded with `[PAD]` to a fixed length, where a text with
    more than `sequence_length - 2` pieces keeps its first `sequence_length - 2` (the rest
    is cut off; `encode` also says which texts were cut).

    Args:
        vocabulary: word pieces in id order, holding the `SPECIAL_TOKENS` (a learned one
            starts with them); pieces that continue a word start with `##`.
        lowercase: lower-case (Unicode case folding) text before splitting.
        strip_accents: drop accents (NFD, then remove combining marks).
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: a `[B]` batch of strings; calling the layer is `tokenize`.

    Example:

    >>> tokenizer = WordPieceTokenizer.from_texts(plays, vocabulary_size=4096)
    >>> ids, truncated = tokenizer.encode(["To be, or not to be"], sequence_length=128)
    """

    def __init__(self, vocabulary: Sequence[str], lowercase: bool = True,
                 strip_accents: bool = False, **kwargs):
        kwargs.setdefault("trainable", False)
        kwargs.setdefault("dtype", "int32")
        super().__init__(**kwargs)
        import keras_hub

        self._vocabulary = _check_vocabulary(vocabulary)
        self._special_ids = tuple(self._vocabulary.index(token) for token in SPECIAL_TOKENS)
        self.lowercase = bool(lowercase)
        self.strip_accents = bool(strip_accents)
        self._pieces = keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=self._vocabulary,
            lowercase=self.lowercase,
            strip_accents=self.strip_accents,
            oov_token="[UNK]",
            special_tokens=list(SPECIAL_TOKENS),
            name="word_pieces",
        )
        # KerasHub turns eager ragged outputs into Python lists; inside a graph it
        # keeps tensors, so the ops run in one (traced once: the signature is fixed).
        self._tokenize_graph = tf.function(
            self._pieces.tokenize, input_signature=[tf.TensorSpec([None], tf.string)],
            autograph=False)
        self._detokenize_graph = tf.function(
            self._pieces.detokenize,
            input_signature=[tf.RaggedTensorSpec([None, None], tf.int32)], autograph=False)

    @classmethod
    def from_texts(cls, texts: Sequence[str], vocabulary_size: int = 4096,
                   lowercase: bool = True, strip_accents: bool = False,
                   **kwargs) -> "WordPieceTokenizer":
        """Learns a vocabulary of at most `vocabulary_size` pieces from `texts`.

        The special tokens count towards the size; the learned vocabulary can be a little
        smaller than asked for (KerasHub's algorithm picks whole pieces by frequency).

        Raises:
            ValueError: `vocabulary_size` leaves no room beyond the special tokens, or the
                texts are empty.
        """
        import keras_hub

        if isinstance(texts, str):
            texts = [texts]
        texts = [text for text in texts if text.strip()]
        if not isinstance(vocabulary_size, (int, np.integer)) or isinstance(vocabulary_size,
                                                                              bool):
            raise ValueError(f"`vocabulary_size` must be an int; got {vocabulary_size!r}.")
        if vocabulary_size <= len(SPECIAL_TOKENS):
            raise ValueError(
                f"`vocabulary_size` ({vocabulary_size}) must be larger than the "
                f"{len(SPECIAL_TOKENS)} special tokens {', '.join(SPECIAL_TOKENS)}."
            )
        if not texts:
            raise ValueError("Cannot learn a vocabulary: the texts are empty.")
        vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
            tf.data.Dataset.from_tensor_slices(texts),
            int(vocabulary_size),
            lowercase=lowercase,
            strip_accents=strip_accents,
            reserved_tokens=list(SPECIAL_TOKENS),
        )
        return cls(vocabulary, lowercase=lowercase, strip_accents=strip_accents, **kwargs)

    @property
    def vocabulary(self) -> list[str]:
        """The word pieces in id order."""
        return list(self._vocabulary)

    @property
    def vocabulary_size(self) -> int:
        return len(self._vocabulary)

    padding_id = property(lambda self: self._special_ids[0])
    unknown_id = property(lambda self: self._special_ids[1])
    cls_id = property(lambda self: self._special_ids[2])
    sep_id = property(lambda self: self._special_ids[3])
    mask_id = property(lambda self: self._special_ids[4])

    @property
    def special_ids(self) -> tuple[int, ...]:
        """Ids of the special tokens (never masked, never drawn as random replacements)."""
        return self._special_ids

    @classmethod
    def from_vocabulary_file(cls, path: str | os.PathLike, lowercase: bool = True,
                             strip_accents: bool | None = None,
                             **kwargs) -> "WordPieceTokenizer":
        """A tokenizer of a `vocab.txt` (one piece a line, the line number its id), as
        BERT's Hugging Face checkpoints keep it.

        `strip_accents=None` strips them when lower-casing, as Hugging Face's
        `BertTokenizer` does.

        Raises:
            FileNotFoundError: there is no such file.
            ValueError: the file lacks a special token, or repeats a piece.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: the vocabulary file is missing.")
        pieces = path.read_text(encoding="utf-8").split("\n")
        if pieces and pieces[-1] == "":
            pieces.pop()
        try:
            return cls([piece.rstrip("\r") for piece in pieces], lowercase=lowercase,
                       strip_accents=lowercase if strip_accents is None else strip_accents,
                       **kwargs)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None

    def tokenize(self, strings) -> tf.RaggedTensor:
        """`[B]` strings → `[B, None]` int32 word-piece ids (no special tokens added)."""
        strings = tf.convert_to_tensor(strings, tf.string)
        if strings.shape.rank != 1:
            raise ValueError(
                f"`tokenize` takes a [B] batch of strings; got shape {strings.shape}."
            )
        return tf.cast(self._tokenize_graph(strings), tf.int32)

    def encode(self, strings, sequence_length: int):
        """`[B]` strings → `([B, sequence_length]` int32 model inputs, `[B]` bool truncated).

        Each row is `[CLS]`, the text's first `sequence_length - 2` pieces, `[SEP]`, then
        `[PAD]`s. `truncated` is True where pieces were cut off. An empty text gives
        `[CLS] [SEP]`.
        """
        if sequence_length < 3:
            raise ValueError(f"`sequence_length` must be at least 3; got {sequence_length}.")
        pieces = self.tokenize(strings)
        truncated = pieces.row_lengths() > sequence_length - 2
        pieces = pieces[:, : sequence_length - 2]
        batch_size = pieces.nrows()
        cls = tf.fill([batch_size, 1], self.cls_id)
        sep = tf.fill([batch_size, 1], self.sep_id)
        rows = tf.concat([cls, pieces, sep], axis=1)
        ids = rows.to_tensor(default_value=self.padding_id, shape=[None, sequence_length])
        return ids, truncated

    def detokenize(self, ids) -> tf.Tensor:
        """`[B, T]` ids (dense or ragged) → `[B]` strings; padding is dropped."""
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.convert_to_tensor(ids)
            ids = tf.RaggedTensor.from_tensor(ids, padding=self.padding_id)
        return self._detokenize_graph(tf.cast(ids, tf.int32))

    def call(self, inputs):
        return self.tokenize(inputs)

    @property
    def lookup_tables(self) -> list:
        """None: the word pieces are a constant of the graph, not a table."""
        return []

    def encode_text(self, text: str) -> np.ndarray:
        """`[N]` int32 ids of `text` (a language model's stream; no special tokens).

        WordPiece splits at whitespace, so the text goes through line by line."""
        if not isinstance(text, str):
            raise ValueError(f"`text` must be a str; got {type(text).__name__}")
        lines = text.splitlines() or [""]
        return self.tokenize(tf.constant(lines)).flat_values.numpy().astype(np.int32)

    def decode_ids(self, ids) -> str:
        """Text of `[T]` ids (pieces joined, words separated by spaces)."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(
                f"`ids` must be a 1-D integer array; got {ids.dtype} of shape {ids.shape}")
        ids = np.where((ids >= 0) & (ids < self.vocabulary_size), ids, self.unknown_id)
        text = self.detokenize(tf.constant(ids[None].astype(np.int32)))[0]
        return text.numpy().decode("utf-8", "replace")

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(vocabulary=self.vocabulary, lowercase=self.lowercase,
                      strip_accents=self.strip_accents)
        return config

    def save(self, path: str | os.PathLike) -> Path:
        """Writes vocabulary and options to a UTF-8 JSON file (e.g. `runs/NAME/tokenizer.json`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        content = {
            "format": _FILE_FORMAT,
            "version": _FILE_FORMAT_VERSION,
            "lowercase": self.lowercase,
            "strip_accents": self.strip_accents,
            "vocabulary": self.vocabulary,
        }
        path.write_text(json.dumps(content, ensure_ascii=False, indent=0) + "\n",
                        encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs) -> "WordPieceTokenizer":
        """Reads a tokenizer written by `save`."""
        content = read_tokenizer_file(path, _FILE_FORMAT, _FILE_FORMAT_VERSION, "WordPiece")
        return cls(content["vocabulary"], lowercase=content["lowercase"],
                   strip_accents=content["strip_accents"], **kwargs)
