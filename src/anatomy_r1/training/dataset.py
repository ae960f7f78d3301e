"""Turning canonical records into the ``datasets.Dataset`` TRL's trainers consume.

Images are decoded on fetch through ``set_transform`` rather than stored in Arrow: the data stays a
list of paths, and a per-process cache bounded in bytes (``data.image_cache_mb``) spares re-decoding the
frames of the batches in flight. Every row carries its question as the dataset has it; a GDQA group
member's other wording is put in by the trainer at its rollout seam
(``AnatomyR1GRPOTrainer._generate_and_score_completions`` asking ``augment.group_policy.GroupPolicy``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from anatomy_r1.data.images import ImageCache
from anatomy_r1.data.io import read_records
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import DataError
from anatomy_r1.task.prompts import build_messages, record_target, render_prompt, user_turn


def load_records(path: str, limit: int | None = None) -> list[Record]:
    records = read_records(path)
    return records[:limit] if limit else records


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


def build_rl_dataset(
    records: list[Record], template: str, image_root: str | None, image_cache_mb: int | None = None
) -> Any:
    """Dataset with the columns GRPO reward functions read and a transform adding ``prompt``/``images``.

    ``image_cache_mb`` bounds the decoded frames each process keeps (default
    :data:`~anatomy_r1.data.images.DEFAULT_IMAGE_CACHE_MB`).
    """
    import datasets

    rows = [_row(r, template) for r in records]
    ds = datasets.Dataset.from_list(rows)
    cache = ImageCache.from_mb(image_root, image_cache_mb)
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

    transform.image_cache = cache  # type: ignore[attr-defined]
    return transform


def image_cache_of(ds: Any) -> ImageCache:
    """The frame cache behind a dataset built here (its bound and counts), for checks and benchmarks."""
    return ds.format["format_kwargs"]["transform"].image_cache  # type: ignore[no-any-return]


def check_first_batch_images(trainer: Any, data_path: str) -> list[str]:
    """Decode the images of the first generation batch a GRPO trainer will draw; returns the item ids.

    Without it a broken frame fails only when its item is fetched: for the first batch, after TRL's
    training loop has set up the optimizer, DeepSpeed and vLLM, and with a message that does not name the
    data file. (Frames further on are what ``anatomy-r1 data validate`` is for: decoding them all here
    would delay every run.) The batch comes from a fresh sampler built by the trainer's own
    ``_get_train_sampler`` (seeded, so it draws what training will draw first), which leaves the one
    training uses untouched. Every process checks the whole global batch, so all processes stop together
    rather than one raising while the others wait in a collective. The frames land in the dataset's cache
    (where they fit), so the first step does not decode them again. On ``--resume`` this is the run's first
    batch, not the one it resumes at.
    """
    import itertools

    ds = trainer.train_dataset
    sampler = trainer._get_train_sampler(ds)
    indices = list(dict.fromkeys(itertools.islice(iter(sampler), trainer.args.generation_batch_size)))
    try:
        rows = ds[indices]
    except DataError as e:
        raise DataError(f"{data_path}: first training batch: {e}") from None
    return list(rows["id"])


def build_sft_dataset(
    records: list[Record], template: str, image_root: str | None, image_cache_mb: int | None = None
) -> Any:
    """Prompt/completion pairs for TRL's SFTTrainer; targets come from ``meta['rationale']`` when present."""
    import datasets

    cache = ImageCache.from_mb(image_root, image_cache_mb)
    rows = []
    for r in records:
        rows.append(
            {
                "prompt": json.dumps(build_messages(r, template)),
                "completion": record_target(r, template),
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

    transform.image_cache = cache  # type: ignore[attr-defined]
    ds.set_transform(transform)
    return ds
