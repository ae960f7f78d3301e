"""How difficult a question has proved in training, tracked online from its GRPO groups' accuracy.

GDQA only pays off where a group would otherwise be uninformative: if every rollout of a question is
wrong, the group-normalised advantage is zero. The tracker keeps, per item id, the recent group accuracies
(mean accuracy reward of the G rollouts), an exponential moving average of them, and whether the last
group's accuracy rewards were all equal (a *tie*: all wrong, all right, or uniformly partial).

A tie here is about accuracy only; whether a group carries a gradient (the logged invalid-gradient ratio,
DAPO's filter, GPG's scale) is decided on the total reward by :mod:`anatomy_r1.task.groups`. The two differ
when the format reward splits a group whose answers are all wrong: no gradient toward the right answer,
yet a gradient.

Only the moving average, the last accuracy and the last tie decide; the recent accuracies are kept in
memory for inspection and are not checkpointed (a checkpoint that has them still loads).

The verdict on a seen item (see ``docs/augmentation.md``):

* difficult when its EMA accuracy is below ``threshold``, or its last group tied at a low accuracy (below
  ``threshold``: all wrong, or uniformly low partial credit);
* a tie at a high accuracy (all right) makes the item *easy*: the policy already solves it, and spending
  diverse wordings there would only dilute the signal; ``all_correct_is_difficult=True`` augments those
  as well.

Items not seen yet get no verdict (None): the GDQA policy (:mod:`anatomy_r1.augment.group_policy`) decides
them from S(q). For several training processes to assign the same variants to one group they must agree
on the verdict; feed :meth:`DifficultyTracker.update` the full, gathered group of rewards on every process.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from anatomy_r1.errors import ConfigError, DataError
from anatomy_r1.task.groups import ZERO_SPREAD_TOL, group_has_gradient

STATE_FORMAT = "anatomy_r1.difficulty_tracker"
#: Version 2 leaves the per-item history out; version 1 states (which have it) still load.
STATE_VERSION = 2
READABLE_VERSIONS = (1, 2)
#: Group accuracies kept per item in memory (the moving average carries the rest of the history).
HISTORY = 32


def _rewards(rewards: Sequence[float], item_id: str) -> list[float]:
    """The group's rewards as floats; NaN marks an unscorable completion and is allowed, infinity is not."""
    try:
        values = [float(r) for r in rewards]
    except (TypeError, ValueError) as e:
        raise ValueError(f"item {item_id!r}: rewards must be numbers ({e})") from None
    if not values:
        raise ValueError(f"item {item_id!r}: empty reward group")
    if any(math.isinf(v) for v in values):
        raise ValueError(f"item {item_id!r}: infinite reward in {values!r}")
    return values


