"""The JSON file every subword tokenizer saves to: one reader of its format and version."""

import json
from pathlib import Path


def read_tokenizer_file(path, file_format, version, kind):
    """The JSON object of a tokenizer file written with `"format": file_format`.

    Raises:
        ValueError: invalid JSON, another format (`kind` names the expected one, e.g.
            "WordPiece") or another version, each naming the file.
    """
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{str(path)!r} is not a tokenizer file: invalid JSON ({error})") \
            from None
    if not isinstance(content, dict) or content.get("format") != file_format:
        raise ValueError(f"{str(path)!r} is not a {kind} tokenizer file: expected \"format\": "
                         f"\"{file_format}\"")
    if content.get("version") != version:
        raise ValueError(f"{str(path)!r} has tokenizer file version {content.get('version')!r}; "
                         f"this version of tfllm reads version {version}")
    return content
