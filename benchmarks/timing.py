"""What the benchmark scripts share: quiet TensorFlow start-up, progress lines, robust statistics.

Only the standard library is imported here, so a script can use `quiet_native_stderr`
before it imports TensorFlow.
"""

import contextlib
import os
import statistics
import sys


@contextlib.contextmanager
def quiet_native_stderr():
    """Hides what C++ writes to stderr (file descriptor 2) inside the block.

    TensorFlow's CUDA probes log before absl logging is set up, so
    TF_CPP_MIN_LOG_LEVEL cannot silence them. Python exceptions raised in the
    block still show: they are printed after stderr is restored.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def log(message):
    """A progress line on stderr (the tables go to stdout)."""
    print(message, file=sys.stderr, flush=True)


def median(values):
    return statistics.median(values)


def interquartile_fraction(values):
    """Spread of `values`: (75th - 25th percentile) / median; 0 for fewer than two."""
    if len(values) < 2:
        return 0.0
    p25, _, p75 = statistics.quantiles(values, n=4, method="inclusive")
    return (p75 - p25) / statistics.median(values)


def ratio_summary(numerator, denominator):
    """Speed of `numerator` over `denominator` (their median step times, inverted) and its
    range over the rounds. Both have `name`, `times` (every step) and `round_medians`."""
    per_round = [d / n for n, d in zip(numerator.round_medians, denominator.round_medians)]
    return {
        "numerator": numerator.name,
        "denominator": denominator.name,
        "ratio": median(denominator.times) / median(numerator.times),
        "round_min": min(per_round),
        "round_max": max(per_round),
    }
