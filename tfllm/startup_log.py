"""Keeping TensorFlow's C++ start-up log out of a program's output (no TensorFlow).

TensorFlow prints 6-7 lines as it loads (`cuda drivers`, `cpu_feature_guard`, `failed call
to cuInit`, and absl's "All log messages before absl::InitializeLog() ..."). Most obey
`TF_CPP_MIN_LOG_LEVEL`, but the absl lines are written while the library loads, before
TensorFlow reads that variable, and no variable silences them (`ABSL_MIN_LOG_LEVEL`,
`GLOG_minloglevel` do not). `import_tensorflow` therefore holds back what file
descriptor 2 receives while `tensorflow` is imported, and writes it out only if the
import fails. It does so only when the program asked for silence
(`TF_CPP_MIN_LOG_LEVEL=3`, which `quiet_tensorflow` sets unless the user chose a level).

    quiet_tensorflow(verbose=args.verbose)   # before anything imports TensorFlow
    tf = import_tensorflow()
"""

import contextlib
import os
import sys
import tempfile

SILENT_LEVEL = "3"


def quiet_tensorflow(verbose=False):
    """Asks TensorFlow (and gRPC, which multi-worker training uses) for silence, unless
    `verbose` or the user set `TF_CPP_MIN_LOG_LEVEL`. Call it before TensorFlow loads.

    Returns:
        Whether the start-up log is silenced.
    """
    if verbose or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return os.environ.get("TF_CPP_MIN_LOG_LEVEL") == SILENT_LEVEL and not verbose
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = SILENT_LEVEL
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    return True


def import_tensorflow():
    """`import tensorflow`, without its start-up lines when `TF_CPP_MIN_LOG_LEVEL=3`
    (they are written out if the import fails)."""
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") != SILENT_LEVEL:
        import tensorflow

        return tensorflow
    with _standard_error_held_back():
        import tensorflow
    return tensorflow


@contextlib.contextmanager
def _standard_error_held_back():
    """What file descriptor 2 receives inside the block goes to a temporary file, written
    to the real stderr only when the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            held.seek(0)
            os.write(2, held.read())
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
