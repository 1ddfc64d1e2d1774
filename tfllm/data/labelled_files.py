"""Your own labelled texts: CSV, TSV and JSON Lines files, or a folder of class folders.

`read_labelled_examples` reads one source into `LabelledExamples` (texts and their label
strings, with the line each came from); `load_labelled_data` reads the training source
(and held-out ones, if given), names the classes and splits what is not given, stratified
by class and seeded, into a `LabelledData` that the classifier job trains on.

The formats (a file's extension chooses):

- `.csv`, `.tsv`: a header row names the columns; `text` and `label` by default.
- `.jsonl`, `.ndjson`: one JSON object a line; the `text` and `label` keys (others are
  ignored; a number or bool label reads as its JSON text).
- a folder: one sub-folder per class holding `.txt` files (searched recursively), one
  example a file: the layout `keras.utils.text_dataset_from_directory` reads.

A header row is required: a two-column file without one would read its first example as
column names, so the columns are always named, by the header or by `--text-column` /
`--label-column`. Class names are the distinct label strings, sorted as strings (as
Keras sorts class folders), so class ids are stable whatever the order of the rows. Only
the standard library is used: reading never needs TensorFlow.

Example:

>>> data = load_labelled_data("reviews.csv", label_column="sentiment")
>>> data.class_names
['negative', 'positive']
>>> texts, labels = data.splits["train"]
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import random
from pathlib import Path

from tfllm.constants import LABELLED_DELIMITERS as DELIMITERS
from tfllm.constants import LABELLED_JSON_LINES as JSON_LINES
from tfllm.data.corpus import SHAKESPEARE_SEED, Corpus, Document

HELD_OUT_SPLITS = ("validation", "test")


class LabelledDataError(ValueError):
    """Labelled data could not be read or split; the message names the file and the line."""


@dataclasses.dataclass(frozen=True)
class LabelledExamples:
    """Texts and their labels as the source spells them.

    Args:
        texts: the example texts.
        labels: the label of each text, a string (a JSON number or bool as its JSON text).
        lines: where each example starts (the line of a file, 1 for a class folder's file).
        source: the file or folder they were read from.
    """

    texts: list[str]
    labels: list[str]
    lines: list[int]
    source: str

    def __len__(self):
        return len(self.texts)

    def subset(self, indices):
        """The examples at `indices`, in that order."""
        return LabelledExamples([self.texts[i] for i in indices],
                                [self.labels[i] for i in indices],
                                [self.lines[i] for i in indices], self.source)


@dataclasses.dataclass(frozen=True)
class LabelledData:
    """Labelled examples split for training: class names and `{split: (texts, ids)}`.

    Args:
        class_names: the class names; a class id is an index into them.
        splits: `{"train" | "validation" | "test": (texts, class ids)}`.
        sources: `{split: the file or folder it came from}`.
    """

    class_names: list[str]
    splits: dict
    sources: dict

    def describe(self):
        """One line per split: the examples, the source and the count of each class."""
        lines = []
        for split, (texts, labels) in self.splits.items():
            counts = ", ".join(f"{name} {labels.count(index)}"
                               for index, name in enumerate(self.class_names))
            lines.append(f"{split:>10}: {len(texts):6,} examples from "
                         f"{self.sources[split]} ({counts})")
        return "\n".join(lines)

    def as_corpus(self):
        """The texts as a `Corpus` (a `Document` per example), for masked-LM pre-training
        on the same split: the classifier's held-out texts stay unread by its encoder."""
        return Corpus(**{split: [Document(f"{self.sources[split]}#{index}", text)
                                 for index, text in enumerate(self.splits[split][0])]
                         if split in self.splits else []
                         for split in ("train", *HELD_OUT_SPLITS)})


def read_labelled_examples(source, text_column="text", label_column="label"):
    """Reads one labelled source: a `.csv` / `.tsv` / `.jsonl` file or a class folder.

    Args:
        source: the file or folder (see the module's table).
        text_column: the column (CSV / TSV) or key (JSON Lines) of the texts; unused for
            a folder.
        label_column: the column or key of the labels; unused for a folder.

    Returns:
        `LabelledExamples`.

    Raises:
        LabelledDataError: (a `ValueError`) for a missing source or column, an unknown
            extension, an empty file, a row without a label or text, a line that is not
            a JSON object, a file that is not UTF-8.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        return _read_class_folders(path)
    if not path.is_file():
        raise LabelledDataError(f"{source} is neither a file nor a folder")
    suffix = path.suffix.lower()
    if suffix in DELIMITERS:
        return _read_delimited(path, DELIMITERS[suffix], text_column, label_column)
    if suffix in JSON_LINES:
        return _read_json_lines(path, text_column, label_column)
    raise LabelledDataError(unknown_extension_message(path))


def unknown_extension_message(path):
    """What is wrong with a labelled file of an extension we do not read."""
    path = Path(path)
    return (f"{path} has the unknown extension {path.suffix or '(none)'!r}: give a .csv, "
            ".tsv, .jsonl or .ndjson file, or a folder with one sub-folder of .txt files per "
            "class")


def _decode(path, data):
    """The text of a file's bytes (a byte-order mark dropped); non-UTF-8 named."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise LabelledDataError(
            f"{path} is not UTF-8 text: line {line} (byte offset {error.start}) holds "
            f"{data[error.start:error.start + 1]!r}; convert the file to UTF-8") from None


