"""Difficulty tracking semantics and the checkpoint round trip."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anatomy_r1.augment.tracker import DifficultyTracker
from anatomy_r1.errors import ConfigError, DataError


def test_unseen_items_get_no_verdict() -> None:
    """The policy decides unseen questions from S(q); the tracker only speaks about seen ones."""
    t = DifficultyTracker()
    assert t.verdict("a") is None and "a" not in t
    t.update("a", [1, 0])
    assert t.verdict("a") is False and len(t) == 1


def test_all_wrong_group_is_difficult_all_correct_is_easy() -> None:
    t = DifficultyTracker()
    t.update("wrong", [0, 0, 0, 0])
    assert t.verdict("wrong") and t.stats("wrong").last_all_wrong  # type: ignore[union-attr]
    t.update("right", [1, 1, 1, 1])
    assert t.verdict("right") is False
    strict = DifficultyTracker(all_correct_is_difficult=True)
    strict.update("right", [1.0] * 4)
    assert strict.verdict("right")


def test_a_low_tie_counts_even_with_good_history() -> None:
    t = DifficultyTracker(ema_alpha=0.2)
    for _ in range(5):
        t.update("x", [1, 1, 1, 0])
    assert not t.verdict("x")
    t.update("x", [0, 0, 0, 0])  # EMA still high, but the last group taught nothing
    assert t.stats("x").ema >= 0.5  # type: ignore[union-attr]
    assert t.verdict("x")
    t.update("x", [0.3, 0.3, 0.3, 0.3])  # uniformly low partial credit is a low tie too
    assert t.verdict("x")


def test_ema_and_history() -> None:
    from anatomy_r1.augment.tracker import HISTORY

    t = DifficultyTracker(ema_alpha=0.5, threshold=0.5)
    t.update("q", [1, 0, 0, 0])  # 0.25: first group seeds the EMA
    assert t.stats("q").ema == 0.25  # type: ignore[union-attr]
    assert t.verdict("q")
    t.update("q", [1, 1, 1, 0])  # 0.5*0.75 + 0.5*0.25 = 0.5
    assert t.stats("q").ema == 0.5  # type: ignore[union-attr]
    assert not t.verdict("q")
    for _ in range(HISTORY):
        t.update("q", [1, 0, 1, 0])
    st_ = t.stats("q")
    assert st_ is not None and len(st_.history) == HISTORY and st_.groups == HISTORY + 2
    assert not st_.last_tied


@pytest.mark.parametrize("bad", [[], [0.5, math.inf], ["x"]])
def test_update_rejects_bad_rewards(bad: list) -> None:
    with pytest.raises(ValueError):
        DifficultyTracker().update("q", bad)


def test_bad_config() -> None:
    with pytest.raises(ConfigError):
        DifficultyTracker(ema_alpha=0)


@settings(max_examples=40, deadline=None)
@given(
    groups=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "d"]),
            st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=1, max_size=6),
        ),
        max_size=30,
    ),
    split=st.integers(0, 30),
)
def test_state_round_trip_resumes_identically(groups: list, split: int) -> None:
    full = DifficultyTracker(ema_alpha=0.3)
    for item, rewards in groups:
        full.update(item, rewards)
    first = DifficultyTracker(ema_alpha=0.3)
    for item, rewards in groups[:split]:
        first.update(item, rewards)
    resumed = DifficultyTracker(ema_alpha=0.3)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    for item, rewards in groups[split:]:
        resumed.update(item, rewards)
    assert resumed.state_dict() == full.state_dict()
    for item in ["a", "b", "c", "d", "e"]:
        assert resumed.verdict(item) == full.verdict(item)


def test_load_checks_format_and_config() -> None:
    t = DifficultyTracker()
    t.update("a", [0, 0])
    state = json.loads(json.dumps(t.state_dict()))
    other = DifficultyTracker()
    other.load_state_dict(state)
    assert other.verdict("a") and len(other) == 1 and "a" in other
    with pytest.raises(ConfigError, match="threshold"):
        DifficultyTracker(threshold=0.7).load_state_dict(state)
    loose = DifficultyTracker(threshold=0.7)
    loose.load_state_dict(state, strict=False)
    assert loose.threshold == 0.7 and "a" in loose
    # A checkpoint written before the tie was named ``last_tied`` still loads.
    old = json.loads(json.dumps(state))
    for item in old["items"].values():
        item["last_invalid"] = item.pop("last_tied")
    DifficultyTracker().load_state_dict(old)
    with pytest.raises(DataError):
        DifficultyTracker().load_state_dict({"format": "other"})
    bad = t.state_dict()
    bad["items"]["a"] = {"groups": 1}
    with pytest.raises(DataError, match="malformed"):
        DifficultyTracker().load_state_dict(bad)


def test_unscorable_rollouts_do_not_count_as_spread() -> None:
    t = DifficultyTracker()
    st = t.update("a", [math.nan, 0.0, 0.0])  # one unscorable completion beside two equal ones
    assert st.last_tied and st.last_accuracy == 0.0
    st = t.update("b", [math.nan, math.nan, math.nan])
    assert st.last_tied and st.last_accuracy == 0.0
    st = t.update("c", [math.nan, 1.0, 0.0])
    assert not st.last_tied and st.last_accuracy == pytest.approx(0.5)
    with pytest.raises(ValueError, match="infinite"):
        t.update("d", [math.inf, 0.0])


def test_checkpoints_leave_the_history_out_and_older_ones_with_it_still_load() -> None:
    """No verdict reads the recent accuracies, so a checkpoint need not carry them."""
    t = DifficultyTracker()
    t.update("a", [0, 0])
    state = json.loads(json.dumps(t.state_dict()))
    assert state["version"] == 2 and "history" not in state["items"]["a"]
    old = {**state, "version": 1}
    old["items"] = {"a": {**state["items"]["a"], "history": [0.0, 0.5]}}
    resumed = DifficultyTracker()
    resumed.load_state_dict(old)
    assert resumed.state_dict() == state and resumed.verdict("a") is True
    with pytest.raises(DataError, match="version 3"):
        DifficultyTracker().load_state_dict({**state, "version": 3})
