"""Activations that Keras does not name: the tanh approximation of GELU (GPT-2's).

`get_activation` resolves a name as `keras.activations.get` does, plus the names here, so
that a model config can say `activation="gelu_approximate"` and stay plain JSON.
"""

import keras


@keras.saving.register_keras_serializable(package="tfllm")
def gelu_approximate(x):
    """GELU with the tanh approximation, `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.

    GPT-2's activation (`"gelu_new"` in Hugging Face configs); Keras's `"gelu"` is the exact
    one, `x * Phi(x)` (BERT's). Shapes: any; elementwise.

    Example:

    >>> y = gelu_approximate(keras.ops.array([-1.0, 0.0, 1.0]))
    """
    return keras.activations.gelu(x, approximate=True)


#: The activations known by name here besides Keras's own.
ACTIVATIONS = {"gelu_approximate": gelu_approximate}


def get_activation(identifier):
    """The activation function for a name (Keras's or one of `ACTIVATIONS`), a
    serialised activation, a function or None.

    Raises:
        ValueError: the name is neither Keras's nor ours.
    """
    if isinstance(identifier, str) and identifier in ACTIVATIONS:
        return ACTIVATIONS[identifier]
    return keras.activations.get(identifier)
