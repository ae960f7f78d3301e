"""Controlling a question's difficulty through its answer choices.

The curriculum orders existing questions by S(q); this module goes one step further and *poses* a
question at a chosen difficulty by picking its distractors from a label vocabulary:

* ``easiest``: the labels least similar to the answer (low S(q));
* ``hardest``: the most similar ones (high S(q));
* ``target``: the k labels whose mean similarity to the answer is closest to a requested S(q).

:class:`SimilarityDistractors` implements the :class:`~anatomy_r1.data.answer_options.DistractorStrategy`
protocol, so the SSG-VQA converter and the synthetic benchmark can use it unchanged. Strategies work on
vocabulary labels (``cystic_plate``); text backends see display names (``Cystic Plate``), which is what
the model reads in the prompt.
"""

from __future__ import annotations

import itertools
import random
import zlib
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from anatomy_r1.curriculum.scoring import s_q
from anatomy_r1.curriculum.similarity import (
    FunctionSimilarity,
    SimilarityBackend,
    get_backend,
)
from anatomy_r1.data import vocab
from anatomy_r1.data.answer_options import build_options
from anatomy_r1.data.option_meta import OPTION_DEPENDENT_META
from anatomy_r1.data.schema import Record, make_record
from anatomy_r1.errors import ConfigError, DataError

Level = Literal["easiest", "hardest", "target"]
LEVELS: tuple[str, ...] = ("easiest", "hardest", "target")
_EXHAUSTIVE_LIMIT = 50_000
"""Largest number of k-subsets searched exhaustively for ``target``; beyond it a swap search is used."""


class SimilarityDistractors:
    """Distractors chosen by similarity to the answer; see module docstring for the three levels.

    ``similarity`` is a backend, a backend spec string, or a plain ``f(label_a, label_b) -> float``. Ties
    (equal similarities, or equally close target subsets) are broken by the ``rng`` passed to
    :meth:`choose`, so a seeded converter stays reproducible.
    """

    def __init__(
        self,
        similarity: SimilarityBackend | str | Callable[[str, str], float],
        level: Level | str = "hardest",
        target: float | None = None,
    ) -> None:
        if level not in LEVELS:
            raise ConfigError(f"unknown distractor level {level!r}; choose from {', '.join(LEVELS)}")
        if level == "target" and target is None:
            raise ConfigError("level 'target' needs a target S(q)")
        if isinstance(similarity, SimilarityBackend | str):
            self.backend = get_backend(similarity)
        elif callable(similarity):
            self.backend = FunctionSimilarity(similarity)
        else:
            raise ConfigError(f"similarity must be a backend, spec string or function, got {similarity!r}")
        self.level = level
        self.target = None if target is None else float(target)
        self.name = f"similarity-{level}" + (f"-{self.target:g}" if level == "target" else "")
        self._cache: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}

    def similarities(self, answer: str, candidates: Sequence[str]) -> np.ndarray:
        """Similarity of each candidate label to the answer label (cached per answer and candidate list)."""
        key = (answer, tuple(candidates))
        hit = self._cache.get(key)
        if hit is None:
            texts = [vocab.display_name(answer), *(vocab.display_name(c) for c in candidates)]
            hit = np.asarray(self.backend.similarity_matrix(texts)[0, 1:], dtype=np.float64)
            self._cache[key] = hit
        return hit

    def choose(self, answer: str, vocabulary: Sequence[str], k: int, rng: random.Random) -> list[str]:
        pool = [v for v in dict.fromkeys(vocabulary) if v != answer]
        if len(pool) < k:
            raise ValueError(f"vocabulary has {len(pool)} labels besides {answer!r}; {k} distractors needed")
        if k <= 0:
            return []
        sims = self.similarities(answer, pool)
        if self.level in ("easiest", "hardest"):
            sign = 1.0 if self.level == "easiest" else -1.0
            keys = [(sign * float(s), rng.random()) for s in sims]
            order = sorted(range(len(pool)), key=keys.__getitem__)
            return [pool[i] for i in order[:k]]
        assert self.target is not None
        chosen = _closest_subset(sims, k, self.target, rng)
        return [pool[i] for i in chosen]


