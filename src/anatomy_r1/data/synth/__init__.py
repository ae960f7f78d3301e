"""A small, deterministic, cholecystectomy-like anatomy VQA benchmark with known answers.

Real SGG-VQA frames cannot be shipped, and a quick end-to-end run needs data whose difficulty is known:
here, how hard it is to tell two classes apart follows the same similarity prior the curriculum uses
(``matrix:prior``), and every anatomy question records its oracle accuracy, the best any reader of the
frame can do with the options it offers (see :mod:`anatomy_r1.data.synth.appearance`). Layout of ``out_dir``::

    train.jsonl val.jsonl test.jsonl perception.jsonl   canonical records
    scenes/<split>.jsonl                                one scene graph per frame
    images/<split>/s000123.png                          frames

Image paths in records are relative to ``out_dir``: pass ``--image-root out_dir`` to resolve them.
The same seed and arguments give byte-identical files.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anatomy_r1.data.answer_options import DistractorStrategy, RandomDistractors
from anatomy_r1.data.io import atomic_writer, write_records
from anatomy_r1.data.schema import Record, make_record
from anatomy_r1.data.synth.appearance import AppearanceModel, appearance_model
from anatomy_r1.data.synth.questions import Question, anatomy_questions, perception_questions
from anatomy_r1.data.synth.render import png_bytes, render_scene
from anatomy_r1.data.synth.scene import INSTRUMENT_COLOR, Scene, sample_scene
from anatomy_r1.data.vocab import ANATOMY_LABELS, SYNTH_CLASSES, display_name, label_from_display
from anatomy_r1.errors import ConfigError

__all__ = ["SPLITS", "generate_benchmark"]

SPLITS: tuple[str, ...] = ("train", "val", "test", "perception")
FRAMES_PER_VIDEO = 25
N_OPTIONS = 4
MIN_IMAGE_SIZE = 24


def _seed_int(seed: int) -> int:
    """Non-negative form of ``seed`` for numpy's seed sequences (which refuse negative numbers)."""
    return seed % (1 << 63)


def _scene_questions(
    split: str,
    n_questions: int,
    *,
    seed: int,
    classes: tuple[str, ...],
    appearance: AppearanceModel,
    perception_colors: list[str],
) -> tuple[list[Scene], list[tuple[Scene, int, Question]]]:
    """Draw scenes for one split until ``n_questions`` questions exist (1-3 per scene).

    Each scene has its own generator seeded by ``(seed, split, index)``, so a scene does not depend on
    how many questions earlier scenes happened to yield beyond its index.
    """
    scenes: list[Scene] = []
    items: list[tuple[Scene, int, Question]] = []
    idx = 0
    while len(items) < n_questions:
        rng = random.Random(f"anatomy-r1-synth:{seed}:{split}:{idx}")
        scene = sample_scene(
            rng,
            classes=classes,
            color_of=appearance.sample_word,
            scene_id=f"{split}-{idx:06d}",
            split=split,
            video=f"synth-{split}-v{idx // FRAMES_PER_VIDEO:04d}",
            frame=idx % FRAMES_PER_VIDEO,
            image=f"images/{split}/s{idx:06d}.png",
        )
        k = min(rng.randint(1, 3), n_questions - len(items))
        if split == "perception":
            qs = perception_questions(scene, rng, k, perception_colors)
        else:
            qs = anatomy_questions(scene, rng, k)
        idx += 1
        if not qs:
            continue
        scenes.append(scene)
        items.extend((scene, q_idx, q) for q_idx, q in enumerate(qs))
    return scenes, items


