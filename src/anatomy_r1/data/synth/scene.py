"""Scene graphs of the synthetic benchmark: which objects a frame holds, where, and how they relate.

A frame is a 3x3 grid (SSG-VQA's position vocabulary) with at most one object per cell, so "the anatomy
at the top-mid" always names exactly one object and a question's answer can be checked against the graph
alone. Spatial relations follow the grid (``left`` means a smaller column, ``above`` a smaller row);
``within`` follows SSG-VQA's use of the word for an instrument and an anatomy that overlap: an instrument
whose tip reaches into a neighbouring anatomy region is "within" that region and vice versa.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from anatomy_r1.data.vocab import POSITIONS

INSTRUMENTS: tuple[str, ...] = ("bipolar", "clipper", "grasper", "hook", "irrigator", "scissors")
"""Instruments the renderer can draw (SSG-VQA's, less the specimen bag, which is not a thin tool)."""

INSTRUMENT_COLOR = "silver"
WITHIN_PROBABILITY = 0.6
"""Chance that an instrument next to an anatomy region reaches into it (a ``within`` relation)."""


def cell_of(position: str) -> tuple[int, int]:
    """``(row, column)`` of a position name; ``"top-left"`` is ``(0, 0)``."""
    i = POSITIONS.index(position)
    return divmod(i, 3)


@dataclass(frozen=True)
class SceneObject:
    """One object in one grid cell. ``color`` is the colour *name* questions use for it."""

    id: int
    label: str
    kind: str  # "anatomy" | "instrument"
    color: str
    position: str

    @property
    def cell(self) -> tuple[int, int]:
        return cell_of(self.position)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "kind": self.kind,
            "color": self.color,
            "position": self.position,
        }


@dataclass(frozen=True)
class Scene:
    """A frame's scene graph; ``within`` holds ``(instrument_id, anatomy_id)`` pairs."""

    scene_id: str
    split: str
    video: str
    frame: int
    image: str
    objects: tuple[SceneObject, ...]
    within: tuple[tuple[int, int], ...] = ()

    @property
    def anatomy(self) -> list[SceneObject]:
        return [o for o in self.objects if o.kind == "anatomy"]

    @property
    def instruments(self) -> list[SceneObject]:
        return [o for o in self.objects if o.kind == "instrument"]

    def by_label(self, label: str) -> SceneObject | None:
        """The object with ``label``; labels are unique within a scene."""
        return next((o for o in self.objects if o.label == label), None)

    def at(self, position: str) -> SceneObject | None:
        return next((o for o in self.objects if o.position == position), None)

    def holds(self, subject: SceneObject, relation: str, reference: SceneObject) -> bool:
        """Whether "``subject`` is ``relation`` ``reference``" is true in this frame."""
        if subject.id == reference.id:
            return False
        (rs, cs), (rr, cr) = subject.cell, reference.cell
        if relation == "left":
            return cs < cr
        if relation == "right":
            return cs > cr
        if relation == "above":
            return rs < rr
        if relation == "below":
            return rs > rr
        if relation == "within":
            pair = {subject.id, reference.id}
            return any(pair == {a, b} for a, b in self.within)
        raise ValueError(f"unknown relation {relation!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "scene_id": self.scene_id,
            "split": self.split,
            "video": self.video,
            "frame": self.frame,
            "image": self.image,
            "objects": [o.to_dict() for o in self.objects],
            "within": [list(p) for p in self.within],
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Scene:
        return cls(
            scene_id=obj["scene_id"],
            split=obj["split"],
            video=obj["video"],
            frame=int(obj["frame"]),
            image=obj["image"],
            objects=tuple(SceneObject(**o) for o in obj["objects"]),
            within=tuple((int(a), int(b)) for a, b in obj["within"]),
        )


def _adjacent(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a != b and abs(a[0] - b[0]) <= 1 and abs(a[1] - b[1]) <= 1


def sample_scene(
    rng: random.Random,
    *,
    classes: Sequence[str],
    color_of: Callable[[str, random.Random], str],
    scene_id: str,
    split: str,
    video: str,
    frame: int,
    image: str,
) -> Scene:
    """Draw a scene: 2-4 distinct anatomy classes and 1-2 distinct instruments in distinct cells.

    Classes are drawn uniformly, so every class is asked about about equally often. Labels are unique
    within a scene, which is what lets relational questions name their reference objects by label. Each
    region's colour word comes from ``color_of(label, rng)``: the appearance model's draw for its class.
    """
    n_anatomy = rng.randint(2, min(4, len(classes)))
    n_instruments = rng.randint(1, 2)
    cells = rng.sample(POSITIONS, n_anatomy + n_instruments)
    labels = rng.sample(sorted(classes), n_anatomy)
    tools = rng.sample(INSTRUMENTS, n_instruments)
    objects: list[SceneObject] = []
    for i, (label, pos) in enumerate(zip(labels, cells[:n_anatomy], strict=True)):
        objects.append(SceneObject(i, label, "anatomy", color_of(label, rng), pos))
    for j, (tool, pos) in enumerate(zip(tools, cells[n_anatomy:], strict=True)):
        objects.append(SceneObject(n_anatomy + j, tool, "instrument", INSTRUMENT_COLOR, pos))
    within: list[tuple[int, int]] = []
    taken: set[int] = set()
    for inst in objects[n_anatomy:]:
        near = [a for a in objects[:n_anatomy] if _adjacent(a.cell, inst.cell) and a.id not in taken]
        if near and rng.random() < WITHIN_PROBABILITY:
            target = rng.choice(near)
            taken.add(target.id)
            within.append((inst.id, target.id))
    return Scene(scene_id, split, video, frame, image, tuple(objects), tuple(within))
