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
matter of seconds rather than one encoder call per question. :func:`score_file_records` is the same for
records read from a file: it first refuses, by file, line and item, every option the backend cannot score.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import numpy as np

from anatomy_r1.curriculum.encoders import EmbeddingBackend
from anatomy_r1.curriculum.similarity import get_backend
from anatomy_r1.curriculum.similarity_base import SimilarityBackend
from anatomy_r1.data.io import iter_jsonl
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import ConfigError, DataError

Mode = Literal["mean", "max", "pairwise"]
MODES: tuple[str, ...] = ("mean", "max", "pairwise")

MAX_REPORTED = 20
"""A file whose options a backend cannot score lists at most this many, then says how many more there were."""

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


class UnscorableOptions(DataError):
    """Options of a data file that the chosen backend cannot score, each named with its file and item.

    ``lines`` holds one message per report line: the options (at most ``MAX_REPORTED``), how many more
    there were, and a summary. The exception's text is those lines joined so that, once the command line
    puts ``error:`` before it, every line reads as an ``error:`` line, as ``anatomy-r1 data validate``
    reports its problems.
    """

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\nerror: ".join(lines))
        self.lines = lines


def check_scorable(
    records: Sequence[Record],
    backend: SimilarityBackend | str | None,
    path: str | os.PathLike[str],
    *,
    limit: int = MAX_REPORTED,
) -> None:
    """Refuse, in one :class:`UnscorableOptions`, every option of ``records`` that ``backend`` cannot score.

    ``path`` is the file the records came from; each option is reported as ``FILE:LINE: item 'ID': option
    'TEXT' (reason)``. Line numbers are looked up by id in ``path`` only when there is something to report
    (a file that cannot be read that way gets ``FILE: item 'ID'``), so ``records`` may be any subset of the
    file, such as the records still missing an S(q).
    """
    backend = get_backend(backend)
    distinct = list(dict.fromkeys(o.strip() for rec in records for o in rec.options))
    refused = backend.unscorable(distinct)
    if not refused:
        return
    bad: list[tuple[Record, str]] = [
        (rec, o.strip()) for rec in records for o in rec.options if o.strip() in refused
    ]
    shown = bad[:limit]
    lines_by_id = _line_numbers(path, {rec.id for rec, _ in shown})
    lines = []
    for rec, text in shown:
        where = f"{path}:{lines_by_id[rec.id]}" if rec.id in lines_by_id else str(path)
        lines.append(f"{where}: item {rec.id!r}: option {text!r} ({refused[text]})")
    if len(bad) > len(shown):
        lines.append(f"... and {len(bad) - len(shown)} more options")
    items = len({rec.id for rec, _ in bad})
    names = sorted(refused)
    listed = ", ".join(repr(t) for t in names[:8]) + (", ..." if len(names) > 8 else "")
    lines.append(
        f"{path}: {len(bad)} option(s) in {items} item(s) cannot be scored by {backend.spec} "
        f"({len(names)} distinct: {listed}); the 'anatomy' backend scores any label, or use a matrix that "
        "lists these"
    )
    raise UnscorableOptions(lines)


def _line_numbers(path: str | os.PathLike[str], ids: set[str]) -> dict[str, int]:
    """Line of each wanted id in a JSONL file; empty where the file cannot be read as JSON Lines."""
    found: dict[str, int] = {}
    if not ids or not os.path.isfile(path):
        return found
    try:
        for line, obj in iter_jsonl(path):
            rid = obj.get("id") if isinstance(obj, dict) else None
            if isinstance(rid, str) and rid in ids and rid not in found:
                found[rid] = line
                if len(found) == len(ids):
                    break
    except DataError:
        pass
    return found


def score_file_records(
    records: Sequence[Record],
    backend: SimilarityBackend | str | None,
    mode: Mode | str,
    path: str | os.PathLike[str],
) -> list[float]:
    """S(q) of records read from ``path``; an option the backend cannot score is refused by file and item.

    This is :func:`score_records` for callers that know where the records came from (``anatomy-r1 score``,
    a training run filling in missing S(q)): a label missing from a ``matrix:`` backend then stops the run
    with every such option named (:func:`check_scorable`) instead of with the first option reached.
    """
    _check_mode(mode)
    backend = get_backend(backend)
    check_scorable(records, backend, path)
    return score_records(records, backend, mode)


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
