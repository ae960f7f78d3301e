"""How wrong answer choices are drawn from a label vocabulary.

Converters that build multiple-choice questions from open answers (SSG-VQA) and the synthetic benchmark
take a strategy object, so the curriculum can later pose the same question with easy (dissimilar) or hard
(similar) distractors without either caller changing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class DistractorStrategy(Protocol):
    """Chooses ``k`` labels, all different from ``answer``, from ``vocabulary``."""

    name: str

    def choose(self, answer: str, vocabulary: Sequence[str], k: int, rng: random.Random) -> list[str]: ...


class RandomDistractors:
    """Uniformly random distractors: the difficulty-agnostic choice of the released Anatomy-R1 data."""

    name = "random"

    def choose(self, answer: str, vocabulary: Sequence[str], k: int, rng: random.Random) -> list[str]:
        pool = [v for v in vocabulary if v != answer]
        if len(pool) < k:
            raise ValueError(f"vocabulary has {len(pool)} labels besides {answer!r}; {k} distractors needed")
        return rng.sample(pool, k)


def build_options(answer: str, distractors: Sequence[str], rng: random.Random) -> tuple[list[str], int]:
    """Shuffle the answer among its distractors; returns ``(options, answer_index)``."""
    options = [answer, *distractors]
    rng.shuffle(options)
    return options, options.index(answer)
