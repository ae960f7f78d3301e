"""Planning: every method x seed of an experiment resolved to its ``TrainConfig`` and output folder.

Every run's config is resolved up front, so a bad override fails before any training.

Equal budget: every RL method must train ``grpo.max_steps x per_device_train_batch_size x
gradient_accumulation_steps`` completions (checked; DAPO's dynamic sampling generates extra rollouts on
top, logged as ``dapo/extra_rollouts``). SFT trains on the same number of sequences: one SFT example per
GRPO completion, so ``sft.max_steps`` is derived unless a method sets it explicitly.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from anatomy_r1.errors import ConfigError
from anatomy_r1.pipelines.experiment.config import ExperimentConfig, _deep_merge
from anatomy_r1.training.config import TrainConfig, apply_overrides, config_from_dict, read_yaml_mapping

__all__ = ["DONE_FILE", "ExperimentPlan", "RunSpec", "plan_experiment"]

DONE_FILE = "done.json"


class RunSpec(BaseModel):
    """One method x seed: its resolved training config and where it writes."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    method: str
    seed: int
    label: str
    train: bool
    cfg: TrainConfig
    run_dir: Path

    @property
    def done_file(self) -> Path:
        return self.run_dir / DONE_FILE


class ExperimentPlan(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    exp: ExperimentConfig
    config_path: Path | None
    out: Path
    methods: list[str]
    seeds: list[int]
    runs: list[RunSpec]
    train_file: Path
    test_file: Path
    image_root: Path | None
    rl_budget: int | None
    """Completions each RL run trains on (max_steps x batch x accumulation)."""
    sft_examples: dict[str, int]


def _resolve(base: Path, p: str | None) -> Path | None:
    if p is None:
        return None
    q = Path(p).expanduser()
    return q if q.is_absolute() else (base / q).resolve()


def _rl_budget(cfg: TrainConfig) -> int:
    return (
        cfg.grpo_setting("max_steps")
        * cfg.grpo_setting("per_device_train_batch_size")
        * cfg.grpo_setting("gradient_accumulation_steps")
    )


def plan_experiment(
    exp: ExperimentConfig,
    base_dir: Path,
    out: Path,
    *,
    seeds: int | None = None,
    only: Sequence[str] | None = None,
    config_path: Path | None = None,
) -> ExperimentPlan:
    """Resolve every run's ``TrainConfig`` (so a bad override fails before any training) and check budgets."""
    methods = list(exp.methods)
    if only:
        unknown = [m for m in only if m not in exp.methods]
        if unknown:
            raise ConfigError(
                f"--only: unknown method(s) {', '.join(unknown)}; the config has {', '.join(methods)}"
            )
        methods = [m for m in methods if m in set(only)]
    seed_list = exp.seed_list()
    if seeds is not None:
        if seeds < 1:
            raise ConfigError("--seeds must be at least 1")
        seed_list = list(range(seeds)) if isinstance(exp.seeds, int) else exp.seed_list()[:seeds]
        if len(seed_list) < seeds:
            start = max(seed_list) + 1
            seed_list += list(range(start, start + seeds - len(seed_list)))
    base_raw: dict[str, Any] = {}
    if exp.base_config is not None:
        bc = _resolve(base_dir, exp.base_config)
        assert bc is not None
        base_raw = read_yaml_mapping(bc, "base config")
    base_raw = _deep_merge(base_raw, exp.base)

    out = out.resolve()
    if exp.data.synth is not None:
        data_dir = out / "data"
        train_file, test_file, image_root = data_dir / "train.jsonl", data_dir / "test.jsonl", data_dir
    else:
        train_file = _resolve(base_dir, exp.data.train)  # type: ignore[assignment]
        test_file = _resolve(base_dir, exp.data.test)  # type: ignore[assignment]
        image_root = _resolve(base_dir, exp.data.image_root)

    def make(method: str, seed: int) -> TrainConfig:
        spec = exp.methods[method]
        try:
            raw = apply_overrides(copy.deepcopy(base_raw), spec.set)
        except ConfigError as e:
            raise ConfigError(f"method {method!r}: {e}") from None
        raw["seed"] = seed
        raw["name"] = f"{exp.name}-{method}-seed{seed}"
        raw["output_dir"] = str(out / method / f"seed{seed}" / "train")
        data = dict(raw.get("data") or {})
        data["train"] = str(train_file)
        data["image_root"] = str(image_root) if image_root is not None else None
        raw["data"] = data
        cfg = config_from_dict(raw, f"method {method!r}")
        if not spec.train:
            return cfg
        if cfg.method == "grpo":
            if cfg.grpo_setting("max_steps") <= 0:
                raise ConfigError(f"method {method!r}: set grpo.max_steps (> 0) so budgets are comparable")
            if cfg.dynamic_sampling or cfg.gpg:
                from anatomy_r1.training.methods import trainer_class_for

                trainer_class_for(cfg)
        return cfg

    resolved = {m: make(m, seed_list[0]) for m in methods}
    rl = {m: _rl_budget(c) for m, c in resolved.items() if exp.methods[m].train and c.method == "grpo"}
    budgets = set(rl.values())
    if exp.equal_budget and len(budgets) > 1:
        shown = ", ".join(f"{m}={b}" for m, b in rl.items())
        raise ConfigError(
            f"unequal RL budgets (max_steps x batch x accumulation completions): {shown}; "
            "make them equal or set equal_budget: false"
        )
    rl_budget = max(budgets) if budgets else None

    sft_examples: dict[str, int] = {}
    runs: list[RunSpec] = []
    for seed in seed_list:
        for m in methods:
            cfg = make(m, seed)
            spec = exp.methods[m]
            if spec.train and cfg.method == "sft":
                k = cfg.sft
                per_step = k.per_device_train_batch_size * k.gradient_accumulation_steps
                if k.max_steps <= 0:
                    if rl_budget is None:
                        raise ConfigError(
                            f"method {m!r}: set sft.max_steps (no RL method to take the budget from)"
                        )
                    k.max_steps = max(1, math.ceil(rl_budget / per_step))
                sft_examples[m] = k.max_steps * per_step
            runs.append(
                RunSpec(
                    method=m,
                    seed=seed,
                    label=exp.label(m),
                    train=spec.train,
                    cfg=cfg,
                    run_dir=out / m / f"seed{seed}",
                )
            )
    return ExperimentPlan(
        exp=exp,
        config_path=config_path,
        out=out,
        methods=methods,
        seeds=seed_list,
        runs=runs,
        train_file=train_file,
        test_file=test_file,
        image_root=image_root,
        rl_budget=rl_budget,
        sft_examples=sft_examples,
    )
