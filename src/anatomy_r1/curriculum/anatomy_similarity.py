"""The default ``anatomy`` backend: the prior, then the anatomy table, then a calibrated text encoder.

For labels of SSG-VQA the prior of :mod:`anatomy_r1.data.vocab` answers; for labels the anatomy table of
:mod:`~anatomy_r1.curriculum.anatomy_taxonomy` places (organ system and body region) the table answers;
only labels neither knows fall back to a text encoder (``minilm`` unless named, e.g.
``anatomy:st:/models/enc``), whose cosine is mapped onto the table's scale. The encoder is loaded only
when some pair needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from anatomy_r1.curriculum.anatomy_taxonomy import AnatomyTaxonomy, Node, clean_text
from anatomy_r1.curriculum.encoders import EmbeddingBackend, get_encoder
from anatomy_r1.curriculum.similarity_base import SimilarityBackend
from anatomy_r1.data import vocab
from anatomy_r1.errors import ConfigError

ANATOMY_ENCODER = "minilm"
"""Encoder the ``anatomy`` spec falls back to for labels the prior and the anatomy table both lack."""

CALIBRATION_QUANTILES = 101
"""Matched quantiles (0 %, 1 %, ... 100 %) in the encoder-to-table map of :class:`EncoderCalibration`."""


@dataclass(frozen=True)
class LabelMatch:
    """Which part of :class:`AnatomySimilarity` answers for an option text.

    ``source`` is ``prior`` (an SSG-VQA label of ``vocab.class_similarity``), ``table`` (a label the
    anatomy table places) or ``encoder`` (neither: only the encoder can compare it). ``key`` names the
    label (the prior label, the table node, or the cleaned text); two texts with one key are the same
    answer. ``node`` is the text's place in the table, when it has one (prior labels have one too).
    """

    source: str
    key: str
    text: str
    node: Node | None


@dataclass(frozen=True)
class EncoderCalibration:
    """A monotone map from encoder cosine onto the anatomy table's similarity scale.

    Fitted once per encoder, on every pair of the table's own labels: the encoder's cosine at quantile p
    of those pairs maps to the table's similarity at quantile p (linear in between, clamped at the ends).
    The encoder keeps its own order among the pairs it is asked about, but a cosine is read on the same
    scale as the prior and the table: a pair the encoder ranks as alike as the top 10 % of known label
    pairs gets the similarity the top 10 % of known pairs have. Nothing here looks at training results.
    """

    cosine_quantiles: np.ndarray
    value_quantiles: np.ndarray
    n_pairs: int

    def __call__(self, cosine: np.ndarray) -> np.ndarray:
        return np.interp(cosine, self.cosine_quantiles, self.value_quantiles)


def calibration_reference(
    taxonomy: AnatomyTaxonomy, encoder: EmbeddingBackend
) -> tuple[np.ndarray, np.ndarray]:
    """Encoder cosine and table similarity of every pair of table labels (the calibration's data)."""
    names = taxonomy.display_names()
    nodes = list(taxonomy.rows.values())
    emb = encoder.embed(names)
    i, j = np.triu_indices(len(names), k=1)
    cosine = np.clip(np.einsum("ij,ij->i", emb[i], emb[j]), -1.0, 1.0)
    value = np.array([table_similarity(nodes[a], nodes[b]) for a, b in zip(i, j, strict=True)])
    return cosine.astype(np.float64), value


def table_similarity(a: Node, b: Node) -> float:
    """The anatomy table's similarity on the prior's scale.

    The raw path similarity (0 = no common ancestor in either tree, 1 = same node) is mapped linearly
    onto [``vocab.DEFAULT_SIMILARITY``, 1]: labels with nothing in common get exactly the prior's value
    for pairs it has no reason to call alike, and the same node gets the prior's 1.
    """
    floor = vocab.DEFAULT_SIMILARITY
    return floor + (1.0 - floor) * AnatomyTaxonomy.raw_similarity(a, b)


class AnatomySimilarity(SimilarityBackend):
    """The default backend: anatomy knowledge first, a text encoder only where that runs out.

    For each pair of option texts, the first part that knows both answers:

    1. ``matrix:prior`` (``vocab.class_similarity``) when both are SSG-VQA labels: the same values as
       ``matrix:prior`` itself, so the synthetic benchmark and SSG-VQA files score exactly as under it;
    2. the anatomy table (:func:`table_similarity`) when both have a place in it ("Kidney", "Hepatic cyst",
       "Right Eye", "Ulna.");
    3. the encoder's cosine of the cleaned texts, mapped onto the table's scale by
       :class:`EncoderCalibration` ("Staining artifact.", "Virus particles").

    The encoder and its calibration are built on first need, so files whose options the prior and the
    table cover never load it.
    """

    def __init__(
        self,
        encoder: str | EmbeddingBackend = ANATOMY_ENCODER,
        *,
        taxonomy: AnatomyTaxonomy | None = None,
        spec: str | None = None,
        **encoder_kwargs: Any,
    ) -> None:
        if isinstance(encoder, str):
            kind = encoder.strip().partition(":")[0].lower()
            if kind not in ("minilm", "st"):
                raise ConfigError(
                    f"the anatomy backend falls back to a text encoder (minilm or st:PATH), not {encoder!r}"
                )
            self.encoder_spec = encoder.strip()
            self._encoder: EmbeddingBackend | None = None
        else:
            self.encoder_spec = encoder.spec
            self._encoder = encoder
        self._encoder_kwargs = encoder_kwargs
        self.taxonomy = taxonomy or AnatomyTaxonomy.packaged()
        self.spec = spec or (
            "anatomy" if self.encoder_spec == ANATOMY_ENCODER else f"anatomy:{self.encoder_spec}"
        )
        self._prior_labels = frozenset(vocab.ANATOMY_LABELS)
        self._calibration: EncoderCalibration | None = None

    @property
    def encoder(self) -> EmbeddingBackend:
        """The fallback encoder, loaded on first use (``get_encoder`` shares one per process)."""
        if self._encoder is None:
            self._encoder = get_encoder(self.encoder_spec, **self._encoder_kwargs)
        return self._encoder

    @property
    def calibration(self) -> EncoderCalibration:
        """The encoder-to-table map, fitted on first use (see :class:`EncoderCalibration`)."""
        if self._calibration is None:
            cosine, value = calibration_reference(self.taxonomy, self.encoder)
            probs = np.linspace(0.0, 1.0, CALIBRATION_QUANTILES)
            self._calibration = EncoderCalibration(
                cosine_quantiles=np.quantile(cosine, probs),
                value_quantiles=np.quantile(value, probs),
                n_pairs=len(cosine),
            )
        return self._calibration

    def match(self, text: str) -> LabelMatch:
        """Which part answers for ``text`` (prior, table or encoder), and under which label."""
        cleaned = clean_text(text)
        node = self.taxonomy.resolve(text)
        label = vocab.label_from_display(cleaned)
        if label in self._prior_labels:
            return LabelMatch("prior", label, cleaned, node)
        if node is not None and not node.derived and node.key in self._prior_labels:
            return LabelMatch("prior", node.key, cleaned, node)  # a spelling the table knows: "Gall bladder"
        if node is not None:
            return LabelMatch("table", node.key, cleaned, node)
        return LabelMatch("encoder", cleaned, cleaned, None)

    def similarity_matrix(self, texts: Sequence[str]) -> np.ndarray:
        matches = [self.match(t) for t in texts]
        first: dict[str, LabelMatch] = {}
        for m in matches:
            first.setdefault(f"{m.source}:{m.key}", m)
        uniq = list(first.values())
        pos = {k: i for i, k in enumerate(first)}
        n = len(uniq)
        table = np.eye(n, dtype=np.float64)
        pending: list[tuple[int, int]] = []
        for i in range(n):
            a = uniq[i]
            for j in range(i + 1, n):
                b = uniq[j]
                if a.source == "prior" and b.source == "prior":
                    v = vocab.class_similarity(a.key, b.key)
                elif a.node is not None and b.node is not None:
                    v = table_similarity(a.node, b.node)
                else:
                    pending.append((i, j))
                    continue
                table[i, j] = table[j, i] = v
        if pending:
            emb = self.encoder.embed([m.text or m.key for m in uniq])
            ii = np.array([p[0] for p in pending])
            jj = np.array([p[1] for p in pending])
            cosine = np.clip(np.einsum("ij,ij->i", emb[ii], emb[jj]), -1.0, 1.0)
            table[ii, jj] = table[jj, ii] = self.calibration(cosine.astype(np.float64))
        idx = np.array([pos[f"{m.source}:{m.key}"] for m in matches], dtype=np.int64)
        return table[np.ix_(idx, idx)].astype(np.float32)
