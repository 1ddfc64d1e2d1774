"""Language models composed from `tfllm.layers`."""

from tfllm.models.backbone import TransformerBackbone
from tfllm.models.base import LanguageModel, TrainableModel
from tfllm.models.bert import BertEncoder, BertMaskedLM, EncoderTask
from tfllm.models.bert_classifier import BertClassifier
from tfllm.models.gpt import GPT
from tfllm.models.lstm import LSTMLanguageModel

#: Model kinds by the names the command line and run configs use.
MODEL_KINDS = {"gpt": GPT, "lstm": LSTMLanguageModel}


def build_model(kind, vocabulary_size, **settings):
    """Creates a model of `kind` (`"gpt"` or `"lstm"`) with `settings` as its arguments.

    Create it inside `strategy.scope()` when training under a `tf.distribute`
    strategy. Raises a ValueError naming the kind or the setting it does not know.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"Unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}.")
    try:
        return MODEL_KINDS[kind](vocabulary_size=vocabulary_size, **settings)
    except TypeError as error:
        raise ValueError(f"Bad settings for a {kind} model: {error}") from None


__all__ = ["GPT", "BertClassifier", "BertEncoder", "BertMaskedLM", "EncoderTask", "LSTMLanguageModel",
           "LanguageModel", "MODEL_KINDS", "TrainableModel", "TransformerBackbone",
           "build_model"]
