import itertools

import numpy as np
import pytest
import tensorflow as tf

from tfllm import generation
from tfllm.data import CharacterTokenizer
from tfllm.generation import generate_text, sample_logits
from tfllm.models import GPT


def _draw(logits, temperature=1.0, top_k=0, top_p=1.0, seed=(3, 4), repeats=4000):
    batch = np.repeat(np.asarray(logits, "float32")[None, :], repeats, axis=0)
    return sample_logits(batch, tf.constant(temperature), tf.constant(top_k),
                         tf.constant(top_p), tf.constant(seed)).numpy()


def test_zero_temperature_is_argmax(rng):
    logits = rng.normal(size=(5, 11)).astype("float32")
    tokens = sample_logits(logits, tf.constant(0.0), tf.constant(0), tf.constant(1.0),
                           tf.constant([1, 2]))
    np.testing.assert_array_equal(tokens, logits.argmax(-1))


def test_tiny_temperature_equals_greedy(rng):
    logits = rng.normal(size=(200, 30)).astype("float32")
    tokens = sample_logits(logits, tf.constant(1e-4), tf.constant(0), tf.constant(1.0),
                           tf.constant([5, 6]))
    np.testing.assert_array_equal(tokens, logits.argmax(-1))


def test_sampled_frequencies_follow_the_softmax():
    """Draws at temperature 2 match softmax(logits / 2) within sampling error."""
    logits = np.log(np.array([0.5, 0.3, 0.2]))
    tokens = _draw(logits, temperature=2.0, repeats=10000)
    expected = np.exp(logits / 2) / np.exp(logits / 2).sum()
    np.testing.assert_allclose(np.bincount(tokens, minlength=3) / 10000, expected, atol=0.02)


def test_top_k_never_leaves_the_k_most_likely(rng):
    logits = rng.normal(size=40) * 0.3  # flat: without the limit, all 40 would appear
    tokens = _draw(logits, top_k=5)
    assert set(tokens) <= set(np.argsort(-logits)[:5])
    assert len(set(tokens)) == 5


def test_top_p_never_leaves_the_nucleus():
    probabilities = np.array([0.05, 0.4, 0.02, 0.3, 0.13, 0.1])
    tokens = _draw(np.log(probabilities), top_p=0.75)
    # Most likely first: 0.4, 0.3 (0.7 < 0.75), then 0.13 reaches it: tokens 1, 3, 4.
    assert set(tokens) == {1, 3, 4}
    within = probabilities[[1, 3, 4]] / probabilities[[1, 3, 4]].sum()
    np.testing.assert_allclose(np.bincount(tokens, minlength=6)[[1, 3, 4]] / 4000, within,
                               atol=0.03)


def test_a_tiny_top_p_is_greedy(rng):
    logits = rng.normal(size=20)
    assert set(_draw(logits, top_p=1e-6)) == {int(np.argmax(logits))}


def test_the_same_seed_gives_the_same_draw(rng):
    logits = rng.normal(size=50)
    np.testing.assert_array_equal(_draw(logits, seed=(7, 1)), _draw(logits, seed=(7, 1)))
    assert not np.array_equal(_draw(logits, seed=(7, 1)), _draw(logits, seed=(8, 1)))


class MarkovChain:
    """A "model" whose next-token log-probabilities depend on the last token only."""

    def __init__(self, probabilities):
        self.log_probabilities = tf.math.log(tf.constant(probabilities, tf.float32))

    def init_decoding_state(self, batch_size, length):
        return tf.zeros([batch_size], tf.int32)

    def decode_tokens(self, token_ids, index, state):
        last = token_ids[:, -1]
        return tf.gather(self.log_probabilities, last), last

    def score(self, sequence):
        return sum(float(self.log_probabilities[a, b]) for a, b in zip(sequence, sequence[1:]))


# Greedy takes 0 -> 1 (0.6), then at best 0.34: 0.204. Through 2: 0.4 * 0.98 = 0.392.
CHAIN = MarkovChain([[0.01, 0.59, 0.40], [0.34, 0.33, 0.33], [0.01, 0.01, 0.98]])


def _beam(model, prompt, beams, new_tokens):
    if isinstance(model, GPT) and not model.built:
        model.build((None, None))
    sequences, scores = tf.function(generation.beam_search)(
        model, tf.constant(prompt, tf.int32), tf.constant(beams), tf.constant(new_tokens),
        tf.constant(-1))
    return sequences.numpy(), scores.numpy()


