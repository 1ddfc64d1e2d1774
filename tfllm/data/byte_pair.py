"""Byte-level byte-pair encoding (GPT-2's tokenizer), in the TensorFlow graph and in NumPy.

`BytePairTokenizer` reads GPT-2's own files (`vocab.json` + `merges.txt`) or learns a
vocabulary from texts with the `tokenizers` package (a ByteLevel BPE trainer, as KerasHub
and Hugging Face use). Two code paths give the same ids:

- `tokenize` / `detokenize` run KerasHub's `BytePairTokenizer` on its TensorFlow path
  (TensorFlow Text's `regex_split` plus lookup tables), so they work in `tf.data`,
  `tf.function` and an exported SavedModel (load it after `import tensorflow_text`);
- `encode_text` / `decode_ids` use the `tokenizers` package (Rust), GPT-2's exact
  pre-tokenizer, fast enough for a whole corpus.

Every byte has a token of its own (the 256 byte symbols are in the vocabulary), so no text is
unknown: bytes that are not valid UTF-8 become U+FFFD before splitting, and ids that decode to
a partial UTF-8 character come back as U+FFFD.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tfllm.data.tokenizer_json import read_tokenizer_file

#: GPT-2's one special token; it pads batches here (GPT-2 has no padding token).
END_OF_TEXT = "<|endoftext|>"
#: The `"format"` entry of a byte-pair tokenizer file (`tfllm.data.load_tokenizer` reads it).
FILE_FORMAT = "tfllm.BytePairTokenizer"
_FILE_FORMAT_VERSION = 1
_NUM_BYTES = 256


def _check_vocabulary(vocabulary) -> dict[str, int]:
    if not isinstance(vocabulary, Mapping):
        raise ValueError(
            "`vocabulary` must be a dict mapping tokens to ids (GPT-2's vocab.json); got "
            f"{type(vocabulary).__name__}"
        )
    vocabulary = dict(vocabulary)
    bad = [(token, index) for token, index in vocabulary.items()
           if not isinstance(token, str) or not token or isinstance(index, bool)
           or not isinstance(index, (int, np.integer)) or index < 0]
    if bad:
        raise ValueError(
            f"`vocabulary` must map non-empty strings to ids >= 0; got {bad[:3]!r}")
    if len(set(vocabulary.values())) != len(vocabulary):
        raise ValueError("`vocabulary` gives two tokens the same id")
    return {token: int(index) for token, index in vocabulary.items()}


def _check_merges(merges, vocabulary) -> list[str]:
    if isinstance(merges, str) or not isinstance(merges, Iterable):
        raise ValueError("`merges` must be a list of 'left right' strings (merges.txt's lines)")
    rules = []
    for merge in merges:
        merge = " ".join(merge) if isinstance(merge, (list, tuple)) else merge
        if not isinstance(merge, str) or merge.startswith("#version") or not merge.strip():
            continue
        parts = merge.split(" ")
        if len(parts) != 2 or parts[0] not in vocabulary or parts[1] not in vocabulary:
            raise ValueError(
                f"merge rule {merge!r} must be two tokens of the vocabulary separated by a space")
        rules.append(merge)
    return rules


@keras.saving.register_keras_serializable(package="tfllm")
class BytePairTokenizer(keras.layers.Layer):
    """Maps text to GPT-2-style byte-level BPE ids, and back, with in-graph TensorFlow ops.

    Text is split with GPT-2's regular expression, each piece is written as byte symbols
    (`Ġ` for a space, ...) and merged by the rules in `merges`, in order; the merged pieces'
    ids come from `vocabulary`. For GPT-2's files the ids equal KerasHub's `GPT2Tokenizer`
    and Hugging Face's `GPT2Tokenizer` (no special tokens added). `padding_token` (GPT-2's
    `<|endoftext|>`) is never split; its id pads batches and `detokenize` drops it.

    Args:
        vocabulary: dict token -> id (GPT-2's `vocab.json`).
        merges: merge rules `"left right"` in priority order (`merges.txt` without its
            `#version` line; pairs as lists are accepted too).
        padding_token: the token whose id pads; it must be in the vocabulary.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, ...).

    Call arguments:
        inputs: a scalar string or a `[B]` batch of strings; calling the layer is `tokenize`.

    Returns:
        For a scalar: `[T]` int32 ids. For a batch: a `[B, None]` int32 `tf.RaggedTensor`.

    Example:

    >>> tokenizer = BytePairTokenizer.from_texts(corpus.texts("train"), vocabulary_size=1024)
    >>> ids = tokenizer.tokenize("To be, or not to be")
    >>> tokenizer.detokenize(ids).numpy().decode()
    'To be, or not to be'
    >>> gpt2 = BytePairTokenizer.from_files("gpt2/vocab.json", "gpt2/merges.txt")
    """

    def __init__(self, vocabulary: dict[str, int], merges: list[str],
                 padding_token: str = END_OF_TEXT, **kwargs):
        kwargs.setdefault("dtype", "int32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        import keras_hub

        self._vocabulary = _check_vocabulary(vocabulary)
        self._merges = _check_merges(merges, self._vocabulary)
        if padding_token not in self._vocabulary:
            raise ValueError(
                f"`padding_token` {padding_token!r} is not in the vocabulary; GPT-2's files "
                f"hold {END_OF_TEXT!r}")
        missing = _NUM_BYTES - len(set(_byte_symbols()) & self._vocabulary.keys())
        if missing:
            raise ValueError(
                f"`vocabulary` lacks {missing} of the 256 byte symbols a byte-level BPE needs "
                "(GPT-2's bytes_to_unicode table), so some text could not be encoded")
        self.padding_token = padding_token
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self._pieces = keras_hub.tokenizers.BytePairTokenizer(
            vocabulary=self._vocabulary, merges=self._merges,
            unsplittable_tokens=[padding_token], name="byte_pairs")
        # KerasHub runs its TensorFlow path only while tracing; these graphs always do.
        self._tokenize_graph = tf.function(
            self._tokenize_batch, input_signature=[tf.TensorSpec([None], tf.string)],
            autograph=False)
        self._detokenize_graph = tf.function(
            self._detokenize_batch,
            input_signature=[tf.RaggedTensorSpec([None, None], tf.int32)], autograph=False)
        self._fast = None
        self._symbols_of_id = None
        self.built = True

    @classmethod
    def from_files(cls, vocabulary_path: str | os.PathLike, merges_path: str | os.PathLike,
                   **kwargs) -> "BytePairTokenizer":
        """Reads GPT-2's `vocab.json` and `merges.txt` (as `save_pretrained` writes them).

        Raises:
            FileNotFoundError: a file is missing (the message names it).
            ValueError: a file is not what GPT-2 writes.
        """
        vocabulary_path, merges_path = Path(vocabulary_path), Path(merges_path)
        for path in (vocabulary_path, merges_path):
            if not path.is_file():
                raise FileNotFoundError(f"tokenizer file {str(path)!r} does not exist")
        try:
            vocabulary = json.loads(vocabulary_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{str(vocabulary_path)!r} is not a vocab.json: {error}") from None
        merges = merges_path.read_text(encoding="utf-8").splitlines()
        return cls(vocabulary, merges, **kwargs)

    @classmethod
    def from_texts(cls, texts: str | Iterable[str], vocabulary_size: int,
                   **kwargs) -> "BytePairTokenizer":
        """Learns a byte-level BPE of `vocabulary_size` ids from `texts` (`tokenizers`' trainer).

        Id 0 is `<|endoftext|>` (padding), ids 1-256 the bytes, the rest learned merges; the
        vocabulary is smaller than asked when the texts hold fewer distinct pairs.

        Raises:
            ValueError: `vocabulary_size` is not above 257 (the bytes and the padding token).
        """
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        minimum = _NUM_BYTES + 1
        if isinstance(vocabulary_size, bool) or not isinstance(vocabulary_size, (int, np.integer)) \
                or vocabulary_size <= minimum:
            raise ValueError(
                f"`vocabulary_size` must be an integer above {minimum} (256 bytes and "
                f"{END_OF_TEXT}) for a byte-level BPE; got {vocabulary_size!r}")
        texts = [texts] if isinstance(texts, str) else list(texts)
        learner = Tokenizer(models.BPE())
        learner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(
            vocab_size=int(vocabulary_size), special_tokens=[END_OF_TEXT], show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        learner.train_from_iterator(texts, trainer)
        model = json.loads(learner.to_str())["model"]
        return cls(model["vocab"], model["merges"], **kwargs)

    @property
    def vocabulary(self) -> dict[str, int]:
        """token -> id, as in `vocab.json`."""
        return dict(self._vocabulary)

    @property
    def merges(self) -> list[str]:
        """The merge rules in priority order, as in `merges.txt`."""
        return list(self._merges)

    @property
    def vocabulary_size(self) -> int:
        """One more than the largest id: the size a model's embedding needs."""
        return max(self._vocabulary.values()) + 1

    @property
    def padding_id(self) -> int:
        return self._vocabulary[self.padding_token]

    @property
    def lookup_tables(self) -> list:
        """The TensorFlow tables `tokenize` and `detokenize` use (an export must track them)."""
        pieces = self._pieces
        return [pieces.byte2unicode, pieces.unicode2byte, pieces.token_to_id_map,
                pieces.id_to_token_map, pieces.merge_ranks, pieces.cache.id2value]

    def _tokenize_batch(self, strings):
        # Bytes that are not UTF-8 become U+FFFD: the regular expression needs characters.
        strings = tf.strings.unicode_transcode(strings, "UTF-8", "UTF-8", errors="replace")
        return tf.cast(self._pieces.tokenize(strings), tf.int32)

    def _detokenize_batch(self, ids):
        ids = tf.ragged.boolean_mask(ids, tf.not_equal(ids, self.padding_id))
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
        """Text of `[T]` or `[B, T]` ids (dense or ragged); padding dropped, unknown ids
        dropped, a partial UTF-8 character shown as U+FFFD. A scalar string for `[T]`."""
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

    def _fast_tokenizer(self):
        """The `tokenizers` package's GPT-2 tokenizer for the same files (built once)."""
        if self._fast is None:
            from tokenizers import Tokenizer, decoders, models, pre_tokenizers

            pairs = [tuple(merge.split(" ")) for merge in self._merges]
            fast = Tokenizer(models.BPE(vocab=self._vocabulary, merges=pairs))
            fast.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            fast.decoder = decoders.ByteLevel()
            fast.add_special_tokens([self.padding_token])
            self._fast = fast
        return self._fast

    def encode_text(self, text: str) -> np.ndarray:
        """Ids of `text` with the `tokenizers` package: the ids `tokenize` gives, faster.

        Returns:
            `[N]` int32 NumPy array.
        """
        if not isinstance(text, str):
            raise ValueError(f"`text` must be a str; got {type(text).__name__}")
        # Lone surrogates cannot be UTF-8: replace them as `tokenize` replaces bad bytes.
        text = text.encode("utf-8", "replace").decode("utf-8")
        return np.asarray(self._fast_tokenizer().encode(text).ids, np.int32)

    def decode_ids(self, ids) -> str:
        """Text of `[T]` ids, in Python; padding and unknown ids dropped, partial UTF-8
        characters shown as U+FFFD (the same text as `detokenize`)."""
        ids = np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(
                f"`ids` must be a 1-D integer array; got {ids.dtype} of shape {ids.shape}")
        symbols = self._id_to_symbols()
        pieces = "".join(symbols.get(int(index), "") for index in ids
                         if index != self.padding_id)
        table = _symbol_to_byte()
        return bytes(table[symbol] for symbol in pieces).decode("utf-8", "replace")

    def _id_to_symbols(self) -> dict[int, str]:
        if self._symbols_of_id is None:
            self._symbols_of_id = {index: token for token, index in self._vocabulary.items()}
        return self._symbols_of_id

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (None,)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(vocabulary=self.vocabulary, merges=self.merges,
                      padding_token=self.padding_token)
        return config

    def save(self, path: str | os.PathLike) -> Path:
        """Writes vocabulary and merges to one UTF-8 JSON file (e.g. `runs/NAME/tokenizer.json`)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        content = {"format": FILE_FORMAT, "version": _FILE_FORMAT_VERSION,
                   "padding_token": self.padding_token, "vocabulary": self._vocabulary,
                   "merges": self._merges}
        path.write_text(json.dumps(content, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs) -> "BytePairTokenizer":
        """Reads a tokenizer written by `save`."""
        content = read_tokenizer_file(path, FILE_FORMAT, _FILE_FORMAT_VERSION, "byte-pair")
        return cls(content["vocabulary"], content["merges"],
                   padding_token=content["padding_token"], **kwargs)


@functools.cache
def _byte_symbols() -> tuple[str, ...]:
    """GPT-2's printable stand-ins for the 256 bytes (`bytes_to_unicode`), in byte order."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    symbols, extra = {}, 0
    for byte in range(_NUM_BYTES):
        if byte in printable:
            symbols[byte] = chr(byte)
        else:
            symbols[byte] = chr(_NUM_BYTES + extra)
            extra += 1
    return tuple(symbols[byte] for byte in range(_NUM_BYTES))


@functools.cache
def _symbol_to_byte() -> dict[str, int]:
    return {symbol: byte for byte, symbol in enumerate(_byte_symbols())}
