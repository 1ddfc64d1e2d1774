"""One `Decoder` per model: the single place that decides how a model continues text.

`model.generate`, `stream_tokens` (`tfllm generate --stream`) and the exported
SavedModel's `generate` / `serving_default` signatures are thin callers of a model's
`Decoder`, so the three cannot disagree. It owns:

- **the context policy**: a model with a `max_length` (the GPT) reads at most
  `max_length` tokens. A row whose tokens reach `max_length` (its prompt, or prompt and
  continuation) continues from its last `max_length // 2` tokens, read again in one
  pass; decoding goes on in such *windows* until every row has its new tokens or has
  stopped. A model without a `max_length` (the LSTM) decodes in one window;
- **seeding**: with seed `s`, the token sampled at position `p` of window `w` (positions
  counted in the window's context) is drawn with the stateless seed
  `[s, w * max_length + p]`: the same seed gives the same text, however it is asked for;
- **the compiled functions and their shapes**: the windows run as TensorFlow ops
  (`continue_graph`), the GPT's decoding loop compiled with XLA on prompt blocks and
  sequence lengths rounded to a few sizes (`compiled_decode_shapes`), so that XLA
  compiles a few shapes and later calls never retrace.
"""

import numpy as np
import tensorflow as tf

from tfllm.generation.beam import beam_search
from tfllm.generation.loop import compiled_decode_shapes, decode, prepare_prompts
from tfllm.generation.samplers import check_sampling_arguments, sample_logits, without_padding

_GENERATE_SIGNATURE = [
    tf.TensorSpec([None, None], tf.int32),  # prompt ids, right-padded
    tf.TensorSpec([None], tf.int32),  # prompt lengths
    tf.TensorSpec([None], tf.int32),  # new tokens per row
    tf.TensorSpec([], tf.float32),  # temperature
    tf.TensorSpec([], tf.int32),  # top_k
    tf.TensorSpec([], tf.float32),  # top_p
    tf.TensorSpec([], tf.int32),  # seed
    tf.TensorSpec([None], tf.int32),  # stop ids
    tf.TensorSpec([], tf.int32),  # pad id
]


