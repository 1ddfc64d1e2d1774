"""XLA or not for a training step, chosen on this machine by measuring it.

Whether `model.compile(jit_compile=True)` makes a training step faster depends on the
machine more than on the model: on an AVX2-only CPU XLA's fused step was the faster one
for the GPT, on an AVX-512 CPU TensorFlow's own (oneDNN) kernels were, by 10 % in float32
and by 1.8x in bfloat16 (XLA:CPU has no path to the bf16 units). So
`TrainingConfig(jit_compile="auto")` does not guess: before a run starts,
`measure_jit_compile` trains two throwaway copies of the model, one compiled with XLA and
one without, on one of the run's own batches, interleaved in rounds, and keeps the one
with the lower median step time. The model that trains is not touched, nor is the random
state its training reads, so a run chosen "auto" trains exactly as the same run with the
chosen `jit_compile` written out.

The choice is recorded in the run's `config.json` (`"jit_compile_choice"`); a resumed run
reuses it rather than measuring again, so its steps compute as before the interruption.
With several replicas there is nothing to measure: XLA is off (`jit_compile_for`).
"""

import dataclasses
import gc
import random
import statistics
import time
import weakref

import numpy as np

from tfllm.training.config import precision_scope

#: The `jit_compile` setting that measures.
AUTO = "auto"
#: Calls of each copy before timing: the first traces (and compiles) the step.
WARMUP_STEPS = 2
#: Rounds of `STEPS_PER_ROUND` timed steps of each copy, alternating which goes first.
ROUNDS = 5
STEPS_PER_ROUND = 2
#: Rounds stop early (after at least 2) once this many seconds have gone into timed steps,
#: or when every step of one copy was at least 10 % faster than every step of the other.
TIME_BUDGET_SECONDS = 20.0

#: The choice made for each model (read by `jit_compile_for` and the run's files).
_CHOICES = weakref.WeakKeyDictionary()


