"""The `tfllm` command line, run as a user runs it: a separate process."""

import csv
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

TFLLM = [sys.executable, "-m", "tfllm.cli"]
REPOSITORY = Path(__file__).resolve().parents[1]
TIMEOUT_SECONDS = 600  # a bound against hangs, generous for a loaded machine


def _environment():
    return {**os.environ, "PYTHONPATH": str(REPOSITORY), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _run(arguments, cwd, timeout=TIMEOUT_SECONDS):
    return subprocess.run(TFLLM + arguments, capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=_environment())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    words = ["thou", "art", "more", "lovely", "and", "temperate", "rough", "winds", "do"]
    for index in range(10):
        lines = [" ".join(words[(index + 3 * line + k) % len(words)] for k in range(8))
                 for line in range(60)]
        (folder / f"sonnet_{index}.txt").write_text("\n".join(lines), encoding="utf-8")
    return folder


def _train_arguments(corpus, run, steps=20, extra=(), sample_length=10):
    # --no-xla: XLA's compiles are most of the CPU time of a tiny run, and the command line
    # does the same with or without it; XLA training runs in tests/test_examples.py
    # (train_gpt.py calls the same train_and_evaluate) and the BERT jobs' tests.
    return ["train", "--model", "gpt", "--size", "tiny", "--corpus", str(corpus),
            "--run-dir", str(run), "--steps", str(steps), "--steps-per-epoch", "10",
            "--prompt", "thou ", "--sample-length", str(sample_length), "--no-xla", "--quiet",
            *extra]


def _history(run):
    """Epoch → row of history.csv; a repeated epoch (re-run after a kill) keeps its last row."""
    with open(run / "history.csv", newline="") as file:
        return {int(row["epoch"]): row for row in csv.DictReader(file)}


def _files(run):
    """Every file of a run directory with its size and modification time (but `.lock`,
    which every command that takes the run's lock writes its pid into)."""
    return {str(path.relative_to(run)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in sorted(run.rglob("*")) if path.is_file() and path.name != ".lock"}


# One trained run, shared by the tests that need a finished GPT run (each `tfllm train`
# costs a TensorFlow start-up and an XLA compile). Its tests run in one xdist worker
# (setup.cfg: --dist loadgroup), so it is trained once per test session.
GPT_RUN = pytest.mark.xdist_group("cli_gpt_run")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, corpus):
    """`(run directory, completed process)` of `tfllm train` of a tiny GPT, 20 steps."""
    folder = tmp_path_factory.mktemp("finished")
    run = folder / "run"
    result = _run(_train_arguments(corpus, run), cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return run, result


@pytest.mark.slow
@GPT_RUN
def test_train_then_generate_end_to_end(tmp_path, corpus, finished_run):
    run, result = finished_run
    assert "Held-out validation loss" in result.stdout
    assert "Sample:\nthou " in result.stdout
    names = {path.name for path in run.iterdir()}
    assert {"model.keras", "tokenizer.json", "config.json", "metrics.json", "history.csv",
            "checkpoints", "logs"} <= names
    assert json.loads((run / "config.json").read_text())["training"]["steps"] == 20
    assert sorted(_history(run)) == [0, 1]

    generated = _run(["generate", str(run), "--prompt", "thou ", "--max-new-tokens", "25",
                      "--temperature", "0", "--seed", "1"], cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr[-3000:]
    text = generated.stdout.rstrip("\n")
    assert text.startswith("thou ") and 5 < len(text) <= 30

    # Another process, token by token: the same greedy text.
    streamed = _run(["generate", str(run), "--prompt", "thou ", "--max-new-tokens", "25",
                     "--temperature", "0", "--stream"], cwd=tmp_path)
    assert streamed.returncode == 0, streamed.stderr[-3000:]
    assert streamed.stdout == generated.stdout

    exported = _run(["export", str(run), "--output", str(tmp_path / "saved"), "--name", "tiny",
                     "--max-new-tokens", "8"], cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert (tmp_path / "saved" / "tiny" / "1" / "saved_model.pb").is_file()
    assert "saved_model_cli show --dir" in exported.stdout

    rerun = _run(_train_arguments(corpus, run), cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "has finished training" in rerun.stdout
    assert sorted(_history(run)) == [0, 1]  # nothing trained twice


@pytest.mark.slow
@GPT_RUN
def test_a_run_killed_after_its_first_checkpoint_resumes_exactly(tmp_path, corpus, finished_run):
    """SIGKILL mid-run; the same command continues from the last checkpoint, and its
    later epochs' losses equal those of a run that was never interrupted (`finished_run`).
    The interrupted run writes no samples (--sample-length 0): sampling changes nothing
    in training, and writes nothing at all when switched off."""
    reference, _ = finished_run
    steps = 20
    arguments = functools.partial(_train_arguments, steps=steps, sample_length=0)
    run = tmp_path / "interrupted"
    with open(tmp_path / "killed.log", "wb") as log:
        process = subprocess.Popen(TFLLM + arguments(corpus, run), cwd=tmp_path,
                                   env=_environment(), stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            deadline = time.monotonic() + TIMEOUT_SECONDS
            while not (run / "checkpoints" / "step-00000010").is_dir():
                assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no checkpoint within the time limit"
                time.sleep(0.01)
            os.killpg(process.pid, signal.SIGKILL)
            assert process.wait(timeout=30) == -signal.SIGKILL
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)

    checkpoints = sorted(path.name for path in (run / "checkpoints").iterdir())
    last_step = int(checkpoints[-1].split("-")[1])
    assert 10 <= last_step < steps and not (run / "model.keras").exists()

    resumed = _run(arguments(corpus, run), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"from its checkpoint at step {last_step}" in resumed.stdout
    assert "Sample:" not in resumed.stdout
    assert not list((run / "logs").glob("samples/*"))  # --sample-length 0: none at all

    expected, got = _history(reference), _history(run)
    assert sorted(got) == sorted(expected) == list(range(steps // 10))
    for epoch in range(last_step // 10, steps // 10):
        for name in ("loss", "val_loss"):
            assert float(got[epoch][name]) == pytest.approx(float(expected[epoch][name]),
                                                            rel=1e-4), (epoch, name)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == last_step
    assert metrics["validation_loss"] == pytest.approx(
        json.loads((reference / "metrics.json").read_text())["validation_loss"], rel=1e-4)


@pytest.mark.slow
@GPT_RUN
def test_other_settings_do_not_resume_a_run(tmp_path, corpus, finished_run):
    run, _ = finished_run
    before = _files(run)
    result = _run(_train_arguments(corpus, run, extra=["--batch-size", "4"]), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {run} was started with other training settings (batch_size: saved 8, now 4). "
        "Resume with the settings it was started with, or use a new run directory."
    )
    refused = _run(_train_arguments(corpus, run, extra=["--no-resume"]), cwd=tmp_path)
    assert refused.returncode == 1 and "already holds a trained model" in refused.stderr
    assert _files(run) == before  # refused: the run is as it was


@pytest.mark.parametrize("arguments, message", [
    (["train", "--steps", "0"], "argument --steps: expected a positive integer, got '0'"),
    (["train", "--model", "rnn"], "argument --model: invalid choice: 'rnn'"),
    (["train", "--dropout", "1.5"], "argument --dropout: expected a rate in [0, 1)"),
    (["train", "--learning-rate", "nan"], "argument --learning-rate: expected a positive number"),
    (["train", "--strategy", "gpu"], "argument --strategy: invalid choice: 'gpu'"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["generate"], "the following arguments are required: RUN_DIR"),
    (["train", "--model", "lstm", "--heads", "4"], "--heads does not apply to --model lstm"),
    (["train", "--model", "lstm", "--position-encoding", "rotary"],
     "--position-encoding does not apply to --model lstm"),
    (["train", "--model", "bert", "--position-encoding", "sinusoidal", "--size", "tiny"],
     "--position-encoding sinusoidal does not apply to --model bert"),
    (["train", "--corpus", "no/such/*.txt", "--size", "tiny"], "no/such/*.txt"),
    (["train", "--strategy", "multi_worker", "--size", "tiny"], "TF_CONFIG"),
    (["generate", "no/such/run"], "no/such/run is not a run directory"),
    (["generate", "run", "--top-p", "1.5"], "argument --top-p: expected a number in (0, 1]"),
    (["export", "no/such/run"], "no/such/run is not a run directory"),
    (["export", "run", "--version", "0"], "argument --version: expected a positive integer"),
    (["train", "--lora-rank", "4", "--size", "tiny"], "--lora-rank adapts a trained model"),
    (["train", "--lora-rank", "0"], "argument --lora-rank: expected a positive integer"),
    (["train", "--init-from", "no/such/run"], "no/such/run is not a tfllm run directory"),
    (["train", "--text-column", "review"], "--text-column goes with --data PATH"),
    (["train", "--model", "gpt", "--data", "x.csv"], "--data holds labelled examples for"),
    (["train", "--model", "classifier", "--corpus", "a.txt"], "give them with --data FILE"),
    (["train", "--model", "classifier", "--data", "no/such.csv"],
     "--data no/such.csv: no such file or folder"),
])
def test_bad_options_fail_with_one_clear_line(tmp_path, arguments, message):
    environment = {key: value for key, value in _environment().items() if key != "TF_CONFIG"}
    result = subprocess.run(TFLLM + arguments, capture_output=True, text=True, cwd=tmp_path,
                            timeout=120, env=environment)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and message in error_lines[0], result.stderr[-2000:]


def test_help_explains_every_option():
    result = subprocess.run(TFLLM + ["train", "--help"], capture_output=True, text=True,
                            timeout=60, env=_environment())
    assert result.returncode == 0
    for option in ("--model", "--size", "--corpus", "--strategy", "--precision", "--steps",
                   "--batch-size", "--run-dir", "--resume", "--logical-cpus", "--xla"):
        assert option in result.stdout
    generate = subprocess.run(TFLLM + ["generate", "--help"], capture_output=True, text=True,
                              timeout=60, env=_environment())
    assert generate.returncode == 0 and "--max-new-tokens" in generate.stdout


@pytest.mark.slow
def test_mirrored_on_two_logical_cpus_with_mixed_precision(tmp_path, corpus):
    run = tmp_path / "run"
    result = _run(_train_arguments(corpus, run, extra=[
        "--strategy", "mirrored", "--logical-cpus", "2", "--precision", "mixed_bfloat16"]),
        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Strategy: MirroredStrategy: 2 replicas (CPU:0, CPU:1), 1 worker." in result.stdout
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 < metrics["validation_loss"] < 3.5
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["dtype"]["config"]["name"] == "mixed_bfloat16"


@pytest.mark.slow
@pytest.mark.heavy  # minutes; `make test-all` (its parts are tested in-process by default)
def test_bert_pretraining_fine_tuning_and_export_from_the_command_line(tmp_path, corpus):
    bert = tmp_path / "bert"
    result = _run(["train", "--model", "bert", "--size", "tiny", "--corpus", str(corpus),
                   "--run-dir", str(bert), "--steps", "10", "--quiet"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "masked-LM loss" in result.stdout and "before training" in result.stdout
    assert json.loads((bert / "config.json").read_text())["model_class"] == "BertMaskedLM"

    refused = _run(["generate", str(bert)], cwd=tmp_path)
    assert refused.returncode == 1
    last_line = refused.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error:") and "does not generate text" in last_line
    refused = _run(["train", "--model", "classifier", "--size", "tiny", "--layers", "3",
                    "--pretrained", str(bert)], cwd=tmp_path)
    assert refused.returncode == 1 and "--layers does not apply" in refused.stderr

    classifier = tmp_path / "classifier"
    result = _run(["train", "--model", "classifier", "--size", "tiny", "--pretrained", str(bert),
                   "--run-dir", str(classifier), "--steps", "10", "--no-baselines", "--quiet"],
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Held-out test: accuracy" in result.stdout
    metrics = json.loads((classifier / "metrics.json").read_text())
    assert metrics["class_names"] == ["comedy", "history", "tragedy"]
    assert len(metrics["test"]["confusion_matrix"]) == 3

    result = _run(["export", str(classifier), "--output", str(tmp_path / "saved")],
                  cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "signatures: serving_default" in result.stdout and "tensorflow_text" in result.stdout
    assert (tmp_path / "saved" / "classifier" / "1" / "saved_model.pb").is_file()


# Runs in a separate process: TensorFlow only (no tfllm), the export's logits signature.
EXPORT_LOGITS = """
import json, sys
import tensorflow as tf
served = tf.saved_model.load(sys.argv[1])
logits = served.signatures["logits"](token_ids=tf.constant(json.loads(sys.argv[2]), tf.int32))
print(json.dumps({"logits": logits["logits"].numpy().tolist(),
                  "tfllm": any(name.startswith("tfllm") for name in sys.modules)}))
"""


@pytest.mark.slow
@pytest.mark.heavy  # minutes; `make test-all` (its parts are tested in-process by default)
@GPT_RUN
def test_lora_fine_tuning_from_a_finished_run_saves_and_exports_merged(tmp_path, finished_run):
    import keras
    import numpy as np

    import tfllm  # noqa: F401  (registers every class for loading)

    base, _ = finished_run
    other = tmp_path / "other.txt"
    other.write_text("rough winds do shake the darling buds of may\n" * 80, encoding="utf-8")
    lora = tmp_path / "lora"
    result = _run(["train", "--init-from", str(base), "--lora-rank", "2", "--corpus", str(other),
                   "--size", "tiny", "--run-dir", str(lora), "--steps", "10",
                   "--steps-per-epoch", "5", "--learning-rate", "0.01", "--prompt", "rough ",
                   "--sample-length", "10", "--quiet"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank-2 LoRA adapters" in result.stdout
    assert "characters of the corpus are not in the vocabulary" in result.stdout
    config = json.loads((lora / "config.json").read_text())
    assert config["lora_rank"] == 2 and config["init_from"] == str(base.resolve())
    assert (lora / "checkpoints" / "step-00000010" / "lora.npz").is_file()

    # The saved model is a plain GPT, the adapters merged: only the query and value
    # kernels differ from the run it started from.
    before = keras.saving.load_model(base / "model.keras")
    after = keras.saving.load_model(lora / "model.keras")
    assert not after.lora_layers and len(after.trainable_variables) == len(after.weights)
    changed = {mine.path.split("/", 1)[1] for mine, theirs in zip(after.weights, before.weights)
               if not np.array_equal(np.asarray(mine), np.asarray(theirs))}
    assert changed == {f"block_0/attention/{name}/kernel" for name in ("query", "value")}

    exported = _run(["export", str(lora), "--output", str(tmp_path / "saved"),
                     "--max-new-tokens", "8"], cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr[-3000:]
    token_ids = [[5, 6, 7, 8], [9, 10, 0, 0]]
    script = tmp_path / "logits.py"
    script.write_text(EXPORT_LOGITS, encoding="utf-8")
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    served = subprocess.run([sys.executable, str(script), str(tmp_path / "saved" / "lora" / "1"),
                             json.dumps(token_ids)], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path, env=environment)
    assert served.returncode == 0, served.stderr[-3000:]
    answer = json.loads(served.stdout.strip().splitlines()[-1])
    assert not answer["tfllm"]
    expected = [np.asarray(after(np.array([row[:length]], "int32")))[0, -1]
                for row, length in zip(token_ids, (4, 2))]
    np.testing.assert_allclose(answer["logits"], expected, atol=1e-4)


@pytest.mark.slow
def test_a_diverging_run_exits_non_zero_with_valid_json_and_no_model(tmp_path, corpus):
    """A learning rate of 1e30 turns the loss NaN at step 2, before the first checkpoint:
    nothing is kept as the model, metrics.json says where (valid JSON), exit code 1."""
    run = tmp_path / "run"
    result = _run(_train_arguments(corpus, run, extra=["--learning-rate", "1e30", "--no-xla"]),
                  cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training diverged at step 2 (loss ")
    assert "before its first checkpoint" in last and "this run: 1e+30" in last
    metrics = json.loads((run / "metrics.json").read_text(),
                         parse_constant=lambda name: pytest.fail(f"{name} in metrics.json"))
    assert metrics["diverged"]["step"] == 2 and metrics["diverged"]["kept_step"] is None
    assert not (run / "model.keras").exists() and not list((run / "checkpoints").glob("*"))
