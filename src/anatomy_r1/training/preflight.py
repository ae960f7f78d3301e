"""Combinations of settings a run refuses before it loads anything, with the way out for each.

Each check here stands for a training path that would otherwise train something other than what the config
says, or fail hours in on the GPU node: they need only the config and the launch, so ``train`` runs them
before writing its output folder and ``anatomy-r1 check`` runs the same ones on a laptop.
"""

from __future__ import annotations

from anatomy_r1.errors import ConfigError
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
