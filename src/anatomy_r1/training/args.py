"""From a run config to TRL's argument dataclasses.

The ``grpo:`` section is TRL's own ``GRPOConfig`` vocabulary and goes through unchanged; what is added
here is only what other sections of the run config own (output folder, seed, precision, logging,
saving, reward weights), so every setting has one home.
"""

from __future__ import annotations

from typing import Any

from anatomy_r1.errors import ConfigError
from anatomy_r1.training.config import TrainConfig


def common_trainer_args(cfg: TrainConfig, output_dir: str) -> dict[str, Any]:
    """Settings GRPO and SFT share: seeds, precision, logging, saving (our callbacks do the display)."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "output_dir": output_dir,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "bf16": cuda and cfg.model.dtype == "bf16",
        "use_cpu": not cuda,
        "logging_steps": cfg.logging.logging_steps,
        "save_strategy": "steps",
        "save_steps": cfg.saving.save_steps,
        "save_total_limit": cfg.saving.save_total_limit,
        "report_to": ["tensorboard"] if cfg.logging.tensorboard else [],
        "disable_tqdm": True,
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
    }


def grpo_args(cfg: TrainConfig, output_dir: str) -> Any:
    """``trl.GRPOConfig`` from the ``grpo:`` section, on top of the settings the other sections own."""
    from trl import GRPOConfig

    kwargs: dict[str, Any] = {
        **common_trainer_args(cfg, output_dir),
        "reward_weights": list(cfg.rewards.spec().values()),
        "log_completions": False,
        **cfg.grpo,
    }
    try:
        return GRPOConfig(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"grpo settings rejected by TRL: {e}") from None
