"""Argument checks shared by layers and models, with messages in our words."""

import numbers


def check_positive_int(name, value):
    """Returns `value` as an int, or raises a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"`{name}` must be a positive integer; got {value!r}.")
    return int(value)


def check_rate(name, value):
    """Returns `value` as a float in [0, 1), or raises a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
        raise ValueError(f"`{name}` must be a number in [0, 1); got {value!r}.")
    return float(value)


def check_choice(name, value, choices):
    """Returns `value` if it is one of `choices`, or raises a ValueError listing them."""
    if value not in choices:
        options = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"`{name}` must be one of {options}; got {value!r}.")
    return value


def check_transformer_settings(vocabulary_size, max_length, num_layers, num_heads, hidden_dim,
                               intermediate_dim, dropout):
    """The checked shape settings of a Transformer model, as a dict of the same names.

    `intermediate_dim` defaults (None) to `4 * hidden_dim`; `hidden_dim` must be divisible
    by `num_heads`. Each problem raises a ValueError naming the argument.
    """
    settings = {name: check_positive_int(name, value) for name, value in (
        ("vocabulary_size", vocabulary_size), ("max_length", max_length),
        ("num_layers", num_layers), ("num_heads", num_heads), ("hidden_dim", hidden_dim))}
    if settings["hidden_dim"] % settings["num_heads"]:
        raise ValueError(
            f"`hidden_dim` ({hidden_dim}) must be divisible by `num_heads` ({num_heads})."
        )
    settings["intermediate_dim"] = check_positive_int(
        "intermediate_dim", intermediate_dim or 4 * settings["hidden_dim"])
    settings["dropout"] = check_rate("dropout", dropout)
    return settings