class Decoder:
    """Generation for one language model (see the module docstring for the policy).

    Get it as `model.decoder`; it keeps its compiled functions, so later calls whatever
    their shapes do not retrace.

    Args:
        model: a tfllm language model (`init_decoding_state`, `decode_tokens`,
            `max_length`, `vocabulary_size`, `decode_with_xla`).
    """

    def __init__(self, model):
        self.model = model
        self.capacity = model.max_length
        self._functions = {}

    @property
    def keep(self):
        """Tokens a full row continues from: `max_length // 2` (None without a limit)."""
        return None if self.capacity is None else max(self.capacity // 2, 1)

    # --- Python entry points -------------------------------------------------------

    def generate(self, token_ids, max_new_tokens=100, temperature=1.0, top_k=0, top_p=1.0,
                 seed=None, stop_token_ids=(), num_beams=1, pad_token_id=0):
        """What `LanguageModel.generate` does (its docstring has the arguments)."""
        check_sampling_arguments(max_new_tokens, temperature, top_k, top_p, num_beams)
        ids, lengths = self._checked_prompts(token_ids, pad_token_id)
        stop_token_ids = np.asarray(list(stop_token_ids), np.int32).reshape(-1)
        if num_beams > 1:
            return self._beam_search(ids, lengths, int(max_new_tokens), int(num_beams),
                                     stop_token_ids, pad_token_id)
        generate = self._function("generate", self.continue_graph, _GENERATE_SIGNATURE)
        sequences, ends = generate(
            ids, lengths, np.full(len(lengths), int(max_new_tokens), np.int32),
            float(temperature), int(top_k), float(top_p), self._seed(seed), stop_token_ids,
            int(pad_token_id))
        sequences, ends = sequences.numpy(), ends.numpy()
        rows = [sequences[row, :end] for row, end in enumerate(ends)]
        return prepare_prompts(rows, pad_token_id)[0]

    def stream(self, prompt_ids, max_new_tokens, temperature=1.0, top_k=0, top_p=1.0,
               seed=None, stop_token_ids=(), pad_token_id=0):
        """Yields the new tokens of one prompt as they are produced.

        The same windows, seeds and samplers as `generate` for a single prompt, one
        compiled step per token called from Python, so each token can be shown at once.
        """
        check_sampling_arguments(max_new_tokens, temperature, top_k, top_p)
        ids, lengths = self._checked_prompts([list(prompt_ids)], pad_token_id)
        sequence = ids[0, :lengths[0]].tolist()
        seed = self._seed(seed)
        stops = {int(token) for token in stop_token_ids}
        prefill, step = self._stream_functions()
        produced, window = 0, 0
        while produced < max_new_tokens:
            start = self._context_starts(tf.constant([len(sequence)]), first=window == 0)
            context = sequence[int(start[0]):]
            size = (len(context) + max_new_tokens - produced if self.capacity is None
                    else self.capacity)
            logits, state = prefill(tf.constant([context], tf.int32), tf.constant(size))
            index = len(context)
            while produced < max_new_tokens and (self.capacity is None or index < size):
                token, logits, state = step(
                    logits, state, tf.constant(index), tf.constant(float(temperature)),
                    tf.constant(int(top_k)), tf.constant(float(top_p)),
                    tf.constant([seed, self._first_step(window) + index], tf.int32),
                    tf.constant(int(pad_token_id)))
                token = int(token[0])
                sequence.append(token)
                produced, index = produced + 1, index + 1
                yield token
                if token in stops:
                    return
            window += 1

    # --- the policy, as TensorFlow ops ------------------------------------------------

    def continue_graph(self, prompt_ids, lengths, new_tokens, temperature, top_k, top_p, seed,
                       stop_token_ids, pad_token_id):
        """Continues right-padded prompts; TensorFlow ops (the SavedModel calls it too).

        Args:
            prompt_ids: `[B, P]` int32 prompts, right-padded with `pad_token_id`.
            lengths: `[B]` int32 prompt lengths (each >= 1).
            new_tokens: `[B]` int32, tokens to add to each row at most.
            temperature, top_k, top_p: scalars (see `sample_logits`).
            seed: int32 scalar.
            stop_token_ids: `[S]` int32; a row ends after emitting one (kept).
            pad_token_id: int32 scalar, written after a row's end, never generated.

        Returns:
            `(sequences [B, P + max(new_tokens)], ends [B])`: each row's prompt and
            continuation, padded after `ends`.
        """
        batch_size = tf.shape(prompt_ids)[0]
        width = tf.shape(prompt_ids)[1] + tf.reduce_max(new_tokens)
        sequences = tf.pad(prompt_ids, [[0, 0], [0, width - tf.shape(prompt_ids)[1]]],
                           constant_values=pad_token_id)
        options = (temperature, top_k, top_p, seed, stop_token_ids, pad_token_id)
        state = (sequences, lengths, new_tokens, tf.zeros([batch_size], tf.bool))
        # The first window: each row's prompt (or the last `keep` tokens of a full one).
        state = self._window(tf.constant(0), *state, *options, first=True)
        if self.capacity is None:
            return state[0], state[1]

        def more(window, sequences, lengths, remaining, stopped):
            return tf.reduce_any(tf.logical_and(remaining > 0, tf.logical_not(stopped)))

        def next_window(window, *state):
            return (window + 1, *self._window(window, *state, *options, first=False))

        _, sequences, lengths, _, _ = tf.while_loop(
            more, next_window, (tf.constant(1), *state))
        return sequences, lengths

    def _window(self, window, sequences, lengths, remaining, stopped, temperature, top_k,
                top_p, seed, stop_token_ids, pad_token_id, first):
        """One window: read each row's context, add up to its budget of tokens."""
        capacity = self.capacity
        starts = self._context_starts(lengths, first)
        if capacity is None:
            block = tf.reduce_max(lengths)
        elif first:
            block = tf.minimum(tf.reduce_max(lengths - starts), capacity)
        else:
            block = self.keep
        context_lengths = lengths - starts
        columns = tf.minimum(starts[:, None] + tf.range(block)[None, :],
                             tf.shape(sequences)[1] - 1)
        context = tf.where(tf.range(block)[None, :] < context_lengths[:, None],
                           tf.gather(sequences, columns, batch_dims=1), pad_token_id)
        budget = remaining if capacity is None else tf.minimum(remaining,
                                                               capacity - context_lengths)
        budget = tf.where(stopped, 0, tf.maximum(budget, 0))
        decoded, ends, now_stopped = self._decode(
            context, context_lengths, budget, temperature, top_k, top_p,
            tf.stack([seed, self._first_step(window)]), stop_token_ids, pad_token_id)
        # Write each row's new tokens after its sequence.
        added = ends - context_lengths
        positions = tf.range(tf.shape(decoded)[1])[None, :]
        new = tf.logical_and(positions >= context_lengths[:, None], positions < ends[:, None])
        where = tf.where(new)  # [K, 2]: row, column in the window
        rows = where[:, 0]
        targets = tf.gather(lengths, rows) + tf.cast(where[:, 1], tf.int32) - tf.gather(
            context_lengths, rows)
        sequences = tf.tensor_scatter_nd_update(
            sequences, tf.stack([tf.cast(rows, tf.int32), targets], axis=1),
            tf.gather_nd(decoded, where))
        return (sequences, lengths + added, remaining - added,
                tf.logical_or(stopped, now_stopped))

    def _decode(self, context, context_lengths, budget, *options):
        """One window's decoding loop, compiled with XLA for models that want it."""
        if not self.model.decode_with_xla:
            return decode(self.model, context, context_lengths, budget, *options)
        pad_token_id = options[-1]
        block, total = compiled_decode_shapes(
            tf.shape(context)[1], tf.reduce_max(budget), self.capacity)
        context = tf.pad(context, [[0, 0], [0, block - tf.shape(context)[1]]],
                         constant_values=pad_token_id)
        compiled = self._functions.get("xla_window")
        if compiled is None:
            compiled = self._functions["xla_window"] = tf.function(
                lambda *arguments: decode(self.model, *arguments), jit_compile=True)
        return compiled(context, context_lengths, budget, *options, tf.range(total))

    def _first_step(self, window):
        """The seed offset of a window (see the module docstring)."""
        return window * (self.capacity or 0)

    def _context_starts(self, lengths, first):
        """Where rows of `lengths [B]` tokens start their context: the context policy.

        Without a capacity, at 0. In the first window a row that fills the capacity (a long
        prompt) keeps its last `keep` tokens, a shorter one all of them; every later window
        starts from a row's last `keep` tokens.
        """
        if self.capacity is None:
            return tf.zeros_like(lengths)
        if first:
            return tf.where(lengths >= self.capacity, lengths - self.keep, 0)
        return tf.maximum(lengths - self.keep, 0)

    # --- helpers ------------------------------------------------------------------------

    def _checked_prompts(self, token_ids, pad_token_id):
        ids, lengths = prepare_prompts(token_ids, pad_token_id)
        vocabulary_size = self.model.vocabulary_size
        values = np.concatenate([ids[row, :length] for row, length in enumerate(lengths)])
        if values.min() < 0 or values.max() >= vocabulary_size:
            raise ValueError(
                f"Prompt token ids must lie in [0, {vocabulary_size}); got values in "
                f"[{values.min()}, {values.max()}]."
            )
        if not self.model.built:
            # Decoding calls sub-layers directly, which would not build the model.
            self.model.build((None, None))
        return ids, lengths

    @staticmethod
    def _seed(seed):
        return int(np.random.randint(0, 2**31 - 1) if seed is None else seed)

    def _function(self, name, function, input_signature):
        if name not in self._functions:
            self._functions[name] = tf.function(function, input_signature=input_signature)
        return self._functions[name]

    def _stream_functions(self):
        if "stream_prefill" not in self._functions:
            model = self.model

            def prefill(tokens, size):
                state = model.init_decoding_state(tf.shape(tokens)[0], size)
                return model.decode_tokens(tokens, tf.constant(0, tf.int32), state)

            def step(logits, state, index, temperature, top_k, top_p, seed, pad_token_id):
                choice = sample_logits(without_padding(logits, pad_token_id), temperature,
                                       top_k, top_p, seed)
                logits, state = model.decode_tokens(choice[:, None], index, state)
                return choice, logits, state

            self._functions["stream_prefill"] = tf.function(prefill, reduce_retracing=True)
            self._functions["stream_step"] = tf.function(step, reduce_retracing=True)
        return self._functions["stream_prefill"], self._functions["stream_step"]

    def _beam_search(self, ids, lengths, max_new_tokens, num_beams, stop_token_ids,
                     pad_token_id):
        if len(set(lengths.tolist())) != 1:
            raise ValueError("Beam search needs prompts of equal length.")
        if stop_token_ids.size:
            raise ValueError("Beam search does not take `stop_token_ids`.")
        if self.capacity is not None and ids.shape[1] + max_new_tokens > self.capacity:
            raise ValueError(
                f"Beam search is limited to max_length={self.capacity} tokens; the prompt "
                f"({ids.shape[1]}) + max_new_tokens ({max_new_tokens}) is longer."
            )
        search = self._function(
            "beam_search",
            lambda prompt, beams, new, pad: beam_search(self.model, prompt, beams, new, pad),
            [tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([], tf.int32),
             tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)],
        )
        sequences, _ = search(ids, num_beams, max_new_tokens, pad_token_id)
        return sequences.numpy()


def stream_tokens(model, prompt_ids, max_new_tokens, temperature=1.0, top_k=0, top_p=1.0,
                  seed=None, stop_token_ids=(), pad_token_id=0):
    """Yields the new tokens of one prompt as they are produced (`Decoder.stream`).

    Args:
        model: a tfllm language model.
        prompt_ids: a sequence of token ids.
        max_new_tokens, temperature, top_k, top_p, seed, stop_token_ids, pad_token_id: as
            in `LanguageModel.generate`.

    Yields:
        int token ids; the stop token, if one is produced, is the last.
    """
    yield from model.decoder.stream(prompt_ids, max_new_tokens, temperature, top_k, top_p,
                                    seed, stop_token_ids, pad_token_id)


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
    kwargs.setdefault("pad_token_id", getattr(tokenizer, "padding_id", 0))
    generated = model.generate(rows, max_new_tokens=max_new_tokens, temperature=temperature,
                               seed=seed, **kwargs)
    texts = [text.decode("utf-8") for text in tokenizer.detokenize(generated).numpy()]
    return texts[0] if single else texts
