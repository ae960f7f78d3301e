"""Prompt templates: layout, overrides, conversational form and SFT targets."""

from __future__ import annotations

import pytest

from anatomy_r1.data.converters.release import convert_item
from anatomy_r1.data.schema import Record, make_record
from anatomy_r1.errors import ConfigError, DataError
from anatomy_r1.task.answers import extract_choice
from anatomy_r1.task.prompts import (
    IMAGE_LAST_TEMPLATES,
    TEMPLATE_NAMES,
    TEMPLATES,
    answer_form,
    build_messages,
    check_template_fits,
    format_target,
    record_target,
    render_prompt,
    uses_think,
)
from anatomy_r1.training.rewards import format_reward, format_reward_no_think

# The two instruction versions of the release, in its layout (wording made up for these tests): one asks
# for the answer itself, the other for the choice letter.
TEXT_INSTRUCTION = (
    "You are a surgeon reviewing a laparoscopic cholecystectomy frame. Reply with the answer of the "
    "question only. Output the thinking process in <think> </think> and final answer in <answer> </answer> "
    "tags."
)
LETTER_INSTRUCTION = (
    "You are a surgeon reviewing a laparoscopic cholecystectomy frame. Reply with the choice letter only. "
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
)


def release_prompt(instruction: str, question: str, options: list[str]) -> str:
    lines = "\n".join(f"{'ABCDEFGH'[i]}. {o}" for i, o in enumerate(options))
    return f"{instruction}\nQuestion:\n{question}\nAnatomy Options:\n{lines}"


RELEASE_ITEMS = [
    {
        "instruction": release_prompt(
            TEXT_INSTRUCTION, "What anatomy is at the top-mid of the frame ?", ["Gut", "Liver", "Omentum"]
        ),
        "solution": "B",
        "answer": "Liver",
        "images": "/CholecT45/data/VID01/000021.png",
    },
    {
        "instruction": release_prompt(
            LETTER_INSTRUCTION,
            "What is the anatomy that is below the grasper?",
            ["Cystic Plate", "Gallbladder", "Gut", "Liver"],
        ),
        "solution": "C",
        "answer": "Gut",
        "images": "/CholecT45/data/VID02/000147.png",
    },
]


def converted() -> list[Record]:
    return [convert_item(obj, i, f"release.json:item {i}") for i, obj in enumerate(RELEASE_ITEMS)]


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
    # TEMPLATES is what a tokenizer corpus renders: one entry per wording, so the tiny base model a new
    # build makes is the same as before compact_image_first (compact's words) and source (none) existed
    assert (*TEMPLATES, "compact_image_first", "source") == TEMPLATE_NAMES
    assert {"compact", "compact_text"} == IMAGE_LAST_TEMPLATES
    assert [uses_think(t) for t in ("anatomy_r1", "medr1", "compact", "no_think")] == [
        True,
        True,
        True,
        False,
    ]
    assert uses_think("compact_image_first") and uses_think("source")


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


@pytest.mark.parametrize("template", [*TEMPLATES, "compact_image_first"])
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


# --- compact_image_first ----------------------------------------------------------------------------


def test_compact_image_first_is_compact_with_the_image_before_the_text(rec):
    text = render_prompt(rec, "compact_image_first")
    assert text == render_prompt(rec, "compact")
    assert text.endswith("answer with the letter in <answer></answer>.")
    content = build_messages(rec, "compact_image_first")[0]["content"]
    assert content == [{"type": "image"}, {"type": "image"}, {"type": "text", "text": text}]
    assert build_messages(rec, "compact")[0]["content"][0] == {"type": "text", "text": text}
    assert answer_form(rec, "compact_image_first") == "letter"
    target = record_target(rec, "compact_image_first")
    assert target == "<think></think> <answer>D</answer>"
    assert format_reward([target]) == [1.0] and extract_choice(target, rec.options) == 3


# --- source ------------------------------------------------------------------------------------------


def test_source_renders_each_items_own_instruction_image_first():
    text_item, letter_item = converted()
    for rec, obj in zip((text_item, letter_item), RELEASE_ITEMS, strict=True):
        text = render_prompt(rec, "source")
        assert text == obj["instruction"]  # the release's layout, character for character
        assert build_messages(rec, "source") == [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}
        ]
    assert [answer_form(r, "source") for r in (text_item, letter_item)] == ["text", "letter"]


def test_source_rerenders_a_reworded_question_and_reordered_options():
    _, rec = converted()
    text = render_prompt(
        rec, "source", options=["Gut", "Liver"], question="  Which organ lies below the grasper? "
    )
    assert text == (
        f"{LETTER_INSTRUCTION}\nQuestion:\nWhich organ lies below the grasper?\n"
        "Anatomy Options:\nA. Gut\nB. Liver"
    )


