"""Pacing functions: how much of the difficulty-sorted data is open at training progress t.

A pacing function maps progress ``t`` in [0, 1] (fraction of generation batches done) to the fraction of
the S(q)-sorted dataset, easiest first, that the sampler may draw from. Every built-in is monotone
non-decreasing, stays in [0, 1] and reaches 1.0 at ``t = ramp_fraction`` so the hard end of the data is
open for the last ``1 - ramp_fraction`` of training (and, with the sampler's fresh-first policy, every
item is seen).

* ``linear``: c(t) = min(1, c0 + (1 - c0) * t / T)
* ``root`` (competence-based, Platanios et al. 2019): c(t) = min(1, sqrt(c0^2 + (1 - c0^2) * t / T)) --
  opens data quickly at first, when each new item is easy, and slowly later
* ``step``: ``stages`` equal plateaus over [0, T), c(t) = min(1, (floor(stages * t / T) + 1) / stages);
  the last plateau (everything open) begins at T * (stages - 1) / stages
* ``none``: c(t) = 1, i.e. plain shuffling -- the no-curriculum baseline in the same sampler

with ``T = ramp_fraction`` and ``c0 = start`` (the starting competence).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

from anatomy_r1.errors import ConfigError

PacingFn = Callable[[float], float]
PACINGS: tuple[str, ...] = ("none", "linear", "root", "step")

#: How a generation batch draws from the open part of the data (``CurriculumRepeatSampler``'s ``window``):
#: ``fresh``, a pass never repeats an item; ``uniform``, memory-less, so easy items repeat early.
WINDOWS: tuple[str, ...] = ("fresh", "uniform")

#: The one default of each pacing knob; the sampler and ``curriculum:`` settings take them from here.
DEFAULT_PACING = "linear"
DEFAULT_START = 0.2
DEFAULT_RAMP_FRACTION = 0.8
DEFAULT_STAGES = 4


def _clip_t(t: float) -> float:
    return 0.0 if t <= 0 else 1.0 if t >= 1 else float(t)


def _check(start: float, ramp_fraction: float) -> None:
    if not 0.0 <= start <= 1.0:
        raise ConfigError(f"pacing start competence must be in [0, 1], got {start}")
    if not 0.0 < ramp_fraction <= 1.0:
        raise ConfigError(f"pacing ramp_fraction must be in (0, 1], got {ramp_fraction}")


def none(t: float) -> float:
    """Everything open from the start: uniform shuffling."""
    return 1.0


def linear(t: float, *, start: float = DEFAULT_START, ramp_fraction: float = DEFAULT_RAMP_FRACTION) -> float:
    """Open data at a constant rate from ``start`` to 1 over the first ``ramp_fraction`` of training."""
    _check(start, ramp_fraction)
    return min(1.0, start + (1.0 - start) * _clip_t(t) / ramp_fraction)


def root(t: float, *, start: float = DEFAULT_START, ramp_fraction: float = DEFAULT_RAMP_FRACTION) -> float:
    """Square-root competence (Platanios et al. 2019): fast early, slower as items get harder."""
    _check(start, ramp_fraction)
    c0sq = start * start
    return min(1.0, math.sqrt(c0sq + (1.0 - c0sq) * _clip_t(t) / ramp_fraction))


def step(t: float, *, stages: int = DEFAULT_STAGES, ramp_fraction: float = DEFAULT_RAMP_FRACTION) -> float:
    """Baby steps: ``stages`` equal plateaus over [0, T); all data is open from T*(stages-1)/stages."""
    _check(0.0, ramp_fraction)
    if stages < 1:
        raise ConfigError(f"step pacing needs at least one stage, got {stages}")
    t = _clip_t(t)
    if t >= ramp_fraction:
        return 1.0
    # The epsilon keeps plateau edges exact despite float division (0.6 * 4 / 0.8 = 2.9999...).
    return min(1.0, (math.floor(stages * t / ramp_fraction + 1e-9) + 1) / stages)


def get_pacing(
    spec: str | PacingFn | None,
    *,
    start: float = DEFAULT_START,
    ramp_fraction: float = DEFAULT_RAMP_FRACTION,
    stages: int = DEFAULT_STAGES,
) -> PacingFn:
    """Resolve a pacing name (``none|linear|root|step``) or pass a callable through, clipped to [0, 1].

    A user callable is trusted to be monotone; the sampler never lets its window shrink anyway.
    """
    if spec is None or spec == "none":
        return none
    if callable(spec):
        fn = spec

        def clipped(t: float) -> float:
            v = float(fn(t))
            if not math.isfinite(v):
                raise ConfigError(f"pacing function returned {v} at t={t}")
            return min(1.0, max(0.0, v))

        return clipped
    name = str(spec).strip().lower()
    _check(start, ramp_fraction)
    if name == "linear":
        return partial(linear, start=start, ramp_fraction=ramp_fraction)
    if name == "root":
        return partial(root, start=start, ramp_fraction=ramp_fraction)
    if name == "step":
        step(0.0, stages=stages, ramp_fraction=ramp_fraction)  # validate eagerly
        return partial(step, stages=stages, ramp_fraction=ramp_fraction)
    raise ConfigError(f"unknown pacing {spec!r}; choose from {', '.join(PACINGS)}")
