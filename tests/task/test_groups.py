"""The one definition of a gradient-less GRPO group, and the consumers that must agree with it."""

from __future__ import annotations

import math

import pytest

from anatomy_r1.task.groups import (
    gpg_alpha,
    group_has_gradient,
    group_valid_mask,
    invalid_ratio,
    total_rewards,
)

NAN = math.nan


@pytest.mark.parametrize(
    ("rewards", "has_gradient"),
    [
        ([0.0, 0.0, 0.0, 0.0], False),
        ([1.0, 1.0, 1.0, 1.0], False),
        ([0.0, 1.0, 0.0, 0.0], True),
        ([NAN, 1.0, 1.0, 1.0], False),  # the unscorable one is left out, as TRL's nan-aware baseline does
        ([NAN, 0.0, 1.0, NAN], True),
        ([NAN, NAN, 1.0, NAN], False),  # one scorable reward has nothing to differ from
        ([NAN, NAN, NAN, NAN], False),
        ([0.5, 0.5 + 1e-9, 0.5, 0.5], False),
    ],
)
def test_group_has_gradient_ignores_unscorable_completions(rewards: list[float], has_gradient: bool) -> None:
    assert group_has_gradient(rewards) is has_gradient


def test_mask_ratio_and_gpg_alpha_agree() -> None:
    rewards = [0, 0, 0, 0, NAN, 1, 0, 1, NAN, 1, 1, 1, 1, 0, NAN, NAN]
    valid = group_valid_mask(rewards, 4)
    assert valid == [False, True, False, True]
    assert invalid_ratio(valid) == 0.5
    assert gpg_alpha(valid) == 2.0
    assert gpg_alpha([False, False]) == 1.0
    assert math.isnan(invalid_ratio([]))
    with pytest.raises(ValueError, match="groups of 4"):
        group_valid_mask([0.0] * 6, 4)


def test_total_rewards_keep_all_nan_rows_unscorable() -> None:
    totals = total_rewards([[1.0, 1.0], [NAN, 1.0], [NAN, NAN]], [1.0, 0.5])
    assert totals[:2] == [1.5, 0.5]
    assert math.isnan(totals[2])


def test_trl_marks_the_same_groups_zero_std() -> None:
    """TRL's own nan-aware std (what its advantages divide by) is zero exactly where we see no gradient."""
    import torch
    from trl.trainer.utils import nanstd

    rewards = [0, 0, 0, 0, NAN, 1, 0, 1, NAN, 1, 1, 1, 1, 0, NAN, NAN]
    std = nanstd(torch.tensor(rewards, dtype=torch.float32).view(-1, 4), dim=1)
    trl_zero = [bool(torch.isclose(s, torch.zeros(()))) for s in std]
    assert trl_zero == [not v for v in group_valid_mask(rewards, 4)]
