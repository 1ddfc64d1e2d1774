"""A tiny corpus, its character tokenizer and a tiny GPT for the tests that train whole
runs in this process (resuming, XLA timing): seconds per run."""

from tfllm.data import CharacterTokenizer, Corpus, Document
from tfllm.models import GPT

TEXT = "O Romeo, Romeo, wherefore art thou Romeo?\n" * 30
CORPUS = Corpus(train=[Document("a", TEXT)], validation=[Document("b", TEXT[:400])],
                test=[Document("c", TEXT[:400])])
TOKENIZER = CharacterTokenizer.from_texts(CORPUS.texts("train"))


def tiny_gpt():
    """A 1-layer GPT over `TOKENIZER`'s ids, 16 positions, width 16."""
    return GPT(vocabulary_size=TOKENIZER.vocabulary_size, max_length=16, num_layers=1,
               num_heads=2, hidden_dim=16, intermediate_dim=32)
