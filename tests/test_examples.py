"""The example scripts run end to end (as a user runs them: a separate process)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]


def _write_corpus(folder, rng):
    words = ["thou", "art", "more", "lovely", "and", "temperate", "rough", "winds", "do"]
    for index in range(10):
        lines = [" ".join(rng.choice(words, size=8)) for _ in range(60)]
        (folder / f"sonnet_{index}.txt").write_text("\n".join(lines), encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train_gpt.py", "train_lstm.py"])
def test_example_trains_reports_samples_and_saves(tmp_path, rng, script):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _write_corpus(corpus, rng)
    run = tmp_path / "run"
    result = subprocess.run(
        # --quick as `make demo` runs it; a narrow one-layer model, since what is tested is
        # that the script runs through, not what it learns.
        [sys.executable, str(REPOSITORY / "examples" / script), "--quick", "--steps", "4",
         "--layers", "1", "--width", "32", "--corpus", str(corpus), "--output", str(run),
         "--prompt", "thou "],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,  # a bound against hangs
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Held-out validation loss" in result.stdout
    assert "Sample:\nthou " in result.stdout
    assert {"model.keras", "tokenizer.json", "config.json", "metrics.json"} <= {
        path.name for path in run.iterdir()
    }


def test_example_reports_a_path_that_matches_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPOSITORY / "examples" / "train_gpt.py"), "--corpus",
         str(tmp_path / "missing*.txt")],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPOSITORY)},
    )
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and "missing*.txt" in last_line
    assert "Traceback" not in result.stderr
