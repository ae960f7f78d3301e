"""Which classes a model confuses, against how alike a similarity backend calls them.

The probe's third measurement: for every (true class A, answered class B) pair, how often the model
answered B when B was on offer and A was right, set beside sim(A, B). The same counts, pooled both ways,
are a similarity matrix of their own (``matrix:FILE``), measured from this model's mistakes, which a
next run's curriculum can follow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from anatomy_r1.curriculum.similarity_base import SimilarityBackend
from anatomy_r1.data import vocab
from anatomy_r1.evaluation.metrics import ItemResult

DIGITS = 6
"""S(q) and similarities are rounded to this many decimals (as ``anatomy-r1 score`` writes them): float32
backends give 0.35 as 0.3499999 or 0.3500001 depending on the options, and equal difficulties must tie."""


ConfusionCounts = dict[tuple[str, str], list[int]]
"""``(true label, answered label) -> [picks, offered]``."""


def count_confusions(results: Iterable[ItemResult], *, greedy: bool = False) -> ConfusionCounts:
    """Count, per (true class A, other offered class B), the completions that answered B and the offers.

    Every judged completion of a question whose answer is A counts as one offer of each other option B;
    it counts as a pick of B when it chose B. An unreadable answer is an offer without a pick, so the rate
    is "share of completions that went to B", not "share of mistakes". Sampled completions are counted;
    ``greedy=True`` adds the greedy one too. Classes are labels (``label_from_display``), so ``Cystic
    Plate`` and ``cystic_plate`` are one class.
    """
    counts: ConfusionCounts = {}
    for res in results:
        rec = res.record
        labels = [vocab.label_from_display(o) for o in rec.options]
        a = labels[rec.answer_index]
        choices = list(res.sampled_choices)
        if greedy and res.has_greedy:
            choices.append(res.greedy_choice)
        if not choices:
            continue
        for j, b in enumerate(labels):
            if j == rec.answer_index or b == a:
                continue
            cell = counts.setdefault((a, b), [0, 0])
            cell[1] += len(choices)
            cell[0] += sum(c == j for c in choices)
    return counts


def confusion_table(
    counts: Mapping[tuple[str, str], Sequence[int]], similarity: Mapping[tuple[str, str], float]
) -> list[dict[str, Any]]:
    """Rows ``{true, answered, picks, offered, rate, similarity}``, most confused first."""
    rows = []
    for (a, b), (picks, offered) in counts.items():
        if offered <= 0:
            continue
        rows.append(
            {
                "true": a,
                "answered": b,
                "picks": int(picks),
                "offered": int(offered),
                "rate": picks / offered,
                "similarity": float(similarity[(a, b)]),
            }
        )
    rows.sort(key=lambda r: (-r["rate"], -r["similarity"], -r["offered"], r["true"], r["answered"]))
    return rows


def confusion_similarity(pairs: Iterable[Mapping[str, Any]], labels: Sequence[str]) -> dict[str, Any]:
    """A class-similarity matrix measured from the model's confusions, in the ``matrix:FILE`` format.

    sim(A, B) is the share of completions that answered B when A was right or A when B was right, over all
    offers of the pair in either direction; the diagonal is 1 and a pair never offered together is 0. This
    is the model-aware similarity a next run's curriculum can use (``curriculum.backend:
    matrix:confusion_similarity.json``): what this checkpoint confuses, measured before training resumes.
    """
    labels = list(labels)
    pos = {lab: i for i, lab in enumerate(labels)}
    picks = np.zeros((len(labels), len(labels)))
    offered = np.zeros_like(picks)
    for row in pairs:
        a, b = row["true"], row["answered"]
        if a in pos and b in pos:
            for i, j in ((pos[a], pos[b]), (pos[b], pos[a])):
                picks[i, j] += row["picks"]
                offered[i, j] += row["offered"]
    m = np.divide(picks, offered, out=np.zeros_like(picks), where=offered > 0)
    np.fill_diagonal(m, 1.0)
    return {"labels": labels, "matrix": [[round(float(x), DIGITS) for x in r] for r in m]}


def pair_similarities(
    pairs: Iterable[tuple[str, str]], backend: SimilarityBackend
) -> dict[tuple[str, str], float]:
    """sim(A, B) for label pairs, asking the backend once about display names (what the model reads)."""
    pairs = list(pairs)
    labels = sorted({x for p in pairs for x in p})
    if not labels:
        return {}
    pos = {lab: i for i, lab in enumerate(labels)}
    m = np.asarray(backend.similarity_matrix([vocab.display_name(lab) for lab in labels]), dtype=np.float64)
    return {(a, b): round(float(m[pos[a], pos[b]]), DIGITS) for a, b in pairs}
