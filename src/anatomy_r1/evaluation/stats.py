"""Rank statistics for difficulty studies: Spearman correlation with ties, a paired bootstrap, quartiles.

numpy only, on purpose: the probe's numbers must not depend on whether scipy happens to be installed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_RESAMPLES = 2000
_BOOTSTRAP_CELLS = 4_000_000
"""Resampled indices drawn at once: bounds bootstrap memory on 100k-question files."""


def average_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the mean of the positions they span (``[1, 2, 2, 3]`` -> 1, 2.5, 2.5, 4).

    Averaging ties is what makes Spearman's ρ well defined on S(q) and accuracies, both of which repeat a
    handful of values (k samples give only k + 1 possible accuracies).
    """
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    ranks = np.empty(n, dtype=np.float64)
    if n == 0:
        return ranks
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], n]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Spearman's ρ (Pearson correlation of tie-averaged ranks), or ``None`` when it is undefined.

    Undefined means fewer than two points or a constant side (a model that is always wrong has no
    ranking of its accuracies); reporting ``None`` there is more honest than 0.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"spearman needs two equally long 1-d sequences, got {a.shape} and {b.shape}")
    if len(a) < 2:
        return None
    ra = average_ranks(a)
    rb = average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    if denom <= 1e-12:
        return None
    return float(min(1.0, max(-1.0, float(ra @ rb) / denom)))


def paired_bootstrap_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile confidence interval of ``mean(a - b)``, resampling questions (pairs) with replacement.

    Resampling pairs rather than the two sides separately keeps each question's own difficulty in both
    arms, which is what makes a few hundred questions enough to see a gap. Seeded, so a report can be
    reproduced exactly; ``None`` when there are no pairs.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError("paired_bootstrap_ci needs 1-d sequences")
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must lie strictly between 0 and 1")
    n = len(d)
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    chunk = max(1, _BOOTSTRAP_CELLS // n)
    for s in range(0, n_resamples, chunk):
        m = min(chunk, n_resamples - s)
        means[s : s + m] = d[rng.integers(0, n, size=(m, n))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(lo), float(hi)


def quartiles(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Quartile (0..3) of each score by its tie-averaged rank, so equal scores share a quartile.

    Splitting by rank gives four equally large groups when scores are distinct; splitting by value at
    the sample quartiles would instead put a large block of equal S(q) values (common with a small label
    vocabulary) on both sides of a boundary. Groups can be uneven, or empty, when ties are large.
    """
    r = average_ranks(scores)
    n = len(r)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    return np.minimum(3, np.floor(4.0 * (r - 0.5) / n)).astype(np.int64)


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if len(x) else None


def accuracy_by_quartile(
    scores: Sequence[float] | np.ndarray,
    accuracy: Sequence[float] | np.ndarray,
    greedy: Sequence[float] | np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One row per S(q) quartile: n, S(q) range and mean, mean accuracy (and greedy accuracy)."""
    s = np.asarray(scores, dtype=np.float64)
    acc = np.asarray(accuracy, dtype=np.float64)
    g = None if greedy is None else np.asarray(greedy, dtype=np.float64)
    if acc.shape != s.shape or (g is not None and g.shape != s.shape):
        raise ValueError("scores and accuracies must have the same length")
    q = quartiles(s)
    rows = []
    for i in range(4):
        mask = q == i
        row: dict[str, Any] = {
            "quartile": i + 1,
            "n": int(mask.sum()),
            "s_q_min": float(s[mask].min()) if mask.any() else None,
            "s_q_max": float(s[mask].max()) if mask.any() else None,
            "s_q_mean": _mean(s[mask]),
            "avg_at_k": _mean(acc[mask]),
        }
        if g is not None:
            row["greedy_accuracy"] = _mean(g[mask])
        rows.append(row)
    return rows
