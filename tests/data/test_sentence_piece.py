import keras_hub
import pytest
import tensorflow as tf

from tfllm.data import SentencePieceTokenizer, build_tokenizer, load_tokenizer

TRAINING_TEXT = [
    "To be, or not to be, that is the question:\n"
    "Whether 'tis nobler in the mind to suffer\n"
    "  The slings and arrows of outrageous fortune,\n\n"
    "Or to take arms against a sea of troubles\n",
    "Fair is foul, and foul is fair: café, naïve, 1599.\n",
] * 4

#: Runs of spaces and newlines (NFKC would collapse them), characters never seen in
#: training (they fall back to bytes), the empty text.
TEXTS = ["To be, or not to be", "a\n\n\nb  two  spaces\t tab  ", "日本語 🙂 Ωμέγα zebra", ""]


@pytest.fixture(scope="module")
def trained_proto():
    return build_tokenizer("sentencepiece", TRAINING_TEXT, vocabulary_size=300)._proto


@pytest.fixture
def tokenizer(trained_proto):
    """A tokenizer of its own per test: the in-graph op's resource belongs to the eager
    context, which other tests in the same worker may reset (`clear_session`)."""
    return SentencePieceTokenizer(trained_proto)


def test_round_trip_keeps_whitespace_and_unseen_characters(tokenizer):
    ids = tokenizer.tokenize(TEXTS)
    back = [text.decode("utf-8") for text in tokenizer.detokenize(ids).numpy()]
    assert back == TEXTS
    assert [tokenizer.decode_ids(tokenizer.encode_text(text)) for text in TEXTS] == TEXTS
    assert [tokenizer.encode_text(text).tolist() for text in TEXTS] == ids.to_list()
    assert tokenizer.unknown_id not in ids.flat_values.numpy()  # bytes, never unknown
    assert tokenizer.detokenize(tokenizer.tokenize(TEXTS[1])).numpy().decode() == TEXTS[1]


def test_ids_equal_keras_hub_sentence_piece_tokenizer_for_the_same_proto(tokenizer):
    theirs = keras_hub.tokenizers.SentencePieceTokenizer(proto=tokenizer.proto)
    in_graph = tf.function(theirs.tokenize)(tf.constant(TEXTS)).to_list()
    assert tokenizer.tokenize(TEXTS).to_list() == in_graph
    assert tokenizer.vocabulary_size == theirs.vocabulary_size() == 300
    assert tokenizer.vocabulary[:2] == ["<pad>", "<unk>"]


def test_save_and_load_keep_the_ids(tokenizer, tmp_path):
    loaded = load_tokenizer(tokenizer.save(tmp_path / "tokenizer.json"))
    assert isinstance(loaded, SentencePieceTokenizer) and loaded.proto == tokenizer.proto
    assert [loaded.encode_text(text).tolist() for text in TEXTS] == \
        [tokenizer.encode_text(text).tolist() for text in TEXTS]


def test_vocabulary_size_below_the_fixed_pieces_is_named():
    with pytest.raises(ValueError, match="above 258"):
        SentencePieceTokenizer.from_texts(TRAINING_TEXT, vocabulary_size=200)
    with pytest.raises(ValueError, match="below the 259"):
        build_tokenizer("sentencepiece", TRAINING_TEXT, vocabulary_size=258)
