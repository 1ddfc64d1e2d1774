"""`tfllm convert` from the command line: bad folders named in one line, and a converted GPT-2
through generate, LoRA fine-tuning (`--init-from`) and export, served by TensorFlow alone."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.convert.checkpoints import write_gpt2_folder
from tests.convert.test_gpt2 import log_prob_sum
from tfllm.cli import main

CORPUS = "the king is not to be, or the queen is.\nhe is the king; she is the queen!\n" * 40
PROMPT = "the king"
NEW_TOKENS = 6

# Runs in a separate process: TensorFlow (and TensorFlow Text, for the BPE ops) only.
LOADER = """
import json, sys
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the ops of the byte-level BPE)

loaded = tf.saved_model.load(sys.argv[1])
texts = json.loads(sys.argv[2])
answer = {"tfllm_imported": any(name.split(".")[0] == "tfllm" for name in sys.modules)}
served = loaded.signatures["serving_default"](prompts=tf.constant(texts[:1]))
answer["text"] = [text.decode("utf-8") for text in served["text"].numpy().tolist()]
scored = loaded.signatures["score"](texts=tf.constant(texts))
answer.update({key: value.numpy().tolist() for key, value in scored.items()})
print(json.dumps(answer))
"""


def _run(arguments, capsys):
    """`tfllm ARGUMENTS` in this process (TensorFlow is loaded already): exit code, output."""
    code = main([str(argument) for argument in arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("change, words", [
    (lambda folder: (folder / "config.json").unlink(), ["config.json"]),
    (lambda folder: (folder / "config.json").write_text('{"model_type": "t5"}'),
     ["'t5'", "'bert' and 'gpt2'"]),
    (lambda folder: (folder / "vocab.json").unlink(), ["vocab.json"]),
])
def test_bad_folders_fail_in_one_line(tmp_path, capsys, change, words):
    write_gpt2_folder(tmp_path / "folder")
    change(tmp_path / "folder")
    code, out, err = _run(["convert", tmp_path / "folder", "--run-dir", tmp_path / "run"],
                          capsys)
    assert code != 0 and err.startswith("error: ") and err.count("\n") == 1
    for word in words:
        assert word in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_convert_generate_fine_tune_with_lora_and_serve(tmp_path, capsys):
    import keras_hub

    from tfllm.generation import generate_text
    from tfllm.runs import RunDirectory

    write_gpt2_folder(tmp_path / "folder", max_length=64)
    code, out, _ = _run(["convert", tmp_path / "folder", "--run-dir", tmp_path / "gpt2"], capsys)
    assert code == 0 and "Converted" in out

    # Greedy generation is the argmax loop over KerasHub's model of the same folder.
    code, out, _ = _run(["generate", tmp_path / "gpt2", "--prompt", PROMPT, "--max-new-tokens",
                         NEW_TOKENS, "--temperature", 0], capsys)
    theirs = keras_hub.models.GPT2CausalLM.from_preset(str(tmp_path / "folder"))
    ids = np.asarray(theirs.preprocessor.tokenizer(PROMPT)).tolist()
    for _ in range(NEW_TOKENS):
        logits = np.asarray(theirs({"token_ids": np.array([ids], "int32"),
                                    "padding_mask": np.ones((1, len(ids)), bool)}))
        ids.append(int(logits[0, -1].argmax()))
    expected = theirs.preprocessor.tokenizer.detokenize(np.array(ids, "int32"))
    expected = np.asarray(expected).item()
    expected = expected.decode("utf-8") if isinstance(expected, bytes) else expected
    assert code == 0 and out.rstrip("\n") == expected

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    code, out, err = _run(["train", "--init-from", tmp_path / "gpt2", "--lora-rank", 2,
                           "--corpus", corpus, "--steps", 3, "--batch-size", 4,
                           "--sequence-length", 16, "--sample-length", 0, "--no-xla",
                           "--quiet", "--run-dir", tmp_path / "tuned"], capsys)
    assert code == 0, err
    tuned = RunDirectory(tmp_path / "tuned")
    assert tuned.is_finished() and tuned.read_config()["lora_rank"] == 2

    code, out, err = _run(["export", tuned.path, "--output", tmp_path / "saved",
                           "--max-new-tokens", NEW_TOKENS], capsys)
    assert code == 0, err
    script = tmp_path / "load.py"
    script.write_text(LOADER, encoding="utf-8")
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    texts = [PROMPT, "she is not the queen"]
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "saved" / "tuned" / "1"),
                             json.dumps(texts)], capture_output=True, text=True, timeout=300,
                            env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert not served["tfllm_imported"]

    model, tokenizer = tuned.load()
    assert served["text"] == [generate_text(model, tokenizer, PROMPT,
                                            max_new_tokens=NEW_TOKENS, temperature=0.0)]
    for index, text in enumerate(texts):
        ids = tokenizer.encode_text(text)
        logits = np.asarray(model(ids[None].astype("int32")))[0]
        np.testing.assert_allclose(served["log_likelihood"][index], log_prob_sum(logits, ids),
                                   rtol=1e-5, atol=1e-4)


def test_a_folder_that_is_no_checkpoint_is_named_before_tensorflow_loads(tmp_path):
    (tmp_path / "notes").mkdir()
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "tfllm.cli", "convert",
                             str(tmp_path / "notes")], capture_output=True, text=True,
                            timeout=120, env=environment, cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if not line.startswith("import time")]
    assert result.returncode == 1 and len(errors) == 1
    assert errors[0].startswith("error: ") and "config.json" in errors[0]
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time")]
    assert "tensorflow" not in imported and "tfllm.convert" in imported
