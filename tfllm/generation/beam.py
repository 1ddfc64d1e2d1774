"""Beam search over a language model's cached decoding."""

import tensorflow as tf

from tfllm.generation.samplers import without_padding


def beam_search(model, prompt_ids, num_beams, max_new_tokens, pad_token_id=0):
    """Beam search as TensorFlow ops (run it inside a `tf.function`).

    Keeps the `num_beams` continuations of highest total log-probability,
    extending each by every token at every step; returns the best one per
    prompt. With one beam it is greedy decoding.

    Args:
        model: a model with `init_decoding_state` and `decode_tokens`.
        prompt_ids: `[B, P]` int32 prompts, all of length `P`.
        num_beams: scalar int32 `K`.
        max_new_tokens: scalar int32 `N`.
        pad_token_id: a token never chosen.

    Returns:
        `(sequences [B, P + N], scores [B])`: the best sequence of each
        prompt and its total log-probability (of the new tokens).
    """
    batch_size, prompt_length = tf.shape(prompt_ids)[0], tf.shape(prompt_ids)[1]
    total = prompt_length + max_new_tokens
    state = model.init_decoding_state(batch_size, total)
    logits, state = model.decode_tokens(prompt_ids, tf.constant(0, tf.int32), state)
    # Every beam starts as the prompt; only beam 0 is live at the first step.
    repeat = lambda value: tf.repeat(value, num_beams, axis=0)  # noqa: E731
    state = tf.nest.map_structure(repeat, state)
    logits = repeat(logits)
    sequences = repeat(tf.pad(prompt_ids, [[0, 0], [0, max_new_tokens]]))
    scores = tf.tile(
        tf.concat([[0.0], tf.fill([num_beams - 1], float("-inf"))], 0), [batch_size]
    )  # [B*K]

    def step(index, sequences, logits, state, scores):
        logits = without_padding(tf.cast(logits, tf.float32), pad_token_id)
        log_probs = tf.nn.log_softmax(logits, axis=-1)  # [B*K, V]
        vocabulary_size = tf.shape(log_probs)[-1]
        candidates = tf.reshape(scores[:, None] + log_probs, [batch_size, -1])  # [B, K*V]
        scores, flat = tf.math.top_k(candidates, k=num_beams)  # [B, K]
        beam = flat // vocabulary_size
        token = tf.reshape(flat % vocabulary_size, [-1])
        parents = tf.reshape(beam + tf.range(batch_size)[:, None] * num_beams, [-1])
        state = tf.nest.map_structure(lambda value: tf.gather(value, parents), state)
        sequences = tf.gather(sequences, parents)
        column = tf.equal(tf.range(total), index)[None, :]
        sequences = tf.where(column, token[:, None], sequences)
        logits, state = model.decode_tokens(token[:, None], index, state)
        return index + 1, sequences, logits, state, tf.reshape(scores, [-1])

    _, sequences, _, _, scores = tf.while_loop(
        lambda index, *_: index < total, step,
        (prompt_length, sequences, logits, state, scores),
    )
    best = tf.argmax(tf.reshape(scores, [batch_size, num_beams]), axis=-1, output_type=tf.int32)
    chosen = best + tf.range(batch_size) * num_beams
    return tf.gather(sequences, chosen), tf.gather(scores, chosen)
