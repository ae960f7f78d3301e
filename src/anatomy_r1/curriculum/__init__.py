"""ASCL: anatomical-similarity curriculum learning.

* :mod:`.similarity` -- backends measuring how alike two answer choices are, built from a spec string
  (``get_backend(spec)``): the interface in :mod:`.similarity_base`, text encoders in :mod:`.encoders`,
  class matrices in :mod:`.matrix`, and the default in :mod:`.anatomy_similarity`, with
  :mod:`.anatomy_taxonomy` placing option labels by organ system and body region;
* :mod:`.scoring` -- question difficulty S(q) and batch scoring of whole files;
* :mod:`.distractors_by_similarity` -- posing a question at a chosen difficulty through its distractors;
* :mod:`.pacing` -- how much of the S(q)-sorted data is open at each point of training;
* :mod:`.sampler` -- ``CurriculumRepeatSampler``, a drop-in for TRL's ``RepeatSampler``.

Submodules are imported lazily by name so ``import anatomy_r1.curriculum`` stays cheap (no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SimilarityBackend": "similarity_base",
    "EmbeddingBackend": "encoders",
    "MatrixSimilarity": "matrix",
    "AnatomySimilarity": "anatomy_similarity",
    "DEFAULT_BACKEND": "similarity",
    "get_backend": "similarity",
    "s_q": "scoring",
    "score_records": "scoring",
    "score_file_records": "scoring",
    "SimilarityDistractors": "distractors_by_similarity",
    "pose_at_levels": "distractors_by_similarity",
    "get_pacing": "pacing",
    "CurriculumRepeatSampler": "sampler",
    "generation_batches_for": "sampler",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