def _closest_subset(sims: np.ndarray, k: int, target: float, rng: random.Random) -> list[int]:
    """Indices of a k-subset whose mean is closest to ``target``; ties broken by ``rng``."""
    n = len(sims)
    total = target * k
    if _n_choose_k(n, k) <= _EXHAUSTIVE_LIMIT:
        best: list[tuple[int, ...]] = []
        best_err = float("inf")
        for combo in itertools.combinations(range(n), k):
            err = abs(float(sims[list(combo)].sum()) - total)
            if err < best_err - 1e-12:
                best, best_err = [combo], err
            elif abs(err - best_err) <= 1e-12:
                best.append(combo)
        return list(rng.choice(best))
    # Large vocabularies: start from the sorted window closest to the target, then improve by swaps.
    order = sorted(range(n), key=lambda i: (float(sims[i]), rng.random()))
    starts = range(n - k + 1)
    s0 = min(starts, key=lambda s: abs(float(sims[order[s : s + k]].sum()) - total))
    chosen = set(order[s0 : s0 + k])
    current = float(sims[list(chosen)].sum())
    improved = True
    while improved:
        improved = False
        for i in sorted(chosen):
            for j in range(n):
                if j in chosen:
                    continue
                new = current - float(sims[i]) + float(sims[j])
                if abs(new - total) < abs(current - total) - 1e-12:
                    chosen.remove(i)
                    chosen.add(j)
                    current = new
                    improved = True
                    break
            if improved:
                break
    return sorted(chosen, key=lambda i: rng.random())


def _n_choose_k(n: int, k: int) -> int:
    from math import comb

    return comb(n, k)


def _level_tag(level: str | float) -> str:
    return level if isinstance(level, str) else f"s{float(level):.2f}"


def pose_at_levels(
    record: Record,
    vocabulary: Sequence[str],
    levels: Sequence[str | float],
    similarity: SimilarityBackend | str | Callable[[str, str], float] = "matrix:prior",
    *,
    seed: int = 0,
    mode: str = "mean",
) -> list[Record]:
    """Re-pose one vocabulary question at several difficulty levels.

    ``levels`` holds ``"easiest"``, ``"hardest"`` or a float target S(q). Each new record keeps the
    question, images and answer, gets ``len(record.options) - 1`` distractors from ``vocabulary`` at that
    level, a new id ``<id>@<level>`` (``<id>@s0.50`` for a target), ``meta["s_q"]`` under ``similarity``
    and ``mode``, ``meta["difficulty_level"]`` and ``meta["posed_from"]``. Options keep the record's style:
    labels if its answer is written as a label, display names otherwise. Option order is shuffled by a seed
    derived from ``seed``, the id and the level, so the answer letter carries no hint of the level.

    Re-posing a file calls this once per record: pass a backend object built once, or a spec string,
    which :func:`~anatomy_r1.curriculum.similarity.get_backend` resolves to the same embedding backend
    every time, so encoder weights are loaded once, not per record.
    """
    labels = [vocab.label_from_display(v) for v in vocabulary]
    answer_label = vocab.label_from_display(record.answer)
    if answer_label not in labels:
        raise DataError(
            f"item {record.id!r}: answer {record.answer!r} is not in the vocabulary, so it cannot be re-posed"
        )
    as_label = record.answer.strip() == answer_label
    render = (lambda lab: lab) if as_label else vocab.display_name
    k = len(record.options) - 1
    if isinstance(similarity, SimilarityBackend | str):
        backend = get_backend(similarity)
    else:
        backend = FunctionSimilarity(similarity)
    out: list[Record] = []
    for level in levels:
        if isinstance(level, str):
            if level not in ("easiest", "hardest"):
                raise ConfigError(f"level {level!r}: use 'easiest', 'hardest' or a number (target S(q))")
            strategy = SimilarityDistractors(backend, level)
        else:
            strategy = SimilarityDistractors(backend, "target", float(level))
        tag = _level_tag(level)
        rng = random.Random(zlib.crc32(f"{seed}/{record.id}/{tag}".encode()))
        distractors = strategy.choose(answer_label, labels, k, rng)
        options, answer_index = build_options(render(answer_label), [render(d) for d in distractors], rng)
        # Facts about the old option set (its S(q) is replaced below) would be wrong for the new one.
        meta = {k: v for k, v in record.meta.items() if k not in OPTION_DEPENDENT_META}
        meta.update(
            s_q=s_q(options, answer_index, backend, mode),
            difficulty_level=tag,
            posed_from=record.id,
        )
        out.append(
            make_record(
                id=f"{record.id}@{tag}",
                images=list(record.images),
                question=record.question,
                options=options,
                answer_index=answer_index,
                source=record.source,
                meta=meta,
                where=f"item {record.id!r} at level {tag}",
            )
        )
    return out
