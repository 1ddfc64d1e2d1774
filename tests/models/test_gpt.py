import keras
import numpy as np
import pytest

from tfllm.models import GPT

POSITION_ENCODINGS = ["learned", "sinusoidal", "rotary"]


def _token_ids(rng, config, batch_size=2, length=None):
    length = length or config["max_length"]
    return rng.integers(1, config["vocabulary_size"], size=(batch_size, length)).astype("int32")


@pytest.mark.parametrize("position_encoding", POSITION_ENCODINGS)
def test_logits_at_t_never_depend_on_later_tokens(rng, tiny_gpt_config, position_encoding):
    model = GPT(**tiny_gpt_config, position_encoding=position_encoding)
    token_ids = _token_ids(rng, tiny_gpt_config)
    before = np.asarray(model(token_ids))
    assert before.shape == (2, 16, 37) and before.dtype == np.float32
    changed = token_ids.copy()
    changed[:, 9] = (changed[:, 9] + 5) % 37
    after = np.asarray(model(changed))
    np.testing.assert_allclose(before[:, :9], after[:, :9], atol=1e-5)
    assert not np.allclose(before[:, 9:], after[:, 9:])


def test_padding_never_leaks(rng, tiny_gpt_config):
    """Tokens at padded positions do not change the logits of real positions."""
    model = GPT(**tiny_gpt_config)
    token_ids = _token_ids(rng, tiny_gpt_config, length=10)
    padding_mask = np.ones_like(token_ids, bool)
    padding_mask[0, :3] = False  # left padding
    padding_mask[1, 7:] = False  # right padding
    before = np.asarray(model({"token_ids": token_ids, "padding_mask": padding_mask}))
    scrambled = token_ids.copy()
    scrambled[~padding_mask] = rng.integers(1, 37, size=(~padding_mask).sum())
    after = np.asarray(model(scrambled, padding_mask=padding_mask))
    np.testing.assert_allclose(before[padding_mask], after[padding_mask], atol=1e-5)


def test_untrained_loss_is_close_to_log_vocabulary(rng):
    vocabulary_size = 211
    model = GPT(vocabulary_size, max_length=32, num_layers=2, num_heads=2, hidden_dim=32)
    model.compile()
    stream = rng.integers(0, vocabulary_size, size=(8, 33)).astype("int32")
    loss = model.evaluate(stream[:, :-1], stream[:, 1:], verbose=0)
    assert abs(loss - np.log(vocabulary_size)) < 0.05


def test_fit_learns_a_repeating_pattern(tiny_gpt_config):
    """A sequence that repeats every 5 tokens is learnt far below ln(V)."""
    model = GPT(**tiny_gpt_config)
    model.compile(optimizer=keras.optimizers.AdamW(1e-2))
    stream = np.tile(np.array([3, 1, 4, 1, 5], "int32"), 60)
    windows = np.stack([stream[i : i + 17] for i in range(0, 240, 3)])
    # From GPT-2's small initial weights the model first learns the unigram frequencies
    # (a plateau at 1.33 nats) and leaves it after 12-18 epochs here.
    history = model.fit(windows[:, :-1], windows[:, 1:], epochs=30, batch_size=16, verbose=0)
    assert history.history["loss"][0] > 2.5
    # ln(37) = 3.6; the first position of a window is a guess among 5 tokens.
    assert history.history["loss"][-1] < 0.6


@pytest.mark.parametrize("position_encoding", POSITION_ENCODINGS)
def test_keras_file_round_trip(tmp_path, rng, tiny_gpt_config, position_encoding):
    model = GPT(**tiny_gpt_config, position_encoding=position_encoding, dropout=0.1)
    model.compile()
    token_ids = _token_ids(rng, tiny_gpt_config)
    expected = np.asarray(model(token_ids))
    path = tmp_path / "gpt.keras"
    model.save(path)
    restored = keras.saving.load_model(path)  # no custom_objects needed
    assert type(restored) is GPT
    assert restored.get_config() == model.get_config()
    np.testing.assert_allclose(restored(token_ids), expected, atol=1e-6)
    assert restored.compiled


