"""BERT folders in Hugging Face's format → tfllm runs, checked against KerasHub's own loader of
the same folder (encoder, pooler, tokenizer) and a NumPy BERT (exact GELU, masked-LM head)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file

from tests.convert.checkpoints import write_bert_folder
from tests.convert.references import bert_masked_lm_logits
from tfllm.convert import convert_checkpoint
from tfllm.models import BertClassifier
from tfllm.runs import RunDirectory

TEXTS = ["The king is not a play.", "Good night, sweet prince!", "to be or not to be?"]


def _inputs(vocabulary_size, seed=0):
    ids = np.random.default_rng(seed).integers(6, vocabulary_size, (2, 10)).astype("int32")
    mask = np.ones_like(ids, bool)
    mask[1, 6:] = False
    ids[~mask] = 0
    return ids, mask


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A tiny BERT folder (tanh GELU: KerasHub's BertBackbone has no other), its run, and
    KerasHub's `BertMaskedLM` of the folder (whose loader ports the encoder and pooler;
    its masked-LM head starts random)."""
    import keras_hub

    root = tmp_path_factory.mktemp("bert")
    config = write_bert_folder(root / "folder", hidden_act="gelu_new")
    run, report = convert_checkpoint(root / "folder", root / "run")
    theirs = keras_hub.models.BertMaskedLM.from_preset(str(root / "folder"))
    return {"root": root, "config": config, "run": run, "report": report, "theirs": theirs}


def test_encoder_and_pooler_match_keras_hub(converted):
    model = keras.saving.load_model(converted["run"].model_file)
    ids, mask = _inputs(converted["config"]["vocab_size"])
    expected = converted["theirs"].backbone(
        {"token_ids": ids, "padding_mask": mask, "segment_ids": np.zeros_like(ids)})
    hidden = model.encoder({"token_ids": ids, "padding_mask": mask})
    np.testing.assert_allclose(np.asarray(hidden)[mask],
                               np.asarray(expected["sequence_output"])[mask], atol=1e-4)
    np.testing.assert_allclose(np.asarray(model.encoder.pool(hidden)),
                               np.asarray(expected["pooled_output"]), atol=1e-4)
    assert converted["report"]["pooler"] and converted["report"]["masked_lm_head"]


def test_word_piece_ids_match_keras_hubs_bert_tokenizer(converted):
    tokenizer = converted["run"].tokenizer()
    theirs = converted["theirs"].preprocessor.tokenizer
    assert tokenizer.tokenize(TEXTS).to_list() == [np.asarray(ids).tolist()
                                                   for ids in theirs(TEXTS)]
    # The special tokens are where vocab.txt has them, not at tfllm's own 0-4.
    assert (tokenizer.padding_id, tokenizer.unknown_id, tokenizer.cls_id, tokenizer.sep_id,
            tokenizer.mask_id) == (0, 2, 3, 4, 5)
    ids, _ = tokenizer.encode(["good night"], sequence_length=6)
    assert ids.numpy().tolist()[0][0] == 3 and ids.numpy().tolist()[0][3:] == [4, 0, 0]


def test_masked_lm_logits_with_exact_gelu_match_a_numpy_bert(tmp_path):
    config = write_bert_folder(tmp_path / "folder", seed=5)  # hidden_act "gelu": exact
    run, report = convert_checkpoint(tmp_path / "folder", tmp_path / "run")
    model = keras.saving.load_model(run.model_file)
    ids, mask = _inputs(config["vocab_size"], seed=1)
    logits = np.asarray(model({"token_ids": ids, "padding_mask": mask}))
    expected = bert_masked_lm_logits(load_file(tmp_path / "folder" / "model.safetensors"),
                                     config, ids, mask)
    assert logits.shape == (2, 10, config["vocab_size"])
    np.testing.assert_allclose(logits[mask], expected[mask], atol=1e-4)


def test_a_classifier_fine_tunes_from_the_converted_run(converted):
    classifier = BertClassifier.from_pretrained(RunDirectory(converted["run"].path),
                                                num_classes=2, dropout=0.0)
    masked_lm = converted["run"].load_model()
    ids, mask = _inputs(converted["config"]["vocab_size"], seed=2)
    np.testing.assert_allclose(
        np.asarray(classifier.encoder.pool(classifier.encoder(ids))),
        np.asarray(masked_lm.encoder.pool(masked_lm.encoder(ids))), atol=1e-6)
    # A few eager steps (fit's first trace costs tens of seconds here, and proves nothing
    # more): every encoder weight, the pooler's among them, gets a gradient.
    optimizer = keras.optimizers.Adam(1e-2)
    loss_function = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    labels = np.array([0, 1])
    losses = []
    for _ in range(4):
        with tf.GradientTape() as tape:
            loss = loss_function(labels, classifier(ids, training=True))
        gradients = tape.gradient(loss, classifier.trainable_variables)
        assert all(gradient is not None for gradient in gradients)
        optimizer.apply(gradients, classifier.trainable_variables)
        losses.append(float(loss))
    assert losses[-1] < losses[0]


def test_lower_casing_follows_the_tokenizer_config(tmp_path):
    write_bert_folder(tmp_path / "folder", do_lower_case=False, prefix="", with_head=False)
    run, report = convert_checkpoint(tmp_path / "folder", tmp_path / "run")
    tokenizer = run.tokenizer()
    assert not tokenizer.lowercase
    assert tokenizer.tokenize(["Good night"]).to_list() == [[tokenizer.unknown_id,
                                                             tokenizer.vocabulary.index("night")]]
    assert report["masked_lm_head"] is False  # a BertModel's folder: the head starts fresh


def test_a_missing_vocabulary_is_named(tmp_path):
    write_bert_folder(tmp_path / "folder")
    (tmp_path / "folder" / "vocab.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no vocab.txt"):
        convert_checkpoint(tmp_path / "folder", tmp_path / "run")
