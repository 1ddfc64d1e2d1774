"""What `import tfllm` promises: every saved class loads after it, and the command line
still parses its options before TensorFlow loads."""

import json
import subprocess
import sys

import numpy as np

# Runs in a fresh process: `import tfllm` alone, then Keras's own loader.
LOAD_AFTER_IMPORT_TFLLM = """
import json, sys
import keras
import numpy as np
import tfllm  # noqa: F401
answer = {}
for name in sys.argv[1:]:
    model = keras.saving.load_model(name)
    ids = np.array([[1, 2, 3, 4]], "int32")
    answer[name] = {"class": type(model).__name__,
                    "output": np.asarray(model(ids)).tolist(),
                    "compiled": getattr(model, "optimizer", None) is not None}
print(json.dumps(answer))
"""


def test_import_tfllm_is_enough_to_load_saved_models(tmp_path):
    import keras

    from tfllm.models import GPT, BertEncoder, BertMaskedLM
    from tfllm.training import TrainingConfig, compile_language_model

    gpt = GPT(vocabulary_size=20, num_layers=1, num_heads=2, hidden_dim=16, max_length=16)
    config = TrainingConfig(steps=4, steps_per_epoch=2, batch_size=2, sequence_length=8,
                            warmup_steps=1, jit_compile=False)
    compile_language_model(gpt, config)  # a schedule and the Perplexity metric inside
    ids = np.random.default_rng(0).integers(0, 20, (2, 8)).astype("int32")
    gpt.fit(ids, ids, epochs=1, verbose=0)
    bert = BertMaskedLM(BertEncoder(vocabulary_size=20, max_length=16, num_layers=1,
                                    num_heads=2, hidden_dim=16))
    bert.build((None, None))
    paths = {str(tmp_path / "gpt.keras"): gpt, str(tmp_path / "bert.keras"): bert}
    for path, model in paths.items():
        model.save(path)

    script = tmp_path / "load.py"
    script.write_text(LOAD_AFTER_IMPORT_TFLLM, encoding="utf-8")
    result = subprocess.run([sys.executable, str(script), *paths], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    probe = np.array([[1, 2, 3, 4]], "int32")
    for path, model in paths.items():
        assert answer[path]["class"] == type(model).__name__
        np.testing.assert_allclose(answer[path]["output"], np.asarray(model(probe)),
                                   atol=1e-5)
    assert answer[str(tmp_path / "gpt.keras")]["compiled"]
    assert isinstance(keras.saving.load_model(str(tmp_path / "gpt.keras")), GPT)


def test_the_command_line_checks_options_before_tensorflow_loads(tmp_path):
    # `-X importtime` lists every module the process imports on stderr.
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tfllm.cli", "train", "--steps", "0"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    assert "error: tfllm train: argument --steps" in result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert "tfllm" in imported and "tfllm.presets" in imported
    assert not {name for name in imported if name.split(".")[0] in ("tensorflow", "keras")}
