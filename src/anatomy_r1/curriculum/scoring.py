"""Question difficulty S(q): how alike the answer choices of a multiple-choice question are.

A question is hard when its distractors resemble its answer. With ``sim`` a backend from
:mod:`anatomy_r1.curriculum.similarity`, ``a`` the correct option and ``D`` the distractors:

* ``mean`` (default, the paper's): S(q) = (1/|D|) * sum over d in D of sim(a, d)
* ``max``: S(q) = max over d in D of sim(a, d) -- one near-synonym is enough to make a question hard
* ``pairwise``: S(q) = mean of sim(o_i, o_j) over all unordered pairs of options i < j -- also counts how
  alike the distractors are to each other, which matters when the answer must be recognised, not just
  told apart from each distractor

:func:`score_records` is the batch path: it collects every distinct option string of a whole file, asks
the backend about them once, and reduces per question with numpy, which is what makes 100k questions a
matter of seconds rather than one encoder call per question.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from anatomy_r1.curriculum.similarity import EmbeddingBackend, SimilarityBackend, get_backend
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import ConfigError, DataError

Mode = Literal["mean", "max", "pairwise"]
MODES: tuple[str, ...] = ("mean", "max", "pairwise")

_PAIR_CHUNK = 65_536
_FULL_MATRIX_LIMIT = 4_096
"""Up to this many distinct strings the full similarity matrix is built; beyond it, only needed pairs."""


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"unknown S(q) mode {mode!r}; choose from {', '.join(MODES)}")


def _pairs(n_options: int, answer_index: int, mode: str) -> list[tuple[int, int]]:
    """Option-position pairs whose similarities S(q) aggregates."""
    if mode == "pairwise":
        return [(i, j) for i in range(n_options) for j in range(i + 1, n_options)]
    return [(answer_index, j) for j in range(n_options) if j != answer_index]


def s_q(
    options: Sequence[str],
    answer_index: int,
    backend: SimilarityBackend | str | None = None,
    mode: Mode | str = "mean",
) -> float:
    """Difficulty of one question; see the module docstring for the three definitions."""
    _check_mode(mode)
    if len(options) < 2:
        raise DataError(f"S(q) needs at least two options, got {len(options)}")
    if not 0 <= answer_index < len(options):
        raise DataError(f"answer index {answer_index} is outside the {len(options)} options")
    m = get_backend(backend).similarity_matrix(list(options))
    vals = [float(m[i, j]) for i, j in _pairs(len(options), answer_index, mode)]
    return max(vals) if mode == "max" else float(np.mean(vals))


def score_records(
    records: Sequence[Record],
    backend: SimilarityBackend | str | None = None,
    mode: Mode | str = "mean",
) -> list[float]:
    """S(q) for every record, with one backend query over the file's distinct option strings."""
    _check_mode(mode)
    if not records:
        return []
    backend = get_backend(backend)
    string_id: dict[str, int] = {}
    left: list[int] = []
    right: list[int] = []
    seg_start = np.empty(len(records), dtype=np.int64)
    for r, rec in enumerate(records):
        ids = [string_id.setdefault(o.strip(), len(string_id)) for o in rec.options]
        seg_start[r] = len(left)
        for i, j in _pairs(len(ids), rec.answer_index, mode):
            left.append(ids[i])
            right.append(ids[j])
    li = np.asarray(left, dtype=np.int64)
    ri = np.asarray(right, dtype=np.int64)
    sims = _pair_similarities(backend, list(string_id), li, ri)
    if mode == "max":
        out = np.maximum.reduceat(sims, seg_start)
    else:
        counts = np.diff(np.append(seg_start, len(sims)))
        out = np.add.reduceat(sims.astype(np.float64), seg_start) / counts
    return [float(x) for x in out]


def _pair_similarities(
    backend: SimilarityBackend, texts: list[str], left: np.ndarray, right: np.ndarray
) -> np.ndarray:
    if isinstance(backend, EmbeddingBackend) and len(texts) > _FULL_MATRIX_LIMIT:
        emb = backend.embed(texts)
        out = np.empty(len(left), dtype=np.float32)
        for s in range(0, len(left), _PAIR_CHUNK):
            e = s + _PAIR_CHUNK
            out[s:e] = np.einsum("ij,ij->i", emb[left[s:e]], emb[right[s:e]])
        return np.clip(out, -1.0, 1.0)
    m = backend.similarity_matrix(texts)
    return np.asarray(m[left, right], dtype=np.float32)


def summarize(scores: Sequence[float], bins: int = 10, width: int = 40) -> str:
    """Text summary: count, mean, quartiles and a histogram, for the ``score`` command and logs."""
    if not scores:
        return "n=0"
    x = np.asarray(scores, dtype=np.float64)
    q = np.quantile(x, [0.0, 0.25, 0.5, 0.75, 1.0])
    lines = [
        f"n={len(x)}  mean={x.mean():.4f}  std={x.std():.4f}",
        f"min={q[0]:.4f}  q1={q[1]:.4f}  median={q[2]:.4f}  q3={q[3]:.4f}  max={q[4]:.4f}",
    ]
    lo, hi = float(q[0]), float(q[4])
    if hi - lo < 1e-12:
        hi = lo + 1e-6
    counts, edges = np.histogram(x, bins=bins, range=(lo, hi))
    top = max(int(counts.max()), 1)
    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
        bar = "#" * round(width * int(c) / top)
        lines.append(f"  [{a:7.4f}, {b:7.4f})  {int(c):>8d}  {bar}")
    return "\n".join(lines)
