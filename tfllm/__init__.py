"""tfllm: language models you can read and own, in TensorFlow 2 / Keras 3.

Layers (`tfllm.layers`), models (`tfllm.models`), data (`tfllm.data`) and
text generation (`tfllm.generation`).
"""

__version__ = "0.1.0"

from tfllm import layers  # noqa: E402,F401
