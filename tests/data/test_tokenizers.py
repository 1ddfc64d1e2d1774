import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfllm.data import CharacterTokenizer, load_shakespeare

TEXT = "Fair is foul, and foul is fair: — café ☕"


@pytest.fixture
def tokenizer():
    return CharacterTokenizer.from_texts([TEXT])


def _python_ids(tokenizer, text):
    """Ids by the definition: vocabulary[i] has id i + 2, anything else is 1."""
    ids_of = {character: index + 2 for index, character in enumerate(tokenizer.vocabulary)}
    return [ids_of.get(character, 1) for character in text]


def test_from_texts_orders_by_count_then_character():
    tokenizer = CharacterTokenizer.from_texts(["abbccc", "dd", "b"])
    # b and c are tied at 3, then d at 2, then a.
    assert tokenizer.vocabulary == ["b", "c", "d", "a"]
    assert tokenizer.vocabulary_size == 6


def test_from_texts_limits_vocabulary_by_size_and_count():
    assert CharacterTokenizer.from_texts("abbccc", max_vocabulary_size=4).vocabulary == ["c", "b"]
    assert CharacterTokenizer.from_texts("abbccc", min_count=2).vocabulary == ["c", "b"]


def test_tokenize_gives_the_defined_ids_and_round_trips(tokenizer):
    ids = tokenizer.tokenize(TEXT)
    assert ids.dtype == tf.int32 and ids.shape == (len(TEXT),)
    assert ids.numpy().tolist() == _python_ids(tokenizer, TEXT)
    assert tokenizer.detokenize(ids).numpy().decode("utf-8") == TEXT


def test_unknown_characters_map_to_id_one_and_back_to_the_replacement_character(tokenizer):
    ids = tokenizer.tokenize("fairz☃").numpy()
    assert ids[-2:].tolist() == [1, 1]
    assert tokenizer.detokenize(ids).numpy().decode("utf-8") == "fair\ufffd\ufffd"


def test_batch_of_strings_gives_ragged_ids(tokenizer):
    strings = ["foul", "", "is fair ☕"]
    ids = tokenizer(strings)
    assert isinstance(ids, tf.RaggedTensor)
    assert ids.row_lengths().numpy().tolist() == [len(s) for s in strings]
    assert ids.to_list() == [_python_ids(tokenizer, s) for s in strings]
    assert [s.decode("utf-8") for s in tokenizer.detokenize(ids).numpy()] == strings


def test_detokenize_drops_padding_of_dense_batches(tokenizer):
    dense = tokenizer.tokenize(["fair", "is"]).to_tensor(default_value=0)
    assert dense.shape == (2, 4)
    assert tokenizer.detokenize(dense).numpy().tolist() == [b"fair", b"is"]


def test_tokenize_and_detokenize_run_inside_tf_function(tokenizer):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def round_trip(strings):
        ids = tokenizer.tokenize(strings)
        return ids.to_tensor(), tokenizer.detokenize(ids)

    padded_ids, texts = round_trip(tf.constant(["fair", "foul is"]))
    assert padded_ids.shape == (2, 7)
    assert texts.numpy().tolist() == [b"fair", b"foul is"]


def test_tokenizer_works_in_a_tf_data_pipeline(tokenizer):
    dataset = tf.data.Dataset.from_tensor_slices(["fair", "foul"]).map(tokenizer.tokenize)
    assert [ids.numpy().tolist() for ids in dataset] == [
        _python_ids(tokenizer, "fair"), _python_ids(tokenizer, "foul")
    ]


def test_tokenizer_survives_saved_model_export(tokenizer, tmp_path):
    module = tf.Module()
    module.tokenizer = tokenizer
    module.tokenize = tf.function(
        lambda strings: tokenizer.tokenize(strings).to_tensor(),
        input_signature=[tf.TensorSpec([None], tf.string)],
    )
    tf.saved_model.save(module, str(tmp_path / "exported"))
    restored = tf.saved_model.load(str(tmp_path / "exported"))
    expected = tokenizer.tokenize(["café", "z"]).to_tensor().numpy()
    np.testing.assert_array_equal(restored.tokenize(tf.constant(["café", "z"])).numpy(), expected)


def test_config_round_trips_through_keras_serialization(tokenizer):
    config = keras.saving.serialize_keras_object(tokenizer)
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(config)))
    assert isinstance(restored, CharacterTokenizer)
    assert restored.vocabulary == tokenizer.vocabulary
    assert CharacterTokenizer.from_config(tokenizer.get_config()).vocabulary == tokenizer.vocabulary
    np.testing.assert_array_equal(restored.tokenize(TEXT), tokenizer.tokenize(TEXT))


def test_save_and_load_round_trip_a_readable_json_file(tokenizer, tmp_path):
    path = tokenizer.save(tmp_path / "run" / "tokenizer.json")
    content = path.read_text(encoding="utf-8")
    assert "☕" in content  # characters stay readable, not \\u escapes
    assert json.loads(content)["vocabulary"] == tokenizer.vocabulary
    restored = CharacterTokenizer.load(path)
    assert restored.vocabulary == tokenizer.vocabulary


def test_fast_encode_matches_in_graph_tokenize_on_a_play():
    play = load_shakespeare().validation[0].text + "unknown: ☃ 𝄞 \ufffd"
    tokenizer = CharacterTokenizer.from_texts(play[:20000])
    fast_ids = tokenizer.encode_text(play)
    assert fast_ids.dtype == np.int32
    np.testing.assert_array_equal(fast_ids, tokenizer.tokenize(play).numpy())
    assert (fast_ids == 1).any()
    known_text = "".join(c for c in play if c in set(tokenizer.vocabulary))
    assert tokenizer.decode_ids(tokenizer.encode_text(known_text)) == known_text


def test_decode_ids_drops_padding_and_shows_unknown_ids(tokenizer):
    ids = tokenizer.encode_text("fair").tolist()
    assert tokenizer.decode_ids([0] + ids + [1, 999, 0]) == "fair\ufffd\ufffd"


@pytest.mark.parametrize(
    "vocabulary, message",
    [
        ([], "`vocabulary` is empty"),
        (["a", "b", "a"], "duplicate characters: \\['a'\\]"),
        (["a", "ab"], "must be single characters"),
        ("abc", "got a string"),
    ],
)
def test_invalid_vocabulary_is_rejected(vocabulary, message):
    with pytest.raises(ValueError, match=message):
        CharacterTokenizer(vocabulary)


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"max_vocabulary_size": 2}, "`max_vocabulary_size` must be an integer above 2"),
        ({"min_count": 0}, "`min_count` must be a positive integer"),
        ({"min_count": 5}, "vocabulary would be empty"),
    ],
)
def test_from_texts_rejects_bad_limits(arguments, message):
    with pytest.raises(ValueError, match=message):
        CharacterTokenizer.from_texts(["abc"], **arguments)


def test_load_rejects_a_file_that_is_not_a_tokenizer(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"vocabulary": ["a"]}', encoding="utf-8")
    with pytest.raises(ValueError, match="is not a tokenizer file"):
        CharacterTokenizer.load(path)


def test_tokenize_rejects_rank_two_strings(tokenizer):
    with pytest.raises(ValueError, match="scalar string or a 1-D batch"):
        tokenizer.tokenize([["a"], ["b"]])
