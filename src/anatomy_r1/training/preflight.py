"""Everything a run checks and prepares before it writes its output folder or loads the model.

* Combinations of settings it refuses, with the way out for each (:func:`launch_refusals`): each stands
  for a training path that would otherwise train something other than what the config says, or fail
  hours in on the GPU node. They need only the config and the launch, so ``anatomy-r1 check`` runs the
  same ones on a laptop.
* Its records (:func:`preflight_records`): read and validated, frames present, S(q) scored, GDQA's
  policy built, once, and handed to the trainer as :class:`RunInputs`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from anatomy_r1.data.option_meta import s_q_of
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import ConfigError, DataError
from anatomy_r1.training.config import TrainConfig
from anatomy_r1.training.launch import LaunchSetup
from anatomy_r1.training.precision import precision_plan

if TYPE_CHECKING:
    from anatomy_r1.augment.group_policy import GroupPolicy


def launch_refusals(cfg: TrainConfig, launch: LaunchSetup) -> list[str]:
    """Every refusal of ``cfg`` under ``launch``, one line each (empty when the run may start)."""
    problems: list[str] = []
    try:
        precision_plan(cfg.model.dtype, lora=cfg.model.lora is not None, launch=launch)
    except ConfigError as e:
        problems.append(str(e))
    frozen = cfg.model.freeze_vision and cfg.model.lora is None
    if launch.fsdp_version == 1 and not launch.fsdp_use_orig_params and frozen:
        problems.append(
            "model.freeze_vision with FSDP1 (fsdp_use_orig_params: false, from "
            f"{launch.source}): FSDP1 flattens the frozen vision merger with trainable weights into one "
            "parameter and fails when it wraps the model; set fsdp_version: 2 "
            "(configs/accelerate/fsdp2.yaml) or fsdp_use_orig_params: true in the accelerate config"
        )
    return problems


def check_launch(cfg: TrainConfig, launch: LaunchSetup) -> None:
    """Raise one ``ConfigError`` listing every refusal."""
    problems = launch_refusals(cfg, launch)
    if problems:
        raise ConfigError("; ".join(problems) if len(problems) > 1 else problems[0])


#: Missing frames listed by name before the rest are only counted.
MISSING_LISTED = 5


def check_images_present(records: list[Record], data_file: str, image_root: str | None) -> None:
    """Every frame the records name exists (a stat per distinct path; decoding is ``data validate``'s job,
    and the first generation batch is decoded before the first step)."""
    from anatomy_r1.data.io import resolve_image

    found: dict[str, bool] = {}
    missing: list[tuple[str, str]] = []
    for rec in records:
        for img in rec.images:
            if img not in found:
                found[img] = resolve_image(img, image_root).is_file()
            if not found[img]:
                missing.append((rec.id, img))
    if missing:
        shown = "; ".join(f"item {i!r}: {p}" for i, p in missing[:MISSING_LISTED])
        more = f" and {len(missing) - MISSING_LISTED} more" if len(missing) > MISSING_LISTED else ""
        raise DataError(
            f"{data_file}: {len(missing)} image(s) not found under {image_root}: {shown}{more} "
            "(set data.image_root; anatomy-r1 data validate FILE --image-root DIR lists them all)"
        )


def ensure_s_q(records: list[Record], backend: str, mode: str, path: str | None = None) -> list[Record]:
    """Fill ``meta['s_q']`` where missing; scores already in the file (``anatomy-r1 score``) are kept.

    With ``path`` (the file the records came from), options the backend cannot score are refused by file,
    line and item, all of them at once.
    """
    missing = [r for r in records if math.isnan(s_q_of(r))]
    if not missing:
        return records
    from anatomy_r1.curriculum.scoring import score_file_records, score_records
    from anatomy_r1.curriculum.similarity import get_backend

    backend_obj = get_backend(backend)
    if path is not None:
        scores = score_file_records(missing, backend_obj, mode, path)
    else:
        scores = score_records(missing, backend_obj, mode=mode)
    for r, s in zip(missing, scores, strict=True):
        r.meta["s_q"] = float(s)
        r.meta.setdefault("s_q_backend", backend)
    return records


@dataclass
class RunInputs:
    """A run's training records (S(q) filled in) and, with GDQA, its group policy: read and checked once,
    before anything is written, and handed to the trainer as they are."""

    records: list[Record]
    group_policy: GroupPolicy | None = None


def prepare_inputs(cfg: TrainConfig, records: list[Record]) -> RunInputs:
    """S(q) scored where the file has none (an option the backend lacks is named by line and item) and
    GDQA's policy built (its variants file read and checked against the records, its paraphraser
    imported)."""
    c = cfg.curriculum
    if cfg.method == "grpo" and (c.enabled or cfg.gdqa.enabled or c.log_s_q):
        ensure_s_q(records, c.backend, c.mode, cfg.data.train)
    policy = None
    if cfg.method == "grpo" and cfg.gdqa.enabled:
        from anatomy_r1.augment.group_policy import GroupPolicy
        from anatomy_r1.curriculum.scoring import s_q
        from anatomy_r1.curriculum.similarity import get_backend

        backend = get_backend(c.backend)
        policy = GroupPolicy.build(
            cfg.gdqa,
            records,
            data_path=cfg.data.train,
            template=cfg.template,
            seed=cfg.seed,
            s_q=lambda options, answer_index: s_q(options, answer_index, backend, c.mode),
        )
        extra = policy.extra_rows()  # own_groups: variant rows join the data as questions of their own
        if extra:
            # A variant with the original's options carries its S(q); one with new distractors carries
            # none (augment.distractors) and is scored here.
            ensure_s_q(extra, c.backend, c.mode)
            records = records + extra
    return RunInputs(records, policy)


def preflight_records(cfg: TrainConfig) -> RunInputs:
    """The training records, checked as far as they can be before a run writes or loads anything: items,
    frames present, S(q) scorable (GRPO), GDQA's variants file and paraphraser."""
    from pathlib import Path

    from anatomy_r1.data.images import default_image_root
    from anatomy_r1.training.dataset import load_records

    if not cfg.data.train:
        raise ConfigError("data.train is not set")
    if not Path(cfg.data.train).is_file():
        raise ConfigError(f"data.train: {cfg.data.train}: no such file")
    from anatomy_r1.task.prompts import check_template_fits

    records = load_records(cfg.data.train, cfg.data.limit)
    check_template_fits(records, cfg.template, cfg.data.train)  # `source` needs each item's instruction
    check_images_present(records, cfg.data.train, default_image_root(cfg.data.train, cfg.data.image_root))
    return prepare_inputs(cfg, records)
