"""Your own UTF-8 text as a corpus: one `.txt` file, a folder of them, or a glob pattern.

`load_text_files` holds whole files out when there are enough of them; otherwise it cuts every
file by characters, at line starts where it can.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import random
from pathlib import Path

from tfllm.data.corpus import SHAKESPEARE_SEED, Corpus, CorpusError, Document


def load_text_files(
    source: str | os.PathLike,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.0,
    seed: int = SHAKESPEARE_SEED,
) -> Corpus:
    """Load your own UTF-8 text: one `.txt` file, a folder of them, or a glob pattern.

    Every file becomes one `Document` named by its path (a folder is searched recursively for
    `*.txt`; a glob may be recursive with `**`). Files holding only whitespace are skipped.

    Splitting: with `n` files, `round(n * validation_fraction)` files go to validation and
    `round(n * test_fraction)` to test, picked by `random.Random(seed)` from the sorted paths,
    whenever that gives every requested split at least one file and leaves one for training.
    Otherwise (too few files) every file is cut by characters instead: its last
    `test_fraction` of characters go to test, the `validation_fraction` before them to
    validation, the rest to train; each cut moves forward to the next line start when that
    stays inside the piece.

    Args:
        source: a file, a folder or a glob pattern (`"books/**/*.txt"`).
        validation_fraction: share of the text held out for validation, in [0, 1).
        test_fraction: share of the text held out for test, in [0, 1).
        seed: seed of the shuffle that picks held-out files.

    Returns:
        A `Corpus`; documents have `genre=None`.

    Raises:
        CorpusError: (a `ValueError`) when `source` matches no file, a file is not UTF-8 (the
            message names the file and the byte offset), or every file is empty.
        ValueError: when a fraction is outside [0, 1) or they add up to 1 or more.

    Example:

    >>> corpus = load_text_files("my_novels/", validation_fraction=0.1)
    """
    _check_fractions(validation_fraction, test_fraction)
    documents = _read_documents(source)
    num_validation = round(len(documents) * validation_fraction)
    num_test = round(len(documents) * test_fraction)
    enough_files = (
        (validation_fraction == 0 or num_validation >= 1)
        and (test_fraction == 0 or num_test >= 1)
        and len(documents) - num_validation - num_test >= 1
    )
    if enough_files:
        return _split_by_whole_files(documents, num_validation, num_test, seed)
    return _split_each_file_by_characters(documents, validation_fraction, test_fraction)


def _check_fractions(validation_fraction: float, test_fraction: float) -> None:
    for argument, value in (
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"`{argument}` must be a number in [0, 1); got {value!r}")
    if validation_fraction + test_fraction >= 1:
        raise ValueError(
            "`validation_fraction` + `test_fraction` must be below 1 to leave text for "
            f"training; got {validation_fraction} + {test_fraction}"
        )


def _read_documents(source: str | os.PathLike) -> list[Document]:
    """One `Document` per file of `source` that holds more than whitespace."""
    files = _find_text_files(source)
    documents = [Document(str(path), _read_utf8(path)) for path in files]
    documents = [document for document in documents if document.text.strip()]
    if not documents:
        raise CorpusError(
            f"{str(source)!r} matched {len(files)} file(s) but all are empty or whitespace only"
        )
    return documents


def _find_text_files(source: str | os.PathLike) -> list[Path]:
    path = Path(source).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(candidate for candidate in path.rglob("*.txt") if candidate.is_file())
        if not files:
            raise CorpusError(
                f"the folder {str(path)!r} holds no .txt files (searched recursively)"
            )
        return files
    matches = sorted(
        Path(match) for match in glob.glob(os.path.expanduser(str(source)), recursive=True)
    )
    files = [match for match in matches if match.is_file()]
    if not files:
        raise CorpusError(
            f"{str(source)!r} is neither a file, a folder nor a glob pattern matching any file"
        )
    return files


def _read_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        # utf-8-sig drops a byte-order mark that some editors write.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise CorpusError(
            f"{str(path)!r} is not UTF-8 text: byte offset {error.start} holds "
            f"{data[error.start:error.start + 1]!r} ({error.reason}); convert the file to UTF-8"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _split_by_whole_files(
    documents: list[Document], num_validation: int, num_test: int, seed: int
) -> Corpus:
    shuffled = list(documents)
    random.Random(seed).shuffle(shuffled)
    held_out = num_validation + num_test
    return Corpus(
        train=sorted(shuffled[held_out:], key=lambda document: document.name),
        validation=sorted(shuffled[:num_validation], key=lambda document: document.name),
        test=sorted(shuffled[num_validation:held_out], key=lambda document: document.name),
    )


def _split_each_file_by_characters(
    documents: list[Document], validation_fraction: float, test_fraction: float
) -> Corpus:
    splits: tuple[list[Document], list[Document], list[Document]] = ([], [], [])
    for document in documents:
        pieces = _split_text_by_characters(document, validation_fraction, test_fraction)
        for split_documents, piece in zip(splits, pieces):
            if piece is not None:
                split_documents.append(piece)
    return Corpus(train=splits[0], validation=splits[1], test=splits[2])


def _split_text_by_characters(
    document: Document, validation_fraction: float, test_fraction: float
) -> tuple[Document | None, Document | None, Document | None]:
    length = len(document.text)
    test_characters = math.ceil(length * test_fraction)
    validation_characters = math.ceil(length * validation_fraction)
    test_start = _split_point_after_newline(document.text, length - test_characters, length)
    validation_start = _split_point_after_newline(
        document.text, max(0, test_start - validation_characters), test_start
    )
    pieces = (
        document.text[:validation_start],
        document.text[validation_start:test_start],
        document.text[test_start:],
    )
    return tuple(
        dataclasses.replace(document, text=piece) if piece else None for piece in pieces
    )


def _split_point_after_newline(text: str, position: int, limit: int) -> int:
    # Move a cut forward to the start of the next line so no line is torn in two, unless the
    # next line starts at or after `limit` (the following cut).
    newline = text.find("\n", position, limit)
    if position == 0 or position >= limit or newline < 0 or newline + 1 >= limit:
        return position
    return newline + 1
