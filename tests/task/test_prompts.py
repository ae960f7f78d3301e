"""Prompt templates: layout, overrides, conversational form and SFT targets."""

from __future__ import annotations

import pytest

from anatomy_r1.data.schema import make_record
from anatomy_r1.errors import ConfigError
from anatomy_r1.task.answers import extract_choice
from anatomy_r1.task.prompts import (
    IMAGE_LAST_TEMPLATES,
    TEMPLATES,
    build_messages,
    format_target,
    render_prompt,
    uses_think,
)
from anatomy_r1.training.rewards import format_reward, format_reward_no_think


@pytest.fixture
def rec():
    return make_record(
        id="q1",
        images=["a.png", "b.png"],
        question="  What anatomy is at the top-left of the frame?  ",
        options=["Liver", "Cystic Plate", "Gut", "Abdominal Wall\nCavity"],
        answer_index=3,
        source="test",
    )


def test_templates_registry():
    assert set(TEMPLATES) == {"anatomy_r1", "medr1", "no_think", "compact", "compact_text"}
    assert [uses_think(t) for t in ("anatomy_r1", "medr1", "compact", "no_think")] == [
        True,
        True,
        True,
        False,
    ]


def test_anatomy_r1_layout_mirrors_released_instruction(rec):
    p = render_prompt(rec)
    assert p.startswith("You are an expert in cholecystectomy surgical procedures")
    assert "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags." in p
    assert p.endswith(
        "\nQuestion:\nWhat anatomy is at the top-left of the frame?\nAnatomy Options:\n"
        "A. Liver\nB. Cystic Plate\nC. Gut\nD. Abdominal Wall Cavity"
    )


def test_no_think_asks_for_answer_only(rec):
    p = render_prompt(rec, "no_think")
    assert "<think>" not in p
    assert "<answer>YOUR ANSWER HERE</answer>" in p
    assert "\nAnatomy Options:\nA. Liver\n" in p


def test_medr1_layout(rec):
    p = render_prompt(rec, "medr1")
    assert p == (
        "What anatomy is at the top-left of the frame? "
        "A)Liver, B)Cystic Plate, C)Gut, D)Abdominal Wall Cavity "
        "Output the thinking process in <think> </think> "
        "and final answer (option) in <answer> </answer> tags."
    )


def test_compact_layout(rec):
    p = render_prompt(rec, "compact")
    assert p == (
        "What anatomy is at the top-left of the frame?\nOptions:\nA. Liver\nB. Cystic Plate\nC. Gut\n"
        "D. Abdominal Wall Cavity\nThink in <think></think>, answer with the letter in <answer></answer>."
    )
    assert len(p) < len(render_prompt(rec)) / 2


def test_overrides_rerender_reordered_and_reworded(rec):
    p = render_prompt(rec, "compact", options=["Gut", "Liver"], question="Which organ is shown?")
    assert p.startswith("Which organ is shown?\nOptions:\nA. Gut\nB. Liver\n")
    assert "Cystic" not in p


@pytest.mark.parametrize(
    "kwargs",
    [
        {"template": "nope"},
        {"options": []},
        {"question": "  "},
        {"options": ["a", 3]},
        {"options": ["x"] * 27},
    ],
)
def test_bad_render_arguments_are_config_errors(rec, kwargs):
    with pytest.raises(ConfigError):
        render_prompt(rec, **kwargs)


def test_build_messages_one_image_placeholder_per_image(rec):
    msgs = build_messages(rec, "anatomy_r1")
    assert msgs == [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": render_prompt(rec)}],
        }
    ]
    text_only = make_record(id="t", images=[], question="q?", options=["x", "y"], answer_index=0, source="s")
    assert build_messages(text_only, "compact")[0]["content"] == [
        {"type": "text", "text": render_prompt(text_only, "compact")}
    ]


@pytest.mark.parametrize("template", TEMPLATES)
def test_image_placement_follows_the_template(rec, template):
    content = build_messages(rec, template)[0]["content"]
    kinds = [part["type"] for part in content]
    if template in IMAGE_LAST_TEMPLATES:
        assert kinds == ["text", "image", "image"]
    else:
        assert kinds == ["image", "image", "text"]
    assert content[kinds.index("text")]["text"] == render_prompt(rec, template)


def test_compact_prompt_puts_the_image_right_before_the_answer(tiny_model):
    """The point of image-last: the tokens between the image and the model's turn are the same for every
    question, so their rotary offsets are too."""
    from anatomy_r1.models.loading import load_processor

    proc = load_processor(tiny_model)
    short = make_record(
        id="s", images=["a.png"], question="Where?", options=["x", "y"], answer_index=0, source="t"
    )
    long = make_record(
        id="l",
        images=["a.png"],
        question="What anatomy is at the bottom-mid of the frame, next to the clipper?",
        options=["Liver", "Cystic Plate", "Gut", "Omentum"],
        answer_index=0,
        source="t",
    )
    tails = []
    for r in (short, long):
        msgs = build_messages(r, "compact_text")
        text = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        tails.append(text[text.index("<|vision_end|>") :])
    assert tails[0] == tails[1] == "<|vision_end|><|im_end|>\n<|im_start|>assistant\n"


def test_format_target_matches_rewards(rec):
    think = format_target("D", "  The wall is visible.  ", "anatomy_r1")
    assert think == "<think>The wall is visible.</think> <answer>D</answer>"
    assert format_reward([think]) == [1.0]
    assert extract_choice(think, rec.options) == 3
    assert format_target("D", None, "compact") == "<think></think> <answer>D</answer>"
    plain = format_target("D", "ignored", "no_think")
    assert plain == "<answer>D</answer>"
    assert format_reward_no_think([plain]) == [1.0]
    with pytest.raises(ConfigError):
        format_target("", None, "anatomy_r1")
    with pytest.raises(ConfigError):
        format_target("A", None, "bogus")


def test_compact_text_asks_for_the_option_text_and_targets_it(rec_factory=None):
    from anatomy_r1.data.schema import make_record
    from anatomy_r1.errors import ConfigError
    from anatomy_r1.task.prompts import TEXT_ANSWER_TEMPLATES, format_target, render_prompt
    from anatomy_r1.training.rewards import accuracy_reward

    rec = make_record(
        id="q",
        images=["a.png"],
        question="What anatomy is at the top-mid ?",
        options=["Liver", "Gut", "Cystic Plate"],
        answer_index=2,
        source="t",
    )
    text = render_prompt(rec, "compact_text")
    assert "C. Cystic Plate" in text and "write the chosen option" in text
    assert "compact_text" in TEXT_ANSWER_TEMPLATES
    target = format_target(rec.answer_letter, "the top-mid region looks pale", "compact_text", rec.answer)
    assert target == "<think>the top-mid region looks pale</think> <answer>Cystic Plate</answer>"
    # the target the tiny model is trained towards is exactly what the accuracy reward credits
    assert accuracy_reward([target], options=[rec.options], answer_index=[2]) == [1.0]
    assert accuracy_reward([target], options=[rec.options], answer_index=[0]) == [0.0]
    with pytest.raises(ConfigError, match="answer_text"):
        format_target("C", None, "compact_text")
