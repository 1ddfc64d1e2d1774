"""Data: corpora, tokenizers and `tf.data` pipelines.

>>> corpus = load_corpus("shakespeare")
>>> tokenizer = CharacterTokenizer.from_texts(corpus.texts("train"))
>>> train_ids = encode_documents(tokenizer, corpus.train)
>>> train_data = language_model_dataset(train_ids, sequence_length=256, batch_size=64, seed=1)
"""

from tfllm.data.corpus import (
    Corpus,
    CorpusError,
    Document,
    clean_play_markdown,
    load_corpus,
    load_shakespeare,
    load_text_files,
)
from tfllm.data.datasets import encode_documents, language_model_dataset
from tfllm.data.genres import (
    CLASS_NAMES,
    COARSE_GENRES,
    class_balance,
    class_id,
    labelled_passages,
)
from tfllm.data.masking import mask_tokens
from tfllm.data.tokenizers import CharacterTokenizer

__all__ = [
    "CLASS_NAMES",
    "COARSE_GENRES",
    "CharacterTokenizer",
    "Corpus",
    "CorpusError",
    "Document",
    "class_balance",
    "class_id",
    "clean_play_markdown",
    "encode_documents",
    "labelled_passages",
    "language_model_dataset",
    "load_corpus",
    "load_shakespeare",
    "load_text_files",
    "mask_tokens",
]
