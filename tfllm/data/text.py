"""Text normalisation for the classical (bag-of-words) baseline.

The WordPiece tokenizer does its own normalisation (lower-casing, splitting off
punctuation); these helpers are for models that count words: lower-case, drop punctuation,
optionally drop stop words, including the pronouns and verb forms of Shakespeare's English
("thou", "thee", "hath", "doth") that say nothing about a play's genre.
"""

import re

STOP_WORDS = frozenset("""
a about after again against all am an and any are as at be because been before being
but by can could did do does doing done down for from had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself no
nor not now of off on once only or other our ours ourselves out over own same she should
so some such than that the their theirs them themselves then there these they this those
through to too under until up upon very was we were what when where which while who whom
why will with would you your yours yourself yourselves
thou thee thy thine art hast hath doth dost shalt wilt ye o oh tis twas ay nay yea
""".split())

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


def normalize_text(text, lowercase=True, strip_punctuation=True, remove_stop_words=False):
    """Normalises `text` for counting words.

    Args:
        text: a string.
        lowercase: lower-case everything.
        strip_punctuation: keep only words (letters, with inner apostrophes as in
            "o'er"); digits, punctuation and line breaks become single spaces.
        remove_stop_words: drop the words of `STOP_WORDS` (compared in lower case).

    Returns:
        The normalised string, words separated by single spaces.

    Example:

    >>> normalize_text("Thou art a villain, sir!", remove_stop_words=True)
    'villain sir'
    """
    if not isinstance(text, str):
        raise ValueError(f"`text` must be a string; got {type(text).__name__}.")
    if lowercase:
        text = text.lower()
    words = _WORD.findall(text) if strip_punctuation else text.split()
    if remove_stop_words:
        words = [word for word in words if word.lower() not in STOP_WORDS]
    return " ".join(words)