def _checked(path, line, text, label, text_column, label_column):
    """`(text, label)` of one row; an empty label or text is an error naming the line."""
    if label is None or not str(label).strip():
        raise LabelledDataError(f"{path}: line {line} has no label (column "
                                f"{label_column!r} is empty)")
    if not isinstance(text, str) or not text.strip():
        what = "is empty" if isinstance(text, str) or text is None else "is not a string"
        raise LabelledDataError(f"{path}: line {line} has no text (column {text_column!r} "
                                f"{what})")
    return text, str(label).strip()


def _read_delimited(path, delimiter, text_column, label_column):
    text = _decode(path, path.read_bytes())
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None or not any(name.strip() for name in header):
        raise LabelledDataError(f"{path} is empty: it needs a header row naming its columns "
                                "and one row per example")
    header = [name.strip() for name in header]
    missing = [(option, name) for option, name in (("--text-column", text_column),
                                                   ("--label-column", label_column))
               if name not in header]
    if missing:
        found = ", ".join(repr(name) for name in header)
        raise LabelledDataError(
            f"{path} has no column {missing[0][1]!r} (its header names {found}); name the "
            f"column with {missing[0][0]}")
    text_index, label_index = header.index(text_column), header.index(label_column)
    texts, labels, lines = [], [], []
    line = reader.line_num + 1
    for row in reader:
        if row:  # (blank lines between rows)
            cells = row + [""] * (len(header) - len(row))
            example = _checked(path, line, cells[text_index], cells[label_index],
                               text_column, label_column)
            texts.append(example[0])
            labels.append(example[1])
            lines.append(line)
        line = reader.line_num + 1
    return _non_empty(LabelledExamples(texts, labels, lines, str(path)), "rows under its header")


