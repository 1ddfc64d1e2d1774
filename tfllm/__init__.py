"""tfllm: language models you can read and own, in TensorFlow 2 / Keras 3.

Layers (`tfllm.layers`), models (`tfllm.models`), data (`tfllm.data`) and
text generation (`tfllm.generation`).
"""

__version__ = "0.1.0"

# Subpackages are imported on use (`from tfllm.models import GPT`), so that
# `import tfllm` stays cheap and the command line can quiet TensorFlow's
# start-up logging before TensorFlow is imported.
