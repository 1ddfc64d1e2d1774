"""A Hugging Face checkpoint folder, as `save_pretrained` writes it, read without torch.

```
DIR/
  config.json                    the model's settings ("model_type" says which model)
  model.safetensors              the weights (or model.safetensors.index.json + shards)
  vocab.json + merges.txt        GPT-2's byte-level BPE tokenizer
  vocab.txt                      BERT's WordPiece vocabulary
  tokenizer_config.json          BERT's "do_lower_case", among others
```

The weights are read with the `safetensors` package into NumPy arrays (float32); nothing
downloads. `WeightReader` hands them out by their Hugging Face names, checking each shape
against the one the config implies, so a config that disagrees with its weights is named
weight by weight instead of failing deep inside TensorFlow.
"""

import json
from pathlib import Path

import numpy as np

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
TOKENIZER_CONFIG = "tokenizer_config.json"


class CheckpointFolder:
    """A local Hugging Face checkpoint folder: its config, files and weights.

    Args:
        path: the folder (`save_pretrained`'s output).

    Raises:
        FileNotFoundError: the folder does not exist, or has no `config.json`.
        ValueError: `config.json` is not a JSON object with a `"model_type"`.

    Example:

    >>> folder = CheckpointFolder("gpt2-folder")
    >>> folder.model_type, folder.config["n_layer"]
    ('gpt2', 12)
    >>> weights = WeightReader(folder.tensors(), prefixes=("transformer.",))
    """

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path} is not a folder.")
        config_file = self.path / CONFIG
        if not config_file.is_file():
            raise FileNotFoundError(
                f"{self.path} is not a Hugging Face checkpoint folder: it has no {CONFIG} "
                "(save one with `model.save_pretrained(DIR)`).")
        self.config = self._read_json(config_file)
        if not isinstance(self.config.get("model_type"), str):
            raise ValueError(f"{config_file} names no \"model_type\": not a Hugging Face "
                             "model config.")

    @property
    def model_type(self):
        return self.config["model_type"]

    def _read_json(self, path):
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise ValueError(f"{path} cannot be read as JSON ({error}).") from None
        if not isinstance(content, dict):
            raise ValueError(f"{path} does not hold a JSON object.")
        return content

    def require(self, name, what):
        """The path of the file `name`; FileNotFoundError naming it and `what` it is for."""
        path = self.path / name
        if not path.is_file():
            raise FileNotFoundError(f"{self.path} has no {name} ({what}).")
        return path

    def tokenizer_config(self):
        """`tokenizer_config.json` as a dict ({} when the folder has none)."""
        path = self.path / TOKENIZER_CONFIG
        return self._read_json(path) if path.is_file() else {}

    def weight_files(self):
        """The safetensors files holding the weights (one, or the shards of an index)."""
        if (self.path / WEIGHTS).is_file():
            return [self.path / WEIGHTS]
        if (self.path / WEIGHTS_INDEX).is_file():
            index = self._read_json(self.path / WEIGHTS_INDEX)
            names = sorted(set(index.get("weight_map", {}).values()))
            return [self.require(name, f"a shard named by {WEIGHTS_INDEX}") for name in names]
        others = sorted(p.name for p in self.path.glob("*.bin")) + sorted(
            p.name for p in self.path.glob("*.h5"))
        hint = (f"; it has {', '.join(others)}, which needs torch or TensorFlow-Keras 2 to "
                "read: save it again with `save_pretrained(DIR, safe_serialization=True)`"
                if others else "")
        raise FileNotFoundError(f"{self.path} has no {WEIGHTS} (the weights){hint}.")

    def tensors(self):
        """`{Hugging Face name: float32 NumPy array}` of every weight in the folder."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        tensors = {}
        for path in self.weight_files():
            try:
                loaded = load_file(path)
            except (SafetensorError, OSError, TypeError, ValueError) as error:
                raise ValueError(f"{path} cannot be read as safetensors ({error}).") from None
            tensors.update({name: np.asarray(value, np.float32)
                            for name, value in loaded.items()})
        return tensors


class WeightReader:
    """Hands out a checkpoint's weights by name, each checked against its expected shape.

    Args:
        tensors: `{name: array}` (`CheckpointFolder.tensors()`).
        prefixes: prefixes a name may carry in the file (`"transformer."` in a
            `GPT2LMHeadModel`'s file, `"bert."` in a `BertForMaskedLM`'s); tried in order,
            then the bare name.
        source: the file's name, for error messages.
    """

    def __init__(self, tensors, prefixes=(), source="the checkpoint"):
        self.tensors = tensors
        self.prefixes = tuple(prefixes) + ("",)
        self.source = source
        self.used = set()

    def find(self, name):
        """The full name under which `name` is stored, or None."""
        for prefix in self.prefixes:
            if prefix + name in self.tensors:
                return prefix + name
        return None

    def has(self, name):
        return self.find(name) is not None

    def take(self, name, shape, alternatives=()):
        """The array of weight `name` (or the first of `alternatives` present).

        Raises:
            ValueError: the weight is missing, or its shape is not `shape` (the message
                names the weight and both shapes).
        """
        for candidate in (name, *alternatives):
            full = self.find(candidate)
            if full is not None:
                break
        else:
            raise ValueError(f"{self.source} has no weight {name!r}: not a checkpoint of "
                             "the model its config describes.")
        value = self.tensors[full]
        if tuple(value.shape) != tuple(shape):
            raise ValueError(
                f"The weight {full!r} of {self.source} has shape {tuple(value.shape)}, but the "
                f"config implies {tuple(shape)}: config.json disagrees with the weights.")
        self.used.add(full)
        return value


def assign(variable, value):
    """`variable.assign(value)` after checking shapes (value reshaped by the caller)."""
    if tuple(variable.shape) != tuple(value.shape):
        raise ValueError(f"Cannot put a {tuple(value.shape)} array into {variable.path} of "
                         f"shape {tuple(variable.shape)}.")
    variable.assign(value.astype(np.float32))


def assign_norm(layer, reader, name):
    """A `LayerNormalization` from `NAME.weight` / `NAME.bias` (or TF-era gamma / beta)."""
    width = layer.gamma.shape[0]
    assign(layer.gamma, reader.take(f"{name}.weight", (width,), (f"{name}.gamma",)))
    assign(layer.beta, reader.take(f"{name}.bias", (width,), (f"{name}.beta",)))


def config_value(config, name, source, default=None, kind=int):
    """`config[name]` checked to be a `kind` (a missing entry takes `default`, or fails
    without one)."""
    value = config.get(name, default)
    if value is None:
        raise ValueError(f"{source} lacks {name!r}.")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{source}: {name!r} must be a positive integer; got {value!r}.")
    if kind is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ValueError(f"{source}: {name!r} must be a number; got {value!r}.")
    return value
