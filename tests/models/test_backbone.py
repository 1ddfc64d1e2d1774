"""TransformerBackbone: the stack the GPT and the BERT encoder share, and tasks that take it."""

import keras
import numpy as np
import pytest

from tfllm.models import GPT, BertClassifier, BertEncoder, BertMaskedLM, TransformerBackbone

SHAPE = {"vocabulary_size": 37, "max_length": 16, "num_layers": 2, "num_heads": 2,
         "hidden_dim": 16, "intermediate_dim": 32}


def test_gpt_and_bert_encoder_are_backbones_with_the_weights_of_a_plain_one(rng):
    ids = rng.integers(1, 37, size=(2, 9)).astype("int32")
    for model, causal in ((GPT(**SHAPE), True), (BertEncoder(**SHAPE, dropout=0.0), False)):
        assert isinstance(model, TransformerBackbone)
        model(ids)
        plain = TransformerBackbone(**SHAPE, causal=causal)
        plain(ids)
        assert [w.shape for w in plain.weights] == [w.shape for w in model.weights]
        plain.set_weights(model.get_weights())
        hidden = plain(ids).numpy()
        np.testing.assert_allclose(model.encode(ids).numpy(), hidden, atol=1e-6)
    # The GPT's head is the transposed token table (NumPy).
    gpt = model if isinstance(model, GPT) else None
    gpt = GPT(**SHAPE)
    logits = gpt(ids).numpy()
    table = gpt.token_embedding.embeddings.numpy()
    np.testing.assert_allclose(logits, gpt.encode(ids).numpy() @ table.T, atol=1e-5)


@pytest.mark.parametrize("causal", [True, False])
def test_a_causal_backbone_never_sees_later_tokens(rng, causal):
    backbone = TransformerBackbone(**SHAPE, causal=causal, position_encoding="rotary")
    ids = rng.integers(1, 37, size=(1, 10)).astype("int32")
    changed = ids.copy()
    changed[0, 7:] = (ids[0, 7:] % 36) + 1
    change = np.abs(backbone(changed).numpy()[0, :7] - backbone(ids).numpy()[0, :7]).max()
    assert (change < 1e-6) == causal


def test_segment_embeddings_change_the_states_and_are_refused_without_segments(rng):
    ids = rng.integers(1, 37, size=(1, 6)).astype("int32")
    backbone = TransformerBackbone(**SHAPE, num_segments=2)
    zero = backbone(ids).numpy()
    np.testing.assert_allclose(backbone(ids, segment_ids=np.zeros_like(ids)).numpy(), zero,
                               atol=1e-6)
    assert np.abs(backbone(ids, segment_ids=np.ones_like(ids)).numpy() - zero).max() > 1e-4
    with pytest.raises(ValueError, match="num_segments=0"):
        TransformerBackbone(**SHAPE)(ids, segment_ids=np.zeros_like(ids))


def test_bad_backbone_settings_are_named():
    with pytest.raises(ValueError, match="initialization"):
        TransformerBackbone(**SHAPE, initialization="xavier")
    with pytest.raises(ValueError, match="position_encoding"):
        BertEncoder(**SHAPE, position_encoding="sinusoidal")
    with pytest.raises(ValueError, match="num_segments"):
        TransformerBackbone(**SHAPE, num_segments=-1)


def test_tasks_take_their_encoder_and_say_so():
    with pytest.raises(TypeError, match=r"BertMaskedLM\(BertEncoder\("):
        BertMaskedLM(vocabulary_size=37)
    with pytest.raises(TypeError, match="takes its encoder"):
        BertClassifier(GPT(**SHAPE), num_classes=2)


def test_a_task_config_holds_its_serialised_encoder_and_old_flat_configs_load(rng):
    encoder = BertEncoder(**SHAPE, num_segments=2, position_encoding="rotary", seed=4)
    classifier = BertClassifier(encoder, num_classes=3, pooling="mean")
    ids = rng.integers(5, 37, size=(2, 8)).astype("int32")
    expected = classifier(ids).numpy()
    config = classifier.get_config()
    assert config["encoder"] == keras.saving.serialize_keras_object(encoder)
    again = BertClassifier.from_config(config)
    again(ids)
    again.set_weights(classifier.get_weights())
    np.testing.assert_allclose(again(ids).numpy(), expected, atol=1e-6)
    # The layout before the tasks took their encoder: its settings flat in the config.
    flat = {name: value for name, value in config.items() if name != "encoder"}
    flat.update({name: value for name, value in encoder.get_config().items()
                 if name not in ("name", "trainable", "dtype")})
    old = BertClassifier.from_config(flat)
    old(ids)
    assert old.encoder.shape_settings() == encoder.shape_settings()
    old.set_weights(classifier.get_weights())
    np.testing.assert_allclose(old(ids).numpy(), expected, atol=1e-6)


def test_shaped_like_and_from_pretrained_replace_dropout_and_seed(rng):
    source = BertMaskedLM(BertEncoder(**SHAPE, dropout=0.1, seed=1))
    ids = rng.integers(5, 37, size=(1, 8)).astype("int32")
    source(ids)
    pretrained = BertClassifier.from_pretrained(source, num_classes=2, dropout=0.0, seed=9)
    assert (pretrained.encoder.dropout, pretrained.encoder.seed) == (0.0, 9)
    assert pretrained.encoder is not source.encoder
    np.testing.assert_allclose(pretrained.encoder(ids).numpy(),
                               source.encoder(ids, training=False).numpy(), atol=1e-6)
