"""Labelled files for the classifier: each format, the stratified split, every error."""

import collections
import csv
import json

import keras
import pytest

from tfllm.data.labelled_files import (
    LabelledDataError,
    LabelledExamples,
    load_labelled_data,
    read_labelled_examples,
    stratified_split,
)

# Texts that trip naive readers: the delimiter, quotes and a line break inside a field.
TRICKY = [("great, really great", "pos"), ('he said "meh"', "neg"),
          ("two\nlines", "pos"), ("tab\there", "neg"), ("naïve café ☕", "pos")]


def _write_delimited(path, rows, delimiter, header=("id", "text", "label")):
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, delimiter=delimiter)
        writer.writerow(header)
        for index, (text, label) in enumerate(rows):
            writer.writerow([index, text, label])


@pytest.mark.parametrize("suffix, delimiter", [(".csv", ","), (".tsv", "\t")])
def test_delimited_files_read_back_what_the_csv_module_wrote(tmp_path, suffix, delimiter):
    path = tmp_path / f"data{suffix}"
    _write_delimited(path, TRICKY, delimiter)
    examples = read_labelled_examples(path)
    assert list(zip(examples.texts, examples.labels)) == TRICKY
    # Lines where each row starts: header on 1, the third row's text spans two lines.
    assert examples.lines == [2, 3, 4, 6, 7]


def test_delimited_columns_are_chosen_by_name(tmp_path):
    path = tmp_path / "reviews.csv"
    _write_delimited(path, TRICKY, ",", header=("n", "review", "sentiment"))
    examples = read_labelled_examples(path, text_column="review", label_column="sentiment")
    assert examples.texts == [text for text, _ in TRICKY]


def test_json_lines_ignore_extra_keys_and_blank_lines_and_stringify_labels(tmp_path):
    path = tmp_path / "data.jsonl"
    records = [{"text": text, "label": label, "id": index, "meta": {"x": [1]}}
               for index, (text, label) in enumerate(TRICKY)]
    records.append({"label": 1, "text": "a number label", "extra": None})
    lines = [json.dumps(record, ensure_ascii=index % 2 == 0)
             for index, record in enumerate(records)]
    path.write_text("\n".join(lines[:2] + ["", "  "] + lines[2:]) + "\n", encoding="utf-8")
    examples = read_labelled_examples(path)
    assert list(zip(examples.texts, examples.labels)) == TRICKY + [("a number label", "1")]
    assert examples.lines == [1, 2, 5, 6, 7, 8]


def _class_folders(root, per_class):
    """Class folders with a nested folder, an upper-case .TXT, files that are not .txt."""
    for name, texts in per_class.items():
        for index, text in enumerate(texts):
            folder = root / name / ("nested" if index % 3 == 2 else "")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{index:02d}.TXT" if index == 1 else folder / f"{index:02d}.txt") \
                .write_text(text, encoding="utf-8")
    (root / next(iter(per_class)) / "notes.md").write_text("not an example", encoding="utf-8")
    (root / "loose.txt").write_text("outside every class", encoding="utf-8")
    return root


def test_class_folders_read_as_keras_text_dataset_from_directory(tmp_path):
    root = _class_folders(tmp_path / "data", {
        "sport": ["goal!", "match day\nline two", "offside", "derby"],
        "art": ["a painting", "sculpture", "opera ☕"], "weather": ["rain", "sun, then rain"]})
    examples = read_labelled_examples(root)
    dataset = keras.utils.text_dataset_from_directory(root, batch_size=None, shuffle=False)
    theirs = [(text.numpy().decode("utf-8"), dataset.class_names[int(label)])
              for text, label in dataset]
    assert list(zip(examples.texts, examples.labels)) == theirs
    assert sorted(set(examples.labels)) == dataset.class_names


def _examples(counts):
    """LabelledExamples with `counts[name]` examples per class, the classes interleaved."""
    rows = sorted(((index, name) for name, count in counts.items() for index in range(count)))
    return LabelledExamples([f"{name} {index}" for index, name in rows],
                            [name for _, name in rows], list(range(2, len(rows) + 2)),
                            "made.csv")


