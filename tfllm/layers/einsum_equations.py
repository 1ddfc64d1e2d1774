"""The einsum equations of multi-head attention, spelled as Keras's attention spells them.

Same letters, same axis order: the `EinsumDense` projections then hold kernels of the
shapes Keras's layer gives them, and weights move between the two layers.
"""

import string


def _letters(start, count):
    return string.ascii_lowercase[start:start + count]


def projection_equation(free_dims, bound_dims, output_dims):
    """The `EinsumDense` equation of a projection, as Keras's attention builds it.

    The input's first `free_dims` axes pass through, its next `bound_dims` axes are
    contracted with the kernel, and the kernel adds `output_dims` axes: for a `[B, T, D]`
    input projected to heads, `("abc,cde->abde", "de", 4)`.

    Returns:
        `(equation, bias_axes, output_rank)`.
    """
    free = _letters(0, free_dims)
    bound = _letters(free_dims, bound_dims)
    output = _letters(free_dims + bound_dims, output_dims)
    return f"{free}{bound},{bound}{output}->{free}{output}", output, free_dims + output_dims


def attention_equations(rank, attention_axes):
    """Einsum equations of the scores and of the weighted sum, for projected inputs of
    `rank` (`[B, <other axes>, <attention axes>, H, d]`), as Keras's attention has them.

    The scores are `[B, <other axes>, H, <query attention axes>, <key attention axes>]`:
    for `[B, T, H, d]` inputs, `"aecd,abcd->acbe"` (keys, queries) and
    `"acbe,aecd->abcd"` (probabilities, values).

    Returns:
        `(scores_equation, combine_equation, scores_rank)`.
    """
    target = _letters(0, rank)
    batch_axes = [axis for axis in range(rank - 1) if axis not in attention_axes]
    source = list(target)
    for offset, axis in enumerate(attention_axes):
        source[axis] = string.ascii_lowercase[rank + offset]
    source = "".join(source)
    product = ("".join(target[axis] for axis in batch_axes)
               + "".join(target[axis] for axis in attention_axes)
               + "".join(source[axis] for axis in attention_axes))
    return (f"{source},{target}->{product}", f"{product},{source}->{target}", len(product))
