"""The settings GPG stands for are refused when the config is read, in TRL's own reading of them."""

from __future__ import annotations

import pytest

from anatomy_r1.errors import ConfigError
from anatomy_r1.training.config import load_config


def test_gpg_accepts_every_spelling_trl_reads_as_no_std_scaling() -> None:
    from anatomy_r1.training.gpg import GPGTrainer
    from anatomy_r1.training.methods import trainer_class_for

    for spelling in ("none", "false"):
        cfg = load_config(None, ["gpg=true", f"grpo.scale_rewards={spelling}"])
        assert cfg.grpo_setting("scale_rewards") == "none"
        assert trainer_class_for(cfg) is GPGTrainer
    # gpg: release wants the group std, which TRL also reads from `true`.
    release = ["gpg=release", "dynamic_sampling=true", "grpo.loss_type=bnpo"]
    assert load_config(None, [*release, "grpo.scale_rewards=true"]).grpo_setting("scale_rewards") == "group"


@pytest.mark.parametrize("scale", [None, "group", "true", "batch"])
def test_gpg_with_std_scaling_fails_when_the_yaml_is_read(scale: str | None) -> None:
    overrides = ["gpg=true"] + ([f"grpo.scale_rewards={scale}"] if scale else [])
    with pytest.raises(ConfigError, match=r"gpg: true needs grpo\.scale_rewards: none \(got '(group|batch)'"):
        load_config(None, overrides)
    # A run of another method may keep any scaling.
    load_config(None, ["method=sft", *overrides])


@pytest.mark.parametrize(
    "method",
    [
        ["gpg=true", "grpo.scale_rewards=none"],
        ["gpg=release", "dynamic_sampling=true", "grpo.loss_type=bnpo"],
    ],
)
def test_gpg_with_trls_ratio_clamp_is_refused(method: list[str]) -> None:
    """GPG trains without ratio clipping, yet TRL's ``delta`` clamps the ratio whatever the clip bounds."""
    from anatomy_r1.training.methods import trainer_class_for

    with pytest.raises(ConfigError, match=r"gpg: (true|release) needs grpo\.delta unset \(got 2\.0;"):
        load_config(None, [*method, "grpo.delta=2.0"])
    cfg = load_config(None, method)
    cfg.grpo["delta"] = 2.0  # a config changed in code is not validated again
    with pytest.raises(ConfigError, match=r"grpo\.delta unset"):
        trainer_class_for(cfg)
    load_config(None, ["grpo.delta=2.0"])  # plain GRPO keeps TRL's two-sided clipping
