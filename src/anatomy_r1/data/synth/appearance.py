"""How anatomy classes look in the synthetic world: overlapping appearance distributions, and the oracle.

ASCL rests on one premise: a question is harder when its answer choices are more alike. The synthetic
world is built to hold it *by construction*, and every question records how hard it really is:

* **Appearance is a colour word per region instance, drawn from a class-conditional distribution.** Each
  class ``c`` has a distribution ``P(word | c)`` over :data:`WORDS`. A region is painted in its word's
  prototype colour (:data:`WORDS`, well apart in RGB, so reading the word off the frame is easy) with a
  little jitter, and its class leaves no other trace in the pixels. What a model can know about the class
  of a region is therefore exactly its colour word.
* **Distributions overlap in proportion to the similarity prior.** The overlap coefficient of two
  classes, ``sum_w min(P(w | a), P(w | b))``, is fitted to :data:`OVERLAP_SCALE` times
  :func:`anatomy_r1.data.vocab.class_similarity` (the ``matrix:prior`` backend). With two options, even
  the Bayes-optimal reader errs on half the overlap, because that share of both classes' mass falls on
  colour words the two share. Similar classes are genuinely uncertain to tell apart; dissimilar ones are
  not.
* **The oracle.** Given the region's colour word and the offered options, the Bayes-optimal answer is the
  option with the largest ``P(word | option)`` (classes are drawn uniformly). A question's *oracle
  accuracy* is the expected accuracy of that choice over the words its answer class can show,
  :meth:`AppearanceModel.oracle_accuracy`; it depends on the offered options and on nothing else. This is
  the ground truth S(q) and models are checked against.

Because the world follows ``matrix:prior``, that is the backend the demo and the synthetic configs score
S(q) with. Real data has no such guarantee: ``anatomy-r1 probe`` measures whether a backend's similarity
predicts a model's errors there.

The fit is deterministic (fixed start, fixed number of steps) and rounded to 1e-4, so the same numpy
gives the same distributions, frames and records.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from anatomy_r1.data.vocab import class_similarity

WORDS: dict[str, tuple[int, int, int]] = {
    "brown": (125, 75, 30),
    "green": (70, 165, 70),
    "white": (235, 235, 225),
    "yellow": (235, 215, 60),
    "pink": (240, 150, 190),
    "red": (215, 40, 40),
    "purple": (140, 70, 175),
    "blue": (60, 100, 210),
    "orange": (240, 140, 40),
    "cyan": (50, 200, 205),
    "lime": (175, 235, 60),
    "navy": (30, 40, 125),
    "magenta": (215, 40, 170),
}
"""Colour words regions can show, with the RGB each is painted in (distinct hues, far from the dark
tissue background and from the silver instruments). A class set uses the first ``max(8, classes)``."""

HOME_WORDS: dict[str, str] = {
    "liver": "brown",
    "gallbladder": "green",
    "cystic_plate": "white",
    "omentum": "yellow",
    "gut": "pink",
    "abdominal_wall_cavity": "red",
    "cystic_duct": "purple",
    "cystic_artery": "blue",
}
"""Each class's home word: the colour it shows most often, and no other class shows more often (the
palette is oriented by plausible laparoscopic colours; the prior decides how much mass is shared)."""

N_BASE_WORDS = 8

_FIT_STEPS = 20_000
_FIT_RATE = 0.3
OVERLAP_SCALE = 0.6
"""Overlap of two classes' distributions per unit of prior similarity. At 1.0 (overlap = similarity) the
most similar pairs share over half their mass, every home word is right only about half the time even
when read perfectly, and plain GRPO on the tiny model learned the reading barely at all (docs/results.md);
at 0.6 the ordering, and so the premise, is the same and the reward says more."""
_HOME_MARGIN = 0.05
_HOME_WEIGHT = 3.0
_SMOOTH_MIN = 0.02
"""Temperature of the soft minimum the overlap is fitted through (the exact minimum has no gradient at
ties)."""


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def overlap_matrix(probs: np.ndarray) -> np.ndarray:
    """Overlap coefficient ``sum_w min(p_a(w), p_b(w))`` of every pair of rows."""
    return np.minimum(probs[:, None, :], probs[None, :, :]).sum(axis=-1)


def _start(labels: tuple[str, ...], words: tuple[str, ...]) -> np.ndarray:
    """Initial logits: each class peaked on a word of its own (its home word where it has a free one)."""
    home: dict[str, int] = {}
    for lab in labels:
        w = HOME_WORDS.get(lab)
        if w in words and words.index(w) not in home.values():
            home[lab] = words.index(w)
    free = iter(j for j in range(len(words)) if j not in home.values())
    logits = np.zeros((len(labels), len(words)))
    for i, lab in enumerate(labels):
        logits[i, home[lab] if lab in home else next(free)] = 3.0
    return logits


def _fit(target: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Rows of ``P(word | class)`` whose pairwise overlaps match ``target`` (least squares, softmax logits).

    Each class keeps a *home word* (where its start is peaked): the word it shows most often, and the
    class that shows that word most often, both by a margin. The overlap alone would also be met by
    distributions where two classes share their most frequent word, and then the best reading of a
    frame would depend on every offered option at once; with home words it is a plain word-to-class
    lookup whenever the home class is on offer, which is what a model can learn from a reward, and
    similar classes still share as much mass as the prior says.
    """
    n, k = logits.shape
    logits = logits.copy()
    home = logits.argmax(axis=1)
    rows = np.arange(n)
    is_home = np.zeros((n, k), dtype=bool)
    is_home[rows, home] = True
    off = 1.0 - np.eye(n)
    for _ in range(_FIT_STEPS):
        p = _softmax(logits)
        a, b = p[:, None, :], p[None, :, :]
        weight_a = 1.0 / (1.0 + np.exp(np.clip((a - b) / _SMOOTH_MIN, -50, 50)))  # d min / d a
        err = (np.minimum(a, b).sum(axis=-1) - target) * off
        grad_p = 4.0 * (err[:, :, None] * weight_a).sum(axis=1)
        own = p[rows, home]
        # another class showing c's home word as often as c does: hinge, column-wise
        col = np.maximum(p[:, home] - own[None, :] + _HOME_MARGIN, 0.0) * off
        grad_p[:, home] += 2.0 * _HOME_WEIGHT * col
        grad_p[rows, home] -= 2.0 * _HOME_WEIGHT * col.sum(axis=0)
        # c showing another word as often as its home word: hinge, row-wise
        row = np.maximum(p - own[:, None] + _HOME_MARGIN, 0.0) * ~is_home
        grad_p += 2.0 * _HOME_WEIGHT * row
        grad_p[rows, home] -= 2.0 * _HOME_WEIGHT * row.sum(axis=1)
        logits -= _FIT_RATE * p * (grad_p - (grad_p * p).sum(axis=1, keepdims=True))
    p = np.round(_softmax(logits), 4)
    return p / p.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class AppearanceModel:
    """``P(word | class)`` for a class set, with sampling and the Bayes-optimal reader."""

    labels: tuple[str, ...]
    words: tuple[str, ...]
    probs: np.ndarray
    """``probs[i, j] = P(words[j] | labels[i])``."""

    def _row(self, label: str) -> np.ndarray:
        try:
            return self.probs[self.labels.index(label)]
        except ValueError:
            raise KeyError(
                f"class {label!r} is not in this appearance model ({', '.join(self.labels)})"
            ) from None

    def word_probs(self, label: str) -> dict[str, float]:
        return {w: float(p) for w, p in zip(self.words, self._row(label), strict=True)}

    def sample_word(self, label: str, rng: random.Random) -> str:
        """One region's colour word; drawn with ``rng.random()`` so scenes stay reproducible."""
        cumulative = np.cumsum(self._row(label)).tolist()
        i = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
        return self.words[min(i, len(self.words) - 1)]

    def bayes_choice(self, word: str, options: Sequence[str]) -> list[str]:
        """The options that best explain ``word`` (several when tied): what the oracle would answer."""
        j = self.words.index(word)
        scores = [float(self._row(o)[j]) for o in options]
        best = max(scores)
        return [o for o, s in zip(options, scores, strict=True) if s >= best - 1e-12]

    def oracle_correct(self, word: str, answer: str, options: Sequence[str]) -> float:
        """Chance the oracle is right on this very region (ties broken uniformly)."""
        chosen = self.bayes_choice(word, options)
        return 1.0 / len(chosen) if answer in chosen else 0.0

    def oracle_accuracy(self, answer: str, options: Sequence[str]) -> float:
        """Expected accuracy of the Bayes-optimal reader on a question whose answer is ``answer``."""
        row = self._row(answer)
        return float(sum(row[j] * self.oracle_correct(w, answer, options) for j, w in enumerate(self.words)))

    def overlap(self, a: str, b: str) -> float:
        """How much two classes' appearance overlaps (1 = indistinguishable): the world's own similarity."""
        return float(np.minimum(self._row(a), self._row(b)).sum())


def appearance_model(classes: Sequence[str]) -> AppearanceModel:
    """The appearance model of a class set (cached: the fit takes about a second)."""
    return _appearance_model(tuple(sorted(set(classes))))


@cache
def _appearance_model(labels: tuple[str, ...]) -> AppearanceModel:
    target = np.array(
        [[1.0 if a == b else OVERLAP_SCALE * class_similarity(a, b) for b in labels] for a in labels]
    )
    if len(labels) > len(WORDS):
        raise ValueError(f"{len(labels)} classes but only {len(WORDS)} colour words")
    words = tuple(WORDS)[: max(N_BASE_WORDS, len(labels))]
    return AppearanceModel(labels, words, _fit(target, _start(labels, words)))
