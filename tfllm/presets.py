"""Named model sizes with training settings that suit them on a 2-core CPU.

`PRESETS[kind][size]` is `{"model": {...}, "training": {...}}`: keyword
arguments of the model class and of `TrainingConfig`. `tiny` runs in seconds
(tests, smoke runs), `quick` in a few minutes (the quickstart), `default` in
10-20 minutes (the figures in the README); BERT pre-training also has `long`
(~45 minutes), the run its genre-classification figures come from.

XLA or not: the training settings leave `jit_compile` at `TrainingConfig`'s `"auto"`
(timed on this machine before the run starts, `tfllm.training.xla_choice`), except `tiny`,
whose runs last seconds: timing would cost more than it saves (XLA on as before; the
LSTM's off).
"""

import copy

PRESETS = {
    "gpt": {
        "tiny": {
            "model": {"num_layers": 1, "num_heads": 2, "hidden_dim": 32, "max_length": 32},
            "training": {"steps": 20, "steps_per_epoch": 10, "batch_size": 8,
                         "sequence_length": 32, "peak_learning_rate": 3e-3, "warmup_steps": 2,
                         "jit_compile": True},
        },
        "quick": {
            "model": {"num_layers": 2, "num_heads": 4, "hidden_dim": 128, "max_length": 128},
            "training": {"steps": 400, "steps_per_epoch": 100, "batch_size": 32,
                         "sequence_length": 128, "peak_learning_rate": 4e-3, "warmup_steps": 40},
        },
        "default": {
            "model": {"num_layers": 4, "num_heads": 4, "hidden_dim": 128, "max_length": 128},
            "training": {"steps": 2800, "steps_per_epoch": 200, "batch_size": 32,
                         "sequence_length": 128, "peak_learning_rate": 3e-3,
                         "warmup_steps": 100},
        },
    },
    "lstm": {
        # XLA made the step through Keras's LSTM 2.7x slower on an AVX2 EPYC and 1.6x on an
        # AVX-512 one; with the recurrence written out (`lstm_sequence`) the two tie on the
        # latter (238 vs 239 ms a quick step): "auto" times it, but for tiny (off).
        "tiny": {
            "model": {"num_layers": 1, "hidden_dim": 32},
            "training": {"steps": 20, "steps_per_epoch": 10, "batch_size": 8,
                         "sequence_length": 32, "peak_learning_rate": 5e-3, "warmup_steps": 2,
                         "jit_compile": False},
        },
        "quick": {
            "model": {"num_layers": 2, "hidden_dim": 256},
            "training": {"steps": 200, "steps_per_epoch": 50, "batch_size": 32,
                         "sequence_length": 128, "peak_learning_rate": 5e-3,
                         "warmup_steps": 20},
        },
        "default": {
            "model": {"num_layers": 2, "hidden_dim": 256},
            "training": {"steps": 1100, "steps_per_epoch": 100, "batch_size": 32,
                         "sequence_length": 128, "peak_learning_rate": 5e-3,
                         "warmup_steps": 50},
        },
    },
    # BERT: masked-LM pre-training ("bert") and genre fine-tuning ("classifier"). The
    # classifier's encoder settings come from its pre-training run; `tokenizer` sizes the
    # WordPiece vocabulary learned for pre-training. No dropout in pre-training: these
    # short runs under-fit (and dropout costs 25 % of a step here). Rotary positions: with
    # BERT's learned position table the masked-LM sat on its unigram plateau (validation
    # loss 5.8) for ~4,000 steps; with rotary embeddings it leaves it within 250 steps
    # (5.51 at step 250, 4.73 at step 500; see the README). The classifier pools the mean
    # of the encoder's outputs: without next-sentence pre-training, [CLS] has learned
    # nothing of its own.
    "bert": {
        "tiny": {
            "model": {"num_layers": 1, "num_heads": 2, "hidden_dim": 32, "max_length": 32,
                      "dropout": 0.0, "position_encoding": "rotary"},
            "tokenizer": {"vocabulary_size": 400},
            "training": {"steps": 20, "steps_per_epoch": 10, "batch_size": 8,
                         "sequence_length": 32, "peak_learning_rate": 3e-3, "warmup_steps": 2,
                         "validation_batches": 2, "jit_compile": True},
        },
        "quick": {
            "model": {"num_layers": 2, "num_heads": 4, "hidden_dim": 128, "max_length": 128,
                      "dropout": 0.0, "position_encoding": "rotary"},
            "tokenizer": {"vocabulary_size": 4096},
            "training": {"steps": 600, "steps_per_epoch": 100, "batch_size": 32,
                         "sequence_length": 128, "peak_learning_rate": 2e-3,
                         "warmup_steps": 60, "weight_decay": 0.01},
        },
        "default": {
            "model": {"num_layers": 4, "num_heads": 4, "hidden_dim": 128, "max_length": 128,
                      "dropout": 0.0, "position_encoding": "rotary"},
            "tokenizer": {"vocabulary_size": 4096},
            "training": {"steps": 3000, "steps_per_epoch": 250, "batch_size": 32,
                         "sequence_length": 128, "peak_learning_rate": 2e-3,
                         "warmup_steps": 150, "weight_decay": 0.01},
        },
    },
    "classifier": {
        "tiny": {
            "model": {"pooling": "mean", "classifier_dropout": 0.0},
            "training": {"steps": 20, "steps_per_epoch": 10, "batch_size": 8,
                         "sequence_length": 32, "peak_learning_rate": 1e-3, "warmup_steps": 2,
                         "jit_compile": True},
        },
        "quick": {
            "model": {"pooling": "mean", "classifier_dropout": 0.1, "dropout": 0.1},
            "training": {"steps": 300, "steps_per_epoch": 100, "batch_size": 32,
                         "sequence_length": 128, "peak_learning_rate": 3e-4,
                         "warmup_steps": 30, "weight_decay": 0.01},
        },
        "default": {
            "model": {"pooling": "mean", "classifier_dropout": 0.1, "dropout": 0.1},
            "training": {"steps": 800, "steps_per_epoch": 100, "batch_size": 32,
                         "sequence_length": 128, "peak_learning_rate": 3e-4,
                         "warmup_steps": 80, "weight_decay": 0.01},
        },
    },
}
# BERT "long": the default pre-training for 8,000 steps (~1.5 hours here): more of the same
# (with learned positions it was the run that got past the masked-LM's unigram plateau).
PRESETS["bert"]["long"] = copy.deepcopy(PRESETS["bert"]["default"])
PRESETS["bert"]["long"]["training"]["steps"] = 8000
# Fine-tuning the long pre-training run: the default fine-tuning.
PRESETS["classifier"]["long"] = copy.deepcopy(PRESETS["classifier"]["default"])


