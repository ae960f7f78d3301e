"""Glue between the experiment config and the ASCL / GDQA components the trainer plugs in."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from anatomy_r1.data.schema import Record
from anatomy_r1.training.config import TrainConfig


def ensure_s_q(records: list[Record], backend: str, mode: str, path: str | None = None) -> list[Record]:
    """Fill ``meta['s_q']`` where missing; scores already in the file (``anatomy-r1 score``) are kept.

    With ``path`` (the file the records came from), options the backend cannot score are refused by file,
    line and item, all of them at once.
    """
    missing = [
        r
        for r in records
        if not isinstance(r.meta.get("s_q"), int | float) or math.isnan(float(r.meta["s_q"]))
    ]
    if not missing:
        return records
    from anatomy_r1.curriculum.scoring import score_file_records, score_records
    from anatomy_r1.curriculum.similarity import get_backend

    if path is not None:
        scores = score_file_records(missing, get_backend(backend), mode, path)
    else:
        scores = score_records(missing, get_backend(backend), mode=mode)
    for r, s in zip(missing, scores, strict=True):
        r.meta["s_q"] = float(s)
        r.meta.setdefault("s_q_backend", backend)
    return records


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
    """What the trainer needs to build the ASCL sampler once TRL has fixed the batch layout."""

    scores: list[float]
    total_batches: int
    pacing: str
    start: float
    ramp_fraction: float
    stages: int

    @classmethod
    def from_config(
        cls, cfg: TrainConfig, args: Any, records: list[Record], num_processes: int = 1
    ) -> CurriculumPlan:
        """``args`` is the run's ``trl.GRPOConfig``: the batch layout the sampler must follow."""
        c = cfg.curriculum
        return cls(
            scores=[float(r.meta["s_q"]) for r in records],
            total_batches=planned_generation_batches(args, len(records), num_processes),
            pacing=c.pacing,
            start=c.start_fraction,
            ramp_fraction=c.ramp_fraction,
            stages=c.stages,
        )

    def build_sampler(self, *, mini_repeat_count: int, batch_size: int, repeat_count: int, seed: int) -> Any:
        from anatomy_r1.curriculum.sampler import CurriculumRepeatSampler

        return CurriculumRepeatSampler(
            self.scores,
            mini_repeat_count=mini_repeat_count,
            batch_size=batch_size,
            repeat_count=repeat_count,
            total_batches=self.total_batches,
            pacing=self.pacing,
            seed=seed,
            start=self.start,
            ramp_fraction=self.ramp_fraction,
            stages=self.stages,
        )


def difficulty_threshold(cfg: TrainConfig, records: list[Record]) -> float:
    """The S(q) from which an unseen item counts as difficult: ``gdqa.s_q_threshold`` as written, else the
    ``gdqa.s_q_quantile`` of the records' S(q) (infinite, so nothing, when no record has one)."""
    g = cfg.gdqa
    if g.s_q_threshold is not None:
        return float(g.s_q_threshold)
    scores = [float(r.meta["s_q"]) for r in records if isinstance(r.meta.get("s_q"), int | float)]
    scores = [s for s in scores if not math.isnan(s)]
    if not scores:
        return math.inf
    import numpy as np

    return float(np.quantile(scores, g.s_q_quantile if g.s_q_quantile is not None else 0.5))


@dataclass
class GDQAPlan:
    """Chooses, per group member, the wording it sees; difficulty comes from the shared tracker."""

    generator: Any
    seed: int
    _difficult: dict[tuple[str, int], bool] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: TrainConfig, records: list[Record] | None = None) -> tuple[GDQAPlan, Any]:
        from anatomy_r1.augment import CompositeGenerator, DifficultyTracker
        from anatomy_r1.augment.paraphrase import load_paraphraser
        from anatomy_r1.augment.rerefer import SceneIndex

        g = cfg.gdqa
        threshold = difficulty_threshold(cfg, records or [])
        tracker = DifficultyTracker(ema_alpha=g.ema_alpha, threshold=g.threshold, s_q_threshold=threshold)
        generator = CompositeGenerator(
            kinds=tuple(g.kinds),
            scenes=SceneIndex.for_data([cfg.data.train]) if "rerefer" in g.kinds else None,
            prepared=_prepared(g.variants_file, records),
            external=None if g.paraphraser is None else load_paraphraser(g.paraphraser, "gdqa.paraphraser"),
        )
        return cls(generator=generator, seed=cfg.seed), tracker

    def variant_for(
        self, record: Record, member: int, group_size: int, tracker: Any, *, step: int, s_q: float | None
    ) -> tuple[Record, bool]:
        from anatomy_r1.augment import variant_for_member

        key = (record.id, step)
        difficult = self._difficult.get(key)
        if difficult is None:
            s = None if s_q is None or (isinstance(s_q, float) and math.isnan(s_q)) else float(s_q)
            difficult = bool(tracker.is_difficult(record.id, s))
            if len(self._difficult) > 100_000:
                self._difficult.clear()
            self._difficult[key] = difficult
        if not difficult:
            return record, False
        variant = variant_for_member(record, member, group_size, True, self.generator, self.seed, step)
        changed = variant.question != record.question or variant.options != record.options
        return variant, changed


def _prepared(path: str | None, records: list[Record] | None) -> Any:
    """The variants file, checked against the training records before any step runs."""
    if path is None:
        return None
    from anatomy_r1.augment.prepared import PreparedVariants

    prepared = PreparedVariants.from_file(path)
    if records is not None:
        prepared.check(records)
    return prepared


def prepare_records(cfg: TrainConfig, records: list[Record]) -> None:
    """Everything about the training records a run can refuse before it writes or loads anything: S(q)
    (scored now where the file has none, so an option the backend lacks is named by line and item) and
    GDQA's own inputs."""
    if cfg.method == "grpo" and (cfg.curriculum.enabled or cfg.gdqa.enabled or cfg.curriculum.log_s_q):
        ensure_s_q(records, cfg.curriculum.backend, cfg.curriculum.mode, cfg.data.train)
    check_gdqa_inputs(cfg, records)


def check_gdqa_inputs(cfg: TrainConfig, records: list[Record]) -> None:
    """Refuse a bad ``gdqa.variants_file`` or ``gdqa.paraphraser`` before a run writes anything."""
    g = cfg.gdqa
    if not g.enabled:
        return
    _prepared(g.variants_file, records)
    if g.paraphraser is not None:
        from anatomy_r1.augment.paraphrase import load_paraphraser

        load_paraphraser(g.paraphraser, "gdqa.paraphraser")
