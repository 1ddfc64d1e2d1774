"""Names shared by the command line and the library: one spelling each, no TensorFlow.

The CLI builds its choices from these (it imports this module before TensorFlow, so that
`tfllm --help` and a bad option answer at once); the library checks its arguments
against the same tuples.
"""

#: `tfllm.training.resolve_strategy` names (`--strategy`).
STRATEGY_NAMES = ("auto", "cpu", "mirrored", "multi_worker", "tpu")
#: Keras dtype policies a run may train under (`--precision`).
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
#: `--xla` choices, as `TrainingConfig.jit_compile` values (`auto`: timed on this machine).
XLA_CHOICES = {"auto": "auto", "on": True, "off": False}
#: How the GPT knows positions (`--position-encoding`).
GPT_POSITION_ENCODINGS = ("learned", "sinusoidal", "rotary")
#: How the BERT encoder knows positions.
BERT_POSITION_ENCODINGS = ("learned", "rotary")
#: How a BERT classifier pools the encoder's outputs.
POOLINGS = ("cls", "mean")
#: Seconds a multi-worker task waits for the others of its cluster (`--cluster-timeout`).
DEFAULT_CLUSTER_TIMEOUT_SECONDS = 300
#: Tokenizers a language model can train with (`--tokenizer`): characters, GPT-2's byte-level
#: BPE, SentencePiece, WordPiece.
TOKENIZERS = ("char", "bpe", "sentencepiece", "wordpiece")
#: The smallest `--vocabulary-size` of each tokenizer: its special tokens (and for the
#: byte-level ones the 256 bytes) plus one learned token.
MINIMUM_VOCABULARY_SIZES = {"char": 3, "bpe": 258, "sentencepiece": 259, "wordpiece": 6}
#: `--vocabulary-size` of a subword tokenizer when none is given.
DEFAULT_SUBWORD_VOCABULARY_SIZE = 1024
#: Labelled files a classifier reads (`--data`), by extension: the CSV delimiters, and
#: JSON Lines (one object a line). A folder of class folders is the other choice.
LABELLED_DELIMITERS = {".csv": ",", ".tsv": "\t"}
LABELLED_JSON_LINES = (".jsonl", ".ndjson")
#: The weights a language model decodes with (`generate` / `export --weights`).
DECODING_WEIGHTS = ("float32", "int8", "bfloat16")
