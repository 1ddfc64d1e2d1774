"""What the benchmark scripts share: quiet TensorFlow start-up, progress lines, robust statistics.

Only the standard library is imported here, so a script can use `quiet_native_stderr`
before it imports TensorFlow.
"""

import argparse
import contextlib
import os
import platform
import resource
import statistics
import sys
import threading

#: CPU flags that decide how fast int8 and bfloat16 matmuls can be.
NOTABLE_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
                 "avx_vnni")
#: Flags of units that compute in bfloat16 (without them bfloat16 is converted to float32).
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


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


def parse_cases(text):
    """Decoding cases BATCHxPOSITIONS: "1x128,8x512" -> [(1, 128), (8, 512)]."""
    cases = []
    for item in text.split(","):
        try:
            batch, positions = (int(part) for part in item.strip().lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"a case is BATCHxPOSITIONS, e.g. 8x512; got {item!r}") from None
        if batch < 1 or positions < 1:
            raise argparse.ArgumentTypeError(f"batch and positions must be positive: {item!r}")
        if (batch, positions) not in cases:
            cases.append((batch, positions))
    return cases


def add_gpt_shape_arguments(group, training=True):
    """The GPT's shape options (`--num-layers` ... `--vocabulary-size`) on an argparse group;
    with `training`, also the training window `--sequence-length` and `--batch-size`."""
    group.add_argument("--num-layers", type=int, default=4, help="Transformer blocks")
    group.add_argument("--num-heads", type=int, default=4, help="attention heads")
    group.add_argument("--hidden-dim", type=int, default=256, help="model width D")
    group.add_argument("--intermediate-dim", type=int, default=1024, help="feed-forward width")
    if training:
        group.add_argument("--sequence-length", type=int, default=256,
                           help="tokens per sequence T")
        group.add_argument("--batch-size", type=int, default=16, help="sequences per step B")
    group.add_argument("--vocabulary-size", type=int, default=512, help="token ids V")


def check_at_least_one(parser, args, names):
    """`parser.error` for the first of the options `names` (dest spelling) below 1."""
    for name in names:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")


def repository_on_path(script):
    """Puts the checkout that holds `script` (benchmarks/x.py) on `sys.path` when `tfllm`
    cannot be imported otherwise (run without PYTHONPATH or an installed tfllm)."""
    import importlib.util

    if importlib.util.find_spec("tfllm") is None:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(script))))


def print_table(columns, rows):
    """Prints `rows` (sequences of values) under a header and a rule.

    `columns` are `(title, format spec)` pairs; the spec's width sets the column's
    (`"<22"`: text, left-aligned; `"9.1f"`: numbers, right-aligned). None prints blank.
    """
    widths = [int("".join(ch for ch in spec.lstrip("<>").split(".")[0] if ch.isdigit()))
              for _, spec in columns]
    header = " ".join(f"{title:<{width}}" if spec.startswith("<") else f"{title:>{width}}"
                      for (title, spec), width in zip(columns, widths))
    print(header)
    print("-" * len(header))
    for row in rows:
        print(" ".join(" " * width if value is None else format(value, spec)
                       for value, (_, spec), width in zip(row, columns, widths)))


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


def cpu_flags():
    """`(model name, set of flags)` of this machine's CPU from /proc/cpuinfo (Linux)."""
    model, flags = platform.processor() or "unknown CPU", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


def cpu_description():
    """The CPU model and its flags that matter for int8 / bf16 matmuls (Linux)."""
    model, flags = cpu_flags()
    present = [flag for flag in NOTABLE_FLAGS if flag in flags]
    return f"{model}, {os.cpu_count()} cores; units: {', '.join(present) or 'none of note'}"


def resident_bytes():
    """This process's resident set size now (Linux /proc/self/statm; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def peak_resident_bytes():
    """The process's resident set high-water mark since it started (`getrusage`)."""
    kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return kilobytes * (1 if sys.platform == "darwin" else 1024)


class ResidentPeak:
    """Samples the resident set size in a thread while the block runs.

    `with ResidentPeak() as peak: ...`, then `peak.before` (bytes when the block began)
    and `peak.peak` (the largest sample). The sampling (every `interval` seconds)
    can miss a peak shorter than that.
    """

    def __init__(self, interval=0.002):
        self.interval = interval
        self.before = self.peak = 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, resident_bytes())

    def __enter__(self):
        self.before = self.peak = resident_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident_bytes())
        return False

    @property
    def growth(self):
        """Bytes the process's resident set grew by, at its peak, over its size before."""
        return self.peak - self.before
