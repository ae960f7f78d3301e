"""Pacing functions: monotone, bounded, fully open by the end of the ramp."""

from __future__ import annotations

import numpy as np
import pytest

from anatomy_r1.curriculum.pacing import PACINGS, get_pacing, linear, root, step
from anatomy_r1.curriculum.sampler import CurriculumRepeatSampler
from anatomy_r1.errors import ConfigError

T = np.linspace(0.0, 1.0, 1001)


@pytest.mark.parametrize("name", PACINGS)
@pytest.mark.parametrize("ramp", [0.5, 0.8, 1.0])
def test_monotone_bounded_and_reaches_one(name: str, ramp: float) -> None:
    fn = get_pacing(name, start=0.2, ramp_fraction=ramp, stages=3)
    v = np.array([fn(t) for t in T])
    assert np.all((v >= 0) & (v <= 1))
    assert np.all(np.diff(v) >= -1e-12)
    assert fn(ramp) == pytest.approx(1.0)
    assert fn(1.0) == 1.0
    assert fn(-0.5) == fn(0.0) and fn(2.0) == 1.0


def test_starting_points_and_shapes() -> None:
    assert linear(0.0, start=0.2) == pytest.approx(0.2)
    assert linear(0.4, start=0.2, ramp_fraction=0.8) == pytest.approx(0.6)
    assert root(0.0, start=0.2) == pytest.approx(0.2)
    # Root competence opens data faster than linear early on.
    assert root(0.1, start=0.2) > linear(0.1, start=0.2)
    assert [step(t, stages=4, ramp_fraction=0.8) for t in (0.0, 0.19, 0.2, 0.59, 0.6, 0.8)] == [
        0.25,
        0.25,
        0.5,
        0.75,
        1.0,
        1.0,
    ]


def test_user_callable_is_clipped_and_bad_settings_refused() -> None:
    fn = get_pacing(lambda t: 2 * t - 0.5)
    assert fn(0.0) == 0.0 and fn(1.0) == 1.0
    with pytest.raises(ConfigError):
        get_pacing("cosine")
    with pytest.raises(ConfigError):
        get_pacing("root", ramp_fraction=0.0)
    with pytest.raises(ConfigError):
        get_pacing("linear", start=1.5)
    with pytest.raises(ConfigError):
        get_pacing("step", stages=0)


@pytest.mark.parametrize("name", PACINGS)
def test_every_item_is_seen_in_one_epoch(name: str) -> None:
    """Over one epoch of generation batches the sampler covers the whole dataset, once each."""
    scores = np.random.default_rng(3).random(240)
    s = CurriculumRepeatSampler(scores, mini_repeat_count=2, batch_size=8, pacing=name, seed=5)
    seen = [i for b in range(s.batches_per_epoch) for i in s.batch_indices(b)]
    assert sorted(seen) == list(range(240))
    windows = [s.window_size(b) for b in range(s.batches_per_epoch)]
    assert windows == sorted(windows) and windows[-1] == 240
