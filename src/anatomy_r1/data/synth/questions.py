"""Questions about synthetic scenes: anatomy questions with a unique answer, and perception questions.

Anatomy questions are :class:`~anatomy_r1.data.question_templates.QuestionStructure` objects rendered
through the shared question templates, so synthetic and (parsed) real questions use one vocabulary
of structures and wordings. A structure is only asked when exactly one anatomy object in the scene
satisfies it, which :func:`matching_anatomy` re-derives from the scene graph (tests use it to check
every answer).

Perception questions ask about colour, position and counts without naming any anatomy class, so a model
can learn the answer format and to look at the picture before it learns anatomy.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from anatomy_r1.data.question_templates import QuestionStructure, render_question, template_ids
from anatomy_r1.data.synth.scene import Scene, SceneObject
from anatomy_r1.data.vocab import POSITIONS, display_name

FAMILY_WEIGHTS: dict[str, float] = {"zero_hop": 0.05, "attribute": 0.90, "one_hop": 0.03, "two_hop": 0.02}
"""Mostly questions that name the region's colour: finding the asked region should not be the main source
of error, so that what makes a question hard is telling its answer from the other choices. The tiny
model reads the colour of a region named only by position or relation about one time in three, so those
questions are answered near chance and only blur the premise (docs/results.md, section 0)."""
PERCEPTION_WEIGHTS: dict[str, float] = {
    "perception_color": 0.60,
    "perception_position": 0.25,
    "perception_count": 0.15,
}
"""Reading the colour at a named position is the perception the anatomy questions need most."""
COLOR_ONLY_PROBABILITY = 0.3
"""Share of attribute questions asked by colour alone, where the colour is unique in the scene."""
MODIFIER_PROBABILITY = 0.2
"""Share of relational questions that also name the target's colour (as SSG-VQA often does)."""

_REL_WORDS = {
    "left": "left of",
    "right": "right of",
    "above": "above",
    "below": "below",
    "within": "touched by",
}


@dataclass
class Question:
    """A question before its options are laid out: text, correct answer, candidate wrong answers."""

    family: str
    text: str
    answer: str
    rationale: str
    question_type: str
    observation: str | None = None
    """For anatomy questions: what the target region looks like, without naming its class."""
    meta: dict[str, Any] = field(default_factory=dict)
    distractor_pool: list[str] | None = None
    """For perception questions: the wrong answers to draw from. ``None``: draw anatomy classes."""


def _name(label: str) -> str:
    return display_name(label).lower()


def matching_anatomy(scene: Scene, structure: QuestionStructure) -> list[SceneObject]:
    """Every anatomy object in ``scene`` satisfying ``structure``; a well-posed question has exactly one."""
    out = []
    for obj in scene.anatomy:
        if structure.position is not None and obj.position != structure.position:
            continue
        if structure.color is not None and obj.color != structure.color:
            continue
        ok = True
        for rel, ref_label, ref_kind in structure.relations:
            ref = scene.by_label(ref_label)
            if ref is None or ref.kind != ref_kind or not scene.holds(obj, rel, ref):
                ok = False
                break
        if ok:
            out.append(obj)
    return out


def _unique(scene: Scene, structure: QuestionStructure, target: SceneObject) -> bool:
    return [o.id for o in matching_anatomy(scene, structure)] == [target.id]


def _true_relations(scene: Scene, target: SceneObject) -> list[tuple[str, str, str]]:
    rels = []
    for ref in scene.objects:
        for rel in ("left", "right", "above", "below", "within"):
            if scene.holds(target, rel, ref):
                rels.append((rel, ref.label, ref.kind))
    return rels


def _structure_for(
    scene: Scene, target: SceneObject, family: str, rng: random.Random
) -> QuestionStructure | None:
    """A structure of ``family`` whose only answer in ``scene`` is ``target``, or ``None``."""
    if family == "zero_hop":
        return QuestionStructure("zero_hop", position=target.position)
    if family == "attribute":
        bare = QuestionStructure("attribute", color=target.color)
        if rng.random() < COLOR_ONLY_PROBABILITY and _unique(scene, bare, target):
            return bare
        return QuestionStructure("attribute", position=target.position, color=target.color)
    rels = _true_relations(scene, target)
    if family == "one_hop":
        options = [QuestionStructure("one_hop", relations=(r,)) for r in rels]
        options = [s for s in options if _unique(scene, s, target)]
    else:
        single = {r for r in rels if _unique(scene, QuestionStructure("one_hop", relations=(r,)), target)}
        pairs = [
            QuestionStructure("two_hop", relations=p)
            for p in itertools.permutations(rels, 2)
            if _unique(scene, QuestionStructure("two_hop", relations=p), target)
        ]
        # Prefer pairs where neither relation alone identifies the target: those need both hops.
        needs_both = [s for s in pairs if not (set(s.relations) & single)]
        options = needs_both or pairs
    if not options:
        return None
    chosen = rng.choice(options)
    if rng.random() < MODIFIER_PROBABILITY:
        chosen = QuestionStructure(chosen.family, color=target.color, relations=chosen.relations)
    return chosen


def _rationale(structure: QuestionStructure, target: SceneObject) -> str:
    looks = f"looks like {_name(target.label)}"
    if structure.family == "zero_hop":
        return f"the {target.position} region {looks}"
    if structure.family == "attribute":
        if structure.position is None:
            return f"the only {target.color} region is at the {target.position} and {looks}"
        return f"the {target.color} {target.position} region {looks}"
    parts = " and ".join(f"{_REL_WORDS[r]} the {_name(lab)}" for r, lab, _ in structure.relations)
    return f"the region {parts} is at the {target.position} and {looks}"


