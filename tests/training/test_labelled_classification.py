"""A classifier from your own labelled files, end to end: CSV, TSV, JSON Lines and class
folders made in the test, a classifier per format fine-tuned from a tiny BERT run, its
export loaded in a process without tfllm, mapping strings to the right class names.

Kept cheap: the "pre-trained" run is a tiny untrained `BertMaskedLM` saved as a run (the
classifier needs its run's files, not its training: masked-LM pre-training is tested in
tests/training/test_bert_training.py; class words are learnable from random embeddings);
one `python -m tfllm.cli train` run (the CSV, the command line's path, no baselines: the
genre test covers them through the same `classification_job`); the other formats call
that job in-process; one loader process classifies with all four exports.
"""

import csv
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tfllm.data import WordPieceTokenizer
from tfllm.data.labelled_files import load_labelled_data
from tfllm.export import export_run
from tfllm.models import BertEncoder, BertMaskedLM
from tfllm.presets import preset
from tfllm.training import TrainingConfig
from tfllm.training.classification import classification_job
from tfllm.training.runs import save_run

REPOSITORY = Path(__file__).resolve().parents[2]
CLASS_WORDS = {"sport": "goal match team score referee",
               "weather": "rain wind cloud storm sunny",
               "food": "bread cheese soup apple butter"}
FILLER = "the a of and on today we saw some very with it was".split()
# Strings the exports must classify: class words among filler words never seen together.
PROBES = {"we saw a goal and the referee": "sport", "storm and rain today": "weather",
          "bread with cheese, very good": "food", "the match had a score": "sport"}
FINE_TUNING = {"steps": 30, "steps_per_epoch": 30, "warmup_steps": 0,
               "peak_learning_rate": 3e-3, "jit_compile": False}

LOADER = textwrap.dedent('''
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # registers the WordPiece ops of the exports

    texts = tf.constant(json.loads(sys.argv[1]))
    labels = {}
    for path in sys.argv[2:]:
        classify = tf.saved_model.load(path).signatures["serving_default"]
        labels[path] = [label.decode() for label in classify(texts=texts)["label"].numpy()]
    print(json.dumps({"labels": labels,
                      "tfllm": any(name.split(".")[0] == "tfllm" for name in sys.modules)}))
''')


def _rows():
    """120 labelled rows: two or three class words among filler words, shuffled."""
    rng = random.Random(0)
    rows = []
    for index in range(40):
        for name, words in CLASS_WORDS.items():
            tokens = [rng.choice(FILLER) for _ in range(6)] + rng.sample(words.split(), 3)
            rng.shuffle(tokens)
            rows.append((" ".join(tokens) + ("," if index % 2 else ""), name))
    return rows


def _write_formats(folder, rows):
    """The same rows as `.csv` (commas inside quoted fields), `.tsv`, `.jsonl` (extra keys,
    labels under another key) and class folders."""
    for suffix, delimiter in ((".csv", ","), (".tsv", "\t")):
        with open(folder / f"data{suffix}", "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file, delimiter=delimiter)
            writer.writerow(["id", "text", "label"])
            writer.writerows((index, text, label) for index, (text, label) in enumerate(rows))
    (folder / "data.jsonl").write_text("".join(
        json.dumps({"id": index, "topic": label, "text": text}) + "\n"
        for index, (text, label) in enumerate(rows)), encoding="utf-8")
    for index, (text, label) in enumerate(rows):
        (folder / "classes" / label).mkdir(parents=True, exist_ok=True)
        (folder / "classes" / label / f"{index:03d}.txt").write_text(text, encoding="utf-8")
    return {"csv": folder / "data.csv", "tsv": folder / "data.tsv",
            "jsonl": folder / "data.jsonl", "folders": folder / "classes"}


def _environment(**changes):
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **changes}
    return {key: value for key, value in environment.items() if value is not None}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("labelled")
    sources = _write_formats(folder, _rows())
    texts = load_labelled_data(sources["csv"]).splits["train"][0]
    tokenizer = WordPieceTokenizer.from_texts(texts, vocabulary_size=200)
    encoder = BertMaskedLM(BertEncoder(vocabulary_size=tokenizer.vocabulary_size,
                                       **preset("bert", "tiny")["model"], seed=1))
    encoder.build((None, None))
    save_run(folder / "bert", encoder, tokenizer,
             config={"model_class": "BertMaskedLM", "model": encoder.get_config()})
    runs = {}
    result = subprocess.run(
        [sys.executable, "-m", "tfllm.cli", "train", "--model", "classifier", "--size", "tiny",
         "--data", str(sources["csv"]), "--pretrained", str(folder / "bert"),
         "--run-dir", str(folder / "csv"), "--steps", str(FINE_TUNING["steps"]),
         "--steps-per-epoch", str(FINE_TUNING["steps_per_epoch"]), "--warmup-steps", "0",
         "--learning-rate", str(FINE_TUNING["peak_learning_rate"]), "--no-xla", "--quiet",
         "--no-baselines"],
        capture_output=True, text=True, timeout=900, cwd=folder,
        env=_environment(PYTHONPATH=str(REPOSITORY)))
    assert result.returncode == 0, result.stderr[-3000:]
    runs["csv"] = {"run": folder / "csv", "stdout": result.stdout}
    settings = preset("classifier", "tiny")
    settings["training"].update(FINE_TUNING)
    for kind, options in (("tsv", {}), ("jsonl", {"label_column": "topic"}), ("folders", {})):
        data = load_labelled_data(sources[kind], **options)
        results = classification_job(
            folder / "bert", data.splits, data.class_names, settings["model"],
            TrainingConfig(**settings["training"]), folder / kind, baselines=False,
            print_function=lambda *_: None, verbose=0)
        runs[kind] = {"run": folder / kind, "results": results}
    exports = {kind: export_run(run["run"], folder / "saved" / kind) for kind, run in runs.items()}
    script = folder / "load.py"
    script.write_text(LOADER, encoding="utf-8")
    loaded = subprocess.run(
        [sys.executable, str(script), json.dumps(list(PROBES)),
         *[str(path) for path in exports.values()]],
        capture_output=True, text=True, timeout=600, cwd=folder,
        env=_environment(PYTHONPATH=None))
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    answer = json.loads(loaded.stdout.strip().splitlines()[-1])
    return {"runs": runs, "exports": exports, "answer": answer}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "folders"])
