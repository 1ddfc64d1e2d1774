"""Data: corpora, tokenizers and `tf.data` pipelines.

>>> corpus = load_corpus("shakespeare")
>>> tokenizer = CharacterTokenizer.from_texts(corpus.texts("train"))
>>> train_ids = encode_documents(tokenizer, corpus.train)
>>> train_data = language_model_dataset(train_ids, sequence_length=256, batch_size=64, seed=1)
"""

from tfllm.data.byte_pair import BytePairTokenizer
from tfllm.data.corpus import Corpus, CorpusError, Document, load_corpus
from tfllm.data.datasets import (
    classification_dataset,
    encode_documents,
    encode_pieces,
    language_model_dataset,
    masked_lm_dataset,
)
from tfllm.data.genres import (
    CLASS_NAMES,
    COARSE_GENRES,
    bundled_genre_split,
    class_balance,
    class_id,
    labelled_passages,
    split_by_genre,
)
from tfllm.data.labelled_files import (
    LabelledData,
    LabelledDataError,
    LabelledExamples,
    load_labelled_data,
    read_labelled_examples,
    stratified_split,
)
from tfllm.data.masking import mask_tokens
from tfllm.data.shakespeare import clean_play_markdown, load_shakespeare
from tfllm.data.text import STOP_WORDS, normalize_text
from tfllm.data.text_files import load_text_files
from tfllm.data.tokenizers import CharacterTokenizer
from tfllm.data.sentence_piece import SentencePieceTokenizer
from tfllm.data.tokenizer_files import (
    build_tokenizer,
    load_tokenizer,
    stream_text,
    tokenizer_kind,
)
from tfllm.data.wordpiece import SPECIAL_TOKENS, WordPieceTokenizer

__all__ = [
    "CLASS_NAMES",
    "COARSE_GENRES",
    "BytePairTokenizer",
    "CharacterTokenizer",
    "SPECIAL_TOKENS",
    "STOP_WORDS",
    "SentencePieceTokenizer",
    "WordPieceTokenizer",
    "Corpus",
    "CorpusError",
    "Document",
    "build_tokenizer",
    "LabelledData",
    "LabelledDataError",
    "LabelledExamples",
    "bundled_genre_split",
    "class_balance",
    "classification_dataset",
    "class_id",
    "clean_play_markdown",
    "encode_documents",
    "encode_pieces",
    "labelled_passages",
    "language_model_dataset",
    "load_corpus",
    "load_labelled_data",
    "load_shakespeare",
    "load_text_files",
    "load_tokenizer",
    "mask_tokens",
    "masked_lm_dataset",
    "normalize_text",
    "read_labelled_examples",
    "split_by_genre",
    "stream_text",
    "tokenizer_kind",
    "stratified_split",
]