def _read_json_lines(path, text_column, label_column):
    texts, labels, lines = [], [], []
    for number, line in enumerate(_decode(path, path.read_bytes()).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise LabelledDataError(f"{path}: line {number} is not JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise LabelledDataError(f"{path}: line {number} is not a JSON object")
        for key in (text_column, label_column):
            if key not in record:
                found = ", ".join(repr(name) for name in record) or "none"
                option = "--text-column" if key == text_column else "--label-column"
                raise LabelledDataError(f"{path}: line {number} has no key {key!r} (its keys: "
                                        f"{found}); name the key with {option}")
        label = record[label_column]
        if not isinstance(label, str) and label is not None:
            label = json.dumps(label)  # 1 -> "1", true -> "true"
        text, label = _checked(path, number, record[text_column], label, text_column,
                               label_column)
        texts.append(text)
        labels.append(label)
        lines.append(number)
    return _non_empty(LabelledExamples(texts, labels, lines, str(path)), "JSON lines")


def _read_class_folders(folder):
    """The `.txt` files of each sub-folder (recursively, sorted as Keras walks them)."""
    classes = sorted(entry.name for entry in folder.iterdir()
                     if entry.is_dir() and not entry.name.startswith("."))
    texts, labels = [], []
    for name in classes:
        files = [path for path in (folder / name).rglob("*")
                 if path.is_file() and path.name.lower().endswith(".txt")]
        if not files:
            raise LabelledDataError(f"the class folder {folder / name} holds no .txt files")
        for path in sorted(files, key=lambda path: (str(path.parent), path.name)):
            text = _decode(path, path.read_bytes())
            if not text.strip():
                raise LabelledDataError(f"{path} is empty: every file of a class folder is "
                                        "one example")
            texts.append(text)
            labels.append(name)
    if not classes:
        raise LabelledDataError(f"{folder} holds no sub-folders: give one sub-folder of .txt "
                                "files per class")
    return _non_empty(LabelledExamples(texts, labels, [1] * len(texts), str(folder)),
                      ".txt files in its class folders")


def _non_empty(examples, what):
    if not examples.texts:
        raise LabelledDataError(f"{examples.source} is empty: it holds no {what}")
    return examples


def class_names_of(labels):
    """The class names of label strings: the distinct ones, sorted as strings."""
    return sorted(set(labels))


def stratified_split(examples, validation_fraction=0.1, test_fraction=0.1,
                     seed=SHAKESPEARE_SEED):
    """Splits examples into train / validation / test with each class in every split.

    Each class's examples (in file order) are shuffled by `random.Random(f"{seed}-{name}")`;
    the first `max(1, round(n * validation_fraction))` go to validation, the next
    `max(1, round(n * test_fraction))` to test, the rest to train; a fraction of 0 makes
    no split. Each split keeps the file's order. The same seed and data give the same
    split whatever the other classes hold.

    Args:
        examples: `LabelledExamples`.
        validation_fraction, test_fraction: shares of each class held out, in [0, 1).
        seed: seed of the shuffles (not the training seed: other models trained on the
            same data are tested on the same examples).

    Returns:
        `{split: LabelledExamples}` for "train" and each held-out split of non-zero
        fraction.

    Raises:
        LabelledDataError: when a class has too few examples to appear in every split.
    """
    fractions = {"validation": validation_fraction, "test": test_fraction}
    for split, value in fractions.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"`{split}_fraction` must be a number in [0, 1); got {value!r}")
    wanted = [split for split in HELD_OUT_SPLITS if fractions[split] > 0]
    by_class = {}
    for index, label in enumerate(examples.labels):
        by_class.setdefault(label, []).append(index)
    chosen = {split: [] for split in ("train", *wanted)}
    for name in class_names_of(examples.labels):
        indices = list(by_class[name])
        counts = [max(1, round(len(indices) * fractions[split])) for split in wanted]
        if len(indices) <= sum(counts):
            raise LabelledDataError(
                f"{examples.source}: the class {name!r} has {len(indices)} example(s); "
                f"a stratified split into train, {' and '.join(wanted)} needs at least "
                f"{sum(counts) + 1}: add examples or give the held-out data yourself "
                "(--validation-data, --test-data)")
        random.Random(f"{seed}-{name}").shuffle(indices)
        start = 0
        for split, count in zip(wanted, counts):
            chosen[split] += indices[start:start + count]
            start += count
        chosen["train"] += indices[start:]
    return {split: examples.subset(sorted(indices)) for split, indices in chosen.items()}


def load_labelled_data(data, text_column="text", label_column="label", *,
                       validation_data=None, test_data=None, validation_fraction=0.1,
                       test_fraction=0.1, seed=SHAKESPEARE_SEED):
    """Reads labelled data for a classifier and splits what is not given.

    The held-out splits not given as sources are cut from `data` by `stratified_split`
    (`validation_fraction`, `test_fraction`, `seed`); with both given, all of `data`
    trains. Class names come from the training examples (sorted as strings); a held-out
    source may not hold a class the training examples lack.

    Args:
        data: the training source: a `.csv`, `.tsv`, `.jsonl` file or a class folder.
        text_column, label_column: the columns (or JSON keys) of texts and labels, the
            same in every source.
        validation_data, test_data: optional held-out sources of the same kind.
        validation_fraction, test_fraction: shares of each class cut from `data`.
        seed: seed of the split.

    Returns:
        `LabelledData`.

    Raises:
        LabelledDataError: (a `ValueError`) as `read_labelled_examples` and
            `stratified_split`, and when the training examples hold a single class or a
            held-out source holds a class they lack.

    Example:

    >>> data = load_labelled_data("train.jsonl", validation_data="dev.jsonl")
    >>> print(data.describe())
    """
    read = lambda source: read_labelled_examples(source, text_column, label_column)  # noqa: E731
    given = {split: read(source) for split, source in
             (("validation", validation_data), ("test", test_data)) if source is not None}
    missing = {"validation": validation_fraction if "validation" not in given else 0,
               "test": test_fraction if "test" not in given else 0}
    training = read(data)
    class_names = class_names_of(training.labels)
    if len(class_names) < 2:
        raise LabelledDataError(
            f"{training.source}: the labels (column {label_column!r}) hold one class, "
            f"{class_names[0]!r}; a classifier needs at least two")
    examples = stratified_split(training, missing["validation"], missing["test"], seed)
    examples.update(given)
    return LabelledData(class_names, _as_class_ids(examples, class_names),
                        {split: part.source for split, part in examples.items()})


def _as_class_ids(examples, class_names):
    """`{split: (texts, class ids)}`; a held-out label the class names lack is an error."""
    ids = {name: index for index, name in enumerate(class_names)}
    splits = {}
    for split in ("train", *HELD_OUT_SPLITS):
        if split not in examples:
            continue
        unknown = sorted(set(examples[split].labels) - set(ids))
        if unknown:
            raise LabelledDataError(
                f"{examples[split].source} holds classes the training data lacks: "
                f"{', '.join(map(repr, unknown))} (training classes: "
                f"{', '.join(map(repr, class_names))})")
        splits[split] = (list(examples[split].texts),
                         [ids[label] for label in examples[split].labels])
    return splits
