"""Keras 3 building blocks of language models, in `keras.ops` (but for the LSTM recurrence,
`recurrent.lstm_sequence`, which is TensorFlow: see its module)."""

from tfllm.layers.activations import exact_gelu, gelu_approximate
from tfllm.layers.attention import MultiHeadAttention
from tfllm.layers.embedding import TokenEmbedding
from tfllm.layers.normalization import LayerNormalization
from tfllm.layers.positional import (
    PositionEmbedding,
    RotaryEmbedding,
    SinusoidalPositionEncoding,
)
from tfllm.layers.recurrent import StackedLSTM
from tfllm.layers.transformer import FeedForward, TransformerBlock

__all__ = [
    "FeedForward",
    "LayerNormalization",
    "MultiHeadAttention",
    "PositionEmbedding",
    "RotaryEmbedding",
    "SinusoidalPositionEncoding",
    "StackedLSTM",
    "TokenEmbedding",
    "TransformerBlock",
    "exact_gelu",
    "gelu_approximate",
]
