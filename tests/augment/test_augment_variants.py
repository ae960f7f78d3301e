"""Variant generators keep the answer, options and images; template and composite give real diversity."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anatomy_r1.augment.composite import CompositeGenerator
from anatomy_r1.augment.paraphrase import LexicalParaphraser
from anatomy_r1.augment.variants import (
    OptionReorderer,
    QuestionTemplateRephraser,
    VariantError,
    distinct_wordings,
    make_variant,
    order_sensitive,
    validate_variant,
    wording_key,
)
from anatomy_r1.data.question_templates import QuestionStructure, parse_question
from anatomy_r1.data.schema import Record, make_record

DATA = Path(__file__).parent / "data"


def _rec(question: str = "What part is shown in this ultrasound image?", **kw: object) -> Record:
    base = dict(
        id="q1",
        images=["img/a.png"],
        question=question,
        options=["Liver", "Kidney", "Spleen", "Gallbladder"],
        answer_index=1,
        source="test",
    )
    base.update(kw)
    return make_record(**base)  # type: ignore[arg-type]


# --- validate_variant -----------------------------------------------------------------------------------


def test_validate_accepts_reordered_and_reworded() -> None:
    r = _rec()
    v = make_variant(
        r,
        1,
        "reorder",
        question="Which part does this image show?",
        options=["Kidney", "Spleen", "Liver", "Gallbladder"],
    )
    validate_variant(r, v)
    assert v.id == "q1~v1" and v.answer == "Kidney" and v.answer_index == 0
    assert v.meta["variant_of"] == "q1" and v.meta["variant_kind"] == "reorder"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(answer="Liver", answer_index=0), "answer"),
        (dict(options=["Liver", "Kidney", "Spleen", "Pancreas"]), "options"),
        (dict(images=["img/b.png"]), "images"),
        (dict(question="  "), "question"),
        (dict(answer_index=2), "answer"),
        (dict(meta={"variant_of": "other"}), "variant_of"),
    ],
)
def test_validate_refuses_changes(change: dict, message: str) -> None:
    r = _rec()
    bad = dataclasses.replace(r, **change)
    with pytest.raises(VariantError, match=message):
        validate_variant(r, bad)


# --- option reordering ----------------------------------------------------------------------------------


def test_reorder_moves_answer_to_other_letters() -> None:
    r = _rec()
    vs = OptionReorderer().variants(r, 3, random.Random(0))
    assert len(vs) == 3
    assert {v.answer_index for v in vs} == {0, 2, 3}  # three new letters before any repeats
    for v in vs:
        validate_variant(r, v)
        assert v.options[v.answer_index] == "Kidney"
    assert distinct_wordings([r, *vs]) == 4


def test_reorder_two_options_has_one_other_order() -> None:
    r = _rec(options=["right eye", "left eye"], answer_index=1)
    vs = OptionReorderer().variants(r, 5, random.Random(0))
    assert [v.options for v in vs] == [["left eye", "right eye"]]


def test_reorder_never_touches_order_sensitive_options() -> None:
    r = _rec(options=["Liver", "Spleen", "All of the above"], answer_index=2)
    assert order_sensitive(r.options)
    assert OptionReorderer().variants(r, 4, random.Random(0)) == []


def test_reorder_many_options_sampled() -> None:
    opts = [f"Structure {i}" for i in range(10)]
    r = _rec(options=opts, answer_index=7)
    vs = OptionReorderer().variants(r, 8, random.Random(1))
    assert len(vs) == 8 and distinct_wordings([r, *vs]) == 9


# --- template rephrasing --------------------------------------------------------------------------------


def test_template_rephrase_keeps_structure(templated_records: list[Record]) -> None:
    gen = QuestionTemplateRephraser()
    for r in templated_records:
        parsed = gen.parse(r)
        if parsed is None:
            continue
        for v in gen.variants(r, 8, random.Random(0)):
            validate_variant(r, v)
            again = parse_question(v.question)
            assert again is not None and again[0] == parsed[0], (r.question, v.question)
            assert v.meta["template_id"] == again[1]
            assert v.meta["variant_kind"] == "template"


def test_template_rephrase_gives_three_wordings_for_most(templated_records: list[Record]) -> None:
    gen = QuestionTemplateRephraser()
    counts = [distinct_wordings([r, *gen.variants(r, 6, random.Random(3))]) for r in templated_records]
    share = sum(c >= 3 for c in counts) / len(counts)
    assert share >= 0.75, counts


def test_template_prefers_meta_structure(templated_records: list[Record]) -> None:
    synth = next(r for r in templated_records if "structure" in r.meta)
    structure = QuestionStructure.from_dict(synth.meta["structure"])
    # A question text the parser cannot read still re-renders from the stored structure.
    odd = dataclasses.replace(synth, id="odd", question="Name the target, please.", meta=dict(synth.meta))
    vs = QuestionTemplateRephraser().variants(odd, 10, random.Random(0))
    assert vs
    assert all(parse_question(v.question)[0] == structure for v in vs)  # type: ignore[index]


def test_template_ignores_free_form(freeform_records: list[Record]) -> None:
    gen = QuestionTemplateRephraser()
    assert all(gen.variants(r, 4, random.Random(0)) == [] for r in freeform_records)


def test_template_parse_cache_is_reused(templated_records: list[Record]) -> None:
    gen = QuestionTemplateRephraser()
    r = templated_records[0]
    first = gen.parse(r)
    assert gen.parse(r) is first
    assert len(gen._cache) == 1


# --- composite ------------------------------------------------------------------------------------------


def test_composite_distinct_and_valid(
    templated_records: list[Record], freeform_records: list[Record]
) -> None:
    gen = CompositeGenerator()
    for r in [*templated_records, *freeform_records]:
        vs = gen.variants(r, 7, random.Random(r.id))
        keys = [wording_key(x) for x in [r, *vs]]
        assert len(keys) == len(set(keys)), r.id
        assert [v.id for v in vs] == [f"{r.id}~v{k}" for k in range(1, len(vs) + 1)]
        for v in vs:
            validate_variant(r, v)


def test_composite_reaches_n_for_common_forms(
    templated_records: list[Record], freeform_records: list[Record]
) -> None:
    gen = CompositeGenerator()
    records = [*templated_records, *freeform_records]
    full = [len(gen.variants(r, 4, random.Random(0))) == 4 for r in records]
    assert sum(full) / len(full) >= 0.9


def test_composite_order_template_then_lexical_then_reorder(templated_records: list[Record]) -> None:
    r = next(x for x in templated_records if x.question == "What is the brown anatomy?")
    kinds = [v.meta["variant_kind"] for v in CompositeGenerator().variants(r, 12, random.Random(0))]
    assert kinds[0] == "template"
    first_reorder = next(i for i, k in enumerate(kinds) if "reorder" in k)
    assert all("reorder" not in k for k in kinds[:first_reorder])
    assert any("lexical" in k for k in kinds[:first_reorder])


def test_composite_kinds_subset_and_fallback(freeform_records: list[Record]) -> None:
    eye = next(r for r in freeform_records if "oculus" in r.question)
    assert [v.meta["variant_kind"] for v in CompositeGenerator().variants(eye, 4, random.Random(0))] == [
        "reorder"
    ]
    only_reorder = CompositeGenerator(("reorder",))
    r = freeform_records[0]
    vs = only_reorder.variants(r, 3, random.Random(0))
    assert all(v.question == r.question and v.options != r.options for v in vs)
    with pytest.raises(ValueError, match="unknown variant kind"):
        CompositeGenerator(("template", "llm"))


def test_composite_lexical_drops_template_id(templated_records: list[Record]) -> None:
    synth = next(r for r in templated_records if r.id == "synth-002")
    for v in CompositeGenerator().variants(synth, 6, random.Random(0)):
        if "lexical" in v.meta["variant_kind"] and "template" not in v.meta["variant_kind"]:
            assert "template_id" not in v.meta
    assert synth.meta["template_id"]  # the original is untouched


def test_composite_shuffle_options_varies_letters() -> None:
    r = _rec()
    vs = CompositeGenerator(shuffle_options=True).variants(r, 4, random.Random(0))
    assert all(v.meta["variant_kind"].endswith("+reorder") for v in vs)
    assert len({v.answer_index for v in vs}) >= 2


def test_generators_are_deterministic(
    templated_records: list[Record], freeform_records: list[Record]
) -> None:
    for r in [*templated_records, *freeform_records]:
        a = CompositeGenerator().variants(r, 6, random.Random(11))
        b = CompositeGenerator().variants(r, 6, random.Random(11))
        assert [x.to_dict() for x in a] == [x.to_dict() for x in b]


# --- properties -----------------------------------------------------------------------------------------


def _fixture_questions() -> list[str]:
    lines = [
        *(DATA / "templated.jsonl").read_text().splitlines(),
        *(DATA / "freeform.jsonl").read_text().splitlines(),
    ]
    return [json.loads(line)["question"] for line in lines if line.strip()]


_WORDS = [
    "What",
    "Which",
    "is",
    "the",
    "organ",
    "structure",
    "shown",
    "depicted",
    "in",
    "this",
    "image",
    "picture",
    "above",
    "below",
    "left",
    "of",
    "to",
    "within",
    "liver",
    "anatomy",
    "scan",
    "ultrasound",
    "appears",
    "frame",
    "Kidney",
    "right",
    "eye",
    "none",
    "above",
    "All",
]
_OPTION_POOL = [
    "Liver",
    "Kidney",
    "Spleen",
    "Gallbladder",
    "right eye",
    "left eye",
    "Cystic Plate",
    "Abdominal Wall Cavity",
    "Gut",
    "Omentum",
    "Bone tissue",
    "Muscle tissue",
    "All of the above",
    "structure",
    "image",
    "Heart",
]

questions = st.one_of(
    st.sampled_from(_fixture_questions()),
    st.lists(st.sampled_from(_WORDS), min_size=1, max_size=14).map(lambda ws: " ".join(ws) + "?"),
)


@st.composite
def records(draw: st.DrawFn) -> Record:
    opts = draw(st.lists(st.sampled_from(_OPTION_POOL), min_size=2, max_size=6, unique=True))
    question = draw(questions)
    meta: dict = {}
    parsed = parse_question(question)
    if parsed is not None and draw(st.booleans()):
        meta = {"structure": parsed[0].to_dict(), "template_id": parsed[1]}
    return make_record(
        id=draw(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True)),
        images=draw(st.lists(st.from_regex(r"[a-z]{1,6}\.png", fullmatch=True), min_size=1, max_size=2)),
        question=question,
        options=opts,
        answer_index=draw(st.integers(0, len(opts) - 1)),
        source="prop",
        meta=meta,
    )


GENERATORS = [
    OptionReorderer(),
    QuestionTemplateRephraser(),
    LexicalParaphraser(),
    CompositeGenerator(),
    CompositeGenerator(shuffle_options=True),
]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rec=records(), n=st.integers(1, 8), seed=st.integers(0, 2**32), which=st.integers(0, len(GENERATORS) - 1)
)
def test_every_variant_preserves_answer_options_images(rec: Record, n: int, seed: int, which: int) -> None:
    gen = GENERATORS[which]
    before = rec.to_dict()
    vs = gen.variants(rec, n, random.Random(seed))
    assert rec.to_dict() == before  # the original is never mutated
    assert len(vs) <= n
    for v in vs:
        validate_variant(rec, v)
        assert v.answer == rec.answer
        assert v.options[v.answer_index] == rec.answer
        assert Counter(v.options) == Counter(rec.options)
        assert v.images == rec.images
        assert v.meta["variant_of"] == rec.id
        assert v.question.strip()
    assert len({wording_key(v) for v in vs} | {wording_key(rec)}) == len(vs) + 1
