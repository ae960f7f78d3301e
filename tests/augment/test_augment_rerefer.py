"""Re-referring variants name the same target by another path, and the scene graph proves each one unique."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from anatomy_r1.augment.composite import CompositeGenerator
from anatomy_r1.augment.rerefer import (
    FrameGraph,
    GraphObject,
    ReReferrer,
    SceneIndex,
    read_scenes,
    singles_out,
)
from anatomy_r1.augment.variants import VariantError
from anatomy_r1.data.converters.ssgvqa import frame_facts, read_frame
from anatomy_r1.data.io import read_records
from anatomy_r1.data.question_templates import QuestionStructure, parse_question
from anatomy_r1.data.schema import make_record
from anatomy_r1.data.synth.questions import matching_anatomy
from anatomy_r1.errors import DataError


def _path(structure: QuestionStructure) -> tuple[bool, bool, tuple[str, ...]]:
    return (
        structure.position is not None,
        structure.color is not None,
        tuple(r for r, _, _ in structure.relations),
    )


def test_every_synthetic_rereference_singles_out_the_target_in_the_real_scene(tiny_data: Path) -> None:
    """Checked with the generator's own matcher, independently of the code under test."""
    records = read_records(tiny_data / "train.jsonl")
    scenes = read_scenes(tiny_data / "scenes" / "train.jsonl")
    gen = ReReferrer(SceneIndex.for_data([tiny_data / "train.jsonl"]))
    produced = 0
    for rec in records:
        variants = gen.variants(rec, 7, random.Random(rec.id))
        original = QuestionStructure.from_dict(rec.meta["structure"])
        for v in variants:
            produced += 1
            s = QuestionStructure.from_dict(v.meta["structure"])
            assert parse_question(v.question) is not None and parse_question(v.question)[0] == s
            scene = scenes[rec.meta["scene_id"]]
            assert [o.label for o in matching_anatomy(scene, s)] == [rec.meta["anatomy_class"]]
            assert _path(s) != _path(original)  # another path, not the same one reworded
            assert v.answer == rec.answer and v.options == rec.options and v.meta["variant_kind"] == "rerefer"
    assert produced >= len(records)  # most questions have at least one other path


def test_a_description_two_objects_fit_is_refused() -> None:
    graph = FrameGraph(
        (
            GraphObject("liver", "anatomy", "top-mid", "brown"),
            GraphObject("cystic_plate", "anatomy", "center", "brown"),
            GraphObject("grasper", "instrument", "top-left", "silver"),
        ),
        frozenset({("liver", "right", "grasper"), ("cystic_plate", "right", "grasper")}),
    )
    assert not singles_out(graph, QuestionStructure("attribute", color="brown"), "liver")
    assert singles_out(graph, QuestionStructure("zero_hop", position="top-mid"), "liver")
    assert not singles_out(
        graph, QuestionStructure("one_hop", relations=(("right", "grasper", "instrument"),)), "liver"
    )
    above = QuestionStructure("one_hop", relations=(("above", "cystic_plate", "anatomy"),))
    assert not singles_out(graph, above, "liver")  # true on the grid, but not among the graph's relations


def test_an_unknown_attribute_of_another_object_blocks_the_description() -> None:
    """SSG-VQA facts: without the gut's colour, 'the yellow anatomy' is not proven to be the liver."""
    graph = FrameGraph.from_facts(
        {"anatomy": ["liver", "gut"], "objects": {"liver": {"position": "top-mid", "color": "yellow"}}}
    )
    assert not singles_out(graph, QuestionStructure("attribute", color="yellow"), "liver")
    assert not singles_out(graph, QuestionStructure("zero_hop", position="top-mid"), "liver")
    graph = FrameGraph.from_facts(
        {
            "anatomy": ["liver", "gut"],
            "objects": {
                "liver": {"position": "top-mid", "color": "yellow"},
                "gut": {"position": "center", "color": None},
            },
        }
    )
    assert singles_out(graph, QuestionStructure("zero_hop", position="top-mid"), "liver")
    assert not singles_out(graph, QuestionStructure("attribute", color="yellow"), "liver")


