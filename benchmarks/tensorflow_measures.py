"""What the TensorFlow benchmark scripts share once TensorFlow is imported.

The machine's matmul peak (a compiled chain of square matmuls), nanoGPT's estimate of
training FLOPs per token, and an int8 copy of a tfllm model. Import it after
`timing.quiet_native_stderr` has let TensorFlow start quietly (and, in a script that
also uses PyTorch, after `import torch`).
"""

import time

import numpy as np
import tensorflow as tf

MATMUL_CHAIN = 8  # matmuls per call of the peak kernel: enough work to hide call overhead


def orthogonal_chain_operands(size, seed):
    """`(a, q)`: a random [size, size] matrix and a random orthogonal one, float64 NumPy.

    Multiplying by `q` over and over keeps the values' scale, so they neither grow nor
    decay to denormals (which are slow on CPUs) along a chain, and every product is
    distinct, so no graph optimiser can merge them.
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((size, size)))
    return rng.standard_normal((size, size)), q


def matmul_peak_kernel(size, seed, dtype=tf.float32):
    """A compiled chain of `MATMUL_CHAIN` [size, size] matmuls in `dtype`, and its FLOPs.

    Returns `(run, flops)`: `run()` makes one call and returns its wall time in seconds.
    """
    a, q = orthogonal_chain_operands(size, seed)
    a, b = tf.constant(a, dtype), tf.constant(q, dtype)

    @tf.function
    def chain(x):
        for _ in range(MATMUL_CHAIN):
            x = tf.matmul(x, b)
        return tf.reduce_sum(tf.cast(x, tf.float32))

    def run():
        start = time.perf_counter()
        chain(a).numpy()
        return time.perf_counter() - start

    return run, 2.0 * size**3 * MATMUL_CHAIN


def flops_per_token(model, args):
    """nanoGPT's estimate: 6 N + 12 L T D, N without lookup-only embedding tables.

    `args` has `sequence_length`, `hidden_dim`, `vocabulary_size` and `num_layers`.
    Returns `(params, matmul_params, flops_per_token)`.
    """
    T, D, V = args.sequence_length, args.hidden_dim, args.vocabulary_size
    weights = model.trainable_weights
    params = int(sum(np.prod(w.shape) for w in weights))
    lookup = 0
    for w in weights:
        if tuple(w.shape) == (T, D) and "position" in w.path:
            lookup += T * D
    has_separate_head = any(tuple(w.shape) == (D, V) for w in weights)
    if has_separate_head:
        # The token table then only feeds a gather; the head kernel does the matmul.
        lookup += sum(V * D for w in weights if tuple(w.shape) == (V, D))
    matmul_params = params - lookup
    return params, matmul_params, 6 * matmul_params + 12 * args.num_layers * T * D


def int8_copy(model):
    """The int8 copy a user decodes with (`tfllm.generation.with_decoding_weights`)."""
    from tfllm.generation import with_decoding_weights

    return with_decoding_weights(model, "int8")
