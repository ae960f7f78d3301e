"""Decoded frames for prompts, shared by training (the dataset transform) and evaluation (generation)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from anatomy_r1.data.io import resolve_image
from anatomy_r1.errors import DataError


class ImageCache:
    """Decoded RGB frames keyed by resolved path; frames are small and re-read every epoch otherwise."""

    def __init__(self, image_root: str | os.PathLike[str] | None, max_items: int = 50_000) -> None:
        self.image_root = image_root
        self.max_items = max_items
        self._cache: dict[str, Any] = {}

    def load(self, path: str, where: str) -> Any:
        from PIL import Image

        full = resolve_image(path, self.image_root)
        key = str(full)
        img = self._cache.get(key)
        if img is None:
            try:
                with Image.open(full) as im:
                    img = im.convert("RGB")
            except FileNotFoundError:
                raise DataError(f"{where}: image not found: {full}") from None
            except OSError as e:
                raise DataError(f"{where}: cannot read image {full}: {e}") from None
            if len(self._cache) < self.max_items:
                self._cache[key] = img
        return img


def default_image_root(data_path: str, image_root: str | None) -> str:
    """Image paths in a data file are relative to ``image_root``, or else to the file's own folder."""
    return image_root if image_root is not None else str(Path(data_path).resolve().parent)
