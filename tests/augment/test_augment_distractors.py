"""Variants with new distractors: the same draws for a seed at a fraction of the scoring, and no stale facts
about the original's option set."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from anatomy_r1.augment.composite import CompositeGenerator
from anatomy_r1.augment.distractors import CANDIDATES, DistractorRedraw
from anatomy_r1.augment.variants import copy_record
from anatomy_r1.curriculum.scoring import s_q, score_records
from anatomy_r1.data.option_meta import OPTION_DEPENDENT_META
from anatomy_r1.data.schema import Record
from anatomy_r1.data.synth import generate_benchmark

BACKEND = "matrix:prior"


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    """Synthetic questions with their S(q) stored the way a run stores it before building the policy."""
    from anatomy_r1.data.io import read_records

    root = tmp_path_factory.mktemp("synth")
    generate_benchmark(root, seed=3, n_train=40, n_val=0, n_test=0, n_perception=0, image_size=32)
    records = read_records(root / "train.jsonl")
    for r, v in zip(records, score_records(records, BACKEND), strict=True):
        r.meta["s_q"] = v
        r.meta["s_q_backend"] = BACKEND
    return records


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, options: Sequence[str], answer_index: int) -> float:
        self.calls += 1
        return s_q(options, answer_index, BACKEND)


def _reference(record: Record, vocabulary: list[str], rng: random.Random, drawn: set[tuple]) -> list[str]:
    """The draw as first written: every candidate, and the original, scored afresh; ``drawn`` collects
    the candidate sets."""
    others = [v for v in sorted(set(vocabulary)) if v != record.answer]
    k = len(record.options) - 1

    def draw() -> tuple[list[str], int]:
        picked = rng.sample(others, k)
        at = rng.randrange(k + 1)
        return [*picked[:at], record.answer, *picked[at:]], at

    target = s_q(record.options, record.answer_index, BACKEND)
    candidates = [draw() for _ in range(CANDIDATES)]
    drawn.update((tuple(c[0]), c[1]) for c in candidates)
    return min(candidates, key=lambda c: abs(s_q(c[0], c[1], BACKEND) - target))[0]


def test_same_s_q_draws_what_rescoring_drew_scoring_each_candidate_set_once(scored: list[Record]) -> None:
    vocabulary = [r.answer for r in scored]
    counting = Counting()
    redraw = DistractorRedraw(CompositeGenerator(kinds=("reorder",)), "same_s_q", vocabulary, counting)
    drawn: set[tuple] = set()
    variants = 0
    for seed in range(3):
        for r in scored:
            ref_rng, rng = random.Random(f"{seed}:{r.id}"), random.Random(f"{seed}:{r.id}")
            assert redraw._options(r, rng)[0] == _reference(r, vocabulary, ref_rng, drawn)  # type: ignore[index]
            variants += 1
    # First written: 1 + CANDIDATES scores per variant. Now the original's stored S(q) is used and a set
    # drawn again (in the same order: a set in another order may score differently in the last bit) is not
    # scored again.
    assert counting.calls == len(drawn) < variants * (1 + CANDIDATES)


def test_the_original_is_scored_only_where_it_has_no_stored_s_q(scored: list[Record]) -> None:
    r = scored[0]
    counting = Counting()
    redraw = DistractorRedraw(
        CompositeGenerator(kinds=("reorder",)), "same_s_q", [x.answer for x in scored], counting
    )
    assert redraw._target(r) == r.meta["s_q"] and counting.calls == 0
    bare = Record(**{**r.to_dict(), "meta": {}})
    assert redraw._target(bare) == pytest.approx(r.meta["s_q"]) and counting.calls == 1


@pytest.mark.parametrize("mode", ["same_s_q", "free"])
def test_a_variant_with_new_distractors_keeps_no_fact_about_the_old_options(
    scored: list[Record], mode: str
) -> None:
    r = copy_record(scored[0])
    r.meta.update(oracle_accuracy=0.7, oracle_correct=0.5)
    redraw = DistractorRedraw(
        CompositeGenerator(kinds=("reorder",)), mode, [x.answer for x in scored], Counting()
    )
    (v,) = redraw.variants(r, 1, random.Random(0))
    assert sorted(v.options) != sorted(r.options)
    assert "s_q" not in v.meta and not set(OPTION_DEPENDENT_META) - {"distractors"} & set(v.meta)
    assert v.meta["distractors"] == mode and v.meta["variant_of"] == r.id
    assert r.meta["s_q"] is not None  # the original keeps its own


def test_variant_rows_are_scored_for_their_own_options(tiny_data: Path) -> None:
    """The run scores a variant row with new distractors itself, and one with the original's options
    keeps the original's S(q), which is what scoring it would give."""
    from anatomy_r1.training.config import load_config
    from anatomy_r1.training.dataset import load_records
    from anatomy_r1.training.preflight import prepare_inputs

    for distractors in ("same_s_q", "keep"):
        cfg = load_config(
            None,
            [
                f"data.train={tiny_data / 'train.jsonl'}",
                f"curriculum.backend={BACKEND}",
                "gdqa.enabled=true",
                "gdqa.placement=own_groups",
                "gdqa.difficulty=s_q",
                "gdqa.kinds=[template,reorder]",
                f"gdqa.distractors={distractors}",
            ],
        )
        rows = [
            r for r in prepare_inputs(cfg, load_records(cfg.data.train)).records if "variant_of" in r.meta
        ]
        assert rows
        rescored = score_records(rows, BACKEND)
        assert [r.meta["s_q"] for r in rows] == rescored
        assert all(r.meta["s_q_backend"] == BACKEND for r in rows)
