"""Language models composed from `tfllm.layers`."""

from tfllm.models.base import LanguageModel
from tfllm.models.gpt import GPT
from tfllm.models.lstm import LSTMLanguageModel

__all__ = ["GPT", "LSTMLanguageModel", "LanguageModel"]