def test_source_header_is_the_items_own():
    rec = converted()[0]
    rec.meta["source_options_header"] = "Options:"
    assert render_prompt(rec, "source").endswith(
        "\nQuestion:\nWhat anatomy is at the top-mid of the frame ?\nOptions:\nA. Gut\nB. Liver\nC. Omentum"
    )


def test_source_targets_follow_each_items_answer_form():
    text_item, letter_item = converted()
    assert record_target(text_item, "source") == "<think></think> <answer>Liver</answer>"
    assert record_target(letter_item, "source") == "<think></think> <answer>C</answer>"
    assert format_target("C", "below the grasper", "source", "Gut", form="letter") == (
        "<think>below the grasper</think> <answer>C</answer>"
    )
    with pytest.raises(ConfigError, match="form"):
        format_target("C", None, "source", "Gut")  # the form is per item: it must be given
    with pytest.raises(ConfigError, match="form"):
        format_target("C", None, "source", "Gut", form="word")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="form"):
        format_target(
            "C", None, "compact", "Gut", form="text"
        )  # a fixed template's form cannot be overridden
    # for fixed templates record_target is format_target as the SFT dataset calls it
    for template in (*TEMPLATES, "compact_image_first"):
        assert record_target(text_item, template) == format_target(
            text_item.answer_letter, None, template, text_item.answer
        )


def test_source_without_an_instruction_is_refused_naming_the_item(rec):
    with pytest.raises(DataError, match=r"item 'q1': template 'source' needs meta\.source_instruction"):
        render_prompt(rec, "source")
    with pytest.raises(DataError, match="'q1'"):
        build_messages(rec, "source")
    with pytest.raises(DataError, match="'q1'"):
        record_target(rec, "source")
    good = converted()[0]
    for key, value, needle in (
        ("source_instruction", "  ", "source_instruction"),
        ("source_options_header", "Anatomy\nOptions:", "source_options_header"),
        ("source_options_header", None, "source_options_header"),
        ("source_answer_form", "word", "source_answer_form"),
    ):
        bad = make_record(
            id="odd",
            images=["a.png"],
            question="Where?",
            options=["x", "y"],
            answer_index=0,
            source="t",
            meta={**good.meta, key: value},
        )
        with pytest.raises(DataError, match=f"item 'odd'.*{needle}"):
            render_prompt(bad, "source")


def test_check_template_fits_names_the_file_and_the_first_unfit_items(rec, tmp_path):
    records = converted()
    check_template_fits(records, "source", tmp_path / "train.jsonl")  # release items fit
    plain = [
        make_record(
            id=f"p{i}", images=["a.png"], question="Where?", options=["x", "y"], answer_index=0, source="t"
        )
        for i in range(7)
    ]
    for template in (*TEMPLATES, "compact_image_first"):  # need only the question and options
        check_template_fits([*records, *plain], template, "train.jsonl")
    with pytest.raises(DataError) as err:
        check_template_fits([*records, *plain], "source", tmp_path / "train.jsonl")
    message = str(err.value)
    assert message.startswith(
        f"{tmp_path / 'train.jsonl'}: 7 item(s) cannot be used with template 'source': "
    )
    assert all(f"item 'p{i}'" in message for i in range(5)) and "'p5'" not in message
    assert message.endswith("; and 2 more")
    with pytest.raises(ConfigError):
        check_template_fits(records, "nope", "train.jsonl")


def test_check_template_fits_refuses_an_instruction_without_a_think_block():
    """An SFT prompt asks for the answer only; trained with source's think format it would be told one
    thing and rewarded for another."""
    obj = {
        "sft_prompt": "<image>"
        + release_prompt(
            "You are a surgeon. Output the final answer in <answer> </answer> tags.",
            "Where?",
            ["Gut", "Liver"],
        ),
        "solution": "A",
        "images": "/x/VID01/000001.png",
    }
    rec = convert_item(obj, 0, "sft.json:item 0")
    assert render_prompt(rec, "source").startswith("You are a surgeon. Output the final answer")  # renders
    with pytest.raises(DataError, match=r"sft\.json: 1 item\(s\).*'anatomy-r1-0'.*no <think> block"):
        check_template_fits([rec], "source", "sft.json")


def test_synthetic_records_cannot_be_rendered_with_source(tiny_data):
    from anatomy_r1.data.io import read_records

    records = read_records(tiny_data / "train.jsonl")
    assert not any(k.startswith("source_") for r in records for k in r.meta)
    path = tiny_data / "train.jsonl"
    with pytest.raises(DataError, match=f"^{path}: {len(records)} item"):
        check_template_fits(records, "source", path)
    check_template_fits(records, "compact_image_first", path)
