"""DAPO dynamic sampling, GPG scaling and trainer selection on the tiny fixture."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from _exp_helpers import build_trainer, is_constant, tiny_config

from anatomy_r1.errors import ConfigError
from anatomy_r1.task.groups import gpg_alpha, group_valid_mask
from anatomy_r1.training.config import TrainConfig
from anatomy_r1.training.dapo import DAPOTrainer
from anatomy_r1.training.gpg import NO_CLIP, GPGTrainer
from anatomy_r1.training.methods import DAPOGPGTrainer, trainer_class_for


def _zero_std_groups(advantages, g: int) -> int:
    return int((advantages.view(-1, g).abs().amax(dim=1) < 1e-8).sum())


def _inputs(trainer, n_constant: int, n_varied: int) -> list[dict]:
    """Groups (num_generations copies of one item) for hand-picked items of each reward kind."""
    ds = trainer.train_dataset
    const = [i for i in range(len(ds)) if is_constant(ds[i]["id"])][:n_constant]
    varied = [i for i in range(len(ds)) if not is_constant(ds[i]["id"])][:n_varied]
    assert len(const) == n_constant and len(varied) == n_varied
    g = trainer.num_generations
    return [dict(ds[i]) for i in const + varied for _ in range(g)]


def test_group_valid_mask_and_gpg_alpha_by_hand() -> None:
    rewards = [1, 1, 1, 1, 0, 1, 0, 1, 0.5, 0.5, 0.5, 0.5, 1, 0, 0, 0]
    valid = group_valid_mask([float(r) for r in rewards], 4)
    assert valid == [False, True, False, True]
    assert gpg_alpha(valid) == 4 / 2
    assert gpg_alpha([True, True, True]) == 1.0
    assert gpg_alpha([False, False]) == 1.0  # every advantage is zero anyway
    nan = float("nan")
    assert group_valid_mask([nan, 1.0, 1.0, nan, nan, 0.0, 1.0, nan], 4) == [False, True]
    with pytest.raises(ValueError):
        group_valid_mask([1.0, 2.0, 3.0], 2)


def test_trainer_class_for() -> None:
    from anatomy_r1.training.trainer import AnatomyR1GRPOTrainer

    cfg = TrainConfig()
    assert trainer_class_for(cfg) is AnatomyR1GRPOTrainer
    assert trainer_class_for(cfg.model_copy(update={"dynamic_sampling": True})) is DAPOTrainer
    gpg = cfg.model_copy(update={"gpg": True}, deep=True)
    with pytest.raises(ConfigError, match="scale_rewards"):
        trainer_class_for(gpg)
    gpg.grpo["scale_rewards"] = "none"
    assert trainer_class_for(gpg) is GPGTrainer
    assert trainer_class_for(gpg.model_copy(update={"dynamic_sampling": True})) is DAPOGPGTrainer
    with pytest.raises(ConfigError, match="sft"):
        trainer_class_for(TrainConfig(method="sft", gpg=True))


def test_gpg_scales_advantages_by_groups_over_valid_groups(tiny_env: dict[str, Path], tmp_path: Path) -> None:
    cfg = tiny_config(tiny_env, tmp_path / "gpg", scale_rewards="none", per_device_train_batch_size=16)
    trainer = build_trainer(GPGTrainer, cfg)
    assert trainer.epsilon_low == trainer.epsilon_high == NO_CLIP
    trainer.model.train()
    out = trainer._generate_and_score_completions(_inputs(trainer, n_constant=2, n_varied=2))
    rewards = trainer._last_total_rewards
    g = trainer.num_generations
    expected = []
    for k in range(0, len(rewards), g):
        grp = rewards[k : k + g]
        mean = sum(grp) / g
        expected += [(r - mean) * 2.0 for r in grp]  # 4 groups, 2 valid -> alpha 2
    assert trainer._metrics["train"]["gpg/alpha"] == [2.0]
    assert all(
        math.isclose(a, e, abs_tol=1e-5) for a, e in zip(out["advantages"].tolist(), expected, strict=True)
    )

    bad = tiny_config(tiny_env, tmp_path / "gpg-bad")  # scale_rewards: group
    with pytest.raises(ConfigError, match="scale_rewards"):
        build_trainer(GPGTrainer, bad)


def test_dapo_refill_replaces_zero_std_groups(tiny_env: dict[str, Path], tmp_path: Path) -> None:
    from anatomy_r1.training.trainer import AnatomyR1GRPOTrainer

    cfg = tiny_config(tiny_env, tmp_path / "dapo", loss_type="dapo", epsilon_high=0.28)
    g = cfg.grpo["num_generations"]

    plain = build_trainer(AnatomyR1GRPOTrainer, cfg)
    plain.model.train()
    plain_out = plain._generate_and_score_completions(_inputs(plain, n_constant=3, n_varied=1))
    assert _zero_std_groups(plain_out["advantages"], g) == 3

    trainer = build_trainer(DAPOTrainer, cfg)
    trainer.model.train()
    out = trainer._generate_and_score_completions(_inputs(trainer, n_constant=3, n_varied=1))
    m = trainer._metrics["train"]
    assert m["dapo/dropped_groups"] == [3.0]
    assert m["dapo/refill_rounds"][0] >= 1
    assert m["dapo/refilled_groups"][0] >= 1
    assert m["dapo/refilled_groups"][0] + m["dapo/remaining_zero_std_groups"][0] == 3
    assert m["dapo/extra_rollouts"][0] >= g
    remaining = _zero_std_groups(out["advantages"], g)
    assert remaining == m["dapo/remaining_zero_std_groups"][0] < 3
    # shapes stay those of one generation batch, images stay aligned with their rows
    n = 4 * g
    for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "advantages"):
        assert out[key].shape[0] == n, key
    assert len(out["num_images"]) == n and out["image_grid_thw"].shape[0] == sum(out["num_images"])
    assert out["pixel_values"].shape[0] == int(out["image_grid_thw"].prod(-1).sum())
    assert out["prompt_ids"].shape == out["prompt_mask"].shape
    assert int(out["num_items_in_batch"]) == int(out["completion_mask"].sum())


def test_dapo_trains_through_trl(tiny_env: dict[str, Path], tmp_path: Path) -> None:
    """A merged batch goes through TRL's split, shuffle and loss; metrics reach metrics.jsonl."""
    from anatomy_r1.reports.plots import read_metrics_jsonl
    from anatomy_r1.training.callbacks import JsonlMetricsCallback

    cfg = tiny_config(
        tiny_env, tmp_path / "dapo-train", loss_type="dapo", epsilon_high=0.28, max_steps=1,
        per_device_train_batch_size=8, steps_per_generation=2,
    )  # fmt: skip
    trainer = build_trainer(DAPOTrainer, cfg)
    trainer.add_callback(JsonlMetricsCallback(tmp_path / "m.jsonl"))
    trainer.train()
    rows = [r for r in read_metrics_jsonl(tmp_path / "m.jsonl") if "dapo/dropped_groups" in r]
    assert rows and "dapo/refill_rounds" in rows[0]
