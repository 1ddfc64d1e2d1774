import math

import keras
import numpy as np
import pytest

from tfllm.training import WarmupCosineDecay


def _reference(step, peak, warmup, decay, fraction):
    if step < warmup:
        return peak * (step + 1) / (warmup + 1)
    progress = min((step - warmup) / decay, 1.0)
    floor = peak * fraction
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def test_matches_the_formula_at_every_step():
    schedule = WarmupCosineDecay(2e-3, warmup_steps=10, decay_steps=40, final_fraction=0.1)
    for step in range(0, 60):
        assert float(schedule(step)) == pytest.approx(_reference(step, 2e-3, 10, 40, 0.1), rel=1e-5)


def test_peak_after_warmup_and_floor_at_the_end():
    schedule = WarmupCosineDecay(1e-3, warmup_steps=5, decay_steps=20, final_fraction=0.2)
    values = np.array([float(schedule(step)) for step in range(40)])
    assert values.argmax() == 5 and values.max() == pytest.approx(1e-3)
    assert values[-1] == pytest.approx(2e-4)


def test_round_trips_through_keras_serialization():
    schedule = WarmupCosineDecay(1e-3, warmup_steps=5, decay_steps=20)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert restored.get_config() == schedule.get_config()


@pytest.mark.parametrize("kwargs, message", [
    ({"peak_learning_rate": 0, "warmup_steps": 1, "decay_steps": 2}, "peak_learning_rate"),
    ({"peak_learning_rate": 1e-3, "warmup_steps": -1, "decay_steps": 2}, "warmup_steps"),
    ({"peak_learning_rate": 1e-3, "warmup_steps": 1, "decay_steps": 0}, "decay_steps"),
    ({"peak_learning_rate": 1e-3, "warmup_steps": 1, "decay_steps": 2, "final_fraction": 2},
     "final_fraction"),
])
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WarmupCosineDecay(**kwargs)


def test_the_first_step_already_learns():
    """Step 0 of the warm-up gets peak / (warmup + 1), not 0 (an optimizer step wasted)."""
    schedule = WarmupCosineDecay(1e-3, warmup_steps=9, decay_steps=20)
    assert float(schedule(0)) == pytest.approx(1e-4)
    assert float(WarmupCosineDecay(1e-3, warmup_steps=0, decay_steps=20)(0)) == pytest.approx(1e-3)