@dataclasses.dataclass(frozen=True)
class JitChoice:
    """Whether a model's training steps are compiled with XLA, and why.

    Attributes:
        jit_compile: the `model.compile(jit_compile=...)` chosen.
        how: `"measured"`, `"several replicas"`, `"XLA failed"`, `"not copyable"` (the
            model could not be copied from its config to time it), or `"set"` (a run
            started with `jit_compile` True or False, resumed under `"auto"`).
        seconds_per_step: `{"xla": s, "no_xla": s}`, the median step times measured
            (None when nothing was measured).
        detail: the error, for `"XLA failed"` and `"not copyable"`.
        seconds_timing: how long the timing took, copies and compiles included.
    """

    jit_compile: bool
    how: str
    seconds_per_step: dict | None = None
    detail: str = ""
    seconds_timing: float | None = None

    def as_json(self):
        """The choice as `config.json` records it."""
        return {key: value for key, value in dataclasses.asdict(self).items()
                if value not in (None, "")}

    @classmethod
    def from_json(cls, data):
        """The choice a run recorded (`as_json`); a ValueError if it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("jit_compile"), bool):
            raise ValueError(f"not a recorded XLA choice: {data!r}")
        return cls(bool(data["jit_compile"]), str(data.get("how", "measured")),
                   data.get("seconds_per_step"), str(data.get("detail", "")),
                   data.get("seconds_timing"))

    def describe(self):
        """One line: what was chosen and from what."""
        chosen = "with XLA" if self.jit_compile else "without XLA"
        if self.how == "measured" and self.seconds_per_step:
            xla, plain = self.seconds_per_step["xla"], self.seconds_per_step["no_xla"]
            faster = max(xla, plain) / max(min(xla, plain), 1e-12)
            took = (f" (timed in {self.seconds_timing:.0f} s)"
                    if self.seconds_timing is not None else "")
            return (f"XLA or not, measured on this machine{took}: {1000 * xla:.1f} ms a "
                    f"training step with XLA, {1000 * plain:.1f} ms without; training "
                    f"{chosen} ({faster:.2f}x faster).")
        if self.how == "XLA failed":
            return f"XLA could not compile the training step ({self.detail}); training {chosen}."
        if self.how == "not copyable":
            return (f"Could not copy the model to time XLA against TensorFlow's kernels "
                    f"({self.detail}); training {chosen}.")
        return f"Training {chosen}: XLA cannot compile a step across several replicas."

    def resumed(self):
        """The line of a resumed run that compiles as it chose when it started."""
        chosen = "with XLA" if self.jit_compile else "without XLA"
        return f"Training {chosen}, as this run chose when it started."


def chosen_jit_compile(model):
    """The `JitChoice` made for `model`, or None."""
    return _CHOICES.get(model)


def remember_jit_compile(model, choice):
    """Makes `choice` (a `JitChoice`) the one `jit_compile_for(..., "auto", model)` reads."""
    _CHOICES[model] = choice
    return choice


def recorded_jit_compile(saved_config):
    """The choice a run's saved `config.json` (a dict) holds: its measured choice, or the
    `jit_compile` it was started with when that was True or False; None if neither."""
    setting = (saved_config.get("training") or {}).get("jit_compile")
    if isinstance(setting, bool):
        return JitChoice(setting, "set")
    try:
        return JitChoice.from_json(saved_config.get("jit_compile_choice"))
    except ValueError:
        return None


def resolve_jit_compile(model, compile_model, config, strategy, example_batch, recorded=None,
                        print_function=print):
    """With `config.jit_compile == "auto"`, makes the choice `model` compiles with (what
    `jit_compile_for(..., "auto", model)` then reads): one made already for `model` stays;
    else the `recorded` one of a resumed run (said in one line), False with several
    replicas, or measured on throwaway copies over `example_batch()`
    (`measure_jit_compile`). Returns the `JitChoice`, or None when `config.jit_compile` is
    True or False.

    Args:
        example_batch: `example_batch()` → one training batch; None cannot measure (a
            ValueError says so).
    """
    if config.jit_compile != AUTO:
        return None
    choice = chosen_jit_compile(model)
    if choice is not None:
        return choice
    if recorded is not None:
        choice = recorded
        print_function(choice.resumed())
    elif strategy.num_replicas_in_sync > 1:
        choice = JitChoice(False, "several replicas")
    elif example_batch is None:
        raise ValueError("jit_compile='auto' needs an example batch to time training "
                         "steps; set jit_compile to True or False.")
    else:
        choice = measure_jit_compile(model, compile_model, config, strategy, example_batch(),
                                     print_function)
    return remember_jit_compile(model, choice)


def measure_jit_compile(model, compile_model, config, strategy, batch, print_function=print):
    """Times training steps with and without XLA on throwaway copies of `model`; returns
    the faster as a `JitChoice`.

    Args:
        model: the model to train (not trained, compiled or built here): each copy is
            `type(model).from_config(model.get_config())`.
        compile_model: `compile_model(model, config, strategy)`, as the job compiles.
        config: the `TrainingConfig` (its precision; `jit_compile` is set per copy).
        strategy: the `tf.distribute.Strategy` the copies are created in.
        batch: one training batch, `(x, y)` or `(x, y, sample_weight)`.
        print_function: where the one line that says what was chosen goes.
    """
    print_function("Timing training steps with and without XLA on copies of the model "
                   "(jit_compile='auto'; XLA compiles first) ...")
    python_state, numpy_state = random.getstate(), np.random.get_state()
    start = time.perf_counter()
    try:
        seconds = _median_step_seconds(model, compile_model, config, strategy, batch)
    except _XlaFailed as failure:
        choice = JitChoice(False, "XLA failed", detail=str(failure))
    except _NotCopyable as failure:
        choice = JitChoice(False, "not copyable", detail=str(failure))
    else:
        choice = JitChoice(seconds["xla"] < seconds["no_xla"], "measured",
                           {name: round(value, 6) for name, value in seconds.items()},
                           seconds_timing=round(time.perf_counter() - start, 1))
    finally:
        # Creating the copies draws seeds from Python's generator: put it back, so the
        # run trains as it would have without measuring.
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        gc.collect()
    print_function(choice.describe())
    return choice


class _XlaFailed(Exception):
    """XLA could not compile or run the step (the message is the first line of why)."""


class _NotCopyable(Exception):
    """`type(model).from_config(model.get_config())` failed (the message says why)."""


def _first_line(error):
    lines = str(error).strip().splitlines() or [""]
    return f"{type(error).__name__}: {lines[0][:200]}"


def _separated(first, second):
    """Whether every time of one contender is below every time of the other, by 10 %."""
    return max(first) * 1.1 < min(second) or max(second) * 1.1 < min(first)


def _median_step_seconds(model, compile_model, config, strategy, batch):
    """`{"xla": s, "no_xla": s}`: median seconds of a training step of two copies."""
    x, y, sample_weight = (tuple(batch) + (None,))[:3]
    copies = {}
    for name, jit_compile in (("xla", True), ("no_xla", False)):
        with strategy.scope(), precision_scope(config.precision):
            try:
                copy = type(model).from_config(model.get_config())
            except Exception as error:  # noqa: BLE001 -- any failure: the model is not copyable
                raise _NotCopyable(_first_line(error)) from error
            compile_model(copy, dataclasses.replace(config, jit_compile=jit_compile), strategy)
        copies[name] = copy

    def step(name):
        copies[name].train_on_batch(x, y, sample_weight=sample_weight)

    for name in copies:
        try:
            for _ in range(WARMUP_STEPS):
                step(name)
        except Exception as error:  # noqa: BLE001 -- any XLA failure means "no XLA"
            if name != "xla":
                raise
            raise _XlaFailed(_first_line(error)) from error
    times = {name: [] for name in copies}
    spent = 0.0
    for round_index in range(ROUNDS):
        order = list(copies) if round_index % 2 == 0 else list(reversed(list(copies)))
        for name in order:
            for _ in range(STEPS_PER_ROUND):
                start = time.perf_counter()
                step(name)
                elapsed = time.perf_counter() - start
                times[name].append(elapsed)
                spent += elapsed
        if round_index >= 1 and (spent > TIME_BUDGET_SECONDS or _separated(*times.values())):
            break
    return {name: statistics.median(values) for name, values in times.items()}
