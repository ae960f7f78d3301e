"""Building GRPO trainers on the tiny fixture with hand-made reward functions."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from anatomy_r1.training.config import TrainConfig


def tiny_config(env: dict[str, Path], out: Path, **grpo: Any) -> TrainConfig:
    cfg = TrainConfig(name="t", output_dir=str(out), template="compact_text", seed=3)
    cfg.model.path = str(env["model"])
    cfg.data.train = str(env["data"] / "train.jsonl")
    cfg.grpo.update(
        num_generations=4,
        per_device_train_batch_size=16,
        max_steps=2,
        max_completion_length=8,
        learning_rate=1e-4,
        loss_type="grpo",
        lr_scheduler_type="constant",
        gradient_checkpointing=False,
    )
    cfg.saving.save_steps = 10**6
    cfg.curriculum.backend = "matrix:prior"  # S(q) is logged for every run; the prior is instant
    cfg.logging.progress_bar = False
    cfg.grpo.update(grpo)
    return cfg


def constant_for_even_ids(completions: list[Any], id: list[str], **kwargs: Any) -> list[float]:
    """Reward 1.0 for every completion of an item whose id hashes even; a spread-out reward otherwise.

    Items of the first kind give zero-std groups whatever the model writes, the second kind never does.
    """
    out = []
    for i, (c, pid) in enumerate(zip(completions, id, strict=True)):
        if zlib.crc32(pid.encode()) % 2 == 0:
            out.append(1.0)
        else:
            out.append(float((zlib.crc32(f"{pid}{c}{i}".encode()) % 97) / 97.0))
    return out


def is_constant(pid: str) -> bool:
    return zlib.crc32(pid.encode()) % 2 == 0


def build_trainer(cls: type, cfg: TrainConfig, reward_funcs: list[Any] | None = None) -> Any:
    """The project's trainer factory, with a chosen class and reward functions (``constant_for_even_ids``)."""
    from anatomy_r1.data.images import default_image_root
    from anatomy_r1.training.dataset import load_records
    from anatomy_r1.training.grpo import build_grpo_trainer

    records = load_records(cfg.data.train)
    return build_grpo_trainer(
        cfg,
        records,
        default_image_root(cfg.data.train, None),
        reward_funcs=reward_funcs or [constant_for_even_ids],
        trainer_cls=cls,
    )
