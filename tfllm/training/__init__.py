"""Training: schedules, the `model.fit` set-up for language models, evaluation."""

from tfllm.training.language_model import (
    Stopwatch,
    TrainingConfig,
    fit_language_model,
    held_out_loss,
    make_optimizer,
    train_and_evaluate,
)
from tfllm.training.runs import load_run, save_run
from tfllm.training.schedules import WarmupCosineDecay

__all__ = [
    "Stopwatch",
    "TrainingConfig",
    "WarmupCosineDecay",
    "fit_language_model",
    "held_out_loss",
    "load_run",
    "make_optimizer",
    "save_run",
    "train_and_evaluate",
]
