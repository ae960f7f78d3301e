"""GDQA's policy: which questions are difficult under each rule, and one generator call per group."""

from __future__ import annotations

import random

import pytest

from anatomy_r1.augment import CompositeGenerator, GDQASettings, GroupPolicy
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import ConfigError
from anatomy_r1.training.config import load_config

G = 4


def _records(n: int = 10) -> list[Record]:
    recs = []
    for i in range(n):
        r = Record(
            id=f"q{i}",
            images=["f.png"],
            question="Which organ is shown in the upper left of the frame?",
            options=["Liver", "Gallbladder", "Omentum", "Gut"],
            answer_index=i % 4,
            answer=["Liver", "Gallbladder", "Omentum", "Gut"][i % 4],
            source="t",
        )
        r.meta["s_q"] = i / (n - 1)
        recs.append(r)
    return recs


def _policy(**settings: object) -> GroupPolicy:
    s = GDQASettings(enabled=True, kinds=["reorder"], **settings)  # type: ignore[arg-type]
    return GroupPolicy(s, _records(), CompositeGenerator(kinds=("reorder",)), template="compact", seed=0)


def test_default_rule_starts_the_upper_half_by_s_q_then_follows_the_groups() -> None:
    p = _policy()
    assert [r.id for r in p.difficult_at_start()] == ["q5", "q6", "q7", "q8", "q9"]
    p.observe("q9", [1.0] * G)  # all right: now easy
    p.observe("q0", [0.0] * G)  # all wrong: now difficult although its S(q) is the lowest
    assert not p.is_difficult("q9") and p.is_difficult("q0")
    assert "0.5 quantile" in p.rule()


def test_s_q_only_and_failure_only_rules() -> None:
    s_q = _policy(difficulty="s_q")
    s_q.observe("q9", [1.0] * G)
    assert s_q.is_difficult("q9")  # S(q) alone decides, whatever the groups did
    failure = _policy(difficulty="failure")
    assert failure.difficult_at_start() == []  # unseen questions are easy
    failure.observe("q1", [0.0] * G)
    assert failure.is_difficult("q1")
    everything = _policy(all_correct_is_difficult=True)
    everything.observe("q2", [1.0] * G)
    assert everything.is_difficult("q2")


def test_members_get_wordings_and_the_generator_runs_once_per_group() -> None:
    calls = 0

    class Counting(CompositeGenerator):
        def variants(self, record: Record, n: int, rng: random.Random) -> list[Record]:
            nonlocal calls
            calls += 1
            return super().variants(record, n, rng)

    s = GDQASettings(enabled=True, kinds=["reorder"])
    p = GroupPolicy(s, _records(), Counting(kinds=("reorder",)), template="compact", seed=0)
    assert p.wording_for("q0", 1, G, step=0) is None  # easy: every member keeps the dataset's row
    wordings = [p.wording_for("q9", m, G, step=0) for m in range(G)]
    assert wordings[0] is None  # member 0 keeps the original
    varied = [w for w in wordings[1:] if w is not None]
    assert varied and all(sorted(w.record.options) == sorted(p.records["q9"].options) for w in varied)
    for w in varied:
        texts = [part.get("text") for msg in w.prompt for part in msg["content"] if isinstance(part, dict)]
        assert w.text in texts  # the user turn TRL tokenizes carries the rendered wording
    assert calls == 1  # one generator call for the whole group (every member, every process asks)
    p.wording_for("q9", 2, G, step=1)
    assert calls == 2
    with pytest.raises(ValueError):
        p.wording_for("q9", G, G, step=0)


def test_the_tracker_state_round_trips_through_the_policy() -> None:
    a, b = _policy(), _policy()
    a.observe("q0", [0.0] * G)
    b.load_state_dict(a.state_dict())
    assert b.is_difficult("q0") and b.tracker.verdict("q0") is True


def test_renamed_and_conflicting_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"gdqa\.threshold is now gdqa\.accuracy_threshold"):
        load_config(None, ["gdqa.threshold=0.3"])
    with pytest.raises(ConfigError, match=r"gdqa\.difficulty"):
        load_config(None, ["gdqa.difficulty=sometimes"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["gdqa.variants_per_question=3"],
            r"gdqa\.variants_per_question: 3 does nothing: variant rows are added only with placement: "
            r"own_groups and difficulty s_q or s_q_and_failure; set it to 1",
        ),
        (
            ["gdqa.placement=own_groups", "gdqa.difficulty=failure", "gdqa.variants_per_question=2"],
            r"gdqa\.variants_per_question: 2 does nothing",
        ),
        (
            ["gdqa.difficulty=s_q", "gdqa.ema_alpha=0.3", "gdqa.all_correct_is_difficult=true"],
            r"s_q never reads the groups' accuracy, so gdqa\.ema_alpha: 0\.3, "
            r"gdqa\.all_correct_is_difficult: true do nothing; drop them or use difficulty: s_q_and_failure",
        ),
        (
            ["gdqa.difficulty=s_q", "gdqa.accuracy_threshold=0.7"],
            r"gdqa\.accuracy_threshold: 0\.7 does nothing",
        ),
        (
            ["gdqa.difficulty=failure", "gdqa.s_q_threshold=0.2"],
            r"failure leaves every unseen question easy, so gdqa\.s_q_threshold: 0\.2 does nothing; drop it",
        ),
        (["gdqa.difficulty=failure", "gdqa.s_q_quantile=0.7"], r"gdqa\.s_q_quantile: 0\.7 does nothing"),
    ],
)
def test_settings_that_would_do_nothing_are_refused_in_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        load_config(None, ["gdqa.enabled=true", *overrides])
    assert "\n" not in str(e.value)
    load_config(None, overrides)  # GDQA off: an arm of an experiment may switch it on with other settings


def test_settings_spelled_out_at_their_defaults_are_accepted() -> None:
    load_config(
        None,
        [
            "gdqa.enabled=true",
            "gdqa.difficulty=failure",
            "gdqa.s_q_quantile=0.5",
            "gdqa.variants_per_question=1",
        ],
    )
    load_config(
        None,
        ["gdqa.enabled=true", "gdqa.difficulty=s_q", "gdqa.accuracy_threshold=0.5", "gdqa.ema_alpha=0.5"],
    )
    own = ["gdqa.enabled=true", "gdqa.placement=own_groups", "gdqa.variants_per_question=3"]
    load_config(None, [*own, "gdqa.difficulty=s_q"])
    load_config(None, own)


def test_under_s_q_alone_no_decision_reads_the_groups() -> None:
    assert not _policy(difficulty="s_q").reads_groups
    assert _policy().reads_groups and _policy(difficulty="failure").reads_groups
