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
