"""BertEncoder, BertMaskedLM and BertClassifier against invariants and NumPy."""

import json

import keras
import numpy as np
import pytest

from tfllm.layers.transformer import TransformerBlock
from tfllm.models import BertClassifier, BertEncoder, BertMaskedLM

CONFIG = {"vocabulary_size": 40, "max_length": 16, "num_layers": 2, "num_heads": 2,
          "hidden_dim": 16, "intermediate_dim": 32, "dropout": 0.0}


def _ids(rng, batch=3, length=10):
    ids = rng.integers(5, 40, size=(batch, length)).astype("int32")
    ids[:, 0] = 2
    return ids


@pytest.mark.parametrize("position_encoding", ["learned", "rotary"])
def test_padding_never_changes_the_outputs_at_real_positions(rng, position_encoding):
    encoder = BertEncoder(**CONFIG, position_encoding=position_encoding)
    ids = _ids(rng, 1, 6)
    alone = encoder(ids).numpy()
    padded = np.concatenate([ids, np.zeros((1, 5), "int32")], axis=1)
    np.testing.assert_allclose(encoder(padded).numpy()[:, :6], alone, atol=1e-5)
    # Whatever the padding positions hold, with an explicit mask, nothing changes.
    noisy = padded.copy()
    noisy[:, 6:] = rng.integers(5, 40, size=5)
    mask = np.arange(11)[None, :] < 6
    np.testing.assert_allclose(encoder(noisy, padding_mask=mask).numpy()[:, :6], alone,
                               atol=1e-5)


def test_rows_of_a_batch_are_independent_and_permute_with_it(rng):
    encoder = BertEncoder(**CONFIG)
    ids = _ids(rng, 4, 8)
    ids[1, 5:] = 0
    ids[3, 2:] = 0
    out = encoder(ids).numpy()
    order = [2, 0, 3, 1]
    np.testing.assert_allclose(encoder(ids[order]).numpy(), out[order], atol=1e-5)


def test_a_bidirectional_block_sees_the_future_and_a_causal_one_does_not(rng):
    x = rng.normal(size=(1, 6, 16)).astype("float32")
    later = x.copy()
    later[:, 4] = rng.normal(size=16)  # (a constant shift would vanish in the LayerNorm)
    for causal in (False, True):
        block = TransformerBlock(num_heads=2, intermediate_dim=32, causal=causal)
        change = np.abs(block(later).numpy()[:, :4] - block(x).numpy()[:, :4]).max()
        assert (change < 1e-6) == causal
    encoder = BertEncoder(**CONFIG)
    ids = _ids(rng, 1, 8)
    changed = ids.copy()
    changed[0, 7] = 5 if ids[0, 7] != 5 else 6
    assert np.abs(encoder(changed).numpy()[0, 0] - encoder(ids).numpy()[0, 0]).max() > 1e-4


def test_the_masked_lm_head_is_tied_to_the_token_embedding(rng):
    model = BertMaskedLM(BertEncoder(**CONFIG))
    ids = _ids(rng)
    logits = model(ids).numpy()
    hidden = model.encoder(ids).numpy()
    transformed = model.head_norm(model.head_dense(hidden)).numpy()
    table = model.encoder.token_embedding.embeddings.numpy()
    expected = transformed @ table.T + model.output_bias.numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert logits.shape == (3, 10, 40)


def test_the_masked_lm_loss_is_the_mean_over_selected_positions_only(rng):
    model = BertMaskedLM(BertEncoder(**CONFIG))
    model.compile()
    ids = _ids(rng, 4, 12)
    weights = (rng.random((4, 12)) < 0.3).astype("float32")
    weights[0, 3] = 1.0
    logits = model(ids).numpy().astype("float64")
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    picked = np.take_along_axis(log_probs, ids[..., None], -1)[..., 0]
    expected = -(picked * weights).sum() / weights.sum()
    loss = model.evaluate(ids, ids, sample_weight=weights, verbose=0, batch_size=4)
    loss = loss[0] if isinstance(loss, list) else loss
    assert loss == pytest.approx(expected, rel=1e-4)
    # Other targets where the weight is 0 change nothing.
    other = np.where(weights > 0, ids, (ids + 7) % 40)
    again = model.evaluate(ids, other, sample_weight=weights, verbose=0, batch_size=4)
    assert (again[0] if isinstance(again, list) else again) == pytest.approx(loss, rel=1e-6)


def test_pretrained_weights_loaded_into_a_classifier_equal_the_saved_ones(rng, tmp_path):
    model = BertMaskedLM(BertEncoder(**CONFIG))
    model.compile()
    ids = _ids(rng, 8, 12)
    model.fit(ids, ids, sample_weight=np.ones((8, 12), "float32"), epochs=1, verbose=0)
    path = tmp_path / "mlm.keras"
    model.save(path)
    classifier = BertClassifier.from_pretrained(path, num_classes=3)
    saved = keras.saving.load_model(path)
    assert len(classifier.encoder.weights) == len(saved.encoder.weights) > 0
    for mine, theirs in zip(classifier.encoder.weights, saved.encoder.weights):
        # The same weight of the encoder (paths start with the models' own names).
        assert (mine.path.split(classifier.encoder.name + "/", 1)[1]
                == theirs.path.split(saved.encoder.name + "/", 1)[1])
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    np.testing.assert_allclose(classifier.encoder(ids).numpy(), model.encoder(ids).numpy(),
                               atol=1e-6)
    assert classifier(ids).shape == (8, 3)


