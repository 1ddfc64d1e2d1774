"""Training: strategies, settings, the job runner, the language-model and BERT jobs, runs.

- `config`: `TrainingConfig`, the optimiser it makes, the precision it runs in;
- `job`: `TrainingJob` and `run_job`, the runner every job shares (resume, logs, files);
- `language_model`: the GPT / LSTM job (`train_and_evaluate`) and its pieces;
- `masked_lm`: BERT's masked-LM pre-training job (`pretraining_job`) and its pieces;
- `classification`: fine-tuning BERT as a classifier, the genre job; `baselines`;
- `callbacks`: TensorBoard curves and text samples; `hparams`: the HParams dashboard;
- `resuming`: what a run continues from, checked before anything is overwritten;
- `xla_choice`: XLA or not for a run's steps, timed on this machine (`jit_compile="auto"`);
- `strategy`, `cluster` (the bounded wait for multi-worker peers), `checkpoints`,
  `schedules`, `runs`.
"""

from tfllm.training.callbacks import StopOnDivergence, TextSamples, TrainingSummaries
from tfllm.training.checkpoints import (
    CheckpointDamagedError,
    CheckpointError,
    CheckpointEveryEpoch,
    list_checkpoints,
    restore_checkpoint,
    save_checkpoint,
)
from tfllm.constants import PRECISIONS
from tfllm.training.config import TrainingConfig, make_optimizer, precision_scope
from tfllm.training.hparams import HParamsSummary
from tfllm.training.job import (
    FitOutcome,
    Stopwatch,
    TrainingDivergedError,
    TrainingJob,
    finish_job,
    run_job,
)
from tfllm.training.language_model import (
    compile_language_model,
    fit_language_model,
    held_out_loss,
    train_and_evaluate,
)
from tfllm.presets import PRESETS, preset
from tfllm.training.cluster import ClusterTimeoutError, wait_for_cluster
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
    "CheckpointDamagedError",
    "CheckpointError",
    "CheckpointEveryEpoch",
    "ClusterTimeoutError",
    "FitOutcome",
    "HParamsSummary",
    "StopOnDivergence",
    "Stopwatch",
    "TextSamples",
    "TrainingConfig",
    "TrainingDivergedError",
    "TrainingJob",
    "TrainingSummaries",
    "WarmupCosineDecay",
    "compile_language_model",
    "describe_strategy",
    "finish_job",
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
    "run_job",
    "save_checkpoint",
    "save_run",
    "train_and_evaluate",
    "use_logical_cpus",
    "wait_for_cluster",
    "with_data_sharding",
]
