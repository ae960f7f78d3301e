"""A curriculum drop-in for TRL's ``RepeatSampler``: easy questions first, hard ones later.

Structure (identical to ``trl.trainer.utils.RepeatSampler``): the stream is a sequence of *generation
batches*; each holds ``batch_size`` distinct dataset indices, every index repeated ``mini_repeat_count``
(= ``num_generations``) times in a row so a GRPO group stays contiguous, and the whole block is repeated
``repeat_count`` (= ``num_iterations * steps_per_generation``) times so TRL can reuse one generation for
several optimisation steps. ``len()`` and the number of generation batches per epoch
(``num_samples // batch_size``) match ``RepeatSampler`` exactly, so the Trainer's step arithmetic is
unchanged.

What differs is *which* indices generation batch ``b`` gets. The dataset is sorted by S(q), easiest first
(ties broken by a seeded shuffle, so a coarse matrix backend does not leave ties in file order). Batch
``b`` of ``total_batches`` may draw only from the easiest ``pacing(b / total_batches)`` fraction of that
order (the *window*; at least ``batch_size`` items). Within the window, policy ``window="fresh"``
(default):

* items are drawn uniformly at random (seeded) among those not yet seen in the current *pass*; a pass ends
  when every item has been drawn once, and the next pass starts over with the window at the current pacing
  value;
* if the pacing window holds fewer than ``batch_size`` unseen items, it is widened just enough. So a pass
  never repeats an item, an epoch of ``num_samples // batch_size`` batches visits every item once (exactly
  once when ``batch_size`` divides ``num_samples``), and a pacing slower than the data rate degrades to a
  pure easy-to-hard sweep instead of over-training the easy end.

``window="uniform"`` is the textbook competence sampler (Platanios et al. 2019): ``batch_size`` distinct
items uniformly from the window with no memory, so easy items repeat early and coverage is not guaranteed.
``pacing="none"`` opens the whole dataset from batch 0: plain seeded shuffling, the no-curriculum
baseline, so "with or without curriculum" is one switch.

Determinism and resume: the order is a pure function of ``(scores, seed, pacing settings, total_batches)``
and the generation-batch index. It uses no global RNG and no process rank, so every process of a
distributed run builds the same stream and accelerate's ``BatchSamplerShard`` hands each process a
consistent slice; HF Trainer's resume (``skip_first_batches``: iterate and discard) lands on exactly the
same batches. ``state_dict``/``load_state_dict``/``skip_batches`` serve loops that resume without that.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
from torch.utils.data import Sampler

from anatomy_r1.curriculum.pacing import (
    DEFAULT_PACING,
    DEFAULT_RAMP_FRACTION,
    DEFAULT_STAGES,
    DEFAULT_START,
    WINDOWS,
    PacingFn,
    get_pacing,
)
from anatomy_r1.errors import ConfigError

Window = Literal["fresh", "uniform"]
STATE_VERSION = 1


def generation_batches_for(
    max_steps: int,
    gradient_accumulation_steps: int = 1,
    steps_per_generation: int | None = None,
    num_iterations: int = 1,
) -> int:
    """Number of generation batches a GRPO run of ``max_steps`` optimiser steps draws: ``total_batches``.

    Each optimiser step consumes ``gradient_accumulation_steps`` dataloader batches, and each generation
    batch is served as ``steps_per_generation * num_iterations`` of them (TRL's ``repeat_count``).
    ``steps_per_generation`` defaults to ``gradient_accumulation_steps`` as in TRL.
    """
    spg = gradient_accumulation_steps if steps_per_generation is None else steps_per_generation
    if min(max_steps, gradient_accumulation_steps, spg, num_iterations) < 1:
        raise ConfigError(
            "max_steps, gradient_accumulation_steps, steps_per_generation and num_iterations must be positive"
        )
    return math.ceil(max_steps * gradient_accumulation_steps / (spg * num_iterations))


class CurriculumRepeatSampler(Sampler[int]):
    """S(q)-paced replacement for TRL's ``RepeatSampler`` (see module docstring for the policy).

    Args:
        scores: S(q) per dataset row, in dataset order (``len(scores)`` is the dataset size).
        mini_repeat_count: repeats of each index in a row; TRL passes ``num_generations``.
        batch_size: distinct indices per generation batch; TRL passes
            ``generation_batch_size // num_generations``.
        repeat_count: repeats of each generation batch; TRL passes ``num_iterations * steps_per_generation``.
        total_batches: generation batches over the whole run, the denominator of training progress
            (:func:`generation_batches_for` computes it from ``max_steps``). Default: one epoch. Batches past
            it use progress 1.0 (everything open).
        pacing: ``"none"`` (shuffled baseline), ``"linear"``, ``"root"``, ``"step"``, or a callable
            ``t -> fraction``.
        seed: the only source of randomness; use the same value in every process (TRL passes ``args.seed``).
        window: ``"fresh"`` (no repeats within a pass, full coverage) or ``"uniform"`` (with memory-less
            resampling).
        start, ramp_fraction, stages: pacing parameters (starting competence c0, progress at which the
            whole dataset is open, number of plateaus for ``step``).
    """

    def __init__(
        self,
        scores: Sequence[float],
        mini_repeat_count: int,
        batch_size: int = 1,
        repeat_count: int = 1,
        total_batches: int | None = None,
        pacing: str | Callable[[float], float] | None = DEFAULT_PACING,
        seed: int = 0,
        window: Window = "fresh",
        *,
        start: float = DEFAULT_START,
        ramp_fraction: float = DEFAULT_RAMP_FRACTION,
        stages: int = DEFAULT_STAGES,
    ) -> None:
        s = np.asarray(scores, dtype=np.float64)
        if s.ndim != 1 or len(s) == 0:
            raise ConfigError("scores must be a non-empty sequence of numbers, one per dataset row")
        if not np.all(np.isfinite(s)):
            bad = int(np.flatnonzero(~np.isfinite(s))[0])
            raise ConfigError(f"score of row {bad} is not finite ({s[bad]}); score the dataset first")
        if min(mini_repeat_count, batch_size, repeat_count) < 1:
            raise ConfigError("mini_repeat_count, batch_size and repeat_count must be at least 1")
        if batch_size > len(s):
            raise ConfigError(f"batch_size {batch_size} exceeds the dataset size {len(s)}")
        if window not in WINDOWS:
            raise ConfigError(f"unknown window policy {window!r}; use 'fresh' or 'uniform'")
        self.scores = s
        self.num_samples = len(s)
        self.mini_repeat_count = mini_repeat_count
        self.batch_size = batch_size
        self.repeat_count = repeat_count
        self.batches_per_epoch = self.num_samples // batch_size
        self.total_batches = int(total_batches) if total_batches is not None else self.batches_per_epoch
        if self.total_batches < 1:
            raise ConfigError(f"total_batches must be at least 1, got {total_batches}")
        self.pacing_name = (
            pacing if isinstance(pacing, str) or pacing is None else getattr(pacing, "__name__", "callable")
        )
        self.pacing: PacingFn = get_pacing(pacing, start=start, ramp_fraction=ramp_fraction, stages=stages)
        self.seed = int(seed)
        self.window = window

        # Easiest first; ties in a seeded order rather than file order.
        tie = random.Random(f"anatomy-r1/curriculum/ties/{self.seed}")
        perm = list(range(self.num_samples))
        tie.shuffle(perm)
        perm_a = np.asarray(perm, dtype=np.int64)
        self.order: np.ndarray = perm_a[np.argsort(s[perm_a], kind="stable")]

        self._rng = random.Random(f"anatomy-r1/curriculum/draws/{self.seed}")
        self._plan: list[tuple[int, ...]] = []
        self._windows: list[int] = []
        self._open = 0  # fresh policy: open prefix length of the current pass
        self._pool: list[int] = []  # fresh policy: unseen ranks inside the open prefix
        self._left_in_pass = self.num_samples

        self._epoch = 0
        self._skip = 0
        self._position = 0

    # ---------------------------------------------------------------------------------------------------
    # The plan: a pure function of the constructor arguments and the batch index
    # ---------------------------------------------------------------------------------------------------

    def _target_window(self, b: int) -> int:
        t = min(1.0, b / self.total_batches)
        w = math.ceil(self.pacing(t) * self.num_samples - 1e-9)
        return min(self.num_samples, max(self.batch_size, w))

    def _grow(self, new_open: int) -> None:
        if new_open > self._open:
            self._pool.extend(range(self._open, new_open))
            self._open = new_open

    def _draw(self, pool: list[int], n: int) -> list[int]:
        out = []
        for _ in range(n):
            j = self._rng.randrange(len(pool))
            out.append(pool[j])
            pool[j] = pool[-1]
            pool.pop()
        return out

    def _next_batch(self) -> None:
        b = len(self._plan)
        target = self._target_window(b)
        k = self.batch_size
        if self.window == "uniform":
            ranks = self._rng.sample(range(target), k)
            self._windows.append(target)
        else:
            self._grow(target)
            if len(self._pool) < k:  # widen just enough to keep the pass free of repeats
                self._grow(min(self.num_samples, self._open + k - len(self._pool)))
            if len(self._pool) >= k:
                ranks = self._draw(self._pool, k)
                self._left_in_pass -= k
                self._windows.append(self._open)
            else:  # end of a pass: the leftovers, then the first items of the next pass
                ranks = list(self._pool)
                taken = set(ranks)
                self._open = 0
                self._pool = []
                self._left_in_pass = self.num_samples
                self._grow(target)
                pool = [r for r in self._pool if r not in taken]
                more = self._draw(pool, k - len(ranks))
                self._pool = pool + [r for r in ranks if r < self._open]
                ranks += more
                self._left_in_pass -= len(more)
                self._windows.append(self._open)
            if self._left_in_pass == 0:
                self._open = 0
                self._pool = []
                self._left_in_pass = self.num_samples
        self._plan.append(tuple(int(self.order[r]) for r in ranks))

    def batch_indices(self, b: int) -> list[int]:
        """The ``batch_size`` distinct dataset indices of global generation batch ``b`` (0-based)."""
        if b < 0:
            raise IndexError(f"generation batch {b} < 0")
        while len(self._plan) <= b:
            self._next_batch()
        return list(self._plan[b])

    def window_size(self, b: int) -> int:
        """Open prefix of the S(q)-sorted data at generation batch ``b`` (after any coverage widening)."""
        self.batch_indices(b)
        return self._windows[b]

    # ---------------------------------------------------------------------------------------------------
    # Sampler protocol
    # ---------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_size * self.mini_repeat_count * self.repeat_count

    def __iter__(self) -> Iterator[int]:
        epoch, skip = self._epoch, self._skip
        self._skip = 0
        self._position = skip
        first = epoch * self.batches_per_epoch
        per_batch = self.batch_size * self.mini_repeat_count * self.repeat_count
        for local in range(skip, self.batches_per_epoch):
            chunk = self.batch_indices(first + local)
            n = 0
            for _ in range(self.repeat_count):
                for index in chunk:
                    for _ in range(self.mini_repeat_count):
                        n += 1
                        if n == per_batch:  # counted complete as soon as its last element is handed out
                            self._position = local + 1
                        yield index
        # Finished: a plain loop that never calls set_epoch still moves on, like RepeatSampler.
        self._epoch = epoch + 1
        self._position = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the next iteration yields (HF Trainer and accelerate call this)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch = int(epoch)

    @property
    def epoch(self) -> int:
        return self._epoch

    # ---------------------------------------------------------------------------------------------------
    # Resume
    # ---------------------------------------------------------------------------------------------------

    def skip_batches(self, n: int) -> None:
        """Make the next iteration start at generation batch ``n`` of the current epoch.

        Units are generation batches (one chunk with all its repeats). Not needed under HF Trainer, whose
        resume already skips consumed batches by iterating the dataloader; using both would skip twice.
        """
        if not 0 <= n <= self.batches_per_epoch:
            raise ValueError(f"can skip 0..{self.batches_per_epoch} generation batches, not {n}")
        self._skip = int(n)

    def _digest(self) -> str:
        h = hashlib.sha256()
        h.update(self.order.astype(np.int64).tobytes())
        h.update(repr((self.batch_size, self.total_batches, self.window, self.pacing_name)).encode())
        h.update(np.asarray([self.pacing(i / 16) for i in range(17)]).tobytes())
        return h.hexdigest()[:16]

    def state_dict(self) -> dict[str, Any]:
        """Where the sampler stands: epoch, and complete generation batches yielded in that epoch.

        The plan itself is not stored: it is recomputed from the constructor arguments, and ``digest``
        guards against resuming with different scores, seed or pacing. ``position`` counts batches the
        sampler has *produced*; a prefetching dataloader runs ahead of training, so a training loop should
        save the number of batches it *consumed* (and call :meth:`skip_batches`) if exactness matters.
        """
        return {
            "version": STATE_VERSION,
            "seed": self.seed,
            "num_samples": self.num_samples,
            "epoch": self._epoch,
            "position": self._position,
            "digest": self._digest(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next iteration continues right after ``position``."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ConfigError("not a CurriculumRepeatSampler state (missing or unknown 'version')")
        for key, mine in (("seed", self.seed), ("num_samples", self.num_samples), ("digest", self._digest())):
            if state.get(key) != mine:
                raise ConfigError(
                    f"sampler state does not match this sampler: {key} {state.get(key)!r} != {mine!r} "
                    "(different scores, seed, batch size or pacing)"
                )
        self.set_epoch(int(state["epoch"]))
        self.skip_batches(int(state["position"]))

    # ---------------------------------------------------------------------------------------------------
    # Inspection
    # ---------------------------------------------------------------------------------------------------

    def batch_mean_s_q(self, indices: Sequence[int]) -> float:
        """Mean S(q) of the given dataset indices (repeats weigh equally, so a GRPO block is fine)."""
        if len(indices) == 0:
            raise ValueError("no indices")
        return float(self.scores[np.asarray(indices, dtype=np.int64)].mean())

    def mean_s_q_schedule(self, num_batches: int | None = None) -> np.ndarray:
        """Batch-mean S(q) of generation batches ``0..num_batches-1`` (default ``total_batches``).

        These are the batches the run will actually see (the plan is deterministic), for plotting the
        curriculum: under pacing it rises with training; under ``pacing="none"`` it stays flat.
        """
        n = self.total_batches if num_batches is None else int(num_batches)
        return np.asarray([self.batch_mean_s_q(self.batch_indices(b)) for b in range(n)], dtype=np.float64)