def preset(kind, size, steps=None, **model_overrides):
    """A deep copy of `PRESETS[kind][size]`; a ValueError naming what is unknown.

    Args:
        kind, size: e.g. `"gpt"`, `"quick"`.
        steps: optional number of training steps instead of the preset's (the epoch and the
            warm-up shrink with it: see `with_steps`).
        **model_overrides: model settings to replace (e.g. `num_layers=2`); a `None` value
            keeps the preset's.
    """
    if kind not in PRESETS:
        raise ValueError(f"Unknown model kind {kind!r}; choose one of {', '.join(PRESETS)}.")
    if size not in PRESETS[kind]:
        raise ValueError(
            f"Unknown size {size!r} for {kind}; choose one of {', '.join(PRESETS[kind])}."
        )
    settings = copy.deepcopy(PRESETS[kind][size])
    settings["model"].update(
        {name: value for name, value in model_overrides.items() if value is not None})
    if steps is not None:
        with_steps(settings["training"], steps)
    return settings


def with_steps(training, steps):
    """Sets `training["steps"]` (in place; returns `training`): an epoch holds at most
    `steps` steps, and the warm-up at most a tenth of them."""
    training["steps"] = steps
    training["steps_per_epoch"] = min(training["steps_per_epoch"], steps)
    training["warmup_steps"] = min(training["warmup_steps"], steps // 10)
    return training
