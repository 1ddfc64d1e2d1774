"""WordPiece tokenizer, text normalisation, the genre split and the BERT datasets."""

import numpy as np
import pytest
import tensorflow as tf

from tfllm.data import (
    CharacterTokenizer,
    Document,
    SPECIAL_TOKENS,
    WordPieceTokenizer,
    classification_dataset,
    encode_pieces,
    load_tokenizer,
    masked_lm_dataset,
    normalize_text,
    split_by_genre,
)

TEXT = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to "
        "suffer the slings and arrows of outrageous fortune, or to take arms against a sea "
        "of troubles. ") * 3


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer.from_texts([TEXT, "Now is the winter of our discontent."],
                                         vocabulary_size=120)


def test_special_tokens_have_fixed_ids(tokenizer):
    assert tokenizer.vocabulary[:5] == list(SPECIAL_TOKENS)
    assert (tokenizer.padding_id, tokenizer.unknown_id, tokenizer.cls_id, tokenizer.sep_id,
            tokenizer.mask_id) == (0, 1, 2, 3, 4)
    assert tokenizer.vocabulary_size <= 120


def test_pieces_rebuild_the_lower_cased_words(tokenizer):
    text = "To be, or not to be: the question."
    ids = tokenizer.tokenize([text])
    assert ids.dtype == tf.int32
    # Pieces of a word join up again ("##" continues a word); punctuation is split off.
    words = tokenizer.detokenize(ids)[0].numpy().decode()
    assert words.replace(" ##", "") == "to be , or not to be : the question ."
    assert tokenizer.unknown_id not in ids.flat_values.numpy()
    # A word it never saw falls back to pieces, or to [UNK] when no piece fits.
    assert tokenizer.tokenize(["zzyzx"]).flat_values.numpy().size >= 1


def test_encode_adds_cls_sep_and_padding_and_truncates_long_texts(tokenizer):
    short, long = "to be", " ".join(["question"] * 50)
    ids, truncated = tokenizer.encode(tf.constant([short, long, ""]), sequence_length=12)
    ids = ids.numpy()
    pieces = tokenizer.tokenize([short])[0].numpy()
    np.testing.assert_array_equal(
        ids[0], [2, *pieces, 3] + [0] * (12 - len(pieces) - 2))
    assert ids[1, 0] == 2 and ids[1, -1] == 3 and 0 not in ids[1]  # first 10 pieces kept
    np.testing.assert_array_equal(ids[1, 1:-1], tokenizer.tokenize([long])[0].numpy()[:10])
    np.testing.assert_array_equal(ids[2], [2, 3] + [0] * 10)  # empty: [CLS] [SEP]
    assert truncated.numpy().tolist() == [False, True, False]


def test_save_and_load_give_the_same_ids(tokenizer, tmp_path):
    path = tokenizer.save(tmp_path / "tokenizer.json")
    again = load_tokenizer(path)
    assert isinstance(again, WordPieceTokenizer) and again.vocabulary == tokenizer.vocabulary
    np.testing.assert_array_equal(again.tokenize([TEXT]).flat_values.numpy(),
                                  tokenizer.tokenize([TEXT]).flat_values.numpy())
    characters = CharacterTokenizer.from_texts(["abc"]).save(tmp_path / "characters.json")
    assert isinstance(load_tokenizer(characters), CharacterTokenizer)


def test_a_vocabulary_no_larger_than_the_special_tokens_is_refused():
    with pytest.raises(ValueError, match="larger than the 5 special tokens"):
        WordPieceTokenizer.from_texts([TEXT], vocabulary_size=5)
    with pytest.raises(ValueError, match="texts are empty"):
        WordPieceTokenizer.from_texts(["", "  "], vocabulary_size=100)
    with pytest.raises(ValueError, match="must hold the special tokens"):
        WordPieceTokenizer(["a", "b"])


def test_normalize_text_lower_cases_drops_punctuation_and_stop_words():
    assert normalize_text("Thou art a VILLAIN, sir! O'er 3 hills.") == \
        "thou art a villain sir o'er hills"
    assert normalize_text("Thou art a villain, sir!", remove_stop_words=True) == "villain sir"
    assert normalize_text("Keep, Case", lowercase=False, strip_punctuation=False) == "Keep, Case"


