"""Re-referring variants: the same target object named by another path through the frame's scene graph.

A rewording that keeps the referring path ("the red anatomy at the bottom-mid" -> "the bottom-mid anatomy
that is red") leaves the reasoning the same, so a group whose members all fail on the original fails on
the rewording too. Naming the target another way (by its position instead of its colour, by a relation to
an instrument, by colour alone) makes the model look somewhere else first: a different reasoning path to
the same answer, which is what GDQA needs to break an all-wrong group.

A variant is only offered when the frame's graph *proves* that its description picks out exactly the
target: the target must satisfy it, and every other anatomy object in the frame must be known not to.
Two sources of graphs:

* the synthetic benchmark writes every frame's full scene graph (``scenes/<split>.jsonl`` next to the
  records; records carry ``meta.scene_id``), so every fact is known;
* the SSG-VQA converter stores, per record, the facts that the *other* question lines of the same frame
  state (``meta.scene_facts``: the anatomy present, and each one's position and colour where a line says
  it). Relations are not derived for SSG-VQA (its relations come from box geometry we do not have), and an
  object whose colour or position no line states rules out descriptions by that attribute.

Records with neither (free-form OmniMedVQA questions, say) get no re-referring variants, and the composite
generator falls back to its other kinds.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anatomy_r1.augment.variants import VariantError, make_variant, normalize_question
from anatomy_r1.data.io import iter_jsonl
from anatomy_r1.data.question_templates import (
    QuestionStructure,
    parse_question,
    render_question,
    template_ids,
)
from anatomy_r1.data.schema import Record
from anatomy_r1.data.synth.scene import Scene
from anatomy_r1.errors import DataError

RELATION_NAMES: tuple[str, ...] = ("left", "right", "above", "below", "within")


@dataclass(frozen=True)
class GraphObject:
    """An object of a frame; ``None`` marks an attribute no source states."""

    label: str
    kind: str  # "anatomy" | "instrument"
    position: str | None
    color: str | None


@dataclass(frozen=True)
class FrameGraph:
    """What is known about one frame.

    ``relations`` holds every true ``(subject, relation, reference)`` label triple when relations are
    known (a full scene graph) and is ``None`` when they are not, in which case no description may use one.
    """

    objects: tuple[GraphObject, ...]
    relations: frozenset[tuple[str, str, str]] | None = None

    @property
    def anatomy(self) -> list[GraphObject]:
        return [o for o in self.objects if o.kind == "anatomy"]

    def get(self, label: str) -> GraphObject | None:
        return next((o for o in self.objects if o.label == label), None)

    @classmethod
    def from_scene(cls, scene: Scene) -> FrameGraph:
        objs = tuple(GraphObject(o.label, o.kind, o.position, o.color) for o in scene.objects)
        rels = frozenset(
            (s.label, rel, r.label)
            for s in scene.objects
            for r in scene.objects
            for rel in RELATION_NAMES
            if scene.holds(s, rel, r)
        )
        return cls(objs, rels)

    @classmethod
    def from_facts(cls, facts: Mapping[str, Any]) -> FrameGraph:
        """From a record's ``meta.scene_facts`` (:func:`anatomy_r1.data.converters.ssgvqa.frame_facts`)."""
        known = facts.get("objects") or {}
        objs = []
        for label in facts.get("anatomy") or ():
            attrs = known.get(label) or {}
            objs.append(GraphObject(str(label), "anatomy", attrs.get("position"), attrs.get("color")))
        return cls(tuple(objs), None)


def _satisfies(graph: FrameGraph, obj: GraphObject, s: QuestionStructure) -> bool | None:
    """Whether ``obj`` fits the description ``s``: True, False, or None when the graph cannot tell."""
    unknown = False
    for want, have in ((s.position, obj.position), (s.color, obj.color)):
        if want is None:
            continue
        if have is None:
            unknown = True
        elif have != want:
            return False
    for rel, ref_label, ref_kind in s.relations:
        ref = graph.get(ref_label)
        if graph.relations is None:
            unknown = True
        elif ref is None or ref.kind != ref_kind or (obj.label, rel, ref_label) not in graph.relations:
            return False
    return None if unknown else True


def singles_out(graph: FrameGraph, structure: QuestionStructure, target: str) -> bool:
    """Whether the graph proves that ``structure`` describes exactly the anatomy object ``target``."""
    found = False
    for obj in graph.anatomy:
        fit = _satisfies(graph, obj, structure)
        if obj.label == target:
            if fit is not True:
                return False
            found = True
        elif fit is not False:
            return False
    return found


def check_reference(graph: FrameGraph, structure: QuestionStructure, target: str, where: str) -> None:
    """Raise :class:`VariantError` unless ``structure`` singles out ``target`` in ``graph``."""
    if not singles_out(graph, structure, target):
        raise VariantError(f"{where}: the description {structure.to_dict()} does not single out {target!r}")


