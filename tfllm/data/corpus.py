"""Text corpora: what a `Corpus` and a `Document` are, and `load_corpus` to load one by name.

A corpus is three lists of `Document`s (train, validation, test). Splits are made by whole
document wherever possible, so held-out text is never a neighbour of training text. The
loaders live beside this module: `shakespeare.py` (the bundled plays) and `text_files.py`
(your own `.txt` files).

Example:

>>> corpus = load_corpus("shakespeare")
>>> print(corpus.describe())
>>> training_text = "\\n\\n".join(corpus.texts("train"))
"""

from __future__ import annotations

import dataclasses
import os

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
    # The loaders build on this module's `Corpus` and `Document`, so they are imported here.
    from tfllm.data.shakespeare import load_shakespeare
    from tfllm.data.text_files import load_text_files

    if str(source) == "shakespeare":
        return load_shakespeare(**kwargs)
    return load_text_files(source, **kwargs)
