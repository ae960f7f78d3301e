"""Similarity read from a class-by-class matrix: a user's JSON or CSV file, or the built-in anatomy prior.

``matrix:<file>`` reads JSON ``{"labels": [...], "matrix": [[...]]}`` or CSV with a header row of labels;
``matrix:prior`` is the prior of :mod:`anatomy_r1.data.vocab`. Option texts are mapped to labels with
:func:`~anatomy_r1.data.vocab.label_from_display`, so ``"Cystic Plate"`` finds ``cystic_plate``. A matrix
is refused with the reason (not square, not symmetric, out of [-1, 1], a label twice) when it is read,
so a bad file fails before any scoring.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from anatomy_r1.curriculum.similarity_base import LabelSimilarityBackend
from anatomy_r1.data import vocab
from anatomy_r1.errors import DataError


class MatrixSimilarity(LabelSimilarityBackend):
    """A fixed class-similarity matrix: a user's file, or the built-in anatomy prior."""

    def __init__(
        self, labels: Sequence[str], matrix: np.ndarray | Sequence[Sequence[float]], *, source: str = "matrix"
    ) -> None:
        self.source = source
        self.spec = f"matrix:{source}"
        norm = [vocab.label_from_display(str(lab)) for lab in labels]
        if not norm:
            raise DataError(f"{source}: similarity matrix has no labels")
        if any(not lab for lab in norm):
            raise DataError(f"{source}: empty label in the similarity matrix")
        dupes = sorted({lab for lab in norm if norm.count(lab) > 1})
        if dupes:
            raise DataError(f"{source}: duplicate label(s) {', '.join(dupes)}")
        try:
            m = np.asarray(matrix, dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{source}: matrix must be a list of rows of numbers") from None
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise DataError(f"{source}: matrix must be square, got shape {tuple(m.shape)}")
        if m.shape[0] != len(norm):
            raise DataError(f"{source}: {len(norm)} labels but a {m.shape[0]}x{m.shape[1]} matrix")
        if not np.all(np.isfinite(m)):
            raise DataError(f"{source}: matrix holds a non-finite value (NaN or inf)")
        if m.min() < -1.0 - 1e-9 or m.max() > 1.0 + 1e-9:
            raise DataError(f"{source}: similarities must lie in [-1, 1]; found {m.min():g}..{m.max():g}")
        bad = np.argwhere(np.abs(m - m.T) > 1e-6)
        if len(bad):
            i, j = (int(x) for x in bad[0])
            raise DataError(
                f"{source}: matrix is not symmetric: {norm[i]}/{norm[j]} = {m[i, j]:g} but "
                f"{norm[j]}/{norm[i]} = {m[j, i]:g}"
            )
        self.labels = norm
        self.index = {lab: i for i, lab in enumerate(norm)}
        self.matrix = m

    def to_label(self, text: str) -> str:
        label = vocab.label_from_display(text)
        if label not in self.index:
            shown = ", ".join(self.labels[:12]) + (" ..." if len(self.labels) > 12 else "")
            raise DataError(
                f"option {text!r} (label {label!r}) is not in the similarity matrix {self.source} "
                f"(labels: {shown})"
            )
        return label

    def unscorable(self, texts: Sequence[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for text in texts:
            label = vocab.label_from_display(text)
            if label not in self.index:
                out[text] = f"label {label!r} is not in the similarity matrix {self.source}"
        return out

    def label_similarity(self, a: str, b: str) -> float:
        return float(self.matrix[self.index[a], self.index[b]])

    def similarity_matrix(self, texts: Sequence[str]) -> np.ndarray:
        idx = np.array([self.index[self.to_label(t)] for t in texts], dtype=np.int64)
        return self.matrix[np.ix_(idx, idx)].astype(np.float32)

    @classmethod
    def prior(cls) -> MatrixSimilarity:
        """The built-in anatomy prior over SSG-VQA's labels (``vocab.class_similarity``)."""
        labels = list(vocab.ANATOMY_LABELS)
        return cls(labels, vocab.similarity_matrix(labels), source="prior")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> MatrixSimilarity:
        """Read a JSON (``{"labels", "matrix"}``) or CSV (header row of labels) similarity matrix."""
        p = Path(path).expanduser()
        if not p.is_file():
            raise DataError(f"similarity matrix file not found: {p}")
        text = p.read_text(encoding="utf-8-sig")
        if p.suffix.lower() == ".json" or text.lstrip().startswith("{"):
            return cls._from_json(text, str(p))
        return cls._from_csv(text, str(p))

    @classmethod
    def _from_json(cls, text: str, source: str) -> MatrixSimilarity:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{source}: invalid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(obj, dict) or "labels" not in obj or "matrix" not in obj:
            raise DataError(f'{source}: expected an object {{"labels": [...], "matrix": [[...]]}}')
        labels, matrix = obj["labels"], obj["matrix"]
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise DataError(f"{source}: 'labels' must be a list of strings")
        if not isinstance(matrix, list) or not all(isinstance(r, list) for r in matrix):
            raise DataError(f"{source}: 'matrix' must be a list of rows")
        for r, row in enumerate(matrix):
            for v in row:
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise DataError(f"{source}: matrix row {r + 1} holds a non-number {v!r}")
        return cls(labels, [list(map(float, row)) for row in matrix] if matrix else [[]], source=source)

    @classmethod
    def _from_csv(cls, text: str, source: str) -> MatrixSimilarity:
        rows = [r for r in csv.reader(text.splitlines()) if any(c.strip() for c in r)]
        if len(rows) < 2:
            raise DataError(f"{source}: CSV needs a header row of labels and one row per label")
        header = [c.strip() for c in rows[0]]
        # A leading blank / "label" cell means every row starts with its own label.
        row_labels_first = header[0] == "" or header[0].lower() in ("label", "labels", "class")
        labels = header[1:] if row_labels_first else header
        n = len(labels)
        by_label: dict[str, list[float]] = {}
        ordered: list[list[float]] = []
        for ln, row in enumerate(rows[1:], start=2):
            cells = [c.strip() for c in row]
            if row_labels_first:
                if len(cells) != n + 1:
                    raise DataError(f"{source}:{ln}: expected a label and {n} values, got {len(cells)} cells")
                name, cells = vocab.label_from_display(cells[0]), cells[1:]
            elif len(cells) != n:
                raise DataError(f"{source}:{ln}: expected {n} values, got {len(cells)}")
            values = []
            for c in cells:
                try:
                    values.append(float(c))
                except ValueError:
                    raise DataError(f"{source}:{ln}: {c!r} is not a number") from None
            if row_labels_first:
                if name in by_label:
                    raise DataError(f"{source}:{ln}: label {name!r} has two rows")
                by_label[name] = values
            else:
                ordered.append(values)
        if row_labels_first:
            norm = [vocab.label_from_display(lab) for lab in labels]
            missing = [lab for lab in norm if lab not in by_label]
            extra = [lab for lab in by_label if lab not in norm]
            if missing or extra:
                raise DataError(
                    f"{source}: row labels do not match the header"
                    + (f"; no row for {', '.join(missing)}" if missing else "")
                    + (f"; unknown row(s) {', '.join(extra)}" if extra else "")
                )
            ordered = [by_label[lab] for lab in norm]
        return cls(labels, ordered, source=source)