SSG_FRAME = """Which anatomical structures are present?|gallbladder,liver,omentum
Which tools are present?|grasper,hook
What anatomy is at the top-mid of the frame ?|liver|zero_hop.json|query_type
What is the red bottom-mid anatomy?|gallbladder|zero_hop.json|query_type
What color is the top-mid anatomy?|brown|zero_hop.json|query_color
What is the name of the anatomy that is below the grasper instrument?|gallbladder|one_hop.json|query_type
There is a white anatomy at the bottom-right; what is it?|omentum|zero_hop.json|query_type
What is the location of the silver instrument?|top-left|zero_hop.json|query_location
"""


def test_ssgvqa_facts_come_from_the_other_lines_of_the_frame(tmp_path: Path) -> None:
    f = tmp_path / "VID02" / "000147.txt"
    f.parent.mkdir()
    f.write_text(SSG_FRAME, encoding="utf-8")
    facts = frame_facts(*read_frame(f))
    assert facts == {
        "anatomy": ["gallbladder", "liver", "omentum"],
        "objects": {
            "gallbladder": {"position": "bottom-mid", "color": "red"},
            "liver": {"position": "top-mid", "color": "brown"},  # colour via "the top-mid anatomy"
            "omentum": {"position": "bottom-right", "color": "white"},
        },
    }
    rec = make_record(
        id="ssgvqa-VID02-000147-6",
        images=["VID02/000147.png"],
        question="What is the name of the anatomy that is below the grasper instrument?",
        options=["Liver", "Gallbladder", "Omentum", "Gut"],
        answer_index=1,
        source="ssgvqa",
        meta={"anatomy_class": "gallbladder", "scene_facts": facts},
    )
    texts = [v.question for v in ReReferrer().variants(rec, 7, random.Random(0))]
    structures = [parse_question(t)[0] for t in texts]
    assert {(s.position, s.color) for s in structures} == {
        ("bottom-mid", None),
        (None, "red"),
        ("bottom-mid", "red"),
    }
    assert all(not s.relations for s in structures)  # no relation is derived for SSG-VQA


def test_conflicting_lines_leave_the_attribute_unknown(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text(
        "Which anatomical structures are present?|liver,gut\nWhich tools are present?|hook\n"
        "What anatomy is at the top-mid of the frame ?|liver|zero_hop.json|query_type\n"
        "What anatomy is at the center of the frame ?|liver|zero_hop.json|query_type\n",
        encoding="utf-8",
    )
    assert frame_facts(*read_frame(f)) == {"anatomy": ["liver", "gut"], "objects": {}}


def test_records_without_a_graph_fall_back_to_the_other_kinds(templated_records: list) -> None:
    rec = next(r for r in templated_records if "scene_id" not in r.meta and "scene_facts" not in r.meta)
    assert ReReferrer().variants(rec, 3, random.Random(0)) == []
    gen = CompositeGenerator(("rerefer", "template", "reorder"))
    variants = gen.variants(rec, 3, random.Random(0))
    assert variants and all(v.meta["variant_kind"] != "rerefer" for v in variants)


def test_composite_puts_rereferences_first(tiny_data: Path) -> None:
    rec = read_records(tiny_data / "train.jsonl")[0]
    gen = CompositeGenerator(
        ("rerefer", "template", "reorder"), scenes=SceneIndex.for_data([tiny_data / "train.jsonl"])
    )
    kinds = [v.meta["variant_kind"] for v in gen.variants(rec, 7, random.Random(1))]
    assert kinds[0] == "rerefer" and "reorder" in kinds


def test_a_broken_scene_file_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "scenes" / "train.jsonl"
    p.parent.mkdir()
    p.write_text('{"scene_id": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.jsonl:1: not a scene graph"):
        SceneIndex.for_data([tmp_path / "train.jsonl"])
    p.write_bytes(b"\xff\xfe")
    with pytest.raises(DataError, match="not valid UTF-8"):
        read_scenes(p)


def test_a_description_that_does_not_single_out_is_a_variant_error() -> None:
    from anatomy_r1.augment.rerefer import check_reference

    graph = FrameGraph(
        (
            GraphObject("liver", "anatomy", "top-mid", "brown"),
            GraphObject("gut", "anatomy", "center", "brown"),
        )
    )
    with pytest.raises(VariantError, match="does not single out 'liver'"):
        check_reference(graph, QuestionStructure("attribute", color="brown"), "liver", "v")
