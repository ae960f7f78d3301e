"""Question templates: rendering, parsing, and the render/parse round trip."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anatomy_r1.data.question_templates import (
    COLOR_NAMES,
    FAMILIES,
    TEMPLATES,
    QuestionStructure,
    matching_template_ids,
    parse_question,
    render_question,
    template_ids,
)
from anatomy_r1.data.vocab import ANATOMY_LABELS, INSTRUMENT_LABELS, POSITIONS, RELATIONS

references = st.one_of(
    st.tuples(st.sampled_from(RELATIONS), st.sampled_from(ANATOMY_LABELS), st.just("anatomy")),
    st.tuples(st.sampled_from(RELATIONS), st.sampled_from(INSTRUMENT_LABELS), st.just("instrument")),
)
maybe_pos = st.one_of(st.none(), st.sampled_from(POSITIONS))
maybe_color = st.one_of(st.none(), st.sampled_from(COLOR_NAMES))


@st.composite
def structures(draw: st.DrawFn) -> QuestionStructure:
    family = draw(st.sampled_from(FAMILIES))
    if family == "zero_hop":
        return QuestionStructure(family, position=draw(st.sampled_from(POSITIONS)))
    if family == "attribute":
        return QuestionStructure(family, position=draw(maybe_pos), color=draw(st.sampled_from(COLOR_NAMES)))
    n = 1 if family == "one_hop" else 2
    rels = draw(st.lists(references, min_size=n, max_size=n, unique=True))
    return QuestionStructure(family, position=draw(maybe_pos), color=draw(maybe_color), relations=tuple(rels))


@settings(max_examples=400, deadline=None)
@given(structures())
def test_round_trip_every_applicable_template(s: QuestionStructure) -> None:
    ids = template_ids(s)
    assert ids, f"no template expresses {s}"
    rendered = [render_question(s, t) for t in ids]
    assert len(set(rendered)) == len(rendered)
    for tid, text in zip(ids, rendered, strict=True):
        assert parse_question(text) == (s, tid)
        assert matching_template_ids(text) == [tid]


@settings(max_examples=100, deadline=None)
@given(structures(), st.data())
def test_parse_tolerates_case_and_spacing(s: QuestionStructure, data: st.DataObject) -> None:
    tid = data.draw(st.sampled_from(template_ids(s)))
    text = render_question(s, tid)
    mangled = "  " + text.upper().replace(" ", "   ").replace("?", " ?") + " "
    assert parse_question(mangled) == (s, tid)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_parse_never_raises(text: str) -> None:
    parse_question(text)


def test_every_family_has_at_least_three_wordings() -> None:
    for family in FAMILIES:
        assert sum(t.family == family for t in TEMPLATES.values()) >= 3


REAL = [
    ("What anatomy is at the top-mid of the frame ?", QuestionStructure("zero_hop", position="top-mid")),
    ("Which anatomy is located at the top-mid ?", QuestionStructure("zero_hop", position="top-mid")),
    ("There is an anatomy at the top-mid; what is it?", QuestionStructure("zero_hop", position="top-mid")),
    ("What is the bottom-mid anatomy?", QuestionStructure("zero_hop", position="bottom-mid")),
    (
        "What is the red bottom-mid anatomy?",
        QuestionStructure("attribute", position="bottom-mid", color="red"),
    ),
    (
        "There is a red anatomy at the bottom-mid; what is it?",
        QuestionStructure("attribute", position="bottom-mid", color="red"),
    ),
    (
        "What is the name of the bottom-mid red anatomy?",
        QuestionStructure("attribute", position="bottom-mid", color="red"),
    ),
    ("What is the brown anatomy?", QuestionStructure("attribute", color="brown")),
    (
        "What is the name of the anatomy that is below the grasper instrument?",
        QuestionStructure("one_hop", relations=(("below", "grasper", "instrument"),)),
    ),
    (
        "There is a anatomy that is above the gut anatomy; what is it?",
        QuestionStructure("one_hop", relations=(("above", "gut", "anatomy"),)),
    ),
    (
        "What is the name of the anatomy within the gallbladder thing?",
        QuestionStructure("one_hop", relations=(("within", "gallbladder", "anatomy"),)),
    ),
    (
        "What name is the thing that is both below the liver anatomy and right of the hook instrument?",
        QuestionStructure(
            "two_hop", relations=(("below", "liver", "anatomy"), ("right", "hook", "instrument"))
        ),
    ),
    (
        "What is the name of the anatomy that is within the gut thing and above the scissors object?",
        QuestionStructure(
            "two_hop", relations=(("within", "gut", "anatomy"), ("above", "scissors", "instrument"))
        ),
    ),
    (
        "What is the name of the anatomy that is above the abdominal_wall_cavity thing and below the "
        "cystic_plate object?",
        QuestionStructure(
            "two_hop",
            relations=(("above", "abdominal_wall_cavity", "anatomy"), ("below", "cystic_plate", "anatomy")),
        ),
    ),
]


@pytest.mark.parametrize(("text", "expected"), REAL)
def test_parses_real_ssgvqa_wordings(text: str, expected: QuestionStructure) -> None:
    parsed = parse_question(text)
    assert parsed is not None
    assert parsed[0] == expected
    assert render_question(*parsed) == text


@pytest.mark.parametrize(
    "text",
    [
        "Is there a hook?",
        "How many instruments are there?",
        "What color is the top-mid anatomy?",
        "What anatomy is at the middle of the frame ?",
        "What is the name of the anatomy that is below the liver instrument?",
        "What is the name of the anatomy that is below the spleen anatomy?",
        "",
    ],
)
def test_unrecognised_questions_give_none(text: str) -> None:
    assert parse_question(text) is None


def test_non_string_gives_none() -> None:
    assert parse_question(None) is None  # type: ignore[arg-type]
    assert parse_question(42) is None  # type: ignore[arg-type]


def test_structure_dict_round_trip_and_validation() -> None:
    rels = (("left", "liver", "anatomy"), ("above", "hook", "instrument"))
    s = QuestionStructure("two_hop", position="center", relations=rels)
    assert QuestionStructure.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError):
        QuestionStructure("zero_hop")
    with pytest.raises(ValueError):
        QuestionStructure("one_hop", relations=(("below", "hook", "anatomy"),))
    with pytest.raises(ValueError):
        QuestionStructure("attribute", position="top-mid", color="mauve")


def test_render_refuses_inexpressible_template() -> None:
    s = QuestionStructure("one_hop", relations=(("above", "liver", "anatomy"),))
    assert "oh_side" not in template_ids(s)
    with pytest.raises(ValueError):
        render_question(s, "oh_side")
    with pytest.raises(ValueError):
        render_question(s, "no_such_template")
