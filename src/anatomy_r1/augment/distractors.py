"""Variants that change the distractors: the same question and answer offered among other wrong choices.

The paper authors' augmented file (``GRPO-GDQA.json``) gives a frame's question again with a different
distractor set in most of its repeats, where our other variant kinds keep the option set and only reword
or reorder. :class:`DistractorRedraw` wraps any variant generator and gives each of its variants a new set
of distractors drawn from the training set's answers:

* ``free``: any other answers, uniformly;
* ``same_s_q``: among candidate sets drawn uniformly, the one whose S(q) is closest to the original
  question's, so a variant is about as hard as the question it stands for (S(q) comes from a callable the
  run hands in, the run's own similarity backend; augment does not import the curriculum).

The answer text, the images and the number of options stay; the answer's position is drawn anew. All
randomness comes from the ``rng`` the caller passes (the group's seeded generator), so processes agree.

A redraw runs per difficult group and step, so its cost is kept to what the draw needs: the original's
S(q) is the one the run stored on it (scored before the policy is built), the answers a distractor may be
drawn from are listed once per answer, and a candidate set scored once is not scored again. A variant
carries none of its original's facts about the option set (S(q) included): the run scores a variant row
for itself.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Callable, Sequence

from anatomy_r1.augment.variants import VariantGenerator, make_variant
from anatomy_r1.data.option_meta import OPTION_DEPENDENT_META, s_q_of
from anatomy_r1.data.schema import Record

#: How variants treat the original's distractors (``gdqa.distractors``).
DISTRACTOR_MODES: tuple[str, ...] = ("keep", "same_s_q", "free")

#: Candidate distractor sets scored per variant under ``same_s_q``.
CANDIDATES = 32
#: Candidate sets whose S(q) is kept, most recently used first out (a vocabulary of a few dozen answers
#: draws the same sets again and again).
SCORE_CACHE = 100_000
#: What a variant with new distractors drops from its original's ``meta``: every fact about the option set.
REDRAWN_META: tuple[str, ...] = ("s_q", *OPTION_DEPENDENT_META)

SQFn = Callable[[Sequence[str], int], float]
"""S(q) of an option list whose correct option is at the given index."""


class DistractorRedraw:
    """A variant generator whose variants come from ``base`` with their distractors drawn anew."""

    name = "distractors"

    def __init__(
        self,
        base: VariantGenerator,
        mode: str,
        vocabulary: Sequence[str],
        s_q: SQFn | None = None,
    ) -> None:
        if mode not in ("same_s_q", "free"):
            raise ValueError(f"distractor redraw mode must be same_s_q or free, not {mode!r}")
        if mode == "same_s_q" and s_q is None:
            raise ValueError("same_s_q needs an S(q) function")
        self.base = base
        self.mode = mode
        self.vocabulary = sorted(set(vocabulary))
        self.s_q = s_q
        self._others: dict[str, list[str]] = {}
        self._scores: OrderedDict[tuple[tuple[str, ...], int], float] = OrderedDict()

    def _others_than(self, answer: str) -> list[str]:
        """The vocabulary without ``answer``, in vocabulary order (the draws index into it)."""
        others = self._others.get(answer)
        if others is None:
            others = self._others[answer] = [v for v in self.vocabulary if v != answer]
        return others

    def _score(self, options: list[str], answer_index: int) -> float:
        assert self.s_q is not None
        key = (tuple(options), answer_index)
        score = self._scores.get(key)
        if score is None:
            score = self._scores[key] = self.s_q(options, answer_index)
            if len(self._scores) > SCORE_CACHE:
                self._scores.popitem(last=False)
        else:
            self._scores.move_to_end(key)
        return score

    def _target(self, record: Record) -> float:
        """The original's S(q): the one stored on it, scored only where it has none."""
        stored = s_q_of(record)
        return self._score(record.options, record.answer_index) if math.isnan(stored) else stored

    def _options(self, record: Record, rng: random.Random) -> tuple[list[str], int] | None:
        """A new option list with the record's answer, or None when the vocabulary is too small."""
        others = self._others_than(record.answer)
        k = len(record.options) - 1
        if len(others) < k:
            return None

        def draw() -> tuple[list[str], int]:
            picked = rng.sample(others, k)
            at = rng.randrange(k + 1)
            return [*picked[:at], record.answer, *picked[at:]], at

        if self.mode == "free":
            return draw()
        target = self._target(record)
        candidates = [draw() for _ in range(CANDIDATES)]
        return min(candidates, key=lambda c: abs(self._score(*c) - target))

    def variants(self, record: Record, n: int, rng: random.Random) -> list[Record]:
        out = []
        for k, v in enumerate(self.base.variants(record, n, rng), start=1):
            drawn = self._options(record, rng)
            if drawn is None:
                out.append(v)
                continue
            options, _ = drawn
            kind = f"{v.meta.get('variant_kind', 'variant')}+distractors"
            out.append(
                make_variant(
                    record,
                    k,
                    kind,
                    question=v.question,
                    options=options,
                    meta_updates={"distractors": self.mode},
                    meta_drop=REDRAWN_META,
                )
            )
        return out
