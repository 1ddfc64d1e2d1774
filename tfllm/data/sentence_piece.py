"""A SentencePiece tokenizer for the language models, learned from a corpus.

The model is trained by the `sentencepiece` package (the trainer KerasHub's
`compute_sentence_piece_proto` wraps) and runs in the graph through KerasHub's
`SentencePieceTokenizer` (TensorFlow Text's `SentencepieceOp`), so an export needs
`import tensorflow_text` to load, and stock TensorFlow Serving cannot run it (it does not
register the SentencePiece ops). `encode_text` / `decode_ids` use the `sentencepiece` package
itself: the same ids, fast enough for a corpus.

The trainer is called directly rather than through `compute_sentence_piece_proto` because that
helper fixes NFKC normalisation, which turns newlines into spaces and collapses runs of spaces:
a language model of verse would lose its lines, and text would not round-trip. Here text is
kept as it is (`identity` normalisation, no dummy prefix, spaces kept) and characters outside
the vocabulary fall back to their UTF-8 bytes, so every text round-trips.

Ids: `0` pads, `1` is unknown (only a byte that is not UTF-8 gets it), then 256 byte pieces,
then the learned pieces.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfllm.data.tokenizer_json import read_tokenizer_file

#: The `"format"` entry of a SentencePiece tokenizer file (`tfllm.data.load_tokenizer` reads it).
FILE_FORMAT = "tfllm.SentencePieceTokenizer"
_FILE_FORMAT_VERSION = 1
PADDING_ID = 0
UNKNOWN_ID = 1
#: Padding, unknown and the 256 byte pieces: what every vocabulary holds before learning.
NUM_FIXED_PIECES = 2 + 256
#: SentencePiece skips longer sentences; longer lines are cut into pieces of this size.
_MAX_SENTENCE_CHARACTERS = 2000


def _training_sentences(texts: Iterable[str]):
    """Lines (each with its newline), cut to SentencePiece's sentence limit."""
    for text in texts:
        for line in text.splitlines(keepends=True):
            for start in range(0, len(line), _MAX_SENTENCE_CHARACTERS):
                yield line[start:start + _MAX_SENTENCE_CHARACTERS]


