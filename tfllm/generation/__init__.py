"""Text generation: samplers, the cached decoding loop, beam search, and the Decoder.

- `samplers`: greedy, temperature, top-k and top-p choice of the next token;
- `loop`: one window of cached decoding as one `tf.while_loop` (`decode`);
- `beam`: beam search;
- `decoder`: `Decoder`, the one owner of the context policy (past `max_length`),
  seeding and compiled functions that `model.generate`, streaming and the SavedModel
  call; `generate_text` and `stream_tokens` for strings and live output;
- `weights`: int8 and bfloat16 copies of a model to decode with (`with_decoding_weights`).
"""

from tfllm.generation.beam import beam_search
from tfllm.generation.decoder import Decoder, generate_text, stream_tokens
from tfllm.generation.loop import compiled_decode_shapes, decode, prepare_prompts
from tfllm.generation.samplers import (
    MASKED_LOGIT,
    check_sampling_arguments,
    sample_logits,
    without_padding,
)
from tfllm.generation.weights import with_decoding_weights

__all__ = [
    "Decoder",
    "MASKED_LOGIT",
    "beam_search",
    "check_sampling_arguments",
    "compiled_decode_shapes",
    "decode",
    "generate_text",
    "prepare_prompts",
    "sample_logits",
    "stream_tokens",
    "with_decoding_weights",
    "without_padding",
]
