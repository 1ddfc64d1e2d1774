"""Initializers that give every weight its own random draw.

Keras 3 initializers are stateless: an instance created without a seed picks one seed
when it is created and returns the *same* values each time it is called again with the
same shape. An initializer object shared between weights (one `TruncatedNormal` handed
to every block of a model) therefore starts all of them from one draw: query, key and
value kernels equal, every block a copy of the first. Layers here never call an
initializer they were given; they call `clone_initializer(initializer)` once per weight.
"""

import keras


def clone_initializer(initializer):
    """A new initializer of the same kind and settings as `initializer`.

    An unseeded random initializer gets a fresh seed (drawn from Python's `random`,
    which `keras.utils.set_random_seed` seeds, so a seeded program builds the same
    model every time). An initializer with an explicit seed keeps it: weights
    initialised by two clones of it are equal, as they are in Keras. Strings and
    configs are resolved by `keras.initializers.get`.
    """
    initializer = keras.initializers.get(initializer)
    if not isinstance(initializer, keras.initializers.Initializer):
        return initializer  # a plain callable: nothing to clone
    return initializer.__class__.from_config(initializer.get_config())
