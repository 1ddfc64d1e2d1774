"""The cached decoding loop: prompts read in one pass, then one `tf.while_loop` over steps.

A language model takes part in decoding through two methods (see
`tfllm.models.LanguageModel`):

- `init_decoding_state(batch_size, length)`: the state before any token,
  e.g. a GPT's key/value caches preallocated for `length` positions, or an
  LSTM's zero states;
- `decode_tokens(token_ids, index, state)`: reads `token_ids [B, T]` at
  positions `index .. index + T - 1`, returns the next-token logits after
  the last of them (`[B, V]`, float32) and the new state.

`decode` runs one window of generation as one graph: the prompts are read in
one pass (up to the shortest prompt; the rest of longer prompts is fed token by
token, so a batch may hold prompts of different lengths), then a single
`tf.while_loop` samples one token per step until every row has its
`max_new_tokens` or has emitted a stop token. `tfllm.generation.Decoder` decides
what the windows are.
"""

import numpy as np
import tensorflow as tf

from tfllm.generation.samplers import sample_logits, without_padding


def prepare_prompts(token_ids, pad_token_id=0):
    """Checks prompts and right-pads them: `(ids [B, P] int32, lengths [B] int32)`.

    `token_ids` is a `[B, T]` / `[T]` integer array, or a list of integer
    sequences of different lengths (a ragged batch).
    """
    if isinstance(token_ids, (list, tuple)) and token_ids and all(
        isinstance(row, (list, tuple, np.ndarray)) for row in token_ids
    ):
        rows = [np.asarray(row) for row in token_ids]
    else:
        array = np.asarray(token_ids)
        if array.dtype == object:
            raise ValueError("Prompt token ids must be integer sequences.")
        if array.ndim == 1:
            array = array[None, :]
        if array.ndim != 2:
            raise ValueError(f"Prompt token ids must have shape [B, T]; got shape {array.shape}.")
        rows = list(array)
    if not rows:
        raise ValueError("There are no prompts.")
    for row in rows:
        if row.ndim != 1:
            raise ValueError("Each prompt must be a sequence of token ids.")
        if row.size and not np.issubdtype(row.dtype, np.integer):
            raise ValueError(f"Prompt token ids must be integers; got dtype {row.dtype}.")
        if row.size == 0:
            raise ValueError("Prompts must hold at least one token.")
    lengths = np.array([row.size for row in rows], np.int32)
    ids = np.full((len(rows), lengths.max()), pad_token_id, np.int32)
    for index, row in enumerate(rows):
        ids[index, : row.size] = row
    return ids, lengths


def decode(model, prompt_ids, lengths, max_new_tokens, temperature, top_k, top_p, seed,
           stop_token_ids, pad_token_id, positions=None):
    """The decoding loop as TensorFlow ops (run it inside a `tf.function`).

    Args:
        model: a model with `init_decoding_state` and `decode_tokens`.
        prompt_ids: `[B, P]` int32, prompts right-padded to the longest.
        lengths: `[B]` int32 prompt lengths (each >= 1).
        max_new_tokens: `[B]` int32, tokens to add to each prompt at most.
        temperature, top_k, top_p: scalars (see `sample_logits`).
        seed: `[2]` int32: a seed and the number of the first step, so
            that a continued generation draws fresh numbers.
        stop_token_ids: `[S]` int32; a row ends after emitting one (kept).
        pad_token_id: scalar int32 written after a row's end.
        positions: optional `[L]` int32 tensor whose length fixes the
            sequence length `L >= P + max(max_new_tokens)`. With it every
            shape is known from the input shapes, so the decoding compiles
            with XLA (`compiled_decode_shapes` picks the shapes): the whole
            `[B, P]` prompt block is read in one pass (a shorter prompt's
            padding there is written over by the loop before any later
            position can see it).

    Returns:
        `(sequences [B, P + max(max_new_tokens)], ends [B], stopped [B])`:
        each row's prompt and continuation, padded after `ends`; `stopped`
        tells the rows that ended with a stop token.
    """
    ends = lengths + max_new_tokens
    total = tf.reduce_max(ends) if positions is None else tf.shape(positions)[0]
    sequences = tf.pad(prompt_ids, [[0, 0], [0, total - tf.shape(prompt_ids)[1]]],
                       constant_values=pad_token_id)
    start = tf.reduce_min(lengths)
    logits, state = _read_prompts(model, prompt_ids, sequences, start, total,
                                  whole_block=positions is not None)
    step = _sampling_step(model, lengths, total, temperature, top_k, top_p, seed,
                          stop_token_ids, pad_token_id)

    def more(index, sequences, logits, state, done, ends, stopped):
        return tf.logical_and(index < total, tf.logical_not(tf.reduce_all(done)))

    done = ends <= start
    _, sequences, _, _, _, ends, stopped = tf.while_loop(
        more, step, (start, sequences, logits, state, done, ends, tf.zeros_like(done)),
        maximum_iterations=total,
    )
    return sequences, ends, stopped


def _read_prompts(model, prompt_ids, sequences, start, total, whole_block):
    """The decoding state after the prompts, and the logits after the shortest one."""
    state = model.init_decoding_state(tf.shape(prompt_ids)[0], total)
    zero = tf.constant(0, tf.int32)
    if not whole_block:
        # The prompt, up to the shortest one, in one pass.
        return model.decode_tokens(sequences[:, :start], zero, state)
    # The whole prompt block in one pass; the logits after the shortest prompt.
    return model.decode_tokens(prompt_ids, zero, state, last_index=start - 1)


def _sampling_step(model, lengths, total, temperature, top_k, top_p, seed, stop_token_ids,
                   pad_token_id):
    """The body of the decoding `tf.while_loop`: position `index` of every row gets its
    prompt token or a sampled one (pad after the row's end), then the model reads it."""

    def step(index, sequences, logits, state, done, ends, stopped):
        sampled = sample_logits(without_padding(logits, pad_token_id), temperature, top_k,
                                top_p, tf.stack([seed[0], seed[1] + index]))
        in_prompt = index < lengths
        token = tf.where(in_prompt, sequences[:, index], sampled)
        token = tf.where(done, pad_token_id, token)
        column = tf.equal(tf.range(total), index)[None, :]
        sequences = tf.where(column, token[:, None], sequences)
        is_stop = tf.reduce_any(tf.equal(token[:, None], stop_token_ids[None, :]), axis=-1)
        now_stopped = tf.logical_and(tf.logical_and(is_stop, ~in_prompt), ~done)
        ends = tf.where(now_stopped, index + 1, ends)
        stopped = tf.logical_or(stopped, now_stopped)
        done = tf.logical_or(done, tf.logical_or(now_stopped, index + 1 >= ends))
        logits, state = model.decode_tokens(token[:, None], index, state)
        return index + 1, sequences, logits, state, done, ends, stopped

    return step


def compiled_decode_shapes(prompt_length, new_tokens, max_length=None):
    """`(prompt block, sequence length)` for `decode(..., positions=...)` under XLA.

    Both are rounded up (to 16 and 64 tokens) so that XLA compiles a few
    shapes, not one per prompt length; each is at most `max_length` but never
    less than what it must hold. Scalar tensors (Python ints work too).
    """
    total = _round_up(prompt_length + new_tokens, 64, max_length)
    return _round_up(prompt_length, 16, total), total


def _round_up(value, multiple, limit):
    rounded = (value + multiple - 1) // multiple * multiple
    if limit is not None:
        rounded = tf.minimum(rounded, limit)
    return tf.maximum(rounded, value)
