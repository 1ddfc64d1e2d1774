import keras
import numpy as np
import pytest
import tensorflow as tf

from tfllm.data import CharacterTokenizer, Document, encode_documents, language_model_dataset


def _collect(dataset):
    """All (inputs, targets) rows of one pass, as NumPy arrays in dataset order."""
    inputs, targets = zip(*((x.numpy(), y.numpy()) for x, y in dataset))
    return np.concatenate(inputs), np.concatenate(targets)


def test_targets_are_the_stream_shifted_by_one():
    stream = np.random.default_rng(0).integers(0, 50, size=1000)
    inputs, targets = _collect(language_model_dataset(stream, 16, 4, shuffle=False))
    for row, (row_inputs, row_targets) in enumerate(zip(inputs, targets)):
        start = row * 16
        np.testing.assert_array_equal(row_inputs, stream[start : start + 16])
        np.testing.assert_array_equal(row_targets, stream[start + 1 : start + 17])


def test_evaluation_windows_cover_the_stream_in_order():
    stream = np.arange(1001)  # (1001 - 1) / 10 = 100 windows exactly
    inputs, targets = _collect(
        language_model_dataset(stream, 10, 7, shuffle=False, drop_remainder=False)
    )
    assert inputs.shape == (100, 10)
    np.testing.assert_array_equal(targets.reshape(-1), stream[1:])
    np.testing.assert_array_equal(inputs.reshape(-1), stream[:-1])


def test_evaluation_drops_the_partial_window_and_with_drop_remainder_the_partial_batch():
    stream = np.arange(1006)  # 100 full windows of 10 targets, 5 tokens left over
    dataset = language_model_dataset(stream, 10, 7, shuffle=False, drop_remainder=True)
    inputs, _ = _collect(dataset)
    assert inputs.shape == (98, 10)  # 14 batches of 7; the 2 windows left are dropped
    assert dataset.cardinality().numpy() == 14
    assert dataset.element_spec[0].shape == (7, 10)
    assert dataset.element_spec[0].dtype == tf.int32


def test_training_windows_are_true_slices_of_the_stream():
    stream = np.arange(5000)  # token value = position, so each row shows where it was cut
    inputs, targets = _collect(language_model_dataset(stream, 32, 8, seed=1))
    starts = inputs[:, 0]
    np.testing.assert_array_equal(inputs, starts[:, None] + np.arange(32))
    np.testing.assert_array_equal(targets, inputs + 1)
    # One pass: one offset, no window twice.
    assert len(set(starts % 32)) == 1
    assert len(set(starts)) == len(starts)


def test_shuffled_passes_differ_but_repeat_with_the_same_seed():
    stream = np.arange(3000)

    def first_inputs_of_two_passes(seed):
        dataset = language_model_dataset(stream, 16, 4, seed=seed)
        return [_collect(dataset)[0][:, 0] for _ in range(2)]

    first_pass, second_pass = first_inputs_of_two_passes(seed=42)
    assert len(first_pass) == len(second_pass)
    assert not np.array_equal(first_pass, second_pass)
    again_first, again_second = first_inputs_of_two_passes(seed=42)
    np.testing.assert_array_equal(first_pass, again_first)
    np.testing.assert_array_equal(second_pass, again_second)
    other_first, _ = first_inputs_of_two_passes(seed=43)
    assert not np.array_equal(first_pass, other_first)


def test_training_pass_has_the_declared_number_of_batches():
    stream = np.arange(2000)
    dataset = language_model_dataset(stream, 16, 4, seed=0)
    # Largest offset 15: (2000 - 1 - 15) // 16 = 124 windows -> 31 batches, in every pass.
    assert dataset.cardinality().numpy() == 31
    assert [sum(1 for _ in dataset) for _ in range(3)] == [31, 31, 31]


def test_repeated_training_dataset_draws_new_offsets():
    stream = np.arange(1000)
    dataset = language_model_dataset(stream, 10, 9, seed=5, repeat=True)
    # 99 windows per pass = 11 batches: take 5 passes' worth.
    inputs = np.concatenate([x.numpy() for x, _ in dataset.take(55)])
    offsets_of_passes = {int(inputs[pass_index * 99, 0] % 10) for pass_index in range(5)}
    assert len(offsets_of_passes) > 1


def test_short_stream_keeps_at_least_one_window_per_pass():
    stream = np.arange(12)  # exactly one window of 11 tokens plus one spare
    for _ in range(3):
        inputs, targets = _collect(language_model_dataset(stream, 10, 1))
        assert inputs.shape == (1, 10)
        np.testing.assert_array_equal(targets, inputs + 1)


def test_dataset_feeds_model_fit():
    stream = np.random.default_rng(1).integers(0, 20, size=600).astype("int64")
    dataset = language_model_dataset(stream, 8, 4, seed=1)
    model = keras.Sequential([keras.Input((8,), dtype="int32"), keras.layers.Embedding(20, 20)])
    model.compile(
        optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    history = model.fit(dataset, epochs=2, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 2


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"token_ids": np.arange(5), "sequence_length": 8},
         "holds 5 tokens, fewer than one window of `sequence_length` \\+ 1 = 9 tokens"),
        ({"sequence_length": 0}, "`sequence_length` must be a positive integer"),
        ({"batch_size": -2}, "`batch_size` must be a positive integer"),
        ({"batch_size": 2.0}, "`batch_size` must be a positive integer"),
        ({"token_ids": np.linspace(0, 1, 100)}, "`token_ids` must hold integers; got dtype float64"),
        ({"token_ids": tf.zeros([100], tf.float32)}, "`token_ids` must hold integers"),
        ({"token_ids": np.zeros([10, 10], np.int32)}, "`token_ids` must be a 1-D token stream"),
        ({"token_ids": np.arange(30), "batch_size": 4},
         "2 window\\(s\\) .* fewer than `batch_size` = 4"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_the_problem(arguments, message):
    arguments = {"token_ids": np.arange(100), "sequence_length": 8, "batch_size": 2, **arguments}
    with pytest.raises(ValueError, match=message):
        language_model_dataset(**arguments)


def test_encode_documents_joins_texts_with_the_separator():
    tokenizer = CharacterTokenizer(list("abc:\n"))
    documents = [Document("one", "a:\nb\n"), Document("two", "c\n")]
    ids = encode_documents(tokenizer, documents)
    np.testing.assert_array_equal(ids, tokenizer.encode_text("a:\nb\n\nc\n"))
    assert ids.dtype == np.int32
    assert encode_documents(tokenizer, []).shape == (0,)
