"""Masked-LM corruption statistics, and genre-labelled passages split by play."""

import numpy as np
import pytest
import tensorflow as tf

from tfllm.data import load_shakespeare
from tfllm.data.genres import CLASS_NAMES, class_balance, class_id, labelled_passages
from tfllm.data.masking import mask_tokens

MASK, CLS, SEP, VOCABULARY = 3, 4, 5, 60


def _batch(rng, shape=(256, 128)):
    ids = rng.integers(6, VOCABULARY, size=shape).astype("int32")
    ids[:, 0], ids[:, -1] = CLS, SEP
    ids[:, -20:-1] = 0  # padding
    return ids


def test_masking_follows_15_percent_and_80_10_10(rng):
    ids = _batch(rng)
    out = {key: value.numpy() for key, value in mask_tokens(
        ids, MASK, VOCABULARY, seed=[1, 2], special_ids=[CLS, SEP]).items()}
    eligible = (ids != 0) & (ids != CLS) & (ids != SEP)
    selected = out["sample_weight"] == 1
    assert not (selected & ~eligible).any()  # never padding or special tokens
    assert selected.sum() / eligible.sum() == pytest.approx(0.15, abs=0.005)
    masked = selected & (out["inputs"] == MASK)
    kept = selected & (out["inputs"] == ids)
    changed = selected & ~masked & ~kept
    total = selected.sum()
    assert masked.sum() / total == pytest.approx(0.8, abs=0.015)
    # Random replacements come from the 56 ordinary ids, the original among them: drawn
    # back, it counts as kept.
    assert kept.sum() / total == pytest.approx(0.1 + 0.1 / 56, abs=0.01)
    assert changed.sum() / total == pytest.approx(0.1 - 0.1 / 56, abs=0.01)
    assert set(np.unique(out["inputs"][changed])) <= set(range(VOCABULARY)) - {0, MASK, CLS, SEP}
    np.testing.assert_array_equal(out["inputs"][~selected], ids[~selected])
    np.testing.assert_array_equal(out["labels"], ids)


def test_the_loss_ignores_unselected_positions(rng):
    ids = _batch(rng, (4, 32))
    out = mask_tokens(ids, MASK, VOCABULARY, seed=[3, 4], special_ids=[CLS, SEP])
    logits = tf.random.stateless_normal((4, 32, VOCABULARY), seed=[5, 6])
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")
    weighted = loss(out["labels"], logits, sample_weight=out["sample_weight"])
    # Changing the logits anywhere a position is not selected changes nothing.
    noise = tf.where(out["sample_weight"][..., None] > 0, 0.0,
                     tf.random.stateless_normal(logits.shape, seed=[7, 8]) * 10)
    again = loss(out["labels"], logits + noise, sample_weight=out["sample_weight"])
    assert float(weighted) == pytest.approx(float(again), rel=1e-6)


def test_the_same_seed_masks_the_same_tokens(rng):
    ids = _batch(rng, (8, 64))
    first = mask_tokens(ids, MASK, VOCABULARY, seed=[9, 9])["inputs"].numpy()
    np.testing.assert_array_equal(first, mask_tokens(ids, MASK, VOCABULARY,
                                                     seed=[9, 9])["inputs"].numpy())
    assert not np.array_equal(first, mask_tokens(ids, MASK, VOCABULARY,
                                                 seed=[9, 10])["inputs"].numpy())


@pytest.mark.parametrize("kwargs, name", [
    ({"rate": 1.5}, "rate"), ({"mask_fraction": 0.9, "random_fraction": 0.2}, "at most 1"),
])
def test_bad_masking_settings_are_named(kwargs, name):
    with pytest.raises(ValueError, match=name):
        mask_tokens(np.ones((1, 4), "int32"), MASK, VOCABULARY, seed=[0, 0], **kwargs)


def test_genres_map_to_three_classes_and_unknown_ones_are_named():
    assert [class_id(genre) for genre in ("comedies", "histories", "roman", "tragedy")] == [
        0, 1, 2, 2]
    with pytest.raises(ValueError, match="Unknown genre or class 'farce'"):
        class_id("farce")


def test_passages_come_from_one_play_each_and_no_play_is_in_two_splits():
    corpus = load_shakespeare()
    splits = {split: labelled_passages(corpus.documents(split), 300)
              for split in ("train", "validation", "test")}
    plays = {split: set(names) for split, (_, _, names) in splits.items()}
    assert not (plays["train"] & plays["validation"]) and not (plays["train"] & plays["test"])
    assert not (plays["validation"] & plays["test"])
    by_name = {document.name: document for document in corpus.train}
    texts, labels, names = splits["train"]
    for text, label, name in list(zip(texts, labels, names))[::97]:
        assert len(text) == 300 and text in by_name[name].text
        assert label == class_id(by_name[name].genre)
    balance = class_balance(labels)
    assert sum(count for count, _ in balance.values()) == len(labels)
    assert set(balance) == set(CLASS_NAMES) and all(count > 0 for count, _ in balance.values())
