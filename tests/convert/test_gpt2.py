"""GPT-2 folders in Hugging Face's format → tfllm runs, checked against KerasHub's own loader
of the same folder and a NumPy GPT-2."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file, save_file

from tests.convert.checkpoints import write_gpt2_folder
from tests.convert.references import gpt2_logits
from tfllm.convert import convert_checkpoint
from tfllm.runs import RunDirectory

TEXTS = ["the king is not to be", "She is the queen, or he is!", "to be\nor not"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A tiny GPT-2 folder, its tfllm run, and KerasHub's `GPT2CausalLM` of the folder."""
    import keras_hub

    root = tmp_path_factory.mktemp("gpt2")
    config = write_gpt2_folder(root / "folder")
    run, report = convert_checkpoint(root / "folder", root / "run")
    theirs = keras_hub.models.GPT2CausalLM.from_preset(str(root / "folder"))
    # KerasHub's tokenizer is slow eagerly: its ids of TEXTS, once.
    their_ids = [np.asarray(ids).tolist() for ids in theirs.preprocessor.tokenizer(TEXTS)]
    return {"root": root, "config": config, "run": run, "report": report, "theirs": theirs,
            "their_ids": their_ids}


def test_logits_of_the_saved_model_match_keras_hub(converted):
    model = keras.saving.load_model(converted["run"].model_file)  # what users load
    ids = np.random.default_rng(0).integers(0, model.vocabulary_size, (2, 12)).astype("int32")
    mask = np.ones_like(ids, bool)
    mask[1, 7:] = False  # right padding: real positions must not change
    expected = np.asarray(converted["theirs"]({"token_ids": ids, "padding_mask": mask}))
    mine = np.asarray(model({"token_ids": ids, "padding_mask": mask}))
    np.testing.assert_allclose(mine[mask], expected[mask], atol=1e-4)
    assert model.activation == "gelu_approximate" and model.layer_norm_epsilon == 1e-5


def test_token_ids_match_keras_hubs_gpt2_tokenizer(converted):
    tokenizer = converted["run"].tokenizer()
    expected = converted["their_ids"]
    assert tokenizer.tokenize(TEXTS).to_list() == expected
    assert [tokenizer.encode_text(text).tolist() for text in TEXTS] == expected


def test_layer_norm_epsilon_and_tanh_gelu_come_from_the_config(tmp_path):
    # KerasHub ignores layer_norm_epsilon; a NumPy GPT-2 is the truth here.
    config = write_gpt2_folder(tmp_path / "folder", seed=3, layer_norm_epsilon=0.5,
                               prefix="", scale=0.5)
    from tfllm.convert.checkpoint_folder import CheckpointFolder
    from tfllm.convert.gpt2 import gpt2_settings, load_gpt2_weights
    from tfllm.models import GPT

    folder = CheckpointFolder(tmp_path / "folder")
    model = GPT(**gpt2_settings(folder.config))
    model.build((None, None))
    load_gpt2_weights(model, folder.tensors())
    ids = np.random.default_rng(1).integers(0, config["vocab_size"], (2, 9)).astype("int32")
    expected = gpt2_logits(load_file(tmp_path / "folder" / "model.safetensors"), config, ids,
                           prefix="")
    np.testing.assert_allclose(np.asarray(model(ids)), expected, atol=1e-4)


def test_the_run_is_finished_and_records_its_source(converted):
    run = RunDirectory(converted["run"].path)
    assert run.is_finished() and run.model_class() == "GPT"
    assert run.read_config()["source_config"] == converted["config"]
    assert run.read_metrics()["parameters"] == converted["theirs"].backbone.count_params()


def _broken(tmp_path, change):
    folder = tmp_path / "folder"
    write_gpt2_folder(folder)
    change(folder)
    return folder


def _set_config(**entries):
    def change(folder):
        config = json.loads((folder / "config.json").read_text())
        config.update(entries)
        (folder / "config.json").write_text(json.dumps(config))
    return change


def _drop_weight(name):
    def change(folder):
        tensors = load_file(folder / "model.safetensors")
        del tensors[name]
        save_file(tensors, str(folder / "model.safetensors"))
    return change


@pytest.mark.parametrize("change, error, words", [
    (lambda folder: (folder / "config.json").unlink(), FileNotFoundError,
     ["not a Hugging Face checkpoint folder", "config.json"]),
    (_set_config(model_type="llama"), ValueError, ["'llama'", "'bert' and 'gpt2'"]),
    (_set_config(n_embd=32), ValueError, ["transformer.wte.weight", ", 16)", ", 32)",
                                          "disagrees"]),
    (lambda folder: (folder / "merges.txt").unlink(), FileNotFoundError, ["merges.txt"]),
    (lambda folder: (folder / "model.safetensors").unlink(), FileNotFoundError,
     ["model.safetensors"]),
    (_drop_weight("transformer.h.1.mlp.c_fc.bias"), ValueError, ["h.1.mlp.c_fc.bias"]),
])
def test_bad_folders_are_named(tmp_path, change, error, words):
    folder = _broken(tmp_path, change)
    with pytest.raises(error) as raised:
        convert_checkpoint(folder, tmp_path / "run")
    for word in words:
        assert word in str(raised.value)
    assert not (tmp_path / "run" / "model.keras").exists()


def log_prob_sum(logits, ids):
    """Sum over t >= 1 of log p(ids[t] | ids[:t]) from `[T, V]` logits, in NumPy."""
    logits = logits.astype(np.float64)
    top = logits.max(-1, keepdims=True)
    log_probs = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    return float(sum(log_probs[t - 1, ids[t]] for t in range(1, len(ids))))


def test_score_is_the_log_probability_transformers_gives(converted):
    # The export's `score` function itself, in process (test_convert_cli.py loads a real
    # export of a converted run in a fresh process).
    from tfllm.export.language_model import _LanguageModelSignatures

    run = converted["run"]
    model, tokenizer = run.load()
    signatures = _LanguageModelSignatures(model, tokenizer, {}, "\n")
    scored = signatures.score(tf.constant(TEXTS))
    theirs = converted["theirs"]
    for index, ids in enumerate(converted["their_ids"]):
        ids = np.asarray(ids, "int32")
        logits = np.asarray(theirs({"token_ids": ids[None],
                                    "padding_mask": np.ones((1, len(ids)), bool)}))[0]
        assert int(scored["num_tokens_scored"][index]) == len(ids) - 1
        np.testing.assert_allclose(float(scored["log_likelihood"][index]),
                                   log_prob_sum(logits, ids), rtol=1e-5, atol=1e-4)
