"""Building a tokenizer by name, and loading a tokenizer file of any of tfllm's tokenizers
(the run directory's tokenizer.json)."""

import json
import os
from pathlib import Path

from tfllm.constants import MINIMUM_VOCABULARY_SIZES, TOKENIZERS
from tfllm.data import byte_pair, sentence_piece, tokenizers, wordpiece

#: Tokenizer classes by the `"format"` their files declare.
TOKENIZER_FORMATS = {
    tokenizers.FILE_FORMAT: tokenizers.CharacterTokenizer,
    wordpiece.FILE_FORMAT: wordpiece.WordPieceTokenizer,
    byte_pair.FILE_FORMAT: byte_pair.BytePairTokenizer,
    sentence_piece.FILE_FORMAT: sentence_piece.SentencePieceTokenizer,
}


def build_tokenizer(kind, texts, vocabulary_size=None):
    """A tokenizer of `kind` learned from `texts` (the training split only).

    Args:
        kind: one of `tfllm.constants.TOKENIZERS`: `"char"` (`CharacterTokenizer`), `"bpe"`
            (GPT-2's byte-level `BytePairTokenizer`), `"sentencepiece"`
            (`SentencePieceTokenizer`), `"wordpiece"` (`WordPieceTokenizer`, case kept: it
            splits at spaces and punctuation, so detokenized text is re-spaced).
        texts: the training texts (for example `corpus.texts("train")`).
        vocabulary_size: ids in all, special ones included; for `"char"` an upper bound
            (None keeps every character), for the others required.

    Returns:
        The tokenizer.

    Raises:
        ValueError: an unknown `kind`, or a `vocabulary_size` below the tokenizer's special
            tokens (`tfllm.constants.MINIMUM_VOCABULARY_SIZES`).

    Example:

    >>> tokenizer = build_tokenizer("bpe", corpus.texts("train"), vocabulary_size=1024)
    """
    if kind not in TOKENIZERS:
        raise ValueError(f"unknown tokenizer {kind!r}; choose one of {', '.join(TOKENIZERS)}")
    minimum = MINIMUM_VOCABULARY_SIZES[kind]
    if vocabulary_size is None and kind != "char":
        raise ValueError(f"a {kind} tokenizer needs a `vocabulary_size` (at least {minimum})")
    if vocabulary_size is not None and vocabulary_size < minimum:
        raise ValueError(f"vocabulary size {vocabulary_size} is below the {minimum} a {kind} "
                         "tokenizer needs (its special tokens and at least one learned token)")
    texts = list(texts)
    if kind == "char":
        return tokenizers.CharacterTokenizer.from_texts(texts, max_vocabulary_size=vocabulary_size)
    if kind == "bpe":
        return byte_pair.BytePairTokenizer.from_texts(texts, vocabulary_size)
    if kind == "sentencepiece":
        return sentence_piece.SentencePieceTokenizer.from_texts(texts, vocabulary_size)
    return wordpiece.WordPieceTokenizer.from_texts(texts, vocabulary_size, lowercase=False)


def tokenizer_kind(tokenizer):
    """The `TOKENIZERS` name of a tokenizer object."""
    kinds = {tokenizers.CharacterTokenizer: "char", byte_pair.BytePairTokenizer: "bpe",
             sentence_piece.SentencePieceTokenizer: "sentencepiece",
             wordpiece.WordPieceTokenizer: "wordpiece"}
    return kinds.get(type(tokenizer), type(tokenizer).__name__)


def stream_text(tokenizer, token_ids):
    """The text of a stream of token ids, piece by piece, as soon as it is complete.

    Decoding each id alone would cut a character that spans several byte-level tokens into
    U+FFFD halves (and lose WordPiece's spacing); here the ids so far are decoded together
    and only new text that does not end in a partial character is given out.

    Args:
        tokenizer: any tfllm tokenizer (`decode_ids`).
        token_ids: an iterable of ints (for example `tfllm.generation.stream_tokens`).

    Yields:
        Strings whose concatenation is `tokenizer.decode_ids(all ids)`.
    """
    ids, shown = [], ""
    for token in token_ids:
        ids.append(int(token))
        text = tokenizer.decode_ids(ids)
        if text.endswith("\ufffd") or not text.startswith(shown):
            continue
        if len(text) > len(shown):
            yield text[len(shown):]
            shown = text
    text = tokenizer.decode_ids(ids) if ids else ""
    if len(text) > len(shown) and text.startswith(shown):
        yield text[len(shown):]


def load_tokenizer(path: str | os.PathLike):
    """Loads the tokenizer a file holds, whichever kind it is (see `TOKENIZER_FORMATS`).

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: the file is not a tfllm tokenizer file (the loader of the kind it
            claims to be, or the character tokenizer's, says what is wrong).
    """
    path = Path(path)
    try:
        kind = json.loads(path.read_text(encoding="utf-8")).get("format")
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        kind = None
    return TOKENIZER_FORMATS.get(kind, tokenizers.CharacterTokenizer).load(path)
