"""Lexical paraphrase rewords free-form questions safely; external paraphrasers are filtered."""

from __future__ import annotations

import random

import pytest

from anatomy_r1.augment.composite import CompositeGenerator
from anatomy_r1.augment.paraphrase import (
    ExternalParaphraseGenerator,
    LexicalParaphraser,
    mentioned_options,
    option_spans,
)
from anatomy_r1.augment.variants import VariantError, normalize_question, validate_variant
from anatomy_r1.data.schema import Record, make_record


def _rec(question: str, options: list[str], answer_index: int = 0) -> Record:
    return make_record(
        id="f1", images=["x.png"], question=question, options=options, answer_index=answer_index, source="t"
    )


def test_lexical_changes_free_form_wording(freeform_records: list[Record]) -> None:
    lp = LexicalParaphraser()
    changed = 0
    for r in freeform_records:
        vs = lp.variants(r, 4, random.Random(0))
        for v in vs:
            validate_variant(r, v)
            assert normalize_question(v.question) != normalize_question(r.question)
            assert v.options == r.options  # option texts and order untouched
        changed += bool(vs)
    # Everything except the question that only quotes its options can be reworded.
    assert changed >= len(freeform_records) - 1


def test_lexical_three_wordings_for_generic_questions(freeform_records: list[Record]) -> None:
    lp = LexicalParaphraser()
    generic = [r for r in freeform_records if "image" in r.question or "picture" in r.question]
    for r in generic:
        assert len(lp.paraphrases(r.question, 4, random.Random(1), protected=r.options)) >= 2, r.question


def test_lexical_known_synonyms() -> None:
    lp = LexicalParaphraser()
    outs = lp.paraphrases("Which organ is above the kidney in this CT image?", 30, random.Random(0))
    joined = " | ".join(outs)
    assert "superior to" in joined
    assert "anatomical structure" in joined
    assert "picture" in joined or "scan" in joined
    frames = lp.frames("What is depicted in the image?")
    assert "Which structure does this image show?" in frames
    shown = lp.paraphrases("What part is shown in this ultrasound image?", 30, random.Random(0))
    assert any("depicted" in s for s in shown) and any("visible" in s for s in shown)


def test_lexical_relations_in_templated_question() -> None:
    q = "What is the name of the anatomy that is to the left of the liver thing and below the hook object?"
    outs = LexicalParaphraser().paraphrases(q, 30, random.Random(2))
    assert any("on the left side of" in o for o in outs)
    assert any("inferior to" in o or "beneath" in o for o in outs)
    # "top-left" is a position, never a relation
    pos = LexicalParaphraser().paraphrases(
        "What anatomy is at the top-left of the frame ?", 20, random.Random(0)
    )
    assert all("top-left" in o for o in pos)


def test_lexical_never_edits_option_quotes() -> None:
    q = "Is the structure above the image the liver or the structure?"
    opts = ["structure", "liver"]
    assert option_spans(q, opts)
    lp = LexicalParaphraser()
    for out in lp.paraphrases(q, 20, random.Random(0), protected=opts):
        assert mentioned_options(out, opts) == mentioned_options(q, opts)
        assert out.lower().count("structure") >= 2
    eye = "Is this the right eye (oculus dexter) or the left eye (oculus sinister)?"
    assert lp.paraphrases(eye, 4, random.Random(0), protected=["right eye", "left eye"]) == []


def test_lexical_deterministic_given_rng() -> None:
    lp = LexicalParaphraser()
    q = "What is the structure depicted in this ultrasound scan?"
    assert lp.paraphrases(q, 5, random.Random(9)) == lp.paraphrases(q, 5, random.Random(9))
    assert lp.paraphrases(q, 5, random.Random(9)) != lp.paraphrases(q, 5, random.Random(10))


def test_lexical_articles_follow_replacement() -> None:
    outs = LexicalParaphraser(p_change=1.0).paraphrases(
        "Is there an organ above a scan image?", 10, random.Random(0)
    )
    assert any("an anatomical structure" in o for o in outs)
    assert not any("a anatomical" in o for o in outs)


# --- external paraphraser -------------------------------------------------------------------------------


Q = "What organ is shown in this ultrasound image?"
OPTS = ["Liver", "Kidney", "Spleen"]


def test_external_outputs_are_filtered() -> None:
    calls: list[tuple[str, int]] = []

    def fake(question: str, n: int) -> list[str]:
        calls.append((question, n))
        return [
            "Which organ does this ultrasound image show?",  # ok
            "  ",  # empty
            "which organ does this ultrasound image show ?",  # duplicate after normalisation
            Q,  # identical to the original
            "Is the liver shown in this ultrasound image?",  # mentions an option the original does not
            "x" * 500,  # too long
            "Line one\nline two",  # multi-line
            42,  # not a string
            '"What organ can be seen in this ultrasound image?"',  # ok once quotes are stripped
        ]

    gen = ExternalParaphraseGenerator(fake)
    r = _rec(Q, OPTS, 1)
    vs = gen.variants(r, 5, random.Random(0))
    assert [v.question for v in vs] == [
        "Which organ does this ultrasound image show?",
        "What organ can be seen in this ultrasound image?",
    ]
    for v in vs:
        validate_variant(r, v)
        assert v.meta["variant_kind"] == "external"
    gen.variants(r, 5, random.Random(1))
    assert len(calls) == 1  # cached


def test_external_allows_options_the_question_already_quotes() -> None:
    q = "Is this the right eye or the left eye?"
    gen = ExternalParaphraseGenerator(
        lambda question, n: ["Is it the left eye or the right eye?", "Which eye?"]
    )
    assert gen.paraphrases(q, 3, ["right eye", "left eye"]) == [
        "Is it the left eye or the right eye?",
        "Which eye?",
    ]


def test_external_errors_raise_or_skip() -> None:
    def broken(question: str, n: int) -> list[str]:
        raise RuntimeError("model offline")

    with pytest.raises(VariantError, match="model offline"):
        ExternalParaphraseGenerator(broken).paraphrases(Q, 2, OPTS)
    assert ExternalParaphraseGenerator(broken, on_error="skip").paraphrases(Q, 2, OPTS) == []
    assert ExternalParaphraseGenerator(lambda q, n: "not a list").paraphrases(Q, 2, OPTS) == []


def test_external_in_composite_comes_before_lexical() -> None:
    fake = lambda question, n: ["Which organ can you see in this ultrasound image?"]  # noqa: E731
    r = _rec(Q, OPTS)
    vs = CompositeGenerator(external=fake).variants(r, 4, random.Random(0))
    assert vs[0].meta["variant_kind"] == "external"
    assert vs[0].question == "Which organ can you see in this ultrasound image?"
    assert all("lexical" in v.meta["variant_kind"] for v in vs[1:])
