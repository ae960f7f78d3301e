"""The base model's warm-up data: it may teach looking and answering in format, never which class is which."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from anatomy_r1.data.io import read_records
from anatomy_r1.data.synth import generate_benchmark
from anatomy_r1.errors import DataError
from anatomy_r1.pipelines.base_model import BaseRecipe, _observation_questions
from anatomy_r1.training.dataset import build_sft_dataset


@pytest.fixture(scope="module")
def questions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("warmup")
    generate_benchmark(root, seed=3, n_train=800, n_val=0, n_test=0, n_perception=0, image_size=84)
    return root, read_records(root / "train.jsonl")


def test_answers_are_offered_options_drawn_independently_of_the_truth(questions: tuple[Path, list]) -> None:
    _, records = questions
    warm = _observation_questions(records, seed=1)
    assert len(warm) == len(records)
    hits = 0
    for original, w in zip(records, warm, strict=True):
        assert w.options == original.options and w.question == original.question
        assert w.images == original.images  # the real frame, so the observation can be learned
        assert w.answer == w.options[w.answer_index]
        assert w.meta["rationale"] == original.meta["observation"]
        hits += w.answer_index == original.answer_index
    # a random offered option is right one time in four; the true answers would be right every time
    assert 0.20 < hits / len(records) < 0.30
    positions = Counter(w.answer_index for w in warm)
    assert min(positions.values()) > 0.2 * len(warm)


def test_the_draw_is_seeded(questions: tuple[Path, list]) -> None:
    _, records = questions
    a = [w.answer_index for w in _observation_questions(records, seed=1)]
    assert a == [w.answer_index for w in _observation_questions(records, seed=1)]
    assert a != [w.answer_index for w in _observation_questions(records, seed=2)]


def test_sft_targets_reason_with_the_observation(questions: tuple[Path, list]) -> None:
    root, records = questions
    warm = _observation_questions(records[:4], seed=0)
    ds = build_sft_dataset(warm, "compact_text", str(root))
    row = ds[0]
    text = row["completion"][0]["content"][0]["text"]
    assert text == f"<think>{records[0].meta['observation']}</think> <answer>{warm[0].answer}</answer>"
    assert row["images"][0].size == (84, 84)


def test_a_question_without_observation_is_refused(questions: tuple[Path, list]) -> None:
    _, records = questions
    meta = {k: v for k, v in records[0].meta.items() if k != "observation"}
    bad = replace(records[0], meta=meta)
    with pytest.raises(DataError, match=bad.id):
        _observation_questions([bad], seed=0)


def test_recipe_key_changes_with_the_warm_up() -> None:
    assert BaseRecipe().key() != BaseRecipe(sft_steps=BaseRecipe().sft_steps + 1).key()
    assert BaseRecipe().key() == BaseRecipe().key()