def test_the_split_is_stratified_disjoint_complete_and_seeded():
    counts = {"a": 100, "b": 31, "c": 7}
    examples = _examples(counts)
    splits = stratified_split(examples, 0.1, 0.2, seed=5)
    per_split = {split: collections.Counter(part.labels) for split, part in splits.items()}
    for name, count in counts.items():
        assert per_split["validation"][name] == max(1, round(count * 0.1))
        assert per_split["test"][name] == max(1, round(count * 0.2))
        assert sum(counter[name] for counter in per_split.values()) == count
    texts = [set(part.texts) for part in splits.values()]
    assert set.union(*texts) == set(examples.texts)
    assert sum(map(len, texts)) == len(examples)  # no example in two splits
    for part in splits.values():  # each split keeps the file's order
        assert part.lines == sorted(part.lines)
    again = stratified_split(examples, 0.1, 0.2, seed=5)
    assert {split: part.texts for split, part in again.items()} == \
        {split: part.texts for split, part in splits.items()}
    other = stratified_split(examples, 0.1, 0.2, seed=6)
    assert other["test"].texts != splits["test"].texts
    # A class's held-out examples do not depend on what the other classes hold.
    fewer = stratified_split(_examples({"a": 100, "c": 7}), 0.1, 0.2, seed=5)
    assert [t for t in fewer["test"].texts if t.startswith("c")] == \
        [t for t in splits["test"].texts if t.startswith("c")]


def test_load_labelled_data_names_classes_and_takes_given_held_out_files(tmp_path):
    train, validation = tmp_path / "train.jsonl", tmp_path / "dev.jsonl"
    train.write_text("".join(json.dumps({"text": f"t{i}", "label": label}) + "\n"
                             for i, label in enumerate(["b", "a", "c"] * 4)), encoding="utf-8")
    validation.write_text('{"text": "v", "label": "c"}\n', encoding="utf-8")
    data = load_labelled_data(train, validation_data=validation, test_fraction=0.25)
    assert data.class_names == ["a", "b", "c"]
    assert data.splits["validation"] == (["v"], [2])
    assert len(data.splits["train"][0]) == 9 and len(data.splits["test"][0]) == 3
    texts, ids = data.splits["train"]
    names = dict(zip(texts, ids))
    assert names["t0"] == 1 and names["t1"] == 0  # ids follow the sorted names
    both = load_labelled_data(train, validation_data=validation, test_data=validation)
    assert len(both.splits["train"][0]) == 12  # with both given, all of --data trains
    corpus = data.as_corpus()
    assert [document.text for document in corpus.validation] == ["v"]


def _error(tmp_path, name, content, **options):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    with pytest.raises(LabelledDataError) as raised:
        load_labelled_data(path, **options)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_errors_name_the_problem_in_one_line(tmp_path):
    message = _error(tmp_path, "a.csv", "review,sentiment\nnice,pos\n")
    assert "no column 'text'" in message and "'review', 'sentiment'" in message
    assert "--text-column" in message
    assert "no column 'stars'" in _error(tmp_path, "b.csv", "text,label\nx,y\n",
                                         label_column="stars")
    assert "is empty" in _error(tmp_path, "c.csv", "")
    assert "is empty: it holds no rows" in _error(tmp_path, "d.tsv", "text\tlabel\n")
    assert "unknown extension '.xlsx'" in _error(tmp_path, "e.xlsx", "text,label\n")
    message = _error(tmp_path, "f.csv", "text,label\na,x\nb,y\n\"c\nc\",\nd,x\n")
    assert "line 4 has no label (column 'label' is empty)" in message
    assert "line 3 has no text" in _error(tmp_path, "g.csv", "text,label\na,x\n ,y\n")
    message = _error(tmp_path, "h.csv", b"text,label\nok,x\ncaf\xe9,y\n")
    assert "not UTF-8" in message and "line 3" in message
    message = _error(tmp_path, "i.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"}\n')
    assert "line 2 has no key 'label'" in message and "'text'" in message
    assert "line 1 has no label" in _error(tmp_path, "j.jsonl", '{"text": "a", "label": ""}\n')
    assert "line 1 is not JSON" in _error(tmp_path, "k.jsonl", "{text: a}\n")
    message = _error(tmp_path, "l.csv", "text,label\n" + "a,x\n" * 9 + "b,y\nc,y\n")
    assert "the class 'y' has 2 example(s)" in message and "needs at least 3" in message
    assert "--validation-data" in message
    message = _error(tmp_path, "m.csv", "text,label\n" + "a,x\n" * 5)
    assert "hold one class, 'x'" in message


def test_folder_errors_and_unknown_held_out_classes(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(LabelledDataError, match="holds no sub-folders"):
        read_labelled_examples(tmp_path / "empty")
    (tmp_path / "classes" / "a").mkdir(parents=True)
    with pytest.raises(LabelledDataError, match="class folder .*a holds no .txt files"):
        read_labelled_examples(tmp_path / "classes")
    with pytest.raises(LabelledDataError, match="neither a file nor a folder"):
        read_labelled_examples(tmp_path / "missing.csv")
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text("text,label\n" + "a,x\nb,y\n" * 5, encoding="utf-8")
    test.write_text("text,label\nc,z\n", encoding="utf-8")
    with pytest.raises(LabelledDataError, match="classes the training data lacks: 'z'"):
        load_labelled_data(train, test_data=test)
