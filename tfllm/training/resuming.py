"""What a training run continues from, checked before anything is overwritten.

`latest_checkpoint` decides whether a run may start (the same training settings and
vocabulary as it was started with; a run that holds a model or checkpoints is never started
anew; a finished run without checkpoints is never retrained over its model);
`restore_latest_into` puts its newest good checkpoint into the model (damaged newer ones
are reported and skipped); `finished_model` is a finished run's `model.keras`, to evaluate
again without training or saving it; `write_run_files` writes `config.json` and the
tokenizer only when they changed; `divergence_advice` is what to try after a non-finite
loss. `tfllm.training.job` calls them.
"""

import dataclasses
import json

from tfllm.runs import DamagedModelError
from tfllm.training.checkpoints import CheckpointError, list_checkpoints, restore_latest
from tfllm.training.xla_choice import (
    AUTO,
    chosen_jit_compile,
    recorded_jit_compile,
    remember_jit_compile,
)


def _training_differences(saved, current, recorded_choice=None):
    """What differs between the saved and the current training settings; `jit_compile`
    `"auto"` compares as what the run chose (`recorded_choice`), so a run started with
    XLA on resumes under `"auto"`, and an `"auto"` run under its choice written out."""
    def compared(key, setting):
        if key == "jit_compile" and setting == AUTO and recorded_choice is not None:
            return recorded_choice.jit_compile
        return setting

    def saved_text(key):
        if compared(key, saved.get(key)) is not saved.get(key):
            return f"{saved.get(key)!r} (it chose {compared(key, saved.get(key))})"
        return repr(saved.get(key))

    return [
        f"{key}: saved {saved_text(key)}, now {current.get(key)!r}"
        for key in sorted(set(saved) | set(current))
        if compared(key, saved.get(key)) != compared(key, current.get(key))
    ]


def _check_resumable(run, config, tokenizer):
    """The latest checkpoint of `run` if this training can continue it, else an error."""
    checkpoints = list_checkpoints(run.checkpoints)
    if not checkpoints:
        return None
    step, path = checkpoints[-1]
    try:
        saved_config = run.read_config()
        saved_training = saved_config["training"]
        saved_vocabulary = run.read_tokenizer_json()
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"{run.path} holds checkpoints but its {run.CONFIG} or {run.TOKENIZER} cannot "
            f"be read ({error}); start a new run directory."
        ) from None
    differences = _training_differences(saved_training, dataclasses.asdict(config),
                                        recorded_jit_compile(saved_config))
    if differences:
        raise CheckpointError(
            f"{run.path} was started with other training settings "
            f"({'; '.join(differences)}). Resume with the settings it was started with, or "
            "use a new run directory."
        )
    if saved_vocabulary.get("vocabulary") != tokenizer.vocabulary:
        raise CheckpointError(
            f"{run.path} was trained with another vocabulary (another corpus?); resume it "
            "with the corpus it was started with, or use a new run directory."
        )
    return step, path


def latest_checkpoint(run, config, tokenizer, resume):
    """`(step, path)` of the checkpoint the run continues from, or None; checked first:
    a run that holds a model or checkpoints is refused without `resume`, a finished run
    without checkpoints always (training it again would start over its model)."""
    if run is None:
        return None
    if run.is_finished() and not resume:
        raise CheckpointError(
            f"{run.path} already holds a trained model ({run.MODEL}); starting it anew would "
            f"overwrite it. Use another run directory (--run-dir), or delete {run.path} to "
            "train it again.")
    latest = _check_resumable(run, config, tokenizer)
    if latest is None and run.is_finished():
        raise CheckpointError(
            f"{run.path} holds a finished model but no {run.CHECKPOINTS}/: running it again "
            f"would train it from scratch over its {run.MODEL}. Use it as it is (generate, "
            "export), or train in another run directory.")
    if latest is not None and not resume:
        raise CheckpointError(
            f"{run.path} already holds checkpoints (the latest at step {latest[0]}); resume "
            "it, or choose another run directory."
        )
    return latest


def restore_latest_into(model, strategy, run, print_function):
    """Restores the run's latest good checkpoint into `model` (damaged newer ones reported
    and skipped); returns the step it resumes from."""
    with strategy.scope():
        if not model.built:
            model.build((None, None))
        step, _ = restore_latest(run.checkpoints, model, print_function)
    print_function(f"Resuming {run.path} from its checkpoint at step {step}.")
    return step


def write_run_files(run, job, model, config, tokenizer):
    """The run's `config.json` (model, training settings, `job.run_config`) and tokenizer,
    each written only when it changed."""
    choice = chosen_jit_compile(model) if config.jit_compile == AUTO else None
    config = _plain_json({
        "model_class": type(model).__name__,
        "model": model.get_config(),
        "training": dataclasses.asdict(config),
        **job.run_config,
        **({"jit_compile_choice": choice.as_json()} if choice is not None else {}),
    })
    try:
        unchanged = run.read_config() == config
    except (OSError, ValueError):
        unchanged = False
    if not unchanged:
        run.write_config(config)
    run.save_tokenizer(tokenizer)


def _plain_json(data):
    """`data` as JSON gives it back (tuples become lists), to compare with a file."""
    return json.loads(json.dumps(data))


def finished_model(job, config, run, strategy, print_function, jit_choice=None):
    """`(model, recorded metrics)` of a finished run: its `model.keras` loaded and compiled
    in `strategy.scope()` (`job.compile_model`; with `jit_choice`, the `JitChoice` of a
    `jit_compile="auto"` run), and its `metrics.json` (empty if unreadable); None when the
    model file is damaged (said in one line): the run then resumes from its latest good
    checkpoint and saves that."""
    with strategy.scope():
        try:
            model = run.load_model()
        except DamagedModelError as error:
            print_function(f"{error} Using its latest good checkpoint instead (saved as "
                           f"{run.MODEL} when done).")
            return None
        if jit_choice is not None:
            remember_jit_compile(model, jit_choice)
        job.compile_model(model, config, strategy)
    try:
        previous = run.read_metrics()
    except (OSError, ValueError):
        previous = {}
    return model, previous if isinstance(previous, dict) else {}


def divergence_advice(config):
    """What to try when the loss of training with `config` became non-finite."""
    return (f"Try a lower learning rate (--learning-rate; this run: "
            f"{config.peak_learning_rate:g}), more warm-up (--warmup-steps; this run: "
            f"{config.warmup_steps}) or a smaller gradient clipping norm "
            f"(TrainingConfig.clip_norm; this run: {config.clip_norm}), in a new run "
            "directory.")
