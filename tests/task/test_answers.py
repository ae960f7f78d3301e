"""Answer extraction: the rules shared by the accuracy reward and evaluation."""

from __future__ import annotations

import pytest

from anatomy_r1.task.answers import (
    completion_to_text,
    extract_answer_text,
    extract_choice,
    extract_letter,
    normalize,
)

OPTS = ["Liver", "Gallbladder", "Cystic Plate", "Abdominal Wall Cavity"]


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("<answer>B</answer>", "B"),
        ("<think>t</think>\n<answer> B. Gallbladder </answer>\n", " B. Gallbladder "),
        ("<answer></answer>", ""),
        ("<answer>B", None),
        ("B</answer>", None),
        ("</answer>B<answer>", None),
        ("<answer>A</answer><answer>B</answer>", None),
        ("<answer><answer>B</answer>", None),
        ("no tags", None),
        (None, None),
        (17, None),
    ],
)
def test_extract_answer_text(completion, expected):
    assert extract_answer_text(completion) == expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("B", 1),
        ("b", 1),
        ("(B)", 1),
        ("[b]", 1),
        ("B.", 1),
        ("B)", 1),
        ("B:", 1),
        ("(B).", 1),
        ("B. Gallbladder", 1),
        ("B) GALLBLADDER", 1),
        ("(B) - Gallbladder", 1),
        ("B:  Gallbladder.", 1),
        ("Abdominal   wall\ncavity", 3),
        ("abdominal wall cavity.", 3),
        ("The answer is D", 3),
        ("the correct answer is (d) abdominal wall cavity", 3),
        ("Final answer: A", 0),
        ("answer is a", 0),
        ("Choice C", 2),
        ("option: c", 2),
        ("A, B", None),
        ("A and C", None),
        ("A/B", None),
        ("AB", None),
        ("E", None),
        ("(E)", None),
        ("B. Liver", None),
        ("B because", None),
        ("Gall bladder", None),
        ("the answer is", None),
        ("the answer is B, not C", None),
        ("optionB", None),
        ("", None),
        ("   ", None),
        ("(B", None),
        ("answer", None),
        ("Liver or Gallbladder", None),
    ],
)
def test_extract_choice_forms(content, expected):
    assert extract_choice(f"<answer>{content}</answer>", OPTS) == expected


def test_ambiguous_letter_and_text_readings():
    assert extract_choice("<answer>B</answer>", ["B", "A"]) is None
    assert extract_choice("<answer>A</answer>", ["A", "B"]) == 0
    # Options that collide once whitespace is collapsed make the text reading ambiguous.
    assert extract_choice("<answer>left lobe</answer>", ["left  lobe", "left lobe"]) is None


def test_bad_options_give_none():
    for opts in (None, [], "Liver", [1, 2], ["Liver", None]):
        assert extract_choice("<answer>A</answer>", opts) is None


def test_extract_letter():
    assert extract_letter("<answer>gallbladder</answer>", OPTS) == "B"
    assert extract_letter("<answer>x</answer>", OPTS) is None


def test_completion_to_text_shapes():
    assert completion_to_text("s") == "s"
    assert completion_to_text({"role": "assistant", "content": "a"}) == "a"
    assert (
        completion_to_text([{"role": "assistant", "content": "a"}, {"role": "tool", "content": "t"}]) == "a"
    )
    assert (
        completion_to_text([{"content": [{"type": "text", "text": "a"}, {"type": "image"}, "b"]}]) == "a\nb"
    )
    for bad in (None, 1, [1], [{"content": 3}], [{"content": [{"type": "text", "text": 3}]}], b"x", []):
        assert completion_to_text(bad) is None


def test_normalize():
    assert normalize("  The\tAnswer \n IS. ") == "the answer is"
    assert normalize("Straße.") == "strasse"


def test_megabyte_answers_are_read():
    big = "x" * 4_000_000
    assert extract_choice(f"<think>{big}</think><answer>b</answer>", OPTS) == 1
    assert extract_choice(f"<answer>{big}</answer>", OPTS) is None
    assert extract_choice("<answer>" * 500_000, OPTS) is None
