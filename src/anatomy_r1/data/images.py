"""Decoded frames for prompts, shared by training (the dataset transform) and evaluation (generation).

A frame is decoded only when an item that shows it is fetched, and kept in a per-process cache bounded in
bytes, least recently used first out. The bound, not the number of distinct frames in the data, sets how
much memory the frames take: a training rank or an evaluation process holds at most ``max_bytes`` of
cached frames, plus the frames the batch in flight is using.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

from anatomy_r1.data.io import resolve_image
from anatomy_r1.errors import DataError

DEFAULT_IMAGE_CACHE_MB = 128
"""Default cache bound per process (``data.image_cache_mb``): about 80 CholecT45 frames (854x480, 1.6 MB
each as Pillow stores them), or a few thousand of the synthetic benchmark's 112-px frames. That covers the
repeated fetches of one generation batch (its prompts are fetched ``num_generations`` times each, and the
whole block again per ``steps_per_generation``); re-decoding a PNG costs milliseconds against the seconds
a generation step takes, so a larger cache buys little."""

_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2}
"""Bytes Pillow stores per pixel for the narrow modes; every other mode (RGB included) uses 4."""


def decoded_bytes(img: Any) -> int:
    """Memory a decoded Pillow image holds: Pillow stores an RGB pixel in 4 bytes, not 3."""
    return int(img.width) * int(img.height) * _BYTES_PER_PIXEL.get(img.mode, 4)


def decode_rgb(full: str | os.PathLike[str], where: str) -> Any:
    """Fully decode one image file to RGB, or raise a ``DataError`` naming ``where`` and the file.

    ``convert`` forces the whole pixel stream to be read, so a truncated or corrupt file fails here, not
    later inside the processor.
    """
    from PIL import Image

    try:
        with Image.open(full) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"{where}: image not found: {full}") from None
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, EOFError, ... for a bad file
        raise DataError(f"{where}: cannot decode image {full}: {str(e) or type(e).__name__}") from None


def decode_problem(full: str) -> str | None:
    """Why ``full`` cannot be decoded the way training and evaluation decode it, or None if it can.

    A module-level function of a path, so a process pool can run it (``data validate --workers``).
    """
    try:
        decode_rgb(full, "").close()
    except DataError as e:
        return str(e).removeprefix(": ")
    return None


class ImageCache:
    """Decoded RGB frames keyed by resolved path, evicted least recently used past ``max_bytes``.

    ``max_bytes=0`` disables caching (every fetch decodes). A frame larger than the whole bound is
    returned but not kept. The bound is per process: each training rank and each dataloader worker has its
    own cache.
    """

    def __init__(
        self,
        image_root: str | os.PathLike[str] | None,
        max_bytes: int = DEFAULT_IMAGE_CACHE_MB * 2**20,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.image_root = image_root
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._cache: OrderedDict[str, tuple[Any, int]] = OrderedDict()

    @classmethod
    def from_mb(cls, image_root: str | os.PathLike[str] | None, cache_mb: int | None) -> ImageCache:
        """A cache bounded at ``cache_mb`` MiB (``None``: the default), the unit configs use."""
        mb = DEFAULT_IMAGE_CACHE_MB if cache_mb is None else cache_mb
        return cls(image_root, max_bytes=int(mb) * 2**20)

    def __len__(self) -> int:
        return len(self._cache)

    def __contains__(self, path: str) -> bool:
        return str(resolve_image(path, self.image_root)) in self._cache

    def load(self, path: str, where: str) -> Any:
        full = resolve_image(path, self.image_root)
        key = str(full)
        entry = self._cache.get(key)
        if entry is not None:
            self._cache.move_to_end(key)
            self.hits += 1
            return entry[0]
        self.misses += 1
        img = decode_rgb(full, where)
        size = decoded_bytes(img)
        if size <= self.max_bytes:
            self._cache[key] = (img, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (_, old) = self._cache.popitem(last=False)
                self.nbytes -= old
        return img


def default_image_root(data_path: str, image_root: str | None) -> str:
    """Image paths in a data file are relative to ``image_root``, or else to the file's own folder."""
    return image_root if image_root is not None else str(Path(data_path).resolve().parent)
