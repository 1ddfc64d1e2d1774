"""Loading a tokenizer file of any of tfllm's tokenizers (the run directory's tokenizer.json)."""

import json
import os
from pathlib import Path

from tfllm.data import byte_pair, tokenizers, wordpiece

#: Tokenizer classes by the `"format"` their files declare.
TOKENIZER_FORMATS = {
    tokenizers.FILE_FORMAT: tokenizers.CharacterTokenizer,
    wordpiece.FILE_FORMAT: wordpiece.WordPieceTokenizer,
    byte_pair.FILE_FORMAT: byte_pair.BytePairTokenizer,
}


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
