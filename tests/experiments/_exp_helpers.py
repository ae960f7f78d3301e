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
    k = cfg.grpo
    k.num_generations = 4
    k.per_device_train_batch_size = 16
    k.max_steps = 2
    k.max_completion_length = 8
    k.learning_rate = 1e-4
    cfg.saving.save_steps = 10**6
    cfg.curriculum.backend = "matrix:prior"  # S(q) is logged for every run; the prior is instant
    cfg.logging.progress_bar = False
    for key, value in grpo.items():
        setattr(k, key, value)
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
    from anatomy_r1.models.loading import load_model, load_processor
    from anatomy_r1.training.dataset import build_rl_dataset, default_image_root, load_records
    from anatomy_r1.training.grpo import grpo_args

    records = load_records(cfg.data.train)
    dataset = build_rl_dataset(records, cfg.template, default_image_root(cfg.data.train, None))
    funcs = reward_funcs or [constant_for_even_ids]
    args = grpo_args(cfg, cfg.output_dir, len(records))
    args.reward_weights = [1.0] * len(funcs)
    model = load_model(cfg.model.path)
    processor = load_processor(cfg.model.path)
    return cls(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        records=records,
        template=cfg.template,
    )
