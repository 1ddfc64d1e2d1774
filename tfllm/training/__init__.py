"""Training: strategies, the `model.fit` set-up for language models, runs, TensorBoard."""

from tfllm.training.callbacks import HParamsSummary, TextSamples, TrainingSummaries
from tfllm.training.checkpoints import (
    CheckpointError,
    CheckpointEveryEpoch,
    list_checkpoints,
    restore_checkpoint,
    save_checkpoint,
)
from tfllm.training.language_model import (
    PRECISIONS,
    Stopwatch,
    TrainingConfig,
    compile_language_model,
    fit_language_model,
    held_out_loss,
    make_optimizer,
    precision_scope,
    train_and_evaluate,
)
from tfllm.presets import PRESETS, preset
from tfllm.training.runs import load_run, save_run
from tfllm.training.schedules import WarmupCosineDecay
from tfllm.training.strategy import (
    STRATEGY_NAMES,
    describe_strategy,
    jit_compile_for,
    resolve_strategy,
    use_logical_cpus,
    with_data_sharding,
)

__all__ = [
    "PRECISIONS",
    "PRESETS",
    "STRATEGY_NAMES",
    "CheckpointError",
    "CheckpointEveryEpoch",
    "HParamsSummary",
    "Stopwatch",
    "TextSamples",
    "TrainingConfig",
    "TrainingSummaries",
    "WarmupCosineDecay",
    "compile_language_model",
    "describe_strategy",
    "fit_language_model",
    "held_out_loss",
    "jit_compile_for",
    "list_checkpoints",
    "load_run",
    "make_optimizer",
    "precision_scope",
    "preset",
    "resolve_strategy",
    "restore_checkpoint",
    "save_checkpoint",
    "save_run",
    "train_and_evaluate",
    "use_logical_cpus",
    "with_data_sharding",
]
