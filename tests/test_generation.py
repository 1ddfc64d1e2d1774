import numpy as np
import pytest
import tensorflow as tf

from tfllm.data import CharacterTokenizer
from tfllm.generation import generate_text, sample_next_token
from tfllm.models import GPT


def test_zero_temperature_is_argmax(rng):
    logits = rng.normal(size=(5, 11)).astype("float32")
    tokens = sample_next_token(logits, tf.constant(0.0), tf.constant([1, 2]))
    np.testing.assert_array_equal(tokens, logits.argmax(-1))


def test_sampled_frequencies_follow_the_softmax():
    """10,000 draws at temperature 2 match softmax(logits / 2) within sampling error."""
    logits = np.log(np.array([[0.5, 0.3, 0.2]], "float32"))
    batch = np.repeat(logits, 10000, axis=0)
    tokens = sample_next_token(batch, tf.constant(2.0), tf.constant([3, 4])).numpy()
    expected = np.exp(logits[0] / 2) / np.exp(logits[0] / 2).sum()
    np.testing.assert_allclose(np.bincount(tokens, minlength=3) / 10000, expected, atol=0.02)


def test_generate_text_continues_the_prompt(tiny_gpt_config):
    tokenizer = CharacterTokenizer.from_texts(["abcdefgh ijk"])
    model = GPT(**{**tiny_gpt_config, "vocabulary_size": tokenizer.vocabulary_size})
    texts = generate_text(model, tokenizer, ["abc", "hij"], max_new_tokens=5, seed=2)
    assert [text[:3] for text in texts] == ["abc", "hij"]
    assert all(len(text) <= 8 for text in texts)
    assert generate_text(model, tokenizer, "abc", 5, seed=2) == texts[0]


def test_prompts_of_different_lengths_and_empty_prompts_are_refused(tiny_gpt_config):
    tokenizer = CharacterTokenizer.from_texts(["abcdefgh"])
    model = GPT(**{**tiny_gpt_config, "vocabulary_size": tokenizer.vocabulary_size})
    with pytest.raises(ValueError, match="same number of tokens"):
        generate_text(model, tokenizer, ["ab", "abc"], 3)
    with pytest.raises(ValueError, match="empty"):
        generate_text(model, tokenizer, "", 3)
