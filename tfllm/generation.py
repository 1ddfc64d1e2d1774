"""Sampling the next token from logits, and generating text with a model.

This module knows nothing about particular models: a model's `generate`
calls `sample_next_token`, and `generate_text` works with any model that has
a `generate(token_ids, ...)` method and any tokenizer with `tokenize` /
`detokenize`.
"""

import numpy as np
import tensorflow as tf


def check_sampling_arguments(max_new_tokens, temperature):
    """Raises a ValueError naming the argument when a sampling value is impossible."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)):
        raise ValueError(f"`max_new_tokens` must be an integer; got {max_new_tokens!r}.")
    if max_new_tokens < 0:
        raise ValueError(f"`max_new_tokens` must be >= 0; got {max_new_tokens}.")
    if not isinstance(temperature, (int, float)) or temperature < 0:
        raise ValueError(
            f"`temperature` must be a number >= 0 (0 means greedy); got {temperature!r}."
        )


def sample_next_token(logits, temperature, seed):
    """Picks one token per row of `logits`.

    Args:
        logits: `[B, V]` float tensor.
        temperature: scalar float tensor; `0` picks the most likely token
            (greedy), otherwise tokens are drawn from
            `softmax(logits / temperature)`. A tensor, so that one compiled
            function serves every temperature.
        seed: `[2]` int32 tensor for `tf.random.stateless_categorical`; the
            same seed gives the same draw.

    Returns:
        `[B]` int32 token ids.
    """
    logits = tf.cast(logits, tf.float32)
    temperature = tf.cast(temperature, tf.float32)
    greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
    scaled = logits / tf.maximum(temperature, 1e-6)
    sampled = tf.random.stateless_categorical(scaled, num_samples=1, seed=seed, dtype=tf.int32)
    return tf.where(temperature > 0, sampled[:, 0], greedy)


def step_seed(seed, step):
    """The `[2]` stateless seed for decoding step `step` of a run seeded `seed`."""
    return tf.stack([tf.cast(seed, tf.int32), tf.cast(step, tf.int32)])


def prepare_prompt_ids(token_ids):
    """Checks a batch of prompt ids and returns it as a `[B, T]` int32 array."""
    array = np.asarray(token_ids)
    if array.dtype == object:
        raise ValueError(
            "Prompts in one batch must have the same length; got ragged token ids."
        )
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise ValueError(f"Prompt token ids must have shape [B, T]; got shape {array.shape}.")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"Prompt token ids must be integers; got dtype {array.dtype}.")
    if array.shape[1] == 0:
        raise ValueError("Prompts must hold at least one token.")
    return array.astype(np.int32)


def generate_text(model, tokenizer, prompts, max_new_tokens=200, temperature=1.0, seed=None):
    """Continues each prompt string with `max_new_tokens` sampled tokens.

    Args:
        model: a tfllm language model (`GPT`, `LSTMLanguageModel`).
        tokenizer: a tokenizer with `tokenize` and `detokenize`, e.g.
            `tfllm.data.CharacterTokenizer`.
        prompts: a string or a list of strings of the same token length.
        max_new_tokens: int, how many tokens to add.
        temperature: float, `0` for greedy decoding.
        seed: int or None, makes sampling reproducible.

    Returns:
        The prompt followed by its continuation: a string for a string
        prompt, else a list of strings.
    """
    single = isinstance(prompts, str)
    batch = [prompts] if single else list(prompts)
    if any(not text for text in batch):
        raise ValueError("Prompts must not be empty strings.")
    token_ids = tokenizer.tokenize(tf.constant(batch))
    lengths = set(int(n) for n in token_ids.row_lengths().numpy())
    if len(lengths) != 1:
        raise ValueError(
            "Prompts in one batch must have the same number of tokens; "
            f"got lengths {sorted(lengths)}."
        )
    generated = model.generate(
        token_ids.to_tensor().numpy(),
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
    )
    texts = [text.decode("utf-8") for text in tokenizer.detokenize(generated).numpy()]
    return texts[0] if single else texts