def test_loading_an_encoder_of_another_shape_names_the_setting():
    classifier = BertClassifier(BertEncoder(**CONFIG), num_classes=2)
    other = BertMaskedLM(BertEncoder(**{**CONFIG, "hidden_dim": 32}))
    with pytest.raises(ValueError, match="hidden_dim: this classifier 16, the source 32"):
        classifier.load_encoder(other)
    with pytest.raises(ValueError, match="Cannot load BERT encoder weights from a Dense"):
        classifier.load_encoder(keras.layers.Dense(2))


def test_mean_pooling_ignores_padding(rng):
    classifier = BertClassifier(BertEncoder(**CONFIG), num_classes=3, pooling="mean")
    ids = _ids(rng, 1, 6)
    padded = np.concatenate([ids, np.zeros((1, 4), "int32")], axis=1)
    np.testing.assert_allclose(classifier(padded).numpy(), classifier(ids).numpy(), atol=1e-5)
    hidden = classifier.encoder(ids).numpy()
    expected = classifier.output_dense(hidden.mean(axis=1)).numpy()
    np.testing.assert_allclose(classifier(ids).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("cls, kwargs", [(BertMaskedLM, {}), (BertClassifier, {"num_classes": 3}),
                                         (BertEncoder, {}),
                                         (BertMaskedLM, {"position_encoding": "rotary"})])
def test_save_and_load_round_trip(cls, kwargs, rng, tmp_path):
    if cls is BertEncoder:
        model = BertEncoder(**CONFIG, **kwargs)
    else:  # a task takes its encoder
        task = {"num_classes": kwargs.pop("num_classes")} if "num_classes" in kwargs else {}
        model = cls(BertEncoder(**CONFIG, **kwargs), **task)
    ids = _ids(rng)
    before = model(ids).numpy()
    model.save(tmp_path / "model.keras")
    again = keras.saving.load_model(tmp_path / "model.keras")
    # (through JSON, as in the file: the encoder's build shape comes back as a list)
    assert type(again) is cls
    assert json.loads(json.dumps(again.get_config())) == json.loads(json.dumps(model.get_config()))
    np.testing.assert_allclose(again(ids).numpy(), before, atol=1e-6)


def test_bad_inputs_and_settings_are_named(rng):
    encoder = BertEncoder(**CONFIG)
    with pytest.raises(ValueError, match="more than max_length=16"):
        encoder(np.ones((1, 17), "int32"))
    with pytest.raises(ValueError, match="integer token ids"):
        encoder(np.ones((1, 4), "float32"))
    with pytest.raises(ValueError, match="num_segments=0"):
        encoder(np.ones((1, 4), "int32"), segment_ids=np.zeros((1, 4), "int32"))
    with pytest.raises(ValueError, match="num_classes"):
        BertClassifier(BertEncoder(**CONFIG), num_classes=1)
    with pytest.raises(ValueError, match="pooling"):
        BertClassifier(BertEncoder(**CONFIG), num_classes=2, pooling="max")
    with pytest.raises(ValueError, match="divisible"):
        BertEncoder(**{**CONFIG, "num_heads": 3})


def test_segments_add_an_embedding(rng):
    encoder = BertEncoder(**CONFIG, num_segments=2)
    ids = _ids(rng, 1, 6)
    first = encoder(ids, segment_ids=np.zeros((1, 6), "int32")).numpy()
    np.testing.assert_allclose(encoder(ids).numpy(), first, atol=1e-6)
    second = encoder({"token_ids": ids, "segment_ids": np.ones((1, 6), "int32")}).numpy()
    assert np.abs(second - first).max() > 1e-4


def test_the_head_at_mask_positions_equals_the_full_logits_there(rng):
    model = BertMaskedLM(BertEncoder(**CONFIG))
    ids = _ids(rng, 2, 10)
    positions = np.array([[1, 4, 7], [9, 0, 2]], "int32")
    full = model(ids).numpy()
    picked = model({"token_ids": ids, "mask_positions": positions}).numpy()
    np.testing.assert_allclose(picked, np.take_along_axis(full, positions[..., None], 1),
                               atol=1e-5)


def test_shaped_like_copies_the_settings_but_not_the_weights(rng):
    source = BertMaskedLM(BertEncoder(**CONFIG, seed=1))
    ids = _ids(rng)
    source(ids)
    fresh = BertClassifier.shaped_like(source, num_classes=3, seed=2)
    assert fresh.encoder.encoder_settings() == source.encoder.encoder_settings()
    fresh(ids)
    table = source.encoder.token_embedding.embeddings.numpy()
    assert not np.allclose(fresh.encoder.token_embedding.embeddings.numpy(), table)


def test_a_rotary_encoder_sees_relative_positions_only(rng):
    """With rotary embeddings (no position table) a sequence's outputs do not depend on
    where it starts: shifting every position changes nothing, reversing the words does."""
    encoder = BertEncoder(**CONFIG, position_encoding="rotary")
    assert encoder.position_embedding is None
    ids = _ids(rng, 2, 8)
    outputs = encoder(ids).numpy()
    reversed_ids = np.concatenate([ids[:, :1], ids[:, 1:][:, ::-1]], axis=1)
    assert not np.allclose(encoder(reversed_ids).numpy()[:, 1:][:, ::-1], outputs[:, 1:],
                           atol=1e-3)
    block = encoder.blocks[0]
    x = rng.normal(size=(2, 8, 16)).astype("float32")
    np.testing.assert_allclose(block(x, start_index=0), block(x, start_index=30), atol=1e-4)