def test_config_round_trip(tiny_gpt_config):
    model = GPT(**tiny_gpt_config, position_encoding="rotary", dropout=0.2, seed=3)
    config = model.get_config()
    for key, value in tiny_gpt_config.items():
        assert config[key] == value
    assert GPT.from_config(config).get_config() == config


def test_mixed_bfloat16_gives_float32_logits(rng, tiny_gpt_config):
    model = GPT(**tiny_gpt_config, dtype="mixed_bfloat16")
    logits = model(_token_ids(rng, tiny_gpt_config))
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    assert all(weight.dtype == "float32" for weight in model.weights)


def _greedy_by_hand(model, prompt, steps):
    """Greedy decoding the slow, obvious way: the whole sequence every step, no cache.

    Past max_length it follows `generate`'s documented policy: a full window
    restarts from its last max_length // 2 tokens.
    """
    sequence, start = prompt.copy(), 0
    for _ in range(steps):
        if sequence.shape[1] - start == model.max_length:
            start = sequence.shape[1] - model.max_length // 2
        logits = np.asarray(model(sequence[:, start:]))
        best = logits[:, -1, 1:].argmax(-1) + 1  # generation never emits padding (id 0)
        sequence = np.concatenate([sequence, best[:, None]], axis=1)
    return sequence


@pytest.mark.parametrize("position_encoding", POSITION_ENCODINGS)
def test_cached_greedy_decoding_equals_recomputing_everything(rng, tiny_gpt_config,
                                                             position_encoding):
    model = GPT(**tiny_gpt_config, position_encoding=position_encoding)
    prompt = _token_ids(rng, tiny_gpt_config, length=5)
    # 20 new tokens run past max_length=16, so the window restarts once.
    generated = model.generate(prompt, max_new_tokens=20, temperature=0)
    np.testing.assert_array_equal(generated, _greedy_by_hand(model, prompt, 20))


@pytest.mark.parametrize("position_encoding", POSITION_ENCODINGS)
def test_a_ragged_batch_decodes_each_prompt_as_alone(rng, tiny_gpt_config, position_encoding):
    model = GPT(**tiny_gpt_config, position_encoding=position_encoding)
    prompts = [rng.integers(1, 37, size=length).astype("int32") for length in (6, 2, 4)]
    generated = model.generate(prompts, max_new_tokens=7, temperature=0)
    assert generated.shape == (3, 13)
    for row, prompt in zip(generated, prompts):
        alone = _greedy_by_hand(model, prompt[None, :], 7)[0]
        np.testing.assert_array_equal(row[: alone.size], alone)
        assert (row[alone.size :] == 0).all()  # padding after the shorter rows


def test_a_stop_token_ends_its_row_only(rng, tiny_gpt_config):
    model = GPT(**tiny_gpt_config)
    prompt = _token_ids(rng, tiny_gpt_config, length=3)
    free = model.generate(prompt, max_new_tokens=8, temperature=0)
    stop = int(free[0, 5])  # row 0's third new token
    stopped = model.generate(prompt, max_new_tokens=8, temperature=0, stop_token_ids=[stop])
    first = int(np.flatnonzero(free[0, 3:] == stop)[0]) + 3
    np.testing.assert_array_equal(stopped[0, : first + 1], free[0, : first + 1])
    assert (stopped[0, first + 1 :] == 0).all()
    if stop not in free[1, 3:]:
        np.testing.assert_array_equal(stopped[1], free[1])


def test_decoding_compiles_once_for_every_shape(rng, tiny_gpt_config):
    model = GPT(**tiny_gpt_config)
    model.generate(_token_ids(rng, tiny_gpt_config, length=3), max_new_tokens=4, seed=1)
    decode = model.decoder._functions["generate"]
    assert decode.experimental_get_tracing_count() == 1
    model.generate([[1, 2], [3, 4, 5, 6, 7]], max_new_tokens=9, temperature=0.5, top_k=3, seed=2)
    model.generate(_token_ids(rng, tiny_gpt_config, length=2)[:1], max_new_tokens=2, top_p=0.5)
    model.generate(_token_ids(rng, tiny_gpt_config, length=20), max_new_tokens=30)
    assert decode.experimental_get_tracing_count() == 1


