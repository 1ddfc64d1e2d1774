"""Masked language modelling: choosing and corrupting the tokens a model must predict.

BERT's recipe: select `rate` (15 %) of the real tokens; of those, replace 80 % by the
mask token, 10 % by a random token and keep 10 % unchanged. The model sees the corrupted
ids and is scored only at the selected positions (`sample_weight` is 1 there, 0 elsewhere),
against the original ids.
"""

import tensorflow as tf


def mask_tokens(
    token_ids,
    mask_id,
    vocabulary_size,
    seed,
    rate=0.15,
    mask_fraction=0.8,
    random_fraction=0.1,
    special_ids=(),
    padding_id=0,
):
    """Corrupts a batch of token ids for masked-LM training.

    Args:
        token_ids: `[B, T]` int tensor.
        mask_id: the id of the mask token.
        vocabulary_size: ids are in `[0, vocabulary_size)`; random replacements are drawn
            from the ids that are neither special nor padding.
        seed: `[2]` int seed of the stateless random draws: the same seed, the same masks.
        rate: fraction of the real (non-special, non-padding) tokens selected.
        mask_fraction: fraction of the selected tokens replaced by `mask_id`.
        random_fraction: fraction of the selected tokens replaced by a random id
            (the rest of the selected tokens keep their id).
        special_ids: ids never selected (e.g. `[CLS]`, `[SEP]`, `[MASK]`).
        padding_id: the padding id, never selected.

    Returns:
        A dict: `inputs` (`[B, T]` corrupted ids), `labels` (`[B, T]` original ids) and
        `sample_weight` (`[B, T]` float32, 1 at the selected positions, else 0).

    Raises:
        ValueError: a rate or fraction outside [0, 1], or fractions that add up to more than 1.
    """
    _check_fractions(rate, mask_fraction, random_fraction)
    token_ids = tf.convert_to_tensor(token_ids)
    if not token_ids.dtype.is_integer:
        raise ValueError(f"`token_ids` must be integers; got dtype {token_ids.dtype.name}.")
    token_ids = tf.cast(token_ids, tf.int32)
    excluded = tf.constant(sorted({int(padding_id), int(mask_id), *map(int, special_ids)}),
                           tf.int32)
    eligible = tf.logical_not(_is_any_of(token_ids, excluded))
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
    shape = tf.shape(token_ids)
    selected = tf.logical_and(eligible, tf.random.stateless_uniform(shape, seeds[0]) < rate)
    action = tf.random.stateless_uniform(shape, seeds[1])
    replace_by_mask = tf.logical_and(selected, action < mask_fraction)
    replace_by_random = tf.logical_and(
        selected,
        tf.logical_and(action >= mask_fraction, action < mask_fraction + random_fraction),
    )
    random_ids = _random_ordinary_ids(shape, seeds[2], vocabulary_size, excluded)
    inputs = tf.where(replace_by_mask, mask_id, token_ids)
    inputs = tf.where(replace_by_random, random_ids, inputs)
    return {"inputs": inputs, "labels": token_ids,
            "sample_weight": tf.cast(selected, tf.float32)}


def _check_fractions(rate, mask_fraction, random_fraction):
    for name, value in (("rate", rate), ("mask_fraction", mask_fraction),
                        ("random_fraction", random_fraction)):
        if not 0 <= value <= 1:
            raise ValueError(f"`{name}` must be in [0, 1]; got {value!r}.")
    if mask_fraction + random_fraction > 1:
        raise ValueError(
            f"`mask_fraction + random_fraction` must be at most 1; got "
            f"{mask_fraction} + {random_fraction}."
        )


def _is_any_of(ids, excluded):
    """True where an id of `ids` is one of the `[E]` ids `excluded`."""
    return tf.reduce_any(tf.equal(ids[..., None], excluded), axis=-1)


def _random_ordinary_ids(shape, seed, vocabulary_size, excluded):
    """Ids drawn uniformly from those in `[0, vocabulary_size)` that are not `excluded`."""
    vocabulary = tf.range(vocabulary_size)
    ordinary = tf.boolean_mask(vocabulary, tf.logical_not(_is_any_of(vocabulary, excluded)))
    return tf.gather(ordinary, tf.random.stateless_uniform(
        shape, seed, maxval=tf.shape(ordinary)[0], dtype=tf.int32))
