"""Combinations of settings a run refuses before it loads anything, with the way out for each.

Each check here stands for a training path that would otherwise train something other than what the config
says, or fail hours in on the GPU node: they need only the config and the launch, so ``train`` runs them
before writing its output folder and ``anatomy-r1 check`` runs the same ones on a laptop.
"""

from __future__ import annotations

from anatomy_r1.data.schema import Record
from anatomy_r1.errors import ConfigError, DataError
from anatomy_r1.training.config import TrainConfig
from anatomy_r1.training.launch import LaunchSetup
from anatomy_r1.training.precision import precision_plan


def launch_refusals(cfg: TrainConfig, launch: LaunchSetup) -> list[str]:
    """Every refusal of ``cfg`` under ``launch``, one line each (empty when the run may start)."""
    problems: list[str] = []
    if cfg.method in ("grpo", "sft"):
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


def preflight_records(cfg: TrainConfig) -> list[Record]:
    """The training records, checked as far as they can be before a run writes or loads anything: items,
    frames present, S(q) scorable (GRPO), GDQA's variants file and paraphraser."""
    from pathlib import Path

    from anatomy_r1.data.images import default_image_root
    from anatomy_r1.training.dataset import load_records
    from anatomy_r1.training.integration import prepare_records

    if not cfg.data.train:
        raise ConfigError("data.train is not set")
    if not Path(cfg.data.train).is_file():
        raise ConfigError(f"data.train: {cfg.data.train}: no such file")
    records = load_records(cfg.data.train, cfg.data.limit)
    check_images_present(records, cfg.data.train, default_image_root(cfg.data.train, cfg.data.image_root))
    prepare_records(cfg, records)
    return records
