"""Checks every tfllm layer owes, in one place (after KerasHub's run_layer_test)."""

import keras
import numpy as np


def check_layer(
    layer_class,
    init_kwargs,
    inputs,
    expected_output_shape,
    expected_num_trainable_weights,
    call_kwargs=None,
    float32_output=False,
):
    """Builds `layer_class(**init_kwargs)` and checks the contract of a layer.

    - the output has the expected shape;
    - it has the expected number of trainable weights;
    - `get_config` → `from_config` (and Keras serialization) gives a layer
      that, with the same weights, computes the same output;
    - under `mixed_bfloat16` it runs, keeps float32 variables and returns
      bfloat16 (or float32, when `float32_output`) outputs close to the
      float32 ones.
    """
    call_kwargs = call_kwargs or {}
    layer = layer_class(**init_kwargs)
    output = layer(inputs, **call_kwargs)
    first_output = output[0] if isinstance(output, tuple) else output
    assert tuple(first_output.shape) == tuple(expected_output_shape)
    assert len(layer.trainable_weights) == expected_num_trainable_weights

    config = layer.get_config()
    for key in init_kwargs:
        assert key in config, f"get_config misses constructor argument {key!r}"
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is layer_class
    restored(inputs, **call_kwargs)
    restored.set_weights(layer.get_weights())
    restored_output = restored(inputs, **call_kwargs)
    restored_first = restored_output[0] if isinstance(restored_output, tuple) else restored_output
    np.testing.assert_allclose(np.asarray(restored_first), np.asarray(first_output), atol=1e-6)

    mixed = layer_class(**init_kwargs, dtype="mixed_bfloat16")
    mixed_output = mixed(inputs, **call_kwargs)
    mixed_first = mixed_output[0] if isinstance(mixed_output, tuple) else mixed_output
    for weight in mixed.weights:
        assert weight.dtype == "float32", f"{weight.path} is {weight.dtype} under mixed precision"
    expected_dtype = "float32" if float32_output else "bfloat16"
    assert keras.backend.standardize_dtype(mixed_first.dtype) == expected_dtype
    if mixed.weights:
        mixed.set_weights(layer.get_weights())
        mixed_output = mixed(inputs, **call_kwargs)
        mixed_first = mixed_output[0] if isinstance(mixed_output, tuple) else mixed_output
    scale = float(np.abs(np.asarray(first_output)).max()) + 1e-6
    np.testing.assert_allclose(
        np.asarray(keras.ops.cast(mixed_first, "float32")) / scale,
        np.asarray(first_output) / scale,
        atol=0.05,
    )
    return layer
