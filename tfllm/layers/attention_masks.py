"""Boolean attention masks (True = may attend), and the Keras masks tensors carry."""

import contextlib

from keras import ops

try:  # the Keras mask of a tensor (the attribute Keras's own layers read and write)
    from keras.src.backend import get_keras_mask, set_keras_mask
except ImportError:  # pragma: no cover - other Keras 3 releases
    def get_keras_mask(tensor):
        return getattr(tensor, "_keras_mask", None)

    def set_keras_mask(tensor, mask):
        tensor._keras_mask = mask

#: Stand-in for "may not attend" in float32 scores: far below any real score, finite.
MASKED_SCORE = -1e9


def causal_mask(query_length, key_length):
    """`[1, T, S]` boolean mask: query `i` may attend to keys `j <= i`.

    Aligned at the top left like `keras.layers.MultiHeadAttention`'s causal
    mask.
    """
    query_positions = ops.arange(query_length)[:, None]
    key_positions = ops.arange(key_length)[None, :]
    return ops.expand_dims(key_positions <= query_positions, 0)


def merge_masks(*masks):
    """Logical AND of the masks that are not None (None if all are None)."""
    merged = None
    for mask in masks:
        if mask is None:
            continue
        mask = ops.cast(mask, "bool")
        merged = mask if merged is None else ops.logical_and(merged, mask)
    return merged


@contextlib.contextmanager
def without_keras_masks(*tensors):
    """Detaches the Keras masks of `tensors` for the duration (the projections do not
    take masks: they would warn and drop them), then puts them back."""
    masks = [get_keras_mask(tensor) for tensor in tensors]
    for tensor, mask in zip(tensors, masks):
        if mask is not None:
            set_keras_mask(tensor, None)
    try:
        yield
    finally:
        for tensor, mask in zip(tensors, masks):
            if mask is not None:
                set_keras_mask(tensor, mask)
