"""`tfllm train --tokenizer / --vocabulary-size`: bad combinations fail with one line,
before anything is trained (in-process: the options are checked before TensorFlow work)."""

import pytest

from tfllm.cli import main
from tfllm.cli.options import tokenizer_settings
from tfllm.cli.parser import build_parser


@pytest.mark.parametrize("arguments, message", [
    (["--tokenizer", "bpe", "--vocabulary-size", "100"],
     "--vocabulary-size 100 is below the 258 ids a bpe tokenizer needs"),
    (["--tokenizer", "sentencepiece", "--vocabulary-size", "258"], "below the 259 ids"),
    (["--tokenizer", "wordpiece", "--vocabulary-size", "5"], "below the 6 ids"),
    (["--model", "bert", "--tokenizer", "bpe"], "--tokenizer bpe does not apply to --model bert"),
    (["--model", "classifier", "--tokenizer", "bpe"],
     "--tokenizer does not apply here: the tokenizer comes from the --pretrained run"),
])
def test_bad_tokenizer_options_fail_with_one_clear_line(arguments, message, capsys):
    assert main(["train", "--size", "tiny", *arguments]) != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and message in error[0]


@pytest.mark.parametrize("arguments, expected", [
    ([], ("char", None)),
    (["--tokenizer", "bpe"], ("bpe", 1024)),
    (["--tokenizer", "sentencepiece", "--vocabulary-size", "512"], ("sentencepiece", 512)),
    (["--model", "lstm", "--tokenizer", "wordpiece"], ("wordpiece", 1024)),
    (["--model", "bert"], ("wordpiece", None)),
    (["--model", "bert", "--vocabulary-size", "800"], ("wordpiece", 800)),
])
def test_tokenizer_defaults(arguments, expected):
    args = build_parser().parse_args(["train", *arguments])
    args.model = args.model or "gpt"
    assert tokenizer_settings(args) == expected