def _observation(target: SceneObject) -> str:
    """Where the answer region is and its colour, naming no class: perception without anatomy.

    The tiny base model is warmed up to say this before it answers, so that the step GRPO has to learn,
    from the reward alone, is the anatomy itself (which name goes with which appearance).
    """
    return f"the {target.position} region is {target.color}"


def _dedup_key(structure: QuestionStructure) -> QuestionStructure:
    """A relational question with an added colour is the same question; ask only one of the two."""
    if structure.relations:
        return QuestionStructure(structure.family, relations=structure.relations)
    return structure


def anatomy_questions(scene: Scene, rng: random.Random, n: int) -> list[Question]:
    """Up to ``n`` distinct, uniquely answerable anatomy questions about ``scene``.

    The family is drawn with :data:`FAMILY_WEIGHTS`; when the scene cannot pose it (no relation singles
    out any region), another target is tried and finally a zero-hop question is asked instead.
    """
    families = list(FAMILY_WEIGHTS)
    weights = list(FAMILY_WEIGHTS.values())
    out: list[Question] = []
    seen: set[QuestionStructure] = set()
    for _ in range(n * 4):
        if len(out) >= n:
            break
        family = rng.choices(families, weights)[0]
        targets = scene.anatomy
        rng.shuffle(targets)
        found: tuple[QuestionStructure, SceneObject] | None = None
        for fam in (family, "zero_hop"):
            for target in targets:
                s = _structure_for(scene, target, fam, rng)
                if s is not None and _dedup_key(s) not in seen:
                    found = (s, target)
                    break
            if found:
                break
        if found is None:
            continue
        structure, target = found
        seen.add(_dedup_key(structure))
        tid = rng.choice(template_ids(structure))
        out.append(
            Question(
                family=structure.family,
                text=render_question(structure, tid),
                answer=target.label,
                rationale=_rationale(structure, target),
                question_type="query_type",
                observation=_observation(target),
                meta={
                    "anatomy_class": target.label,
                    "template_family": structure.family,
                    "template_id": tid,
                    "structure": structure.to_dict(),
                },
            )
        )
    return out


# --- perception ---------------------------------------------------------------------------------------


def _perception_color(scene: Scene, rng: random.Random, colors: Sequence[str]) -> Question:
    obj = rng.choice(list(scene.objects))
    if obj.kind == "anatomy" and rng.random() < 0.5:
        text = f"What color is the {obj.position} anatomy?"
    elif obj.kind == "instrument" and rng.random() < 0.5:
        text = f"What color is the {obj.label}?"
    else:
        text = f"What color is the object at the {obj.position}?"
    return Question(
        family="perception_color",
        text=text,
        answer=obj.color,
        rationale=f"the {obj.position} object is {obj.color}",
        question_type="query_color",
        distractor_pool=[c for c in colors if c != obj.color],
    )


def _perception_position(scene: Scene, rng: random.Random) -> Question:
    color_counts: dict[str, int] = {}
    for o in scene.objects:
        color_counts[o.color] = color_counts.get(o.color, 0) + 1
    by_color = [o for o in scene.anatomy if color_counts[o.color] == 1]
    if by_color and rng.random() < 0.5:
        obj = rng.choice(by_color)
        text = f"What is the location of the {obj.color} anatomy?"
        fact = f"the {obj.color} region is at the {obj.position}"
    else:
        obj = rng.choice(scene.instruments)
        text = rng.choice([f"Where is the {obj.label}?", f"What is the location of the {obj.label}?"])
        fact = f"the {obj.label} is at the {obj.position}"
    return Question(
        family="perception_position",
        text=text,
        answer=obj.position,
        rationale=fact,
        question_type="query_location",
        distractor_pool=[p for p in POSITIONS if p != obj.position],
    )


def _perception_count(scene: Scene, rng: random.Random) -> Question:
    if rng.random() < 0.5:
        n, text, what = len(scene.instruments), "How many instruments are there?", "instrument"
    else:
        n, what = len(scene.anatomy), "anatomical structure"
        text = "How many anatomical structures are there?"
    return Question(
        family="perception_count",
        text=text,
        answer=str(n),
        rationale=f"there {'is' if n == 1 else 'are'} {n} {what}{'' if n == 1 else 's'}",
        question_type="count",
        distractor_pool=[str(k) for k in range(1, 5) if k != n],
    )


def perception_questions(scene: Scene, rng: random.Random, n: int, colors: Sequence[str]) -> list[Question]:
    """Up to ``n`` distinct colour/position/count questions about ``scene``, naming no anatomy class."""
    kinds = list(PERCEPTION_WEIGHTS)
    weights = list(PERCEPTION_WEIGHTS.values())
    out: list[Question] = []
    seen: set[str] = set()
    for _ in range(n * 4):
        if len(out) >= n:
            break
        kind = rng.choices(kinds, weights)[0]
        if kind == "perception_color":
            q = _perception_color(scene, rng, colors)
        elif kind == "perception_position":
            q = _perception_position(scene, rng)
        else:
            q = _perception_count(scene, rng)
        if q.text in seen:
            continue
        seen.add(q.text)
        q.meta = {"template_family": q.family}
        out.append(q)
    return out
