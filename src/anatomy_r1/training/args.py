"""From a run config to TRL's argument dataclasses.

The ``grpo:`` section is TRL's own ``GRPOConfig`` vocabulary and goes through unchanged; what is added
here is only what other sections of the run config own (output folder, seed, precision, logging,
saving, reward weights), so every setting has one home.
"""

from __future__ import annotations

from typing import Any

from anatomy_r1.errors import ConfigError
from anatomy_r1.training.config import TrainConfig
from anatomy_r1.training.launch import LaunchSetup
from anatomy_r1.training.precision import PrecisionPlan, precision_plan


def report_to(value: list[str] | str) -> list[str]:
    """``logging.report_to`` as transformers reads it, refused here if a named tracker is unknown or absent.

    transformers would otherwise fail only when the trainer is built, after the model has loaded, with a
    message about its callback classes.
    """
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    names = [value] if isinstance(value, str) else list(value)
    if names in (["none"], []):
        return []
    if names == ["all"]:
        return get_available_reporting_integrations()
    installed = set(get_available_reporting_integrations())
    for name in names:
        if name not in INTEGRATION_TO_CALLBACK:
            raise ConfigError(
                f"logging.report_to: {name!r} is not a tracker transformers knows "
                f"({', '.join(sorted(INTEGRATION_TO_CALLBACK))}, or none / all)"
            )
        if name not in installed:
            hint = f"'anatomy-r1[{name}]'" if name in ("wandb", "tensorboard") else name
            raise ConfigError(f"logging.report_to: {name} is not installed (pip install {hint})")
    return names


def quiet_renamed_checkpointing_warnings() -> None:
    """Silence transformers 5's notice that ``gradient_checkpointing`` became ``activation_checkpointing``.

    TRL 1.16's configs default the old name to True and its generation helper reads the old property, so
    the notice fires on every run, save and rollout whatever the user writes; it says nothing about the
    run. ``grpo.gradient_checkpointing`` (TRL's field) keeps working and is what our configs use.
    """
    import warnings

    warnings.filterwarnings(
        "ignore", message=r"`(is_)?gradient_checkpointing\S*` is deprecated", category=FutureWarning
    )


def run_precision(cfg: TrainConfig, launch: LaunchSetup | None = None) -> PrecisionPlan:
    """The precision plan of ``cfg`` under ``launch``, by default the one this process belongs to."""
    lora = cfg.model.lora.model_dump() if cfg.model.lora is not None else False
    return precision_plan(cfg.model.dtype, lora=lora, launch=launch or LaunchSetup.for_run(cfg))


def common_trainer_args(
    cfg: TrainConfig, output_dir: str, plan: PrecisionPlan | None = None
) -> dict[str, Any]:
    """Settings GRPO and SFT share: seeds, precision, logging, saving (our callbacks do the display).

    ``bf16`` follows the precision plan (``plan`` when the caller has it, else :func:`run_precision`) on CPU
    as on GPU, so a CPU run (``anatomy-r1 check``) trains under the same autocast as the GPU run it stands
    for.
    """
    import torch

    quiet_renamed_checkpointing_warnings()
    cuda = torch.cuda.is_available()
    return {
        "output_dir": output_dir,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "bf16": (plan or run_precision(cfg)).bf16_autocast,
        "use_cpu": not cuda,
        "logging_steps": cfg.logging.logging_steps,
        "save_strategy": "steps",
        "save_steps": cfg.saving.save_steps,
        "save_total_limit": cfg.saving.save_total_limit,
        "report_to": report_to(cfg.logging.report_to),
        "disable_tqdm": True,
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
    }


def grpo_args(cfg: TrainConfig, output_dir: str, plan: PrecisionPlan | None = None) -> Any:
    """``trl.GRPOConfig`` from the ``grpo:`` section, on top of the settings the other sections own."""
    from trl import GRPOConfig

    kwargs: dict[str, Any] = {
        **common_trainer_args(cfg, output_dir, plan),
        "reward_weights": list(cfg.rewards.spec().values()),
        **cfg.grpo,
    }
    try:
        return GRPOConfig(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"grpo settings rejected by TRL: {e}") from None