def test_each_format_trains_a_classifier_whose_export_names_the_right_classes(trained, kind):
    assert not trained["answer"]["tfllm"]
    labels = trained["answer"]["labels"][str(trained["exports"][kind])]
    assert labels == list(PROBES.values())
    metrics = json.loads((trained["runs"][kind]["run"] / "metrics.json").read_text())
    assert metrics["class_names"] == sorted(CLASS_WORDS)
    # 4 of each class in the seeded, stratified test split; the class words are learnable.
    assert metrics["test"]["count"] == 12
    assert metrics["test"]["accuracy"] >= 0.75
    metadata = json.loads((trained["exports"][kind] / "assets.extra" / "tfllm.json").read_text())
    assert metadata["class_names"] == sorted(CLASS_WORDS)


@pytest.mark.slow
def test_the_command_line_run_records_its_data_and_its_split(trained):
    run = trained["runs"]["csv"]
    assert "test:" in run["stdout"] and "(food 4, sport 4, weather 4)" in run["stdout"]
    config = json.loads((run["run"] / "config.json").read_text())
    assert config["data"]["train"].endswith("data.csv")
    assert (config["text_column"], config["label_column"]) == ("text", "label")
    comparison = json.loads((run["run"] / "comparison.json").read_text())
    assert "| test examples |" in comparison["table"]
    assert comparison["pretrained"]["accuracy"] == metrics_of(run["run"])["test"]["accuracy"]


def metrics_of(run):
    return json.loads((run / "metrics.json").read_text())


def test_the_same_rows_in_every_format_give_the_same_split(tmp_path):
    sources = _write_formats(tmp_path, _rows())
    splits = [load_labelled_data(path, label_column="topic" if kind == "jsonl" else "label")
              for kind, path in sources.items()]
    for data in splits[1:]:
        assert data.class_names == splits[0].class_names
        for split, (texts, labels) in data.splits.items():
            assert sorted(zip(texts, labels)) == sorted(zip(*splits[0].splits[split]))


def test_bad_labelled_files_fail_the_command_line_with_one_line(tmp_path):
    """An unknown extension is named before TensorFlow loads; a missing column (read once
    TensorFlow is up) ends the same way: one `error:` line, exit code 1."""
    (tmp_path / "data.xlsx").write_text("text,label\n", encoding="utf-8")
    (tmp_path / "data.csv").write_text("review,stars\ngood,5\nbad,1\n", encoding="utf-8")
    for data, message in (("data.xlsx", "unknown extension '.xlsx'"),
                          ("data.csv", "has no column 'text' (its header names 'review', "
                                       "'stars'); name the column with --text-column")):
        result = subprocess.run(
            [sys.executable, "-m", "tfllm.cli", "train", "--model", "classifier", "--data",
             data, "--pretrained", "no/such/run"],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
            env=_environment(PYTHONPATH=str(REPOSITORY)))
        assert result.returncode == 1 and "Traceback" not in result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
