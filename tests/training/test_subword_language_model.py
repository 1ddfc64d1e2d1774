"""A GPT on subword tokens: trains, saves, generates, exports; bits per character."""

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfllm.data import BytePairTokenizer, CharacterTokenizer, Corpus, Document, build_tokenizer
from tfllm.data.datasets import joined_text
from tfllm.export import export_run
from tfllm.generation import generate_text
from tfllm.models import GPT
from tfllm.training import TrainingConfig, load_run, train_and_evaluate

LINES = ("O Romeo, Romeo, wherefore art thou Romeo?\n", "Deny thy father and refuse thy name;\n",
         "Or, if thou wilt not, be but sworn my love, café naïve.\n",
         "And I'll no longer be a Capulet.\n")
TEXT = "".join(LINES[i % 4] for i in range(0, 120, 3)) + "".join(LINES) * 10
CORPUS = Corpus(train=[Document("a", TEXT)], validation=[Document("b", TEXT[:700])],
                test=[Document("c", "".join(LINES) * 3)])
CONFIG = TrainingConfig(sequence_length=16, batch_size=4, steps=6, steps_per_epoch=3,
                        warmup_steps=1, jit_compile=False)
MODEL = {"max_length": 16, "num_layers": 1, "num_heads": 2, "hidden_dim": 16,
         "intermediate_dim": 32}


def _trained(tokenizer, run_directory=None):
    model = GPT(vocabulary_size=tokenizer.vocabulary_size, **MODEL)
    lines = []
    metrics = train_and_evaluate(model, CORPUS, tokenizer, CONFIG, run_directory, prompt="O",
                                 sample_length=0, print_function=lines.append, verbose=0)
    return model, metrics, lines


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory):
    run_directory = tmp_path_factory.mktemp("bpe") / "run"
    tokenizer = build_tokenizer("bpe", CORPUS.texts("train"), vocabulary_size=300)
    model, metrics, lines = _trained(tokenizer, run_directory)
    return {"run": run_directory, "tokenizer": tokenizer, "model": model, "metrics": metrics,
            "lines": lines}


def _log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def test_bits_per_character_of_bpe_equals_a_numpy_computation(bpe_run):
    """Loss over every full held-out window in NumPy, tokens counted by the `tokenizers`
    package's own GPT-2 tokenizer, characters by Python."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer, model = bpe_run["tokenizer"], bpe_run["model"]
    text = joined_text(CORPUS.validation)
    reference = Tokenizer(models.BPE(vocab=tokenizer.vocabulary,
                                     merges=[tuple(m.split(" ")) for m in tokenizer.merges]))
    reference.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    stream = np.asarray(reference.encode(text).ids)
    length = CONFIG.sequence_length
    windows = np.stack([stream[i * length:i * length + length + 1]
                        for i in range((len(stream) - 1) // length)])
    log_probabilities = _log_softmax(np.asarray(model(windows[:, :-1]), "float64"))
    nats = -np.take_along_axis(log_probabilities, windows[:, 1:, None], -1).mean()
    expected = nats * len(stream) / len(text) / math.log(2)
    metrics = bpe_run["metrics"]
    assert len(stream) < len(text)  # subwords: fewer tokens than characters
    assert metrics["validation_bits_per_character"] == pytest.approx(expected, rel=1e-4)
    assert any("bits/character" in line for line in bpe_run["lines"])
    saved = json.loads((bpe_run["run"] / "metrics.json").read_text(encoding="utf-8"))
    assert saved["test_bits_per_character"] == pytest.approx(
        metrics["test_bits_per_character"])
    history = (bpe_run["run"] / "history.csv").read_text(encoding="utf-8")
    assert "val_bits_per_character" in history.splitlines()[0]


def test_bits_per_character_of_characters_is_nats_per_character_over_ln2():
    tokenizer = CharacterTokenizer.from_texts(CORPUS.texts("train"))
    _, metrics, _ = _trained(tokenizer)
    for split in ("validation", "test"):
        assert metrics[f"{split}_tokens_per_character"] == 1.0
        assert metrics[f"{split}_bits_per_character"] == pytest.approx(
            metrics[f"{split}_loss"] / math.log(2), rel=1e-12)


LOADER = textwrap.dedent('''
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (registers the tokenizer's ops)
    loaded = tf.saved_model.load(sys.argv[1])
    out = loaded.signatures["serving_default"](prompts=tf.constant(json.loads(sys.argv[2])))
    print(json.dumps({"text": [t.decode("utf-8") for t in out["text"].numpy()],
                      "tfllm": any(m.split(".")[0] == "tfllm" for m in sys.modules)}))
''')


@pytest.mark.slow
def test_bpe_gpt_saves_generates_and_its_export_serves_the_same_text(bpe_run, tmp_path):
    model, tokenizer = load_run(bpe_run["run"])
    assert isinstance(tokenizer, BytePairTokenizer)
    assert tokenizer.vocabulary == bpe_run["tokenizer"].vocabulary
    prompts = ["O Romeo", "naïve 🙂"]
    in_process = [generate_text(model, tokenizer, prompt, max_new_tokens=6, temperature=0.0)
                  for prompt in prompts]
    path = export_run(bpe_run["run"], tmp_path / "served", max_new_tokens=6)
    metadata = json.loads((path / "assets.extra" / "tfllm.json").read_text(encoding="utf-8"))
    assert metadata["tokenizer"] == "bpe" and "tensorflow_text" in metadata["requires"]
    script = tmp_path / "serve.py"
    script.write_text(LOADER, encoding="utf-8")
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run([sys.executable, str(script), str(path), json.dumps(prompts)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert not served["tfllm"]
    assert served["text"] == in_process
    assert all(text.startswith(prompt) for text, prompt in zip(served["text"], prompts))
