"""Decoding: samplers, the cached decoding loop, beam search, and text generation.

A language model takes part in decoding through two methods (see
`tfllm.models.LanguageModel`):

- `init_decoding_state(batch_size, length)`: the state before any token,
  e.g. a GPT's key/value caches preallocated for `length` positions, or an
  LSTM's zero states;
- `decode_tokens(token_ids, index, state)`: reads `token_ids [B, T]` at
  positions `index .. index + T - 1`, returns the next-token logits after
  the last of them (`[B, V]`, float32) and the new state.

`decode` runs the whole generation as one graph: the prompts are read in one
pass (up to the shortest prompt; the rest of longer prompts is fed token by
token, so a batch may hold prompts of different lengths), then a single
`tf.while_loop` samples one token per step until every row has its
`max_new_tokens` or has emitted a stop token.
"""

import numpy as np
import tensorflow as tf

#: Stand-in for "no logit": far below any real logit, finite so softmax stays defined.
_MASKED = -1e9


def check_sampling_arguments(max_new_tokens, temperature, top_k=0, top_p=1.0, num_beams=1):
    """Raises a ValueError naming the argument when a sampling value is impossible."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, (int, np.integer)):
        raise ValueError(f"`max_new_tokens` must be an integer; got {max_new_tokens!r}.")
    if max_new_tokens < 0:
        raise ValueError(f"`max_new_tokens` must be >= 0; got {max_new_tokens}.")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float, np.floating, np.integer))
        or not np.isfinite(temperature)
        or temperature < 0
    ):
        raise ValueError(
            f"`temperature` must be a number >= 0 (0 means greedy); got {temperature!r}."
        )
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise ValueError(f"`top_k` must be an integer >= 0 (0 means no limit); got {top_k!r}.")
    if (
        isinstance(top_p, bool)
        or not isinstance(top_p, (int, float, np.floating))
        or not 0 < top_p <= 1
    ):
        raise ValueError(f"`top_p` must be a number in (0, 1] (1 means no limit); got {top_p!r}.")
    if isinstance(num_beams, bool) or not isinstance(num_beams, (int, np.integer)) or num_beams < 1:
        raise ValueError(f"`num_beams` must be a positive integer; got {num_beams!r}.")


def sample_logits(logits, temperature, top_k, top_p, seed):
    """Picks one token per row of `logits`: greedy, temperature, top-k and top-p sampling.

    All arguments are tensors, so one compiled function serves every setting.

    Args:
        logits: `[B, V]` float tensor.
        temperature: scalar; `0` picks the most likely token (greedy),
            otherwise tokens are drawn from `softmax(logits / temperature)`
            restricted as below.
        top_k: scalar int; `k > 0` keeps only the `k` most likely tokens.
        top_p: scalar float in (0, 1]; keeps the smallest set of most likely
            tokens whose probability reaches `top_p` (the nucleus; always at
            least the most likely token).
        seed: `[2]` int32 tensor for `tf.random.stateless_categorical`; the
            same seed gives the same draw.

    Returns:
        `[B]` int32 token ids.
    """
    logits = tf.cast(logits, tf.float32)
    temperature = tf.cast(temperature, tf.float32)
    # Greedy decoding skips the sort and the draw (a step of the decoding loop).
    return tf.cond(
        temperature > 0,
        lambda: _sample(logits / temperature, top_k, top_p, seed),
        lambda: tf.argmax(logits, axis=-1, output_type=tf.int32),
    )


def _sample(scaled, top_k, top_p, seed):
    """Draws from `softmax(scaled)` restricted to the top-k tokens and the top-p nucleus."""
    # Work in probability order: rank 0 is the most likely token.
    order = tf.argsort(scaled, axis=-1, direction="DESCENDING", stable=True)
    sorted_logits = tf.gather(scaled, order, batch_dims=1)
    ranks = tf.range(tf.shape(scaled)[-1])[None, :]
    top_k = tf.cast(top_k, tf.int32)
    keep = tf.logical_or(top_k <= 0, ranks < top_k)
    probabilities = tf.nn.softmax(tf.where(keep, sorted_logits, _MASKED), axis=-1)
    # A token is in the nucleus when the tokens before it hold less than top_p.
    before = tf.cumsum(probabilities, axis=-1, exclusive=True)
    keep = tf.logical_and(keep, tf.logical_or(ranks == 0, before < tf.cast(top_p, tf.float32)))
    choice = tf.random.stateless_categorical(
        tf.where(keep, sorted_logits, _MASKED), num_samples=1, seed=seed, dtype=tf.int32
    )
    return tf.gather(order, choice, batch_dims=1)[:, 0]


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
    batch_size = tf.shape(prompt_ids)[0]
    ends = lengths + max_new_tokens
    total = tf.reduce_max(ends) if positions is None else tf.shape(positions)[0]
    sequences = tf.pad(prompt_ids, [[0, 0], [0, total - tf.shape(prompt_ids)[1]]],
                       constant_values=pad_token_id)
    start = tf.reduce_min(lengths)
    state = model.init_decoding_state(batch_size, total)
    zero = tf.constant(0, tf.int32)
    if positions is None:
        # The prompt, up to the shortest one, in one pass.
        logits, state = model.decode_tokens(sequences[:, :start], zero, state)
    else:
        # The whole prompt block in one pass; the logits after the shortest prompt.
        logits, state = model.decode_tokens(prompt_ids, zero, state, last_index=start - 1)
    done = ends <= start

    def step(index, sequences, logits, state, done, ends, stopped):
        sampled = sample_logits(_without_padding(logits, pad_token_id), temperature, top_k,
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

    def more(index, sequences, logits, state, done, ends, stopped):
        return tf.logical_and(index < total, tf.logical_not(tf.reduce_all(done)))

    _, sequences, _, _, _, ends, stopped = tf.while_loop(
        more, step, (start, sequences, logits, state, done, ends, tf.zeros_like(done)),
        maximum_iterations=total,
    )
    return sequences, ends, stopped


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


def _without_padding(logits, pad_token_id):
    """Logits under which the padding token is never chosen."""
    is_padding = tf.equal(tf.range(tf.shape(logits)[-1]), pad_token_id)[None, :]
    return tf.where(is_padding, tf.cast(_MASKED, logits.dtype), logits)


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
        logits = _without_padding(tf.cast(logits, tf.float32), pad_token_id)
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


def generate_text(model, tokenizer, prompts, max_new_tokens=200, temperature=1.0, seed=None,
                  **kwargs):
    """Continues each prompt string with up to `max_new_tokens` tokens.

    Args:
        model: a tfllm language model (`GPT`, `LSTMLanguageModel`).
        tokenizer: a tokenizer with `tokenize` and `detokenize`, e.g.
            `tfllm.data.CharacterTokenizer`.
        prompts: a string or a list of strings (of any lengths).
        max_new_tokens: int, how many tokens to add at most.
        temperature: float, `0` for greedy decoding.
        seed: int or None, makes sampling reproducible.
        **kwargs: more arguments of the model's `generate` (`top_k`,
            `top_p`, `stop_token_ids`, `num_beams`).

    Returns:
        The prompt followed by its continuation: a string for a string
        prompt, else a list of strings.
    """
    single = isinstance(prompts, str)
    batch = [prompts] if single else list(prompts)
    if not batch:
        raise ValueError("There are no prompts.")
    if any(not isinstance(text, str) or not text for text in batch):
        raise ValueError("Prompts must be non-empty strings.")
    token_ids = tokenizer.tokenize(tf.constant(batch))
    rows = [list(row) for row in token_ids.to_list()]
    generated = model.generate(rows, max_new_tokens=max_new_tokens, temperature=temperature,
                               seed=seed, **kwargs)
    texts = [text.decode("utf-8") for text in tokenizer.detokenize(generated).numpy()]
    return texts[0] if single else texts


def stream_tokens(model, prompt_ids, max_new_tokens, temperature=1.0, top_k=0, top_p=1.0,
                  seed=None, stop_token_ids=()):
    """Yields the new tokens of one prompt as they are produced (for live output).

    The same decoding as `model.generate` for a single prompt, one compiled
    step per token called from Python, so each token can be shown at once.
    The prompt is read in one pass; a GPT whose sequence reaches
    `max_length` continues from its last `max_length // 2` tokens.

    Args:
        model: a tfllm language model.
        prompt_ids: a sequence of token ids.
        max_new_tokens, temperature, top_k, top_p, seed, stop_token_ids: as
            in `LanguageModel.generate`.

    Yields:
        int token ids; the stop token, if one is produced, is the last.
    """
    check_sampling_arguments(max_new_tokens, temperature, top_k, top_p)
    ids, _ = prepare_prompts([list(prompt_ids)])
    sequence = ids[0].tolist()
    capacity = model.max_length
    if capacity is not None and len(sequence) > capacity:
        raise ValueError(f"The prompt has {len(sequence)} tokens, more than max_length={capacity}.")
    if seed is None:
        seed = np.random.randint(0, 2**31 - 1)
    if not model.built:
        model.build((None, None))
    stops = set(int(token) for token in stop_token_ids)
    cache = model.__dict__.setdefault("_compiled_functions", {})
    if "stream_prefill" not in cache:
        def prefill(tokens, size):
            state = model.init_decoding_state(tf.shape(tokens)[0], size)
            return model.decode_tokens(tokens, tf.constant(0, tf.int32), state)

        def step(index, state, temperature, top_k, top_p, seed):
            choice = sample_logits(_without_padding(state[0], 0), temperature, top_k, top_p,
                                   seed)
            logits, new_state = model.decode_tokens(choice[:, None], index, state[1])
            return choice, (logits, new_state)

        cache["stream_prefill"] = tf.function(prefill, reduce_retracing=True)
        cache["stream_step"] = tf.function(step, reduce_retracing=True)
    prefill, step = cache["stream_prefill"], cache["stream_step"]
    produced, context_start, first_step = 0, 0, 0  # seeds follow `generate`'s
    while produced < max_new_tokens:
        context = sequence[context_start:]
        size = len(context) + (max_new_tokens - produced) if capacity is None else capacity
        logits, state = prefill(tf.constant([context], tf.int32), tf.constant(size, tf.int32))
        index = len(context)
        while produced < max_new_tokens and (capacity is None or index < capacity):
            token, (logits, state) = step(
                tf.constant(index, tf.int32), (logits, state),
                tf.constant(float(temperature)), tf.constant(int(top_k)),
                tf.constant(float(top_p)), tf.constant([seed, first_step + index], tf.int32))
            token = int(token[0])
            sequence.append(token)
            produced += 1
            index += 1
            yield token
            if token in stops:
                return
        context_start = len(sequence) - max(capacity // 2, 1) if capacity else len(sequence)
        first_step += capacity or 0
