"""The weights a model decodes with: its own float32 ones, int8 or bfloat16 copies.

Decoding one token at a time reads every weight once per step, so on a CPU it is bound
by how many bytes the weights take: int8 (`model.quantize("int8")`: int8 kernels with a
float scale per output channel, embeddings included) reads a quarter of float32's,
bfloat16 half. Which is faster depends on the CPU (`benchmarks/vs_pytorch.py` measures
it); what they cost in quality, `tfllm.training.language_model.held_out_loss` tells.
"""

from tfllm.constants import DECODING_WEIGHTS


def with_decoding_weights(model, weights="float32"):
    """`model` to decode with `weights`: the model itself for "float32", else a copy.

    Args:
        model: a tfllm language model (`GPT`, `LSTMLanguageModel`) with float32 weights.
        weights: "float32", "int8" (Keras's int8 quantization of every projection and
            embedding that supports it) or "bfloat16" (every weight and computation in
            bfloat16; softmax and sampling stay float32).

    Returns:
        A model with the same config and weights, whose `generate`, `decode_tokens` and
        call use the chosen weights. The original model is left as it was.

    Example:

    >>> fast = with_decoding_weights(model, "int8")
    >>> fast.generate(prompt_ids, max_new_tokens=50, temperature=0.0)
    """
    if weights not in DECODING_WEIGHTS:
        raise ValueError(f"weights must be one of {', '.join(DECODING_WEIGHTS)}; "
                         f"got {weights!r}")
    if weights == "float32":
        return model
    if any(getattr(layer, "quantization_mode", None) for layer in model._flatten_layers()):
        raise ValueError(f"{type(model).__name__} is already quantized; decode it as it is "
                         "(weights='float32') or start from its float32 weights")
    config = model.get_config()
    if weights == "bfloat16":
        config["dtype"] = "bfloat16"
    copy = type(model).from_config(config)
    try:
        copy.build((None, None))
    except Exception as error:  # e.g. an initializer without a bfloat16 kernel (the LSTM's)
        raise ValueError(f"{type(model).__name__} cannot decode with {weights} weights "
                         f"({type(error).__name__}); use float32") from None
    copy.set_weights(model.get_weights())
    if weights == "int8":
        copy.quantize("int8")
        if not any(getattr(layer, "quantization_mode", None)
                   for layer in copy._flatten_layers()):
            raise ValueError(f"{type(model).__name__} has no layer that Keras quantizes to "
                             "int8; use float32")
    return copy