def descriptions(graph: FrameGraph, target: str) -> list[QuestionStructure]:
    """Every description of ``target`` the graph can prove unique: by position, colour, both, one relation."""
    obj = graph.get(target)
    if obj is None or obj.kind != "anatomy":
        return []
    cands: list[QuestionStructure] = []
    if obj.position is not None:
        cands.append(QuestionStructure("zero_hop", position=obj.position))
    if obj.color is not None:
        cands.append(QuestionStructure("attribute", color=obj.color))
        if obj.position is not None:
            cands.append(QuestionStructure("attribute", position=obj.position, color=obj.color))
    if graph.relations is not None:
        for subj, rel, ref in sorted(graph.relations):
            if subj == target:
                ref_obj = graph.get(ref)
                if ref_obj is not None:
                    cands.append(QuestionStructure("one_hop", relations=((rel, ref, ref_obj.kind),)))
    return [s for s in cands if singles_out(graph, s, target)]


def _referring_path(s: QuestionStructure) -> tuple[Any, ...]:
    """What a description uses to find its object; two wordings of one path are the same path."""
    return (s.position is not None, s.color is not None, tuple(sorted((r, lab) for r, lab, _ in s.relations)))


def scene_folder(data_file: str | Path) -> Path:
    """Where the scene graphs of a records file are read from (and named in messages when absent)."""
    return Path(data_file).expanduser().parent / "scenes"


class SceneIndex:
    """Frame graphs by record: synthetic scene graphs by ``meta.scene_id``, SSG-VQA ``meta.scene_facts``."""

    def __init__(self, scenes: Mapping[str, Scene] | None = None) -> None:
        self.scenes = dict(scenes or {})
        self._graphs: dict[str, FrameGraph] = {}

    @classmethod
    def for_data(cls, data_files: Iterable[str | Path]) -> SceneIndex:
        """The scene graphs written next to each records file (``<folder>/scenes/*.jsonl``), if any."""
        scenes: dict[str, Scene] = {}
        for f in data_files:
            folder = scene_folder(f)
            if folder.is_dir():
                for path in sorted(folder.glob("*.jsonl")):
                    scenes.update(read_scenes(path))
        return cls(scenes)

    def graph(self, record: Record) -> FrameGraph | None:
        facts = record.meta.get("scene_facts")
        if isinstance(facts, Mapping):
            key = f"facts:{record.id}"
            hit = self._graphs.get(key)
            if hit is None:
                hit = self._graphs[key] = FrameGraph.from_facts(facts)
            return hit
        sid = record.meta.get("scene_id")
        if isinstance(sid, str) and sid in self.scenes:
            hit = self._graphs.get(sid)
            if hit is None:
                hit = self._graphs[sid] = FrameGraph.from_scene(self.scenes[sid])
            return hit
        return None


def read_scenes(path: Path) -> dict[str, Scene]:
    """Scene graphs of one ``scenes/<split>.jsonl`` file; a bad line is an error naming file and line."""
    out: dict[str, Scene] = {}
    for n, obj in iter_jsonl(path):
        try:
            scene = Scene.from_dict(obj)
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{path}:{n}: not a scene graph ({type(e).__name__}: {e})") from None
        out[scene.scene_id] = scene
    return out


class ReReferrer:
    """Variants that name the record's target by another referring path (see the module docstring)."""

    name = "rerefer"

    def __init__(self, scenes: SceneIndex | None = None) -> None:
        self.scenes = scenes or SceneIndex()

    @staticmethod
    def _structure(record: Record) -> QuestionStructure | None:
        raw = record.meta.get("structure")
        if isinstance(raw, dict):
            try:
                return QuestionStructure.from_dict(raw)
            except (KeyError, TypeError, ValueError):
                pass
        parsed = parse_question(record.question)
        return None if parsed is None else parsed[0]

    def rereferences(self, record: Record, n: int, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``n`` ``(question, meta updates)`` naming the target by a new path, each one proven."""
        if n <= 0:
            return []
        graph = self.scenes.graph(record)
        target = record.meta.get("anatomy_class", record.answer)
        original = self._structure(record)
        if graph is None or original is None or not isinstance(target, str):
            return []
        path = _referring_path(original)
        cands = [s for s in descriptions(graph, target) if _referring_path(s) != path]
        rng.shuffle(cands)
        seen = {normalize_question(record.question)}
        out: list[tuple[str, dict[str, Any]]] = []
        for s in cands:
            if len(out) >= n:
                break
            tid = rng.choice(template_ids(s))
            text = render_question(s, tid)
            if normalize_question(text) in seen:
                continue
            check_reference(graph, s, target, f"re-referring variant of {record.id!r}")
            seen.add(normalize_question(text))
            out.append((text, {"structure": s.to_dict(), "template_id": tid, "template_family": s.family}))
        return out

    def variants(self, record: Record, n: int, rng: random.Random) -> list[Record]:
        return [
            make_variant(record, k, self.name, question=text, meta_updates=meta)
            for k, (text, meta) in enumerate(self.rereferences(record, n, rng), start=1)
        ]
