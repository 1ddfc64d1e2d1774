"""The exported genre classifier, loaded where users load it: a fresh process that imports
TensorFlow and TensorFlow Text only (the WordPiece ops), not tfllm."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from tfllm.data import WordPieceTokenizer
from tfllm.export import export_classifier
from tfllm.models import BertClassifier, BertEncoder
from tfllm.training.classification import predict_classes

# One xdist worker runs them all: the classifier is exported and loaded once.
pytestmark = pytest.mark.xdist_group("export_classifier")

TEXT = ("Now is the winter of our discontent made glorious summer by this sun of York. "
        "If music be the food of love, play on. Friends, Romans, countrymen, lend me "
        "your ears; I come to bury Caesar, not to praise him. ") * 4
TEXTS = ["Now is the winter of our discontent", "If music be the food of love, play on",
         "lend me your ears " * 20, "Caesar"]
MAX_LENGTH = 48

LOADER = textwrap.dedent('''
    import json, sys
    import tensorflow as tf
    import tensorflow_text  # registers the WordPiece ops the export uses

    loaded = tf.saved_model.load(sys.argv[1])
    classify = loaded.signatures["serving_default"]
    outputs = classify(texts=tf.constant(json.loads(sys.argv[2])))
    answer = {key: ([text.decode() for text in value.numpy().tolist()]
                    if value.dtype == tf.string else value.numpy().tolist())
              for key, value in outputs.items()}
    try:
        classify(texts=tf.constant(["a passage", "  "]))
        answer["blank"] = "accepted"
    except tf.errors.InvalidArgumentError as error:
        answer["blank"] = error.message
    answer["tfllm_imported"] = any(name.split(".")[0] == "tfllm" for name in sys.modules)
    print(json.dumps(answer))
''')


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(3)
    tokenizer = WordPieceTokenizer.from_texts([TEXT], vocabulary_size=150)
    encoder = BertEncoder(vocabulary_size=tokenizer.vocabulary_size, max_length=MAX_LENGTH,
                          num_layers=2, num_heads=2, hidden_dim=16)
    model = BertClassifier(encoder, num_classes=3, pooling="mean")
    model.build((None, None))
    # Non-trivial head weights, so that the probabilities differ between texts.
    model.output_dense.kernel.assign(np.random.default_rng(0).normal(size=(16, 3)) * 3)
    tmp_path = tmp_path_factory.mktemp("classifier")
    path = export_classifier(model, tokenizer, tmp_path / "saved_models" / "genre",
                             ["comedy", "history", "tragedy"])
    script = tmp_path / "load.py"
    script.write_text(LOADER, encoding="utf-8")
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment["TF_CPP_MIN_LOG_LEVEL"] = "2"
    result = subprocess.run([sys.executable, str(script), str(path), json.dumps(TEXTS)],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path,
                            env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"model": model, "tokenizer": tokenizer, "path": path,
            "answer": json.loads(result.stdout.strip().splitlines()[-1])}


def test_the_export_loads_without_tfllm_in_the_tf_serving_layout(exported):
    assert not exported["answer"]["tfllm_imported"]
    assert exported["path"].name == "1" and exported["path"].parent.name == "genre"
    metadata = json.loads((exported["path"] / "assets.extra" / "tfllm.json").read_text())
    assert metadata["class_names"] == ["comedy", "history", "tragedy"]
    assert "tensorflow_text" in metadata["requires"]


def test_probabilities_equal_the_in_process_model(exported):
    answer = exported["answer"]
    expected = predict_classes(exported["model"], exported["tokenizer"], TEXTS, MAX_LENGTH)
    np.testing.assert_allclose(answer["probabilities"], expected, atol=1e-5)
    assert len({tuple(np.round(row, 4)) for row in expected}) > 1  # not a constant answer
    assert answer["class_id"] == expected.argmax(-1).tolist()
    names = ["comedy", "history", "tragedy"]
    assert answer["label"] == [names[index] for index in answer["class_id"]]


def test_long_texts_are_truncated_and_say_so_and_blank_ones_fail(exported):
    answer = exported["answer"]
    assert answer["truncated"] == [False, False, True, False]
    assert "empty or blank text cannot be classified" in answer["blank"]
    with pytest.raises(ValueError, match=r"Texts \[1\] are empty"):
        predict_classes(exported["model"], exported["tokenizer"], ["a", ""], MAX_LENGTH)


def test_class_names_must_match_the_classes(tmp_path, exported):
    with pytest.raises(ValueError, match="2 class names for a classifier of 3 classes"):
        export_classifier(exported["model"], exported["tokenizer"], tmp_path, ["a", "b"])
