"""Reading models saved before tfllm's attention took Keras's layout.

Until tfllm 0.1 `MultiHeadAttention` held its eight weights itself (`query_kernel`,
`query_bias`, `key_kernel`, ... `output_bias`); it now holds Keras `EinsumDense` layers
(`query_dense`, `key_dense`, `value_dense`, `output_dense`) with the same shapes, in the
same order. Keras cannot load such an old file into the new layer ("Layer 'key' expected
2 variables, but received 0"). `load_model` and `load_weights` read both layouts: an old
file is upgraded into a temporary copy (the original is never changed) and loaded from
there; the optimizer's state keeps its order and loads too. `upgrade_weights_file`
does the rewriting for a `.weights.h5` file.
"""

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import h5py
import keras

#: The sublayers the old attention weights go to, two weights (kernel, bias) each.
_PROJECTIONS = ("query_dense", "key_dense", "value_dense", "output_dense")
#: Ranks of the old weights, with biases and without.
_RANKS = {(3, 2, 3, 2, 3, 2, 3, 1): 2, (3, 3, 3, 3): 1}
_WEIGHTS_IN_KERAS_FILE = "model.weights.h5"


def _legacy_attention_groups(weights):
    """Paths of the groups of an open h5 weights file that hold old-layout attention."""
    found = []

    def visit(name, group):
        if not isinstance(group, h5py.Group) or "vars" not in group or "query_dense" in group:
            return
        variables = group["vars"]
        if not isinstance(variables, h5py.Group):
            return
        ranks = tuple(len(variables[str(index)].shape) for index in range(len(variables))
                      if str(index) in variables)
        if ranks in _RANKS and name.rsplit("/", 1)[-1].startswith("attention"):
            found.append(name)

    weights.visititems(visit)
    return found


def is_legacy_weights_file(path):
    """Whether a `.weights.h5` file holds attention weights in the old layout."""
    with h5py.File(path, "r") as weights:
        return bool(_legacy_attention_groups(weights))


def upgrade_weights_file(source, target):
    """Copies the weights file `source` to `target` with old attention groups rewritten.

    Returns:
        The number of attention layers rewritten (0: the file was already current).
    """
    shutil.copyfile(source, target)
    with h5py.File(target, "r+") as weights:
        groups = _legacy_attention_groups(weights)
        for name in groups:
            group = weights[name]
            values = [group["vars"][str(index)][()] for index in range(len(group["vars"]))]
            per_projection = _RANKS[tuple(len(value.shape) for value in values)]
            for index, projection in enumerate(_PROJECTIONS):
                variables = group.require_group(f"{projection}/vars")
                for offset in range(per_projection):
                    variables[str(offset)] = values[index * per_projection + offset]
            for key in list(group["vars"]):
                del group["vars"][key]
    return len(groups)


def _upgraded_keras_file(path, folder):
    """An upgraded copy of the `.keras` file `path` in `folder`, or None if it is current."""
    with zipfile.ZipFile(path) as archive:
        if _WEIGHTS_IN_KERAS_FILE not in archive.namelist():
            return None
        weights = Path(folder) / "old.weights.h5"
        weights.write_bytes(archive.read(_WEIGHTS_IN_KERAS_FILE))
        if not is_legacy_weights_file(weights):
            return None
        upgraded = Path(folder) / "new.weights.h5"
        upgrade_weights_file(weights, upgraded)
        copy = Path(folder) / Path(path).name
        with zipfile.ZipFile(copy, "w", zipfile.ZIP_DEFLATED) as target:
            for item in archive.infolist():
                if item.filename == _WEIGHTS_IN_KERAS_FILE:
                    target.write(upgraded, _WEIGHTS_IN_KERAS_FILE)
                else:
                    target.writestr(item, archive.read(item.filename))
    return copy


def load_model(path, **kwargs):
    """`keras.saving.load_model` that also reads `.keras` files of the old attention layout."""
    if zipfile.is_zipfile(path):
        with tempfile.TemporaryDirectory(prefix="tfllm-upgrade-") as folder:
            copy = _upgraded_keras_file(path, folder)
            if copy is not None:
                return keras.saving.load_model(copy, **kwargs)
    return keras.saving.load_model(path, **kwargs)


def load_weights(model, path, **kwargs):
    """`model.load_weights(path)` that also reads `.weights.h5` files of the old layout."""
    if str(path).endswith(".weights.h5") and is_legacy_weights_file(path):
        with tempfile.TemporaryDirectory(prefix="tfllm-upgrade-") as folder:
            copy = os.path.join(folder, "upgraded.weights.h5")
            upgrade_weights_file(path, copy)
            return model.load_weights(copy, **kwargs)
    return model.load_weights(path, **kwargs)
