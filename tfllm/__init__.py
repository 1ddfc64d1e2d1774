"""tfllm: language models you can read and own, in TensorFlow 2 / Keras 3.

Layers (`tfllm.layers`), models (`tfllm.models`), data (`tfllm.data`), text generation
(`tfllm.generation`), training (`tfllm.training`) and export (`tfllm.export`).

`import tfllm` registers every serializable class with Keras, so a saved model loads
without `custom_objects`:

    import keras
    import tfllm  # noqa: F401
    model = keras.saving.load_model("runs/gpt-quick/model.keras")

The models and layers are also attributes of the package (`tfllm.GPT`,
`tfllm.MultiHeadAttention`, ...).
"""

import os
import sys

__version__ = "0.1.0"


def _started_as_the_command_line():
    """True while `tfllm ...` or `python -m tfllm.cli ...` starts: the command line checks
    its options before TensorFlow loads (a mistake is named in a moment, without
    TensorFlow's start-up chatter) and imports the models itself when it runs."""
    argv = getattr(sys, "orig_argv", [])
    if "-m" in argv[:-1]:
        return argv[argv.index("-m") + 1] in ("tfllm", "tfllm.cli")
    return len(argv) > 1 and os.path.basename(argv[1]) == "tfllm"


if not _started_as_the_command_line():
    from tfllm.startup_log import import_tensorflow as _import_tensorflow

    _import_tensorflow()  # without its start-up lines if TF_CPP_MIN_LOG_LEVEL=3 asks so
    # The classes register themselves with Keras when their modules load; the learning
    # rate schedule is saved inside compiled models' optimizers.
    from tfllm.layers import *  # noqa: E402,F401,F403
    from tfllm.models import *  # noqa: E402,F401,F403
    from tfllm import metrics as _metrics  # noqa: E402,F401
    from tfllm.training import schedules as _schedules  # noqa: E402,F401
