"""The ``curriculum:`` section of a run config (ASCL), declared beside the code it drives.

Each knob is declared once, here, with its one default, taken from the module that owns the value
(pacing names and defaults from :mod:`~anatomy_r1.curriculum.pacing`, S(q) modes from
:mod:`~anatomy_r1.curriculum.scoring`, backends from :mod:`~anatomy_r1.curriculum.similarity`, the
window policies from :mod:`~anatomy_r1.curriculum.sampler`); the run config only includes the section.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from anatomy_r1.curriculum.pacing import (
    DEFAULT_PACING,
    DEFAULT_RAMP_FRACTION,
    DEFAULT_STAGES,
    DEFAULT_START,
    PACINGS,
    WINDOWS,
)
from anatomy_r1.curriculum.scoring import MODES
from anatomy_r1.curriculum.similarity import BACKEND_KINDS, DEFAULT_BACKEND
from anatomy_r1.errors import AnatomyR1Error
from anatomy_r1.strict import StrictModel, did_you_mean


class CurriculumSettings(StrictModel):
    """ASCL: train from dissimilar to similar answer choices (docs/curriculum.md)."""

    enabled: bool = False
    """Draw generation batches easiest-S(q)-first under ``pacing``; off samples as TRL does."""
    log_s_q: bool = True
    """Score S(q) and log the batch mean even without the curriculum, so shuffled runs can be compared."""
    backend: str = DEFAULT_BACKEND
    """S(q)'s similarity: ``anatomy`` (the anatomical prior, an organ-system/region table, then a calibrated
    text encoder; docs/curriculum.md), ``minilm``, ``st:PATH``, ``matrix:FILE`` or ``matrix:prior``."""
    mode: Literal[MODES] = "mean"  # type: ignore[valid-type]
    """How a question's option similarities make S(q): ``mean`` (the paper's), ``max`` or ``pairwise``."""
    pacing: Literal[PACINGS] = DEFAULT_PACING  # type: ignore[valid-type]
    """How fast the S(q)-sorted data opens: ``linear``, ``root``, ``step``, or ``none`` (the same
    bookkeeping, sampled uniformly: the shuffled-GRPO control)."""
    window: Literal[WINDOWS] = "fresh"  # type: ignore[valid-type]
    """How a batch draws from the open data: ``fresh`` (no item twice in a pass, every item seen) or
    ``uniform`` (memory-less draws, so the easy items open first are drawn again and again)."""
    ramp_fraction: float = Field(DEFAULT_RAMP_FRACTION, gt=0.0, le=1.0)
    """Share of training after which all data is open."""
    start_fraction: float = Field(DEFAULT_START, ge=0.0, le=1.0)
    """Share of the data open at the start (``linear``, ``root``)."""
    stages: int = Field(DEFAULT_STAGES, ge=1)
    """Plateaus of the ``step`` pacing."""

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        """Built now (cheap: encoders load on first use), so a misspelled backend or a missing matrix
        file fails when the YAML is read, not after the model has loaded."""
        from anatomy_r1.curriculum.similarity import get_backend

        try:
            get_backend(v)
        except AnatomyR1Error as e:
            raise ValueError(f"{e}{did_you_mean(v.partition(':')[0], BACKEND_KINDS)}") from None
        return v
