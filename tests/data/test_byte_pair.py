import json

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from tfllm.data import BytePairTokenizer, load_tokenizer
from tfllm.data.byte_pair import END_OF_TEXT

TRAINING_TEXT = [
    "To be, or not to be, that is the question:\n"
    "Whether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune,\n\n"
    "Or to take arms against a sea of troubles\n",
    "Fair is foul, and foul is fair: café, naïve, 1599, don't, I'LL.\n",
] * 3

#: Texts where GPT-2's splitting has corners: runs of spaces and newlines, contractions,
#: digits, non-ASCII letters and emoji, the special token, words never seen in training.
TEXTS = [
    "To be, or not to be",
    "a\n\n\nb  two  spaces   x\t\ttab end   ",
    " \n \n leading space",
    "don't I'LL 1234567 x1y2",
    "naïve café 日本語 🙂 Ωμέγα",
    "before<|endoftext|>after",
    "zebra quokka xylophone",
    "",
]


@pytest.fixture(scope="module")
def tokenizer():
    return BytePairTokenizer.from_texts(TRAINING_TEXT, vocabulary_size=300)


@pytest.fixture(scope="module")
def gpt2_files(tokenizer, tmp_path_factory):
    """The tokenizer written as GPT-2's own two files."""
    folder = tmp_path_factory.mktemp("gpt2")
    (folder / "vocab.json").write_text(json.dumps(tokenizer.vocabulary), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(tokenizer.merges) + "\n", encoding="utf-8")
    return folder / "vocab.json", folder / "merges.txt"


def test_from_texts_reserves_padding_and_every_byte(tokenizer):
    assert tokenizer.padding_id == tokenizer.vocabulary[END_OF_TEXT] == 0
    assert 257 < tokenizer.vocabulary_size <= 300
    assert tokenizer.vocabulary_size == len(tokenizer.vocabulary)


def test_ids_equal_keras_hub_gpt2_tokenizer_for_the_same_files(gpt2_files):
    ours = BytePairTokenizer.from_files(*gpt2_files)
    theirs = keras_hub.tokenizers.GPT2Tokenizer(
        vocabulary=str(gpt2_files[0]), merges=str(gpt2_files[1]))
    # KerasHub has two code paths: TensorFlow ops while tracing, the `tokenizers` package
    # eagerly. Both must agree with ours.
    in_graph = tf.function(theirs.tokenize)(tf.constant(TEXTS)).to_list()
    eager = [list(row) for row in theirs.tokenize(TEXTS)]
    assert ours.tokenize(TEXTS).to_list() == in_graph == eager
    assert [ours.encode_text(text).tolist() for text in TEXTS] == in_graph
    assert ours.tokenize("before<|endoftext|>after").numpy().tolist().count(ours.padding_id) == 1


def test_round_trip_text_ids_text_with_non_ascii(tokenizer):
    ids = tokenizer.tokenize(TEXTS)
    assert ids.dtype == tf.int32
    back = [text.decode("utf-8") for text in tokenizer.detokenize(ids).numpy()]
    # The padding token is dropped on the way back, like padding.
    assert back == [text.replace(END_OF_TEXT, "") for text in TEXTS]
    for text in TEXTS:
        assert tokenizer.decode_ids(tokenizer.encode_text(text)) == text.replace(END_OF_TEXT, "")
    scalar = tokenizer.tokenize(TEXTS[4])
    assert scalar.shape.rank == 1
    assert tokenizer.detokenize(scalar).numpy().decode("utf-8") == TEXTS[4]


def test_invalid_utf8_and_partial_characters_become_replacement_characters(tokenizer):
    ids = tokenizer.tokenize(tf.constant([b"bad \xff\xfe bytes", b"\xe6\x97"]))
    back = [text.decode("utf-8") for text in tokenizer.detokenize(ids).numpy()]
    assert back == ["bad \ufffd\ufffd bytes", "\ufffd"]
    # Half of a three-byte character: both decoders show U+FFFD instead of failing.
    half = tokenizer.encode_text("日")[:1]
    assert len(tokenizer.encode_text("日")) == 3
    assert tokenizer.decode_ids(half) == "\ufffd"
    assert tokenizer.detokenize(half).numpy().decode("utf-8") == "\ufffd"
    assert tokenizer.decode_ids(np.array([tokenizer.vocabulary_size + 5], np.int32)) == ""


def test_tokenize_runs_inside_tf_data(tokenizer):
    dataset = tf.data.Dataset.from_tensor_slices(TEXTS[:3]).batch(3).map(tokenizer.tokenize)
    assert next(iter(dataset)).to_list() == tokenizer.tokenize(TEXTS[:3]).to_list()


def test_save_load_and_keras_serialization_keep_the_ids(tokenizer, tmp_path):
    path = tokenizer.save(tmp_path / "tokenizer.json")
    loaded = load_tokenizer(path)
    assert isinstance(loaded, BytePairTokenizer)
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(tokenizer))
    for other in (loaded, revived):
        assert other.vocabulary == tokenizer.vocabulary and other.merges == tokenizer.merges
        assert other.tokenize(TEXTS).to_list() == tokenizer.tokenize(TEXTS).to_list()


def test_bad_arguments_name_the_problem(tokenizer, gpt2_files, tmp_path):
    with pytest.raises(ValueError, match="above 257"):
        BytePairTokenizer.from_texts(TRAINING_TEXT, vocabulary_size=200)
    with pytest.raises(FileNotFoundError, match="merges.txt"):
        BytePairTokenizer.from_files(gpt2_files[0], tmp_path / "merges.txt")
    with pytest.raises(ValueError, match="merge rule"):
        BytePairTokenizer(tokenizer.vocabulary, ["Ġ nowhere"])
    vocabulary = dict(tokenizer.vocabulary)
    del vocabulary["Ġ"]
    with pytest.raises(ValueError, match="byte symbols"):
        BytePairTokenizer(vocabulary, [])
    with pytest.raises(ValueError, match="padding_token"):
        BytePairTokenizer(tokenizer.vocabulary, tokenizer.merges, padding_token="<pad>")