def _plays(count_per_genre):
    return [Document(f"{genre}-{index}", f"text of {genre} {index}", genre)
            for genre in ("comedies", "histories", "tragedies", "roman")
            for index in range(count_per_genre)]


def test_the_genre_split_holds_out_every_class_and_no_play_twice():
    corpus = split_by_genre(_plays(4), validation_per_class=1, test_per_class=1, seed=3)
    names = {split: set(corpus.names(split)) for split in ("train", "validation", "test")}
    assert not (names["train"] & names["validation"]) and not (names["train"] & names["test"])
    assert not (names["validation"] & names["test"])
    assert sum(map(len, names.values())) == 16
    # comedy, history and tragedy (tragedies + roman) each in both held-out splits.
    for split in ("validation", "test"):
        genres = {document.genre for document in corpus.documents(split)}
        assert {"comedies", "histories"} <= genres and genres & {"tragedies", "roman"}
    assert split_by_genre(_plays(4), 1, 1, seed=3).names("test") == corpus.names("test")
    with pytest.raises(ValueError, match="would leave none for training"):
        split_by_genre(_plays(2), validation_per_class=1, test_per_class=1)


def test_masked_lm_batches_are_cls_pieces_sep_and_reproducible(tokenizer):
    stream = encode_pieces(tokenizer, [TEXT] * 20)
    data = masked_lm_dataset(stream, tokenizer, sequence_length=16, batch_size=8, seed=5)
    inputs, labels, weights = next(iter(data))
    assert inputs.shape == labels.shape == weights.shape == (8, 16)
    assert (labels[:, 0].numpy() == 2).all() and (labels[:, -1].numpy() == 3).all()
    # Each row's pieces are 14 consecutive pieces of the stream.
    text = " ".join(map(str, stream))
    for row in labels.numpy():
        assert " ".join(map(str, row[1:-1])) in text
    selected = weights.numpy() > 0
    assert not selected[:, [0, -1]].any()
    np.testing.assert_array_equal(inputs.numpy()[~selected], labels.numpy()[~selected])
    again = next(iter(masked_lm_dataset(stream, tokenizer, 16, 8, seed=5)))
    np.testing.assert_array_equal(again[0], inputs)
    with pytest.raises(ValueError, match="fewer than one sequence"):
        masked_lm_dataset(stream[:5], tokenizer, sequence_length=16, batch_size=1)


def test_classification_batches_and_bad_labels(tokenizer):
    data = classification_dataset(["to be", "or not"], [0, 2], tokenizer, 8, batch_size=2)
    ids, labels = next(iter(data))
    assert ids.shape == (2, 8) and labels.numpy().tolist() == [0, 2]
    with pytest.raises(ValueError, match=r"Texts \[1\] are empty"):
        classification_dataset(["to be", " "], [0, 1], tokenizer, 8, 2)
    with pytest.raises(ValueError, match="class ids"):
        classification_dataset(["to be"], [-1], tokenizer, 8, 2)
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        classification_dataset(["a", "b"], [0], tokenizer, 8, 2)


def test_masked_lm_positions_hold_every_selected_piece(tokenizer):
    stream = encode_pieces(tokenizer, [TEXT] * 20)
    full = next(iter(masked_lm_dataset(stream, tokenizer, 32, 8, seed=2)))
    packed = next(iter(masked_lm_dataset(stream, tokenizer, 32, 8, seed=2, max_predictions=12)))
    inputs, labels, weights = packed
    np.testing.assert_array_equal(inputs["token_ids"], full[0])
    for row in range(8):
        selected = np.flatnonzero(full[2][row].numpy())
        count = min(len(selected), 12)
        np.testing.assert_array_equal(inputs["mask_positions"][row, :count], selected[:count])
        np.testing.assert_array_equal(labels[row, :count], full[1].numpy()[row, selected[:count]])
        assert weights[row].numpy().sum() == count
