"""Names shared by the command line and the library: one spelling each, no TensorFlow.

The CLI builds its choices from these (it imports this module before TensorFlow, so that
`tfllm --help` and a bad option answer at once); the library checks its arguments
against the same tuples.
"""

#: `tfllm.training.resolve_strategy` names (`--strategy`).
STRATEGY_NAMES = ("auto", "cpu", "mirrored", "multi_worker", "tpu")
#: Keras dtype policies a run may train under (`--precision`).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
#: How the GPT knows positions (`--position-encoding`).
GPT_POSITION_ENCODINGS = ("learned", "sinusoidal", "rotary")
#: How the BERT encoder knows positions.
BERT_POSITION_ENCODINGS = ("learned", "rotary")
#: How a BERT classifier pools the encoder's outputs.
POOLINGS = ("cls", "mean")
#: The weights a language model decodes with (`generate` / `export --weights`).
DECODING_WEIGHTS = ("float32", "int8", "bfloat16")