def test_an_over_long_prompt_continues_from_its_last_half_window(rng, tiny_gpt_config):
    """A prompt of max_length tokens or more is read from its last max_length // 2
    tokens, as a generated sequence that reached max_length is (the one policy)."""
    model = GPT(**tiny_gpt_config)
    prompt = _token_ids(rng, tiny_gpt_config, length=20)[:1]  # max_length is 16
    generated = model.generate(prompt, max_new_tokens=12, temperature=0)
    np.testing.assert_array_equal(generated[:, :20], prompt)
    from_half = model.generate(prompt[:, -8:], max_new_tokens=12, temperature=0)
    np.testing.assert_array_equal(generated[:, 20:], from_half[:, 8:])


def test_sampling_is_reproducible_with_a_seed(rng, tiny_gpt_config):
    model = GPT(**tiny_gpt_config)
    prompt = _token_ids(rng, tiny_gpt_config, length=3)
    first = model.generate(prompt, max_new_tokens=10, temperature=1.0, seed=7)
    second = model.generate(prompt, max_new_tokens=10, temperature=1.0, seed=7)
    other = model.generate(prompt, max_new_tokens=10, temperature=1.0, seed=8)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)
    np.testing.assert_array_equal(first[:, :3], prompt)


def test_tiny_temperature_equals_greedy(rng, tiny_gpt_config):
    model = GPT(**tiny_gpt_config)
    prompt = _token_ids(rng, tiny_gpt_config, length=4)
    np.testing.assert_array_equal(
        model.generate(prompt, max_new_tokens=8, temperature=1e-4, seed=1),
        model.generate(prompt, max_new_tokens=8, temperature=0),
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"hidden_dim": 18, "num_heads": 4}, "divisible by `num_heads`"),
        ({"num_layers": 0}, "num_layers"),
        ({"vocabulary_size": -5}, "vocabulary_size"),
        ({"max_length": 0}, "max_length"),
        ({"dropout": 1.0}, "dropout"),
        ({"position_encoding": "alibi"}, "position_encoding"),
    ],
)
def test_bad_arguments_are_named(tiny_gpt_config, overrides, message):
    with pytest.raises(ValueError, match=message):
        GPT(**{**tiny_gpt_config, **overrides})


def test_sequence_longer_than_max_length_is_refused(rng, tiny_gpt_config):
    model = GPT(**tiny_gpt_config)
    with pytest.raises(ValueError, match="more than max_length=16"):
        model(_token_ids(rng, tiny_gpt_config, length=17))


def test_float_token_ids_are_refused(tiny_gpt_config):
    model = GPT(**tiny_gpt_config)
    with pytest.raises(ValueError, match="integer token ids"):
        model(np.zeros((1, 4), "float32"))


@pytest.mark.parametrize(
    "prompt, kwargs, message",
    [
        (np.array([[1, 2]]), {"max_new_tokens": -1}, "max_new_tokens"),
        (np.array([[1, 2]]), {"temperature": -0.5}, "temperature"),
        (np.array([[1, 99]]), {}, "must lie in"),
        (np.array([[1.5, 2.0]]), {}, "integers"),
        (np.zeros((1, 0), "int32"), {}, "at least one token"),
        (np.array([[1, 2]]), {"top_k": -1}, "top_k"),
        (np.array([[1, 2]]), {"top_p": 0.0}, "top_p"),
        (np.array([[1, 2]]), {"top_p": 1.5}, "top_p"),
        (np.array([[1, 2]]), {"num_beams": 0}, "num_beams"),
        (np.array([[1, 2]]), {"temperature": float("nan")}, "temperature"),
        ([[1, 2], [3]], {"num_beams": 2}, "equal length"),
    ],
)
def test_bad_generate_arguments_are_named(tiny_gpt_config, prompt, kwargs, message):
    model = GPT(**tiny_gpt_config)
    with pytest.raises(ValueError, match=message):
        model.generate(prompt, **kwargs)
