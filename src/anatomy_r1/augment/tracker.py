"""Which questions are difficult enough to augment, tracked online from GRPO group rewards.

GDQA only pays off where a group would otherwise be uninformative: if every rollout of a question is
wrong (or every one is equally wrong), the group-normalised advantage is zero. The tracker keeps, per item
id, the history of group accuracy (mean accuracy reward of the G rollouts), an exponential moving average
of it, and whether the last group was "invalid" (all rewards equal).

Difficulty semantics (see ``docs/augmentation.md``):

* a seen item is difficult when its EMA accuracy is below ``threshold``, or its last group was invalid
  with a low common reward (below ``threshold``: all wrong, or uniformly low partial credit);
* an invalid group with a high common reward (all correct) makes the item *easy*: the policy already
  solves it, and spending diverse wordings there would only dilute the signal; set
  ``all_correct_is_difficult=True`` to augment those as well;
* an item not seen yet is difficult iff its curriculum score S(q) is at least ``s_q_threshold`` (warm
  start from the ASCL curriculum) when ``init_from_s_q``; an unknown S(q) means not difficult.

For several training processes to assign the same variants to one group they must agree on
``is_difficult``; feed :meth:`DifficultyTracker.update` the full, gathered group of rewards on every
process (or broadcast one tracker's state).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from anatomy_r1.errors import ConfigError, DataError
from anatomy_r1.task.groups import ZERO_SPREAD_TOL, group_has_gradient

STATE_FORMAT = "anatomy_r1.difficulty_tracker"
STATE_VERSION = 1


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
    """Running statistics of one item; ``history`` keeps the latest group accuracies (oldest first)."""

    groups: int = 0
    ema: float = 0.0
    history: list[float] = field(default_factory=list)
    last_accuracy: float = 0.0
    last_invalid: bool = False

    @property
    def last_all_wrong(self) -> bool:
        """Whether every rollout of the last group got zero accuracy reward."""
        return self.last_invalid and self.last_accuracy <= 1e-6

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": self.groups,
            "ema": self.ema,
            "history": list(self.history),
            "last_accuracy": self.last_accuracy,
            "last_invalid": self.last_invalid,
        }

    @classmethod
    def from_dict(cls, obj: Any, where: str) -> ItemStats:
        try:
            st = cls(
                groups=int(obj["groups"]),
                ema=float(obj["ema"]),
                history=[float(v) for v in obj["history"]],
                last_accuracy=float(obj["last_accuracy"]),
                last_invalid=bool(obj["last_invalid"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{where}: malformed tracker entry ({e!r})") from None
        if st.groups < 1:
            raise DataError(f"{where}: tracker entry with {st.groups} groups")
        return st


class DifficultyTracker:
    """Online per-item difficulty from group rewards; JSON-serialisable for checkpoints."""

    def __init__(
        self,
        ema_alpha: float = 0.5,
        threshold: float = 0.5,
        init_from_s_q: bool = True,
        s_q_threshold: float = 0.5,
        *,
        all_correct_is_difficult: bool = False,
        history_size: int = 32,
        tol: float = ZERO_SPREAD_TOL,
    ) -> None:
        if not 0.0 < ema_alpha <= 1.0:
            raise ConfigError(f"ema_alpha must be in (0, 1], got {ema_alpha}")
        if history_size < 1:
            raise ConfigError(f"history_size must be at least 1, got {history_size}")
        self.ema_alpha = float(ema_alpha)
        self.threshold = float(threshold)
        self.init_from_s_q = bool(init_from_s_q)
        self.s_q_threshold = float(s_q_threshold)
        self.all_correct_is_difficult = bool(all_correct_is_difficult)
        self.history_size = int(history_size)
        self.tol = float(tol)
        self._items: dict[str, ItemStats] = {}

    # -- configuration -------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "ema_alpha": self.ema_alpha,
            "threshold": self.threshold,
            "init_from_s_q": self.init_from_s_q,
            "s_q_threshold": self.s_q_threshold,
            "all_correct_is_difficult": self.all_correct_is_difficult,
            "history_size": self.history_size,
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
        del st.history[: -self.history_size]
        st.last_accuracy = acc
        st.last_invalid = not group_has_gradient(values, self.tol)
        return st

    def is_difficult(self, item_id: str, s_q: float | None = None) -> bool:
        """Whether the item's next group should get diverse wordings; see the module docstring."""
        st = self._items.get(str(item_id))
        if st is None:
            if not self.init_from_s_q or s_q is None:
                return False
            s = float(s_q)
            return math.isfinite(s) and s >= self.s_q_threshold
        if st.last_invalid:
            if st.last_accuracy < self.threshold:
                return True
            if self.all_correct_is_difficult:
                return True
        return st.ema < self.threshold

    def stats(self, item_id: str) -> ItemStats | None:
        """The item's statistics (a live object; do not mutate), or ``None`` before its first group."""
        return self._items.get(str(item_id))

    def __contains__(self, item_id: object) -> bool:
        return str(item_id) in self._items

    def __len__(self) -> int:
        return len(self._items)

    def summary(self) -> dict[str, float]:
        """Counts for logging: items seen, items now difficult, share whose last group was invalid."""
        n = len(self._items)
        hard = sum(self.is_difficult(k) for k in self._items)
        invalid = sum(st.last_invalid for st in self._items.values())
        return {
            "items_seen": float(n),
            "items_difficult": float(hard),
            "last_group_invalid_ratio": invalid / n if n else 0.0,
        }

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
        if state.get("version") != STATE_VERSION:
            raise DataError(
                f"difficulty-tracker state version {state.get('version')!r}; expected {STATE_VERSION}"
            )
        if strict:
            theirs = state.get("config", {})
            diff = sorted(k for k, v in self.config().items() if theirs.get(k) != v)
            if diff:
                raise ConfigError(
                    "difficulty-tracker state was saved with a different configuration "
                    f"({', '.join(diff)}); pass strict=False to load it anyway"
                )
        items = state.get("items")
        if not isinstance(items, dict):
            raise DataError("difficulty-tracker state: 'items' must be an object")
        loaded = {str(k): ItemStats.from_dict(v, f"tracker item {k!r}") for k, v in items.items()}
        for st in loaded.values():
            del st.history[: -self.history_size]
        self._items = loaded

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the state as JSON, atomically (a crash never leaves half a checkpoint)."""
        import json

        from anatomy_r1.data.io import atomic_writer

        with atomic_writer(path) as fh:
            json.dump(self.state_dict(), fh, separators=(",", ":"))

    def load(self, path: str | os.PathLike[str], *, strict: bool = True) -> None:
        import json

        try:
            with open(path, encoding="utf-8") as fh:
                state = json.load(fh)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"{path}: cannot read difficulty-tracker state ({e})") from None
        self.load_state_dict(state, strict=strict)
