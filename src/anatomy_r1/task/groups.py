"""When a GRPO group carries a gradient, defined once.

GRPO normalises each completion's reward against the other completions of its group; a group whose
rewards are all equal gets zero advantage everywhere and contributes nothing (an *invalid gradient*).
The logged invalid-gradient ratio, DAPO's dynamic-sampling filter, GPG's loss scale and the GDQA
difficulty tracker all ask that question, and they must agree on the edge case TRL itself defines:
a completion for which every reward function returned ``None`` is *unscorable* (NaN). TRL leaves it out
of the group's nan-aware mean and std and forces its advantage to 0, so here it is left out too: a group
has a gradient only if at least two scorable rewards differ by more than :data:`ZERO_SPREAD_TOL`.

Pure Python on purpose: the tracker and the metrics use it without torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

ZERO_SPREAD_TOL = 1e-6
"""Spread below which a group's rewards count as equal."""


def _scorable(rewards: Sequence[float]) -> list[float]:
    return [float(r) for r in rewards if r is not None and not math.isnan(float(r))]


def group_has_gradient(rewards: Sequence[float], tol: float = ZERO_SPREAD_TOL) -> bool:
    """Whether one group's rewards give any completion a non-zero advantage (NaN = unscorable, ignored)."""
    vals = _scorable(rewards)
    return len(vals) > 1 and max(vals) - min(vals) > tol


def group_valid_mask(rewards: Sequence[float], group_size: int) -> list[bool]:
    """One flag per group of ``group_size`` consecutive rewards (TRL's layout): does it carry a gradient?"""
    if group_size < 1 or len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {group_size}")
    return [group_has_gradient(rewards[k : k + group_size]) for k in range(0, len(rewards), group_size)]


def invalid_ratio(valid: Sequence[bool]) -> float:
    """Share of groups without a gradient; NaN for no groups (nothing was measured)."""
    return sum(not v for v in valid) / len(valid) if valid else float("nan")


def gpg_alpha(valid: Sequence[bool]) -> float:
    """GPG's loss scale ``groups / valid_groups``; 1.0 when no group is valid (every advantage is zero)."""
    n_valid = sum(bool(v) for v in valid)
    return len(valid) / n_valid if n_valid else 1.0


def total_rewards(rewards_per_func: Sequence[Sequence[float]], weights: Sequence[float]) -> list[float]:
    """Weighted sum per completion as TRL forms it: NaN terms skipped, all-NaN rows stay NaN (unscorable)."""
    out = []
    for row in rewards_per_func:
        terms = [w * float(r) for r, w in zip(row, weights, strict=True) if not math.isnan(float(r))]
        out.append(sum(terms) if terms else float("nan"))
    return out