def test_beam_search_finds_a_better_sequence_than_greedy():
    greedy, _ = _beam(CHAIN, [[0]], 1, 2)
    best, score = _beam(CHAIN, [[0]], 2, 2)
    assert greedy[0].tolist() == [0, 1, 0]
    assert best[0].tolist() == [0, 2, 2]
    assert CHAIN.score(best[0]) > CHAIN.score(greedy[0])
    assert score[0] == pytest.approx(CHAIN.score(best[0]), abs=1e-5)


def test_beam_search_over_every_beam_is_exhaustive_search(rng):
    chain = MarkovChain(rng.dirichlet(np.ones(4) * 0.5, size=4))
    best, score = _beam(chain, [[2]], 4, 3)
    exhaustive = max(([2, *tail] for tail in itertools.product(range(4), repeat=3)),
                     key=chain.score)
    assert score[0] == pytest.approx(chain.score(exhaustive), abs=1e-5)
    assert chain.score(best[0]) == pytest.approx(chain.score(exhaustive), abs=1e-5)


@pytest.mark.parametrize("position_encoding", ["learned", "rotary"])
def test_one_beam_is_greedy_decoding(rng, tiny_gpt_config, position_encoding):
    model = GPT(**tiny_gpt_config, position_encoding=position_encoding)
    prompt = rng.integers(1, 37, size=(3, 4)).astype("int32")
    beam, _ = _beam(model, prompt, 1, 8)
    np.testing.assert_array_equal(beam, model.generate(prompt, max_new_tokens=8, temperature=0))


def test_beam_search_through_generate_scores_at_least_greedy(rng, tiny_gpt_config):
    model = GPT(**tiny_gpt_config)
    prompt = rng.integers(1, 37, size=(2, 4)).astype("int32")

    def log_likelihood(sequences):
        log_probs = tf.nn.log_softmax(model(sequences[:, :-1])).numpy()
        picked = np.take_along_axis(log_probs, sequences[:, 1:, None], -1)[..., 0]
        return picked[:, 3:].sum(-1)  # the new tokens only

    greedy = model.generate(prompt, max_new_tokens=6, temperature=0)
    beam = model.generate(prompt, max_new_tokens=6, num_beams=4)
    assert (log_likelihood(beam) >= log_likelihood(greedy) - 1e-4).all()


def test_generate_text_takes_prompts_of_any_length(tiny_gpt_config):
    tokenizer = CharacterTokenizer.from_texts(["abcdefgh ijk"])
    model = GPT(**{**tiny_gpt_config, "vocabulary_size": tokenizer.vocabulary_size})
    texts = generate_text(model, tokenizer, ["abc", "hi"], max_new_tokens=5, temperature=0)
    assert texts[0].startswith("abc") and texts[1].startswith("hi")
    assert len(texts[0]) <= 8 and len(texts[1]) <= 7
    assert generate_text(model, tokenizer, "hi", 5, temperature=0) == texts[1]


def test_empty_prompts_are_refused(tiny_gpt_config):
    tokenizer = CharacterTokenizer.from_texts(["abcdefgh"])
    model = GPT(**{**tiny_gpt_config, "vocabulary_size": tokenizer.vocabulary_size})
    with pytest.raises(ValueError, match="non-empty"):
        generate_text(model, tokenizer, "", 3)
    with pytest.raises(ValueError, match="no prompts"):
        generate_text(model, tokenizer, [], 3)


@pytest.mark.parametrize("kind", ["gpt", "lstm"])
@pytest.mark.parametrize("prompt_length", [3, 20])
def test_streaming_equals_generate_with_sampling_past_max_length(
        rng, tiny_gpt_config, tiny_lstm_config, kind, prompt_length):
    """One Decoder: streamed tokens are generate's, token for token, with top-k / top-p
    sampling and a seed, through two roll-overs past max_length=16 (a 20-token prompt
    starts past it)."""
    from tfllm.generation import stream_tokens
    from tfllm.models import LSTMLanguageModel

    model = (GPT(**tiny_gpt_config) if kind == "gpt"
             else LSTMLanguageModel(**tiny_lstm_config))
    prompt = rng.integers(1, 37, size=prompt_length).astype("int32")
    options = {"temperature": 1.3, "top_k": 12, "top_p": 0.95, "seed": 5}
    generated = model.generate(prompt[None, :], max_new_tokens=30, **options)[0]
    streamed = list(stream_tokens(model, prompt.tolist(), 30, **options))
    assert len(streamed) == 30
    np.testing.assert_array_equal(generated[prompt_length:], streamed)
    assert streamed != list(stream_tokens(model, prompt.tolist(), 30, **{**options, "seed": 6}))