def _records(
    split: str,
    items: list[tuple[Scene, int, Question]],
    *,
    seed: int,
    classes: tuple[str, ...],
    strategy: DistractorStrategy,
    appearance: AppearanceModel,
) -> list[Record]:
    """Lay out options with a balanced answer position (each letter gets n/4 answers, +-1)."""
    positions = [i % N_OPTIONS for i in range(len(items))]
    random.Random(f"anatomy-r1-synth:{seed}:{split}:letters").shuffle(positions)
    records = []
    for (scene, q_idx, q), answer_pos in zip(items, positions, strict=True):
        num = scene.scene_id.rsplit("-", 1)[1]
        rid = f"synth-{split}-{num}-q{q_idx}"
        rng = random.Random(f"anatomy-r1-synth:{seed}:{rid}")
        if q.distractor_pool is None:
            wrong = [display_name(x) for x in strategy.choose(q.answer, classes, N_OPTIONS - 1, rng)]
            answer = display_name(q.answer)
        else:
            wrong = rng.sample(q.distractor_pool, N_OPTIONS - 1)
            answer = q.answer
        rng.shuffle(wrong)
        options = [*wrong[:answer_pos], answer, *wrong[answer_pos:]]
        meta: dict[str, Any] = {
            **q.meta,
            "question_type": q.question_type,
            "rationale": q.rationale,
            "scene_id": scene.scene_id,
            "video": scene.video,
            "frame": scene.frame,
            "split": split,
        }
        if q.observation is not None:
            meta["observation"] = q.observation
        if q.distractor_pool is None:
            meta["distractors"] = strategy.name
            labels = [label_from_display(o) for o in options]
            target = scene.by_label(q.answer)
            assert target is not None
            meta["oracle_accuracy"] = round(appearance.oracle_accuracy(q.answer, labels), 6)
            meta["oracle_correct"] = round(appearance.oracle_correct(target.color, q.answer, labels), 6)
        records.append(
            make_record(
                id=rid,
                images=[scene.image],
                question=q.text,
                options=options,
                answer_index=answer_pos,
                source="synth",
                meta=meta,
                where=f"synthetic {split}",
            )
        )
    return records


def _check_args(counts: dict[str, int], image_size: int, classes: tuple[str, ...]) -> None:
    for split, n in counts.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"n_{split} must be a non-negative integer, got {n!r}")
    if image_size < MIN_IMAGE_SIZE:
        raise ConfigError(f"image_size must be at least {MIN_IMAGE_SIZE} px, got {image_size}")
    unknown = [c for c in classes if c not in ANATOMY_LABELS]
    if unknown:
        raise ConfigError(f"unknown anatomy class(es) {unknown}; expected labels from {ANATOMY_LABELS}")
    if len(classes) < N_OPTIONS:
        raise ConfigError(f"need at least {N_OPTIONS} distinct classes for 4-option questions, got {classes}")


def generate_benchmark(
    out_dir: str | Path,
    *,
    seed: int,
    n_train: int = 2000,
    n_val: int = 200,
    n_test: int = 600,
    n_perception: int = 2000,
    image_size: int = 112,
    classes: Sequence[str] = SYNTH_CLASSES,
    distractors: DistractorStrategy | None = None,
) -> dict[str, int]:
    """Write the benchmark to ``out_dir``; returns the number of questions written per split.

    ``n_*`` count questions, not frames (a frame carries 1-3). Splits never share a frame. Anatomy
    questions draw 3 wrong answers from ``classes`` with ``distractors`` (default: uniformly random);
    perception questions (colour, position, count) name no anatomy class at all.
    """
    out = Path(out_dir)
    counts = {"train": n_train, "val": n_val, "test": n_test, "perception": n_perception}
    class_set = tuple(sorted(set(classes)))
    _check_args(counts, image_size, class_set)
    strategy = distractors if distractors is not None else RandomDistractors()
    appearance = appearance_model(class_set)
    perception_colors = sorted({*appearance.words, INSTRUMENT_COLOR})

    summary: dict[str, int] = {}
    for split_index, split in enumerate(SPLITS):
        scenes, items = _scene_questions(
            split,
            counts[split],
            seed=seed,
            classes=class_set,
            appearance=appearance,
            perception_colors=perception_colors,
        )
        for scene in scenes:
            num = int(scene.scene_id.rsplit("-", 1)[1])
            rng = np.random.default_rng([_seed_int(seed), split_index, num])
            path = out / scene.image
            path.parent.mkdir(parents=True, exist_ok=True)
            # Plain writes: frames come first and records last, so a record never names an unwritten frame.
            path.write_bytes(png_bytes(render_scene(scene, image_size, rng)))
        with atomic_writer(out / "scenes" / f"{split}.jsonl") as fh:
            for scene in scenes:
                fh.write(json.dumps(scene.to_dict(), sort_keys=True, separators=(",", ":")) + "\n")
        records = _records(
            split, items, seed=seed, classes=class_set, strategy=strategy, appearance=appearance
        )
        summary[split] = write_records(out / f"{split}.jsonl", records, allow_empty=True)
    return summary
