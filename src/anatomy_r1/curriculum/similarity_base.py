"""What a similarity backend is: the one question every backend answers, and the label-table shape.

S(q), the curriculum, the probe and the distractor chooser depend only on this interface, so any way of
telling how alike two answer choices are (a text encoder, a matrix, the anatomy table) plugs in behind it.
The backends themselves live in :mod:`.encoders`, :mod:`.matrix` and :mod:`.anatomy_similarity`;
:func:`anatomy_r1.curriculum.similarity.get_backend` builds them from spec strings.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from anatomy_r1.data import vocab
from anatomy_r1.errors import ConfigError


class SimilarityBackend(ABC):
    """Pairwise similarity of option texts; the only thing S(q) needs from a backend."""

    spec: str = ""

    @abstractmethod
    def similarity_matrix(self, texts: Sequence[str]) -> np.ndarray:
        """Return a ``(len(texts), len(texts))`` float array of pairwise similarities."""

    def similarity(self, a: str, b: str) -> float:
        """Similarity of two texts; convenience over :meth:`similarity_matrix`."""
        return float(self.similarity_matrix([a, b])[0, 1])

    def unscorable(self, texts: Sequence[str]) -> dict[str, str]:
        """Texts this backend would refuse, each with the reason; empty for backends that score any text.

        Asked before scoring so that a file can be refused with every offending item named, rather than
        with the first option the backend happens to reach.
        """
        return {}


class LabelSimilarityBackend(SimilarityBackend):
    """Similarity defined on class labels; option texts are mapped to labels first."""

    @abstractmethod
    def label_similarity(self, a: str, b: str) -> float:
        """Similarity of two labels (already normalised with ``label_from_display``)."""

    def to_label(self, text: str) -> str:
        """Label an option text names; subclasses refuse texts they do not know."""
        return vocab.label_from_display(text)

    def similarity_matrix(self, texts: Sequence[str]) -> np.ndarray:
        # Many texts name few labels: fill the small label-by-label table, then gather.
        labels = [self.to_label(t) for t in texts]
        uniq = list(dict.fromkeys(labels))
        pos = {lab: i for i, lab in enumerate(uniq)}
        n = len(uniq)
        table = np.ones((n, n), dtype=np.float32)
        for i in range(n):
            for j in range(i + 1, n):
                table[i, j] = table[j, i] = self.label_similarity(uniq[i], uniq[j])
        idx = np.array([pos[lab] for lab in labels], dtype=np.int64)
        return table[np.ix_(idx, idx)]


def unknown_backend(spec: str) -> ConfigError:
    """The refusal of a spec no backend answers to, worded once for every place that parses specs."""
    return ConfigError(
        f"unknown similarity backend {spec!r}; use anatomy, minilm, st:PATH, matrix:FILE or matrix:prior"
    )
