"""The curriculum sampler for one run, built once TRL has fixed the batch layout.

TRL creates its sampler inside the trainer (``_get_train_sampler``) from sizes it derives itself
(``num_generations``, generation batch, repeat count); the run knows the S(q) of every row and the
``curriculum:`` settings. :class:`CurriculumPlan` holds the second half and builds the
:class:`~anatomy_r1.curriculum.sampler.CurriculumRepeatSampler` when the trainer supplies the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anatomy_r1.curriculum.settings import CurriculumSettings


def planned_generation_batches(args: Any, n_train: int, num_processes: int = 1) -> int:
    """Generation batches a run with ``trl.GRPOConfig`` ``args`` draws: the curriculum's time axis."""
    if args.max_steps > 0:
        from anatomy_r1.curriculum.sampler import generation_batches_for

        return generation_batches_for(
            args.max_steps, args.gradient_accumulation_steps, args.steps_per_generation, args.num_iterations
        )
    gen_batch = args.per_device_train_batch_size * num_processes * args.steps_per_generation
    unique = gen_batch // args.num_generations
    return max(1, int(args.num_train_epochs * (n_train // max(1, unique))))


@dataclass
class CurriculumPlan:
    """S(q) per dataset row, the run's length in generation batches, and the ``curriculum:`` settings."""

    scores: list[float]
    total_batches: int
    settings: CurriculumSettings

    @classmethod
    def for_run(
        cls, settings: CurriculumSettings, args: Any, scores: list[float], num_processes: int = 1
    ) -> CurriculumPlan:
        """``args`` is the run's ``trl.GRPOConfig``: the batch layout the sampler must follow."""
        return cls(list(scores), planned_generation_batches(args, len(scores), num_processes), settings)

    def build_sampler(self, *, mini_repeat_count: int, batch_size: int, repeat_count: int, seed: int) -> Any:
        from anatomy_r1.curriculum.sampler import CurriculumRepeatSampler

        c = self.settings
        return CurriculumRepeatSampler(
            self.scores,
            mini_repeat_count=mini_repeat_count,
            batch_size=batch_size,
            repeat_count=repeat_count,
            total_batches=self.total_batches,
            pacing=c.pacing,
            seed=seed,
            window=c.window,  # type: ignore[arg-type]
            start=c.start_fraction,
            ramp_fraction=c.ramp_fraction,
            stages=c.stages,
        )
