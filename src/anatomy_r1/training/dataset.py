"""Turning canonical records into the ``datasets.Dataset`` TRL's trainers consume.

Images are decoded on fetch through ``set_transform`` rather than stored in Arrow: the data stays a
list of paths, a per-process cache keeps each frame decoded once, and the same fetch path is where a
group member can be handed a different wording of its question (GDQA) without copying the dataset.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anatomy_r1.data.io import read_records, resolve_image
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import DataError
from anatomy_r1.training.prompts import build_messages, format_target, render_prompt, user_turn


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


def load_records(path: str, limit: int | None = None) -> list[Record]:
    records = read_records(path)
    return records[:limit] if limit else records


def default_image_root(data_path: str, image_root: str | None) -> str:
    """Image paths in a data file are relative to ``image_root``, or else to the file's own folder."""
    return image_root if image_root is not None else str(Path(data_path).resolve().parent)


def _row(rec: Record, template: str) -> dict[str, Any]:
    return {
        "id": rec.id,
        "prompt_text": render_prompt(rec, template),
        "image_paths": list(rec.images),
        "options": list(rec.options),
        "answer_index": rec.answer_index,
        "anatomy_class": str(rec.meta.get("anatomy_class", "unknown")),
        "s_q": float(rec.meta.get("s_q", float("nan"))),
    }


def build_rl_dataset(records: list[Record], template: str, image_root: str | None) -> Any:
    """Dataset with the columns GRPO reward functions read and a transform adding ``prompt``/``images``."""
    import datasets

    rows = [_row(r, template) for r in records]
    ds = datasets.Dataset.from_list(rows)
    cache = ImageCache(image_root)
    ds.set_transform(rl_transform(cache, template))
    return ds


def rl_transform(cache: ImageCache, template: str) -> Callable[[dict[str, list[Any]]], dict[str, list[Any]]]:
    def transform(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out = dict(batch)
        out["prompt"] = [
            user_turn(t, len(paths), template)
            for t, paths in zip(batch["prompt_text"], batch["image_paths"], strict=True)
        ]
        out["images"] = [
            [cache.load(p, f"item {i!r}") for p in paths]
            for i, paths in zip(batch["id"], batch["image_paths"], strict=True)
        ]
        return out

    return transform


def build_sft_dataset(records: list[Record], template: str, image_root: str | None) -> Any:
    """Prompt/completion pairs for TRL's SFTTrainer; targets come from ``meta['rationale']`` when present."""
    import datasets

    cache = ImageCache(image_root)
    rows = []
    for r in records:
        rows.append(
            {
                "prompt": json.dumps(build_messages(r, template)),
                "completion": format_target(r.answer_letter, r.meta.get("rationale"), template, r.answer),
                "image_paths": list(r.images),
                "id": r.id,
            }
        )
    ds = datasets.Dataset.from_list(rows)

    def transform(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {
            "prompt": [json.loads(p) for p in batch["prompt"]],
            "completion": [
                [{"role": "assistant", "content": [{"type": "text", "text": c}]}] for c in batch["completion"]
            ],
            "images": [
                [cache.load(p, f"item {i!r}") for p in paths]
                for i, paths in zip(batch["id"], batch["image_paths"], strict=True)
            ],
        }

    ds.set_transform(transform)
    return ds
