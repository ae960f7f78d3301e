"""SSG-VQA-style anatomy question templates, kept as data, with a renderer and a parser.

A question is a :class:`QuestionStructure` (what is asked: which family, which position/colour filters on
the target, which relations to which reference objects) rendered through one of several wordings. Keeping
the two apart lets question augmentation re-word a question without changing what it asks, and lets a
parsed real question be re-rendered with a different wording.

The wordings mirror SSG-VQA's, including its quirks (``" ?"`` after "frame", "a anatomy", labels written
with underscores such as ``cystic_plate``), so a model trained on synthetic questions sees the real
phrasing.

Template mini-language (placeholders in a pattern):

* ``{pos}`` / ``{color}``: the target's position / colour, both required by the template;
* ``{mods}``: optional target modifiers, rendered ``"<color> <position> "`` (either part may be absent);
* ``{relN}``, ``{relN_to}``, ``{relN_side}``: relation ``N`` (1-based) worded bare ("left of", "above"),
  "to the left of" or "on the left side of"; the last two exist only for left/right, so a template using
  them cannot express a vertical or ``within`` relation there;
* ``{refN}``: the reference label of relation ``N``; ``{nounN}``: "anatomy" or "instrument" by its kind.

A template without ``{pos}``/``{mods}`` requires ``position is None`` (likewise for colour), so for each
structure the applicable templates render pairwise-different strings and parsing is unambiguous.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from anatomy_r1.data.vocab import ANATOMY_LABELS, INSTRUMENT_LABELS, POSITIONS, RELATIONS

FAMILIES: tuple[str, ...] = ("zero_hop", "attribute", "one_hop", "two_hop")
REFERENCE_KINDS: tuple[str, ...] = ("anatomy", "instrument")
COLOR_NAMES: tuple[str, ...] = (
    "red",
    "brown",
    "yellow",
    "white",
    "silver",
    "pink",
    "orange",
    "purple",
    "green",
    "blue",
    "grey",
    "black",
    "cyan",
    "lime",
    "navy",
    "magenta",
)
"""Colour words a question may use; SSG-VQA itself uses red, brown, yellow, white and silver (the synthetic
world's palette adds the rest)."""

_N_RELATIONS = {"zero_hop": 0, "attribute": 0, "one_hop": 1, "two_hop": 2}
_HORIZONTAL = ("left", "right")


@dataclass(frozen=True)
class QuestionStructure:
    """What an anatomy question asks, independent of its wording.

    ``relations`` holds ``(relation, reference_label, reference_kind)`` triples, read as "the target is
    <relation> the reference". Construction validates the fields so an invalid structure fails where it is
    built rather than when it is rendered.
    """

    family: str
    target: str = "anatomy"
    position: str | None = None
    color: str | None = None
    relations: tuple[tuple[str, str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown question family {self.family!r}; expected one of {FAMILIES}")
        if self.target != "anatomy":
            raise ValueError(f"target must be 'anatomy', got {self.target!r}")
        if self.position is not None and self.position not in POSITIONS:
            raise ValueError(f"unknown position {self.position!r}")
        if self.color is not None and self.color not in COLOR_NAMES:
            raise ValueError(f"unknown colour {self.color!r}")
        rels = tuple(tuple(r) for r in self.relations)
        object.__setattr__(self, "relations", rels)
        if len(rels) != _N_RELATIONS[self.family]:
            raise ValueError(f"{self.family} needs {_N_RELATIONS[self.family]} relation(s), got {len(rels)}")
        if len(set(rels)) != len(rels):
            raise ValueError(f"repeated relation in {rels!r}")
        for rel in rels:
            if len(rel) != 3:
                raise ValueError(f"relation {rel!r} is not (relation, reference_label, reference_kind)")
            name, label, kind = rel
            if name not in RELATIONS:
                raise ValueError(f"unknown relation {name!r}; expected one of {RELATIONS}")
            vocab = {"anatomy": ANATOMY_LABELS, "instrument": INSTRUMENT_LABELS}.get(kind)
            if vocab is None:
                raise ValueError(f"unknown reference kind {kind!r}; expected one of {REFERENCE_KINDS}")
            if label not in vocab:
                raise ValueError(f"{label!r} is not an {kind} label")
        if self.family == "zero_hop" and (self.position is None or self.color is not None):
            raise ValueError("zero_hop asks by position only: position required, colour must be None")
        if self.family == "attribute" and self.color is None:
            raise ValueError("attribute asks by colour (and optionally position): colour required")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (relations as lists), stored in record ``meta["structure"]``."""
        return {
            "family": self.family,
            "target": self.target,
            "position": self.position,
            "color": self.color,
            "relations": [list(r) for r in self.relations],
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> QuestionStructure:
        return cls(
            family=obj["family"],
            target=obj.get("target", "anatomy"),
            position=obj.get("position"),
            color=obj.get("color"),
            relations=tuple((str(a), str(b), str(c)) for a, b, c in obj.get("relations", ())),
        )


@dataclass(frozen=True)
class Template:
    """One wording of one family; see the module docstring for the placeholder language."""

    id: str
    family: str
    pattern: str


_T = Template
TEMPLATES: dict[str, Template] = {
    t.id: t
    for t in (
        # Asked by position only.
        _T("zh_frame", "zero_hop", "What anatomy is at the {pos} of the frame ?"),
        _T("zh_located", "zero_hop", "Which anatomy is located at the {pos} ?"),
        _T("zh_there_is", "zero_hop", "There is an anatomy at the {pos}; what is it?"),
        _T("zh_what_is", "zero_hop", "What is the {pos} anatomy?"),
        # Asked by colour, with or without position.
        _T("at_what_is", "attribute", "What is the {color} {pos} anatomy?"),
        _T("at_there_is", "attribute", "There is a {color} anatomy at the {pos}; what is it?"),
        _T("at_name", "attribute", "What is the name of the {pos} {color} anatomy?"),
        _T("at_color_only", "attribute", "What is the {color} anatomy?"),
        _T("at_color_name", "attribute", "What is the name of the {color} anatomy?"),
        # One relation.
        _T(
            "oh_name_that",
            "one_hop",
            "What is the name of the {mods}anatomy that is {rel1} the {ref1} {noun1}?",
        ),
        _T("oh_name_bare", "one_hop", "What is the name of the {mods}anatomy {rel1} the {ref1} {noun1}?"),
        _T(
            "oh_there_is",
            "one_hop",
            "There is a {mods}anatomy that is {rel1} the {ref1} {noun1}; what is it?",
        ),
        _T("oh_what_name", "one_hop", "What name is the {mods}anatomy that is {rel1} the {ref1} {noun1}?"),
        _T("oh_bare_thing", "one_hop", "What is the name of the {mods}anatomy {rel1} the {ref1} thing?"),
        _T("oh_thing", "one_hop", "What is the name of the {mods}thing {rel1} the {ref1} {noun1}?"),
        _T(
            "oh_thing_to",
            "one_hop",
            "What is the name of the {mods}thing that is {rel1_to} the {ref1} thing?",
        ),
        _T(
            "oh_side",
            "one_hop",
            "What is the name of the {mods}anatomy that is {rel1_side} the {ref1} object?",
        ),
        # Two relations.
        _T(
            "th_what_name_both",
            "two_hop",
            "What name is the {mods}thing that is both {rel1} the {ref1} {noun1} "
            "and {rel2} the {ref2} {noun2}?",
        ),
        _T(
            "th_name_and",
            "two_hop",
            "What is the name of the {mods}anatomy that is {rel1} the {ref1} thing "
            "and {rel2} the {ref2} object?",
        ),
        _T(
            "th_name_both",
            "two_hop",
            "What is the name of the {mods}anatomy that is both {rel1} the {ref1} {noun1} "
            "and {rel2} the {ref2} {noun2}?",
        ),
        _T(
            "th_there_is",
            "two_hop",
            "There is a {mods}anatomy that is {rel1} the {ref1} {noun1} and {rel2} the {ref2} {noun2}; "
            "what is it?",
        ),
        _T(
            "th_object_to",
            "two_hop",
            "What name is the {mods}object that is {rel1_to} the {ref1} {noun1} "
            "and {rel2} the {ref2} {noun2}?",
        ),
        _T(
            "th_side",
            "two_hop",
            "What is the name of the {mods}anatomy that is {rel1_side} the {ref1} {noun1} "
            "and {rel2_side} the {ref2} {noun2}?",
        ),
    )
}
"""Every wording, by id; ids are stable and stored in record ``meta["template_id"]``."""

_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_REL_STYLES: dict[str, dict[str, str]] = {
    "": {"left": "left of", "right": "right of", "above": "above", "below": "below", "within": "within"},
    "_to": {"left": "to the left of", "right": "to the right of"},
    "_side": {"left": "on the left side of", "right": "on the right side of"},
}


def _slots(pattern: str) -> set[str]:
    return set(_PLACEHOLDER.findall(pattern))


def _can_express(template: Template, s: QuestionStructure) -> bool:
    """Whether ``template`` renders ``s`` without dropping or inventing any part of it."""
    if template.family != s.family:
        return False
    slots = _slots(template.pattern)
    mods = "mods" in slots
    if "pos" in slots and s.position is None:
        return False
    if "pos" not in slots and not mods and s.position is not None:
        return False
    if "color" in slots and s.color is None:
        return False
    if "color" not in slots and not mods and s.color is not None:
        return False
    for i, (rel, _label, _kind) in enumerate(s.relations, start=1):
        for style, words in _REL_STYLES.items():
            if f"rel{i}{style}" in slots and rel not in words:
                return False
    return True


def template_ids(structure: QuestionStructure) -> list[str]:
    """Ids of every template able to express ``structure``, in ``TEMPLATES`` order."""
    return [tid for tid, t in TEMPLATES.items() if _can_express(t, structure)]


def render_question(structure: QuestionStructure, template_id: str) -> str:
    """Word ``structure`` with template ``template_id``; a template that cannot express it is an error."""
    try:
        template = TEMPLATES[template_id]
    except KeyError:
        raise ValueError(f"unknown template id {template_id!r}") from None
    if not _can_express(template, structure):
        raise ValueError(f"template {template_id!r} cannot express {structure!r}")
    values: dict[str, str] = {
        "pos": structure.position or "",
        "color": structure.color or "",
        "mods": "".join(f"{m} " for m in (structure.color, structure.position) if m),
    }
    for i, (rel, label, kind) in enumerate(structure.relations, start=1):
        for style, words in _REL_STYLES.items():
            values[f"rel{i}{style}"] = words.get(rel, "")
        values[f"ref{i}"] = label
        values[f"noun{i}"] = kind
    return template.pattern.format(**values)


# --- parsing ------------------------------------------------------------------------------------------


def _normalise(text: str) -> str:
    """Lower-case, single spaces, no space before punctuation, no trailing question mark."""
    t = " ".join(text.strip().lower().split())
    t = re.sub(r"\s+([?;,])", r"\1", t)
    return t.rstrip("?").rstrip()


def _alternation(words: tuple[str, ...] | list[str]) -> str:
    """Regex alternation, longest first, accepting a space, hyphen or underscore between word parts."""
    parts = []
    for w in sorted(words, key=len, reverse=True):
        pieces = re.split(r"[-_ ]", w)
        parts.append(r"[-_ ]".join(re.escape(p) for p in pieces))
    return "(?:" + "|".join(parts) + ")"


_LABEL_RE = _alternation(list(ANATOMY_LABELS) + list(INSTRUMENT_LABELS))
_POS_RE = _alternation(POSITIONS)
_COLOR_RE = _alternation(COLOR_NAMES)


def _canon(value: str, vocab: tuple[str, ...]) -> str:
    key = re.sub(r"[-_ ]", "", value)
    for v in vocab:
        if re.sub(r"[-_ ]", "", v) == key:
            return v
    raise LookupError(value)


def _slot_regex(slot: str) -> str:
    if slot == "pos":
        return f"(?P<pos>{_POS_RE})"
    if slot == "color":
        return f"(?P<color>{_COLOR_RE})"
    if slot == "mods":
        return f"(?:(?P<mcolor>{_COLOR_RE}) )?(?:(?P<mpos>{_POS_RE}) )?"
    m = re.fullmatch(r"rel(\d)(_to|_side)?", slot)
    if m:
        i, style = m.group(1), m.group(2) or ""
        words = _REL_STYLES[style]
        alts = "|".join(f"(?P<r{i}{style.strip('_')}_{k}>{re.escape(v)})" for k, v in words.items())
        return f"(?:{alts})"
    m = re.fullmatch(r"ref(\d)", slot)
    if m:
        return f"(?P<ref{m.group(1)}>{_LABEL_RE})"
    m = re.fullmatch(r"noun(\d)", slot)
    if m:
        return f"(?P<noun{m.group(1)}>anatomy|instrument)"
    raise ValueError(f"unknown placeholder {{{slot}}}")


@cache
def _compiled() -> list[tuple[Template, re.Pattern[str]]]:
    """One anchored regex per template, built from the normalised pattern."""
    out = []
    for t in TEMPLATES.values():
        norm = _normalise(t.pattern)
        pieces: list[str] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(norm):
            pieces.append(_literal_regex(norm[pos : m.start()]))
            pieces.append(_slot_regex(m.group(1)))
            pos = m.end()
        pieces.append(_literal_regex(norm[pos:]))
        out.append((t, re.compile("".join(pieces))))
    return out


def _literal_regex(text: str) -> str:
    """Escape literal text, accepting either article ("a anatomy" / "an anatomy") as SSG-VQA mixes them."""
    words = text.split(" ")
    return " ".join(r"an?" if w in ("a", "an") else re.escape(w) for w in words)


def _structure_from_match(t: Template, m: re.Match[str]) -> QuestionStructure:
    g = m.groupdict()
    position = g.get("pos") or g.get("mpos")
    color = g.get("color") or g.get("mcolor")
    relations = []
    for i in range(1, _N_RELATIONS[t.family] + 1):
        rel = next(
            k.rsplit("_", 1)[1]
            for k, v in g.items()
            if v is not None and re.fullmatch(rf"r{i}(?:to|side)?_\w+", k)
        )
        label = _canon(g[f"ref{i}"], ANATOMY_LABELS + INSTRUMENT_LABELS)
        kind = "anatomy" if label in ANATOMY_LABELS else "instrument"
        noun = g.get(f"noun{i}")
        if noun is not None and noun != kind:
            raise LookupError(f"{label} is not an {noun}")
        relations.append((rel, label, kind))
    return QuestionStructure(
        family=t.family,
        position=_canon(position, POSITIONS) if position else None,
        color=_canon(color, COLOR_NAMES) if color else None,
        relations=tuple(relations),
    )


def parse_question(text: str) -> tuple[QuestionStructure, str] | None:
    """Recover ``(structure, template_id)`` from a question, or ``None`` when no template matches.

    Tolerates case, repeated spaces, a space before punctuation (or its absence), a missing final "?",
    "a"/"an", and labels written with spaces or underscores. Never raises: unrecognised input, including
    non-strings and structurally invalid matches (an instrument called "anatomy"), gives ``None``.
    """
    if not isinstance(text, str):
        return None
    try:
        norm = _normalise(text)
        for t, rx in _compiled():
            m = rx.fullmatch(norm)
            if m is None:
                continue
            try:
                return _structure_from_match(t, m), t.id
            except (LookupError, ValueError, StopIteration):
                continue
    except Exception:
        return None
    return None


def matching_template_ids(text: str) -> list[str]:
    """Every template whose pattern matches ``text`` (normally zero or one); used to check ambiguity."""
    if not isinstance(text, str):
        return []
    norm = _normalise(text)
    return [t.id for t, rx in _compiled() if rx.fullmatch(norm)]