@dataclass
class ItemStats:
    """Running statistics of one item; ``history`` keeps the latest group accuracies (oldest first), in
    memory only: no verdict reads it, so checkpoints leave it out, and it restarts on resume."""

    groups: int = 0
    ema: float = 0.0
    history: list[float] = field(default_factory=list)
    last_accuracy: float = 0.0
    last_tied: bool = False
    """Whether the last group's accuracy rewards were all equal."""

    @property
    def last_all_wrong(self) -> bool:
        """Whether every rollout of the last group got zero accuracy reward."""
        return self.last_tied and self.last_accuracy <= 1e-6

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": self.groups,
            "ema": self.ema,
            "last_accuracy": self.last_accuracy,
            "last_tied": self.last_tied,
        }

    @classmethod
    def from_dict(cls, obj: Any, where: str) -> ItemStats:
        try:
            # Checkpoints written before the history was left out carry one; nothing reads it.
            st = cls(
                groups=int(obj["groups"]),
                ema=float(obj["ema"]),
                last_accuracy=float(obj["last_accuracy"]),
                # Checkpoints written before the rename call the tie "last_invalid".
                last_tied=bool(obj["last_tied"] if "last_tied" in obj else obj["last_invalid"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{where}: malformed tracker entry ({e!r})") from None
        if st.groups < 1:
            raise DataError(f"{where}: tracker entry with {st.groups} groups")
        return st


class DifficultyTracker:
    """Online per-item verdicts from group accuracy; JSON-serialisable for checkpoints."""

    def __init__(
        self,
        ema_alpha: float = 0.5,
        threshold: float = 0.5,
        *,
        all_correct_is_difficult: bool = False,
        tol: float = ZERO_SPREAD_TOL,
    ) -> None:
        if not 0.0 < ema_alpha <= 1.0:
            raise ConfigError(f"ema_alpha must be in (0, 1], got {ema_alpha}")
        self.ema_alpha = float(ema_alpha)
        self.threshold = float(threshold)
        self.all_correct_is_difficult = bool(all_correct_is_difficult)
        self.tol = float(tol)
        self._items: dict[str, ItemStats] = {}

    def config(self) -> dict[str, Any]:
        return {
            "ema_alpha": self.ema_alpha,
            "threshold": self.threshold,
            "all_correct_is_difficult": self.all_correct_is_difficult,
            "tol": self.tol,
        }

    # -- updates and queries -------------------------------------------------------------------------

    def update(self, item_id: str, rewards: Sequence[float]) -> ItemStats:
        """Record one group's accuracy rewards for ``item_id``; returns its updated statistics.

        ``rewards`` are the accuracy rewards of the G rollouts (typically 0/1); format rewards should not
        be mixed in, since difficulty is about answering correctly.
        """
        key = str(item_id)
        values = _rewards(rewards, key)
        scored = [v for v in values if not math.isnan(v)]
        acc = sum(scored) / len(scored) if scored else 0.0  # nothing scorable: nothing answered right
        st = self._items.get(key)
        if st is None:
            st = ItemStats(ema=acc)
            self._items[key] = st
        else:
            st.ema = self.ema_alpha * acc + (1.0 - self.ema_alpha) * st.ema
        st.groups += 1
        st.history.append(acc)
        del st.history[:-HISTORY]
        st.last_accuracy = acc
        st.last_tied = not group_has_gradient(values, self.tol)
        return st

    def verdict(self, item_id: str) -> bool | None:
        """Whether the item's groups so far make it difficult; None before its first group."""
        st = self._items.get(str(item_id))
        if st is None:
            return None
        if st.last_tied and (st.last_accuracy < self.threshold or self.all_correct_is_difficult):
            return True
        return st.ema < self.threshold

    def stats(self, item_id: str) -> ItemStats | None:
        """The item's statistics (a live object; do not mutate), or ``None`` before its first group."""
        return self._items.get(str(item_id))

    def __contains__(self, item_id: object) -> bool:
        return str(item_id) in self._items

    def __len__(self) -> int:
        return len(self._items)

    # -- checkpoints ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable snapshot; ``load_state_dict`` on a tracker with the same config resumes it."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "config": self.config(),
            "items": {k: st.to_dict() for k, st in self._items.items()},
        }

    def load_state_dict(self, state: dict[str, Any], *, strict: bool = True) -> None:
        """Replace the tracked items with ``state``'s.

        With ``strict`` a snapshot taken under a different configuration is refused, since thresholds
        change what the stored statistics mean; ``strict=False`` keeps this tracker's configuration.
        """
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise DataError("not a difficulty-tracker state (missing or wrong 'format')")
        if state.get("version") not in READABLE_VERSIONS:
            raise DataError(
                f"difficulty-tracker state version {state.get('version')!r}; this version reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}"
            )
        if strict:
            theirs = state.get("config", {})
            diff = sorted(k for k, v in self.config().items() if k in theirs and theirs[k] != v)
            if diff:
                raise ConfigError(
                    "difficulty-tracker state was saved with a different configuration "
                    f"({', '.join(diff)}); pass strict=False to load it anyway"
                )
        items = state.get("items")
        if not isinstance(items, dict):
            raise DataError("difficulty-tracker state: 'items' must be an object")
        self._items = {str(k): ItemStats.from_dict(v, f"tracker item {k!r}") for k, v in items.items()}