@keras.saving.register_keras_serializable(package="tfllm")
class SentencePieceTokenizer(keras.layers.Layer):
    """Maps text to SentencePiece ids, and back, with in-graph TensorFlow Text ops.

    Build one with `from_texts`; keep it with `save` / `load` (a JSON file holding the
    serialized model proto in base64) or Keras serialization.

    Args:
        proto: the serialized SentencePiece model (`bytes`, or its base64 text), trained with
            `pad_id=0` and `unk_id=1`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        inputs: a scalar string or a `[B]` batch of strings; calling the layer is `tokenize`.

    Example:

    >>> tokenizer = SentencePieceTokenizer.from_texts(corpus.texts("train"), 1024)
    >>> tokenizer.detokenize(tokenizer.tokenize("To be,\\n  or not")).numpy().decode()
    'To be,\\n  or not'
    """

    def __init__(self, proto: bytes | str, **kwargs):
        kwargs.setdefault("dtype", "int32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        import keras_hub
        import sentencepiece

        if isinstance(proto, str):
            proto = base64.b64decode(proto)
        if not isinstance(proto, bytes) or not proto:
            raise ValueError("`proto` must be a serialized SentencePiece model (bytes)")
        self._proto = proto
        self._processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
        if (self._processor.pad_id(), self._processor.unk_id()) != (PADDING_ID, UNKNOWN_ID):
            raise ValueError(
                "`proto` must be trained with pad_id=0 and unk_id=1 (tfllm's padding and "
                f"unknown ids); it has {self._processor.pad_id()} and {self._processor.unk_id()}")
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self._pieces = keras_hub.tokenizers.SentencePieceTokenizer(proto=proto, name="pieces")
        self._tokenize_graph = tf.function(
            lambda strings: tf.cast(self._pieces.tokenize(strings), tf.int32),
            input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
        self._detokenize_graph = tf.function(
            self._detokenize_batch,
            input_signature=[tf.RaggedTensorSpec([None, None], tf.int32)], autograph=False)
        self.built = True

    @classmethod
    def from_texts(cls, texts: str | Iterable[str], vocabulary_size: int,
                   model_type: str = "unigram", **kwargs) -> "SentencePieceTokenizer":
        """Learns a SentencePiece model of `vocabulary_size` pieces from `texts`.

        Args:
            texts: a string or strings (for example `corpus.texts("train")`).
            vocabulary_size: pieces in all, the 258 fixed ones (padding, unknown, bytes)
                included.
            model_type: `"unigram"` (SentencePiece's default) or `"bpe"`.

        Raises:
            ValueError: `vocabulary_size` is not above 258 or too small for the characters
                of `texts` (the message says which), or the texts are empty.
        """
        import sentencepiece

        if isinstance(vocabulary_size, bool) or not isinstance(vocabulary_size, (int, np.integer)) \
                or vocabulary_size <= NUM_FIXED_PIECES:
            raise ValueError(
                f"`vocabulary_size` must be an integer above {NUM_FIXED_PIECES} (padding, "
                f"unknown and 256 byte pieces) for SentencePiece; got {vocabulary_size!r}")
        if model_type not in ("unigram", "bpe"):
            raise ValueError(f"`model_type` must be 'unigram' or 'bpe'; got {model_type!r}")
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not any(text.strip() for text in texts):
            raise ValueError("Cannot learn a vocabulary: the texts are empty.")
        writer = _BytesWriter()
        try:
            sentencepiece.SentencePieceTrainer.train(
                sentence_iterator=_training_sentences(texts), model_writer=writer,
                vocab_size=int(vocabulary_size), model_type=model_type,
                normalization_rule_name="identity", remove_extra_whitespaces=False,
                add_dummy_prefix=False, split_by_whitespace=True, byte_fallback=True,
                allow_whitespace_only_pieces=True, pad_id=PADDING_ID, unk_id=UNKNOWN_ID,
                bos_id=-1, eos_id=-1, hard_vocab_limit=False, minloglevel=2,
                max_sentence_length=4 * _MAX_SENTENCE_CHARACTERS + 16)
        except RuntimeError as error:
            raise ValueError(
                f"SentencePiece cannot learn {vocabulary_size} pieces from these texts: "
                f"{str(error).splitlines()[-1]}") from None
        return cls(writer.value, **kwargs)

    @property
    def proto(self) -> bytes:
        """The serialized SentencePiece model."""
        return self._proto

    @property
    def vocabulary(self) -> list[str]:
        """The pieces in id order (`▁` stands for a space)."""
        return [self._processor.id_to_piece(index) for index in range(self.vocabulary_size)]

    @property
    def vocabulary_size(self) -> int:
        return int(self._processor.get_piece_size())

    padding_id = PADDING_ID
    unknown_id = UNKNOWN_ID

    @property
    def lookup_tables(self) -> list:
        """None: the model proto is a constant of the graph, not a table."""
        return []

    def _detokenize_batch(self, ids):
        ids = tf.ragged.boolean_mask(ids, tf.not_equal(ids, PADDING_ID))
        ids = tf.ragged.map_flat_values(
            lambda flat: tf.where((flat >= 0) & (flat < self.vocabulary_size), flat, UNKNOWN_ID),
            ids)
        text = self._pieces.detokenize(ids)
        return tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")

    def tokenize(self, strings) -> tf.Tensor | tf.RaggedTensor:
        """Ids of `strings`: `[T]` int32 for a scalar, `[B, None]` ragged int32 for a batch."""
        strings = tf.convert_to_tensor(strings, dtype=tf.string)
        if strings.shape.rank not in (0, 1):
            raise ValueError(
                "`strings` must be a scalar string or a 1-D batch of strings; got shape "
                f"{strings.shape}")
        if strings.shape.rank == 0:
            return self._tokenize_graph(strings[None])[0]
        return self._tokenize_graph(strings)

    def detokenize(self, ids) -> tf.Tensor:
        """Text of `[T]` or `[B, T]` ids (dense or ragged); padding dropped, ids outside the
        vocabulary and partial UTF-8 characters shown as U+FFFD."""
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.convert_to_tensor(ids)
        if not ids.dtype.is_integer:
            raise ValueError(f"`ids` must be integers; got dtype {ids.dtype.name}")
        if ids.shape.rank not in (1, 2):
            raise ValueError(f"`ids` must be 1-D or 2-D; got shape {ids.shape}")
        ids = tf.cast(ids, tf.int32)
        if ids.shape.rank == 1:
            return self._detokenize_graph(tf.RaggedTensor.from_tensor(ids[None]))[0]
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids)
        return self._detokenize_graph(ids)

    def call(self, inputs):
        return self.tokenize(inputs)

    def encode_text(self, text: str) -> np.ndarray:
        """Ids of `text` with the `sentencepiece` package (the ids `tokenize` gives)."""
        if not isinstance(text, str):
            raise ValueError(f"`text` must be a str; got {type(text).__name__}")
        return np.asarray(self._processor.encode(text), np.int32)

    def decode_ids(self, ids) -> str:
        """Text of `[T]` ids in Python; padding dropped, like `detokenize`."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(
                f"`ids` must be a 1-D integer array; got {ids.dtype} of shape {ids.shape}")
        ids = ids[ids != PADDING_ID]
        ids = np.where((ids >= 0) & (ids < self.vocabulary_size), ids, UNKNOWN_ID)
        return self._processor.decode(ids.tolist())

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (None,)

    def get_config(self) -> dict:
        config = super().get_config()
        config["proto"] = base64.b64encode(self._proto).decode("ascii")
        return config

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the model proto (base64) to a JSON file (e.g. `runs/NAME/tokenizer.json`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        content = {"format": FILE_FORMAT, "version": _FILE_FORMAT_VERSION,
                   "vocabulary": self.vocabulary,
                   "proto": base64.b64encode(self._proto).decode("ascii")}
        path.write_text(json.dumps(content, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs) -> "SentencePieceTokenizer":
        """Reads a tokenizer written by `save`."""
        content = read_tokenizer_file(path, FILE_FORMAT, _FILE_FORMAT_VERSION, "SentencePiece")
        return cls(content["proto"], **kwargs)


class _BytesWriter:
    """The file-like object `SentencePieceTrainer.train(model_writer=...)` writes into."""

    def __init__(self):
        self.value = b""

    def write(self, data):
        self.value += data
