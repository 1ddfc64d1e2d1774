"""Tokenizers that turn text into integer ids, in the TensorFlow graph and in NumPy.

`CharacterTokenizer` is a Keras layer: its `tokenize` and `detokenize` are TensorFlow string
ops, so they run inside `tf.data`, `tf.function` and an exported SavedModel. Its `encode_text`
does the same mapping in NumPy, fast enough for a whole corpus at once.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

PADDING_ID = 0
UNKNOWN_ID = 1
NUM_RESERVED_IDS = 2
REPLACEMENT_CHARACTER = "\ufffd"  # shown for the unknown id, as Unicode does for bad bytes
#: The `"format"` entry of a character tokenizer file (`tfllm.data.load_tokenizer` reads it).
FILE_FORMAT = "tfllm.CharacterTokenizer"
_FILE_FORMAT = FILE_FORMAT
_FILE_FORMAT_VERSION = 1


def _check_vocabulary(vocabulary) -> tuple[str, ...]:
    if isinstance(vocabulary, str):
        raise ValueError(
            "`vocabulary` must be a list of single characters, got a string; "
            "use list(text) to pass its characters"
        )
    vocabulary = tuple(vocabulary)
    if not vocabulary:
        raise ValueError("`vocabulary` is empty; it needs at least one character")
    not_characters = [
        entry for entry in vocabulary if not isinstance(entry, str) or len(entry) != 1
    ]
    if not_characters:
        raise ValueError(
            "`vocabulary` entries must be single characters (one Unicode code point each); got "
            f"{not_characters[:5]!r}" + (" ..." if len(not_characters) > 5 else "")
        )
    duplicates = sorted(c for c, count in collections.Counter(vocabulary).items() if count > 1)
    if duplicates:
        raise ValueError(f"`vocabulary` holds duplicate characters: {duplicates!r}")
    return vocabulary


@keras.saving.register_keras_serializable(package="tfllm")
class CharacterTokenizer(keras.layers.Layer):
    """Maps text to one id per Unicode character, and back, with in-graph TensorFlow ops.

    Ids `0` and `1` are reserved: `0` pads batches, `1` stands for every character outside the
    vocabulary. The character `vocabulary[i]` has id `i + 2`. `tokenize` splits text into Unicode
    code points (`tf.strings.unicode_decode`) and looks them up in a `tf.lookup.StaticHashTable`
    made in `__init__`, so the layer works in `tf.data`, inside `tf.function` and in an exported
    `tf.Module`. `encode_text` gives the same ids in NumPy, for encoding a corpus in one go.

    Build one from a corpus with `CharacterTokenizer.from_texts`; keep it beside a model with
    `save` / `load` (a readable JSON file) or through Keras serialization (`get_config` holds the
    vocabulary).

    Args:
        vocabulary: list of distinct single characters, in id order (first one gets id 2).
        **kwargs: standard `keras.layers.Layer` arguments (`name`, ...).

    Call arguments:
        inputs: a scalar string or a `[B]` batch of strings (`tf.Tensor`, `str` or list of
            `str`); calling the layer is `tokenize`.

    Returns:
        For a scalar: `[T]` int32 ids. For a batch: a `[B, None]` int32 `tf.RaggedTensor`.

    Example:

    >>> tokenizer = CharacterTokenizer.from_texts(["To be, or not to be"])
    >>> tokenizer.vocabulary_size
    11
    >>> ids = tokenizer.tokenize("to be")
    >>> ids.numpy().tolist()
    [6, 3, 2, 4, 5]
    >>> tokenizer.detokenize(ids).numpy().decode()
    'to be'
    >>> tokenizer.tokenize(["to", "be or!"]).to_list()
    [[6, 3], [4, 5, 2, 3, 10, 1]]
    """

    def __init__(self, vocabulary: Sequence[str], **kwargs):
        kwargs.setdefault("dtype", "int32")
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self._vocabulary = _check_vocabulary(vocabulary)
        # Strings are not tensors Keras could autocast: pass inputs through untouched.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True

        code_points = np.array([ord(character) for character in self._vocabulary], np.int32)
        ids = np.arange(NUM_RESERVED_IDS, NUM_RESERVED_IDS + len(code_points), dtype=np.int32)
        self._code_point_to_id = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(code_points, ids),
            default_value=UNKNOWN_ID,
        )
        # Row `id` holds the code point of that id; padding's row is never read.
        self._id_to_code_point = np.concatenate(
            [[0, ord(REPLACEMENT_CHARACTER)], code_points]
        ).astype(np.int32)
        # Dense NumPy lookup for `encode_text`: index = code point, value = id.
        self._dense_code_point_to_id = np.full(int(code_points.max()) + 1, UNKNOWN_ID, np.int32)
        self._dense_code_point_to_id[code_points] = ids
        self.built = True

    @classmethod
    def from_texts(
        cls,
        texts: str | Iterable[str],
        max_vocabulary_size: int | None = None,
        min_count: int = 1,
        **kwargs,
    ) -> "CharacterTokenizer":
        """Builds a tokenizer whose vocabulary is the characters of `texts`.

        Characters are ordered by count, most frequent first, ties broken by character, so the
        same texts always give the same ids.

        Args:
            texts: a string or an iterable of strings (for example `corpus.texts("train")`).
            max_vocabulary_size: the largest `vocabulary_size` to allow, counting the two
                reserved ids; the rarest characters beyond it become unknown. `None` keeps all.
            min_count: characters seen fewer times than this become unknown.
            **kwargs: passed to the constructor (`name`, ...).

        Returns:
            A `CharacterTokenizer`.
        """
        if max_vocabulary_size is not None and (
            not isinstance(max_vocabulary_size, int) or max_vocabulary_size <= NUM_RESERVED_IDS
        ):
            raise ValueError(
                f"`max_vocabulary_size` must be an integer above {NUM_RESERVED_IDS} (the reserved "
                f"padding and unknown ids) or None; got {max_vocabulary_size!r}"
            )
        if not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"`min_count` must be a positive integer; got {min_count!r}")
        if isinstance(texts, str):
            texts = [texts]
        counts: collections.Counter[str] = collections.Counter()
        for text in texts:
            counts.update(text)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        vocabulary = [character for character, count in ranked if count >= min_count]
        if max_vocabulary_size is not None:
            vocabulary = vocabulary[: max_vocabulary_size - NUM_RESERVED_IDS]
        if not vocabulary:
            raise ValueError(
                f"`texts` hold no character seen at least `min_count`={min_count} times, so the "
                "vocabulary would be empty"
            )
        return cls(vocabulary, **kwargs)

    @property
    def vocabulary(self) -> list[str]:
        """The characters in id order; `vocabulary[i]` has id `i + 2`."""
        return list(self._vocabulary)

    @property
    def vocabulary_size(self) -> int:
        """Number of ids, the two reserved ones included: the size a model's embedding needs."""
        return len(self._vocabulary) + NUM_RESERVED_IDS

    @property
    def lookup_tables(self) -> list:
        """The TensorFlow lookup tables `tokenize` uses (an export must track them)."""
        return [self._code_point_to_id]

    @property
    def padding_id(self) -> int:
        return PADDING_ID

    @property
    def unknown_id(self) -> int:
        return UNKNOWN_ID

    def tokenize(self, strings) -> tf.Tensor | tf.RaggedTensor:
        """Ids of the characters of `strings`.

        Args:
            strings: a scalar string or a `[B]` batch of strings: `tf.Tensor`, `str` or list.
                Bytes that are not valid UTF-8 count as unknown characters.

        Returns:
            `[T]` int32 ids for a scalar, a `[B, None]` int32 `tf.RaggedTensor` for a batch.
        """
        strings = tf.convert_to_tensor(strings, dtype=tf.string)
        if strings.shape.rank not in (0, 1):
            raise ValueError(
                "`strings` must be a scalar string or a 1-D batch of strings; got shape "
                f"{strings.shape}"
            )
        code_points = tf.strings.unicode_decode(
            strings, "UTF-8", errors="replace", replacement_char=ord(REPLACEMENT_CHARACTER)
        )
        if isinstance(code_points, tf.RaggedTensor):
            return tf.ragged.map_flat_values(self._code_point_to_id.lookup, code_points)
        return self._code_point_to_id.lookup(code_points)

    def detokenize(self, ids) -> tf.Tensor:
        """Text of `ids`; the inverse of `tokenize` for characters in the vocabulary.

        Padding ids (0) are dropped; the unknown id, and any id outside the vocabulary, becomes
        U+FFFD (the replacement character).

        Args:
            ids: `[T]` ids, or `[B, T]` ids as a dense tensor or a `tf.RaggedTensor`; any
                integer dtype.

        Returns:
            A scalar string for `[T]`, a `[B]` string tensor for a batch.
        """
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.convert_to_tensor(ids)
        if not ids.dtype.is_integer:
            raise ValueError(f"`ids` must be integers; got dtype {ids.dtype.name}")
        if ids.shape.rank not in (1, 2):
            raise ValueError(f"`ids` must be 1-D or 2-D; got shape {ids.shape}")
        ids = tf.cast(ids, tf.int32)
        if ids.shape.rank == 2 and not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(ids)
        if isinstance(ids, tf.RaggedTensor):
            ids = tf.ragged.boolean_mask(ids, tf.not_equal(ids, PADDING_ID))
            code_points = tf.ragged.map_flat_values(self._ids_to_code_points, ids)
        else:
            code_points = self._ids_to_code_points(tf.boolean_mask(ids, ids != PADDING_ID))
        return tf.strings.unicode_encode(code_points, "UTF-8")

    def _ids_to_code_points(self, ids: tf.Tensor) -> tf.Tensor:
        in_range = (ids >= 0) & (ids < self.vocabulary_size)
        ids = tf.where(in_range, ids, UNKNOWN_ID)
        return tf.gather(tf.constant(self._id_to_code_point), ids)

    def call(self, inputs):
        return self.tokenize(inputs)

    def encode_text(self, text: str) -> np.ndarray:
        """Ids of `text`, computed in NumPy: the same ids as `tokenize`, much faster for a corpus.

        Args:
            text: a Python string (for example a whole training split joined together).

        Returns:
            `[len(text)]` int32 NumPy array.
        """
        if not isinstance(text, str):
            raise ValueError(f"`text` must be a str; got {type(text).__name__}")
        # UTF-32 stores each code point in 4 bytes: a zero-copy view gives all code points.
        code_points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        table = self._dense_code_point_to_id
        known = code_points < len(table)
        return np.where(known, table[np.where(known, code_points, 0)], UNKNOWN_ID).astype(np.int32)

    def decode_ids(self, ids) -> str:
        """Text of `ids`, computed in NumPy; padding dropped, unknown ids shown as U+FFFD.

        Args:
            ids: `[T]` integer ids (NumPy array, list or eager tensor).

        Returns:
            A Python string.
        """
        ids = np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(
                f"`ids` must be a 1-D integer array; got {ids.dtype} of shape {ids.shape}"
            )
        ids = ids[ids != PADDING_ID]
        ids = np.where((ids >= 0) & (ids < self.vocabulary_size), ids, UNKNOWN_ID)
        return self._id_to_code_point[ids].astype("<u4").tobytes().decode("utf-32-le")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (None,)

    def get_config(self) -> dict:
        config = super().get_config()
        config["vocabulary"] = list(self._vocabulary)
        return config

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the vocabulary to a UTF-8 JSON file, creating parent folders.

        Args:
            path: the file to write, for example `runs/NAME/tokenizer.json`.

        Returns:
            The path written.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        content = {
            "format": _FILE_FORMAT,
            "version": _FILE_FORMAT_VERSION,
            "vocabulary": list(self._vocabulary),
        }
        # ensure_ascii=False keeps the characters readable in the file.
        path.write_text(json.dumps(content, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs) -> "CharacterTokenizer":
        """Reads a tokenizer written by `save`.

        Args:
            path: the JSON file.
            **kwargs: passed to the constructor (`name`, ...).

        Returns:
            A `CharacterTokenizer` with the saved vocabulary.
        """
        path = Path(path)
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{str(path)!r} is not a tokenizer file: invalid JSON ({error})"
            ) from None
        if not isinstance(content, dict) or content.get("format") != _FILE_FORMAT:
            raise ValueError(
                f"{str(path)!r} is not a tokenizer file: expected \"format\": \"{_FILE_FORMAT}\""
            )
        if content.get("version") != _FILE_FORMAT_VERSION:
            raise ValueError(
                f"{str(path)!r} has tokenizer file version {content.get('version')!r}; this "
                f"version of tfllm reads version {_FILE_FORMAT_VERSION}"
            )
        return cls(content["vocabulary"], **kwargs)
