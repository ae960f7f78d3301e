"""Reward functions: exact semantics, TRL call shape, robustness and hypothesis properties."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from anatomy_r1.errors import ConfigError
from anatomy_r1.training.rewards import (
    accuracy_reward,
    build_reward_funcs,
    format_reward,
    format_reward_no_think,
    reward_names,
)

OPTS = ["Liver", "Gallbladder", "Cystic Plate", "Abdominal Wall Cavity"]
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def acc(completion, answer_index=1, options=OPTS) -> float:
    return accuracy_reward([completion], answer_index=[answer_index], options=[options])[0]


@pytest.mark.parametrize(
    "content",
    [
        "B",
        "b",
        " B ",
        "B.",
        "B)",
        "(B)",
        "[B]",
        "B:",
        "B. Gallbladder",
        "B) gallbladder",
        "(b) GALLBLADDER.",
        "B: Gallbladder",
        "Gallbladder",
        "  gallbladder \n",
        "the answer is B",
        "The answer is (B)",
        "Answer: B. Gallbladder",
        "option B",
        "The correct answer is gallbladder",
    ],
)
def test_accepted_answer_forms(content):
    assert acc(f"<think>x</think> <answer>{content}</answer>") == 1.0


@pytest.mark.parametrize(
    "completion",
    [
        "<answer>A, B</answer>",
        "<answer>A and C</answer>",
        "<answer>B or C</answer>",
        "<answer></answer>",
        "<answer>   </answer>",
        "B",
        "the answer is B",
        "<answer>B",
        "B</answer>",
        "<answer>B</answer> <answer>B</answer>",
        "<answer><answer>B</answer>",
        "<answer>B</answer></answer>",
        "</answer>B<answer>",
        "<answer>E</answer>",
        "<answer>B. Liver</answer>",
        "<answer>B because it is green</answer>",
        "<answer>the answer is B, not C</answer>",
        "<answer>Gall bladder</answer>",
        "<answer>I think B</answer>",
        "<ANSWER>B</ANSWER>",
        "<answer>AB</answer>",
    ],
)
def test_rejected_answer_forms(completion):
    assert acc(completion) == 0.0


def test_wrong_letter_scores_zero_and_conversational_completions():
    assert acc("<answer>A</answer>") == 0.0
    conv = [{"role": "assistant", "content": "<think>t</think><answer>B</answer>"}]
    parts = [
        {"role": "assistant", "content": [{"type": "text", "text": "<think>t</think><answer>B</answer>"}]}
    ]
    assert accuracy_reward([conv, parts], answer_index=[1, 1], options=[OPTS, OPTS]) == [1.0, 1.0]
    assert format_reward([conv, parts]) == [1.0, 1.0]


def test_letter_and_text_readings_that_disagree_are_invalid():
    assert acc("<answer>B</answer>", answer_index=0, options=["B", "A"]) == 0.0
    assert acc("<answer>A</answer>", answer_index=0, options=["A", "B"]) == 1.0


def test_trl_call_shape_extra_columns_and_log_metric():
    logged: list[tuple[str, float]] = []
    out = accuracy_reward(
        prompts=["p"] * 3,
        completions=["<answer>B</answer>", "<answer>A</answer>", "junk"],
        completion_ids=[[1], [2], [3]],
        answer_index=[1, 1, 1],
        options=[OPTS] * 3,
        question=["q"] * 3,
        meta=["{}"] * 3,
        trainer_state=object(),
        log_extra=lambda *a: None,
        log_metric=lambda name, value: logged.append((name, value)),
    )
    assert out == [1.0, 0.0, 0.0]
    assert logged == [("invalid_answer_rate", pytest.approx(1 / 3))]


@pytest.mark.parametrize(
    "completion",
    [
        "<think>r</think><answer>B</answer>",
        "  \n<think>\nlong\nreasoning\n</think>\n\n<answer> B </answer>\n",
        "<think></think><answer></answer>",
    ],
)
def test_format_accepts(completion):
    assert format_reward([completion]) == [1.0]


@pytest.mark.parametrize(
    "completion",
    [
        "<answer>B</answer>",
        "<think>r</think>",
        "x<think>r</think><answer>B</answer>",
        "<think>r</think>x<answer>B</answer>",
        "<think>r</think><answer>B</answer>x",
        "<answer>B</answer><think>r</think>",
        "<think>r</think><answer>B</answer><answer>B</answer>",
        "<think><think>r</think><answer>B</answer>",
        "<think>r</think></think><answer>B</answer>",
        "<think>r<answer>B</answer></think>",
        "<think>r</think><answer>B",
        "</think>r<think><answer>B</answer>",
        "<think>r</think><answer>B</answer></answer>",
        "",
    ],
)
def test_format_rejects(completion):
    assert format_reward([completion]) == [0.0]


def test_format_no_think():
    assert format_reward_no_think(
        [
            " <answer>B</answer>\n",
            "<think>r</think><answer>B</answer>",
            "x<answer>B</answer>",
            "<answer>B</answer><answer>B</answer>",
        ]
    ) == [1.0, 0.0, 0.0, 0.0]


GARBAGE = [
    None,
    3,
    2.5,
    b"<answer>B</answer>",
    {"content": None},
    {"role": "assistant", "content": 7},
    [[["deep"]]],
    [{"role": "assistant", "content": [{"type": "text", "text": None}]}],
    [None],
    object(),
    float("nan"),
    [{"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": "<answer>B</answer>"}]}],
]


@pytest.mark.parametrize("func", [accuracy_reward, format_reward, format_reward_no_think])
def test_never_raises_on_garbage(func):
    out = func(
        completions=GARBAGE, answer_index=[1, None, "1", True] * 3, options=[OPTS, None, "Liver", [1, 2]] * 3
    )
    assert len(out) == len(GARBAGE)
    assert all(x in (0.0, 1.0) for x in out)
    assert func(completions=None) == []
    assert func(completions="not a list") == []
    assert func() == []


def test_image_part_is_skipped():
    comp = [
        {"role": "assistant", "content": [{"type": "image"}, {"type": "text", "text": "<answer>B</answer>"}]}
    ]
    assert acc(comp) == 1.0


def test_missing_truth_columns_score_zero():
    assert accuracy_reward(["<answer>B</answer>"]) == [0.0]
    assert accuracy_reward(["<answer>B</answer>"] * 2, answer_index=[1], options=[OPTS]) == [1.0, 0.0]


@pytest.mark.parametrize("size", [1_000_000, 4_000_000])
def test_megabyte_hostile_inputs_complete(size):
    n = size // 8
    hostile = [
        "<answer>" * n,
        "<think>" * n + "</think>" * n,
        "A" * size,
        "<answer>" + "A" * size + "</answer>",
        "<think>" + "x " * (size // 2) + "</think><answer>B</answer>",
        "<answer>" + "B. " * (size // 3) + "</answer>",
        "</answer><answer>" * n,
        "<answer>" + " " * size + "B" + "." * size + "</answer>",
        "<answer>the answer is " + "(" * size + "</answer>",
    ]
    acc_out = accuracy_reward(hostile, answer_index=[1] * len(hostile), options=[OPTS] * len(hostile))
    assert acc_out == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    assert format_reward(hostile) == [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert format_reward_no_think(hostile) == [0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0]


# --- properties -----------------------------------------------------------------------------------

option_text = st.text(alphabet=string.ascii_letters + " -'", min_size=1, max_size=20).filter(
    lambda s: s.strip()
)
option_lists = st.lists(
    option_text, min_size=2, max_size=8, unique_by=lambda s: " ".join(s.split()).casefold()
)
space = st.text(alphabet=" \t\n", max_size=3)


@PROPS
@given(opts=option_lists, data=st.data(), pre=space, post=space, think=st.text(max_size=40))
def test_correct_letter_always_scores_one(opts, data, pre, post, think):
    idx = data.draw(st.integers(0, len(opts) - 1))
    think = think.replace("<", "")
    letter = data.draw(st.sampled_from([string.ascii_uppercase[idx], string.ascii_lowercase[idx]]))
    completion = f"{pre}<think>{think}</think>{pre}<answer>{pre}{letter}{post}</answer>{post}"
    # An option text that is itself a single letter may legitimately make the reading ambiguous.
    if not any(" ".join(o.split()).casefold() == letter.casefold() for o in opts):
        assert accuracy_reward([completion], answer_index=[idx], options=[opts]) == [1.0]
    assert format_reward([completion]) == [1.0]


@PROPS
@given(opts=option_lists, data=st.data())
def test_any_other_letter_scores_zero(opts, data):
    idx = data.draw(st.integers(0, len(opts) - 1))
    other = data.draw(
        st.sampled_from([c for c in string.ascii_uppercase if c != string.ascii_uppercase[idx]])
    )
    # An option whose text is itself that letter is legitimately named by its text.
    assume(not any(" ".join(o.split()).casefold() == other.casefold() for o in opts))
    assert accuracy_reward([f"<answer>{other}</answer>"], answer_index=[idx], options=[opts]) == [0.0]


@PROPS
@given(opts=option_lists, data=st.data(), extra=st.text(max_size=10))
def test_second_answer_tag_scores_zero(opts, data, extra):
    idx = data.draw(st.integers(0, len(opts) - 1))
    letter = string.ascii_uppercase[idx]
    completion = f"<think>t</think><answer>{letter}</answer>{extra}<answer>{extra}</answer>"
    assert accuracy_reward([completion], answer_index=[idx], options=[opts]) == [0.0]
    assert format_reward([completion]) == [0.0]


@PROPS
@given(text=st.text(max_size=300), opts=st.lists(st.text(max_size=10), max_size=5), idx=st.integers(-3, 30))
def test_never_raises_on_arbitrary_text(text, opts, idx):
    for completion in (text, f"<answer>{text}</answer>", f"<think>{text}</think><answer>{text}</answer>"):
        for func in (accuracy_reward, format_reward, format_reward_no_think):
            out = func(completions=[completion], answer_index=[idx], options=[opts])
            assert out in ([0.0], [1.0])


@PROPS
@given(opts=option_lists, data=st.data(), pre=space, post=space)
def test_option_text_invariant_to_case_and_whitespace(opts, data, pre, post):
    idx = data.draw(st.integers(0, len(opts) - 1))
    words = opts[idx].split()
    seps = data.draw(
        st.lists(st.sampled_from([" ", "  ", "\t", "\n "]), min_size=len(words), max_size=len(words))
    )
    spelled = "".join(w + s for w, s in zip(words, seps, strict=True)).strip()
    variants = [spelled, spelled.upper(), spelled.lower(), spelled.swapcase()]
    for v in variants:
        completion = f"<answer>{pre}{v}{post}</answer>"
        expected = accuracy_reward([f"<answer>{opts[idx]}</answer>"], answer_index=[idx], options=[opts])
        assert accuracy_reward([completion], answer_index=[idx], options=[opts]) == expected


def test_build_reward_funcs():
    funcs, weights = build_reward_funcs({"accuracy": 1.0, "format": 0.5}, "anatomy_r1")
    assert funcs == [accuracy_reward, format_reward] and weights == [1.0, 0.5]
    assert reward_names(funcs) == ["accuracy_reward", "format_reward"]
    funcs, weights = build_reward_funcs({"format_reward": 1, "accuracy_reward": 2}, "no_think")
    assert funcs == [format_reward_no_think, accuracy_reward] and weights == [1.0, 2.0]
    for bad in (
        {},
        {"bleu": 1.0},
        {"accuracy": "1"},
        {"accuracy": float("inf")},
        {"accuracy": True},
        {"format": 1.0, "format_reward": 1.0},
    ):
        with pytest.raises(ConfigError):
            build_reward_funcs(bad, "anatomy_r1")
    with pytest.raises(ConfigError):
        build_reward_funcs({"accuracy": 1.0}, "unknown-template")


def test_valid_choice_reward_scores_offered_options_only() -> None:
    from anatomy_r1.training.rewards import build_reward_funcs, valid_choice_reward

    options = [["Liver", "Gut", "Omentum", "Cystic Duct"]] * 4
    completions = [
        "<think>x</think> <answer>Gut</answer>",  # offered, wrong or right alike
        "<think>x</think> <answer>Gallbladder</answer>",  # a class that is not on offer
        "<think>x</think> <answer></answer>",  # empty
        "no tags at all",
    ]
    assert valid_choice_reward(completions=completions, options=options) == [1.0, 0.0, 0.0, 0.0]
    funcs, weights = build_reward_funcs({"accuracy": 1.0, "valid_choice": 0.5}, "compact_text")
    assert [f.__name__ for f in funcs] == ["accuracy_reward", "valid_choice_reward"] and weights == [1.0, 0.5]


def test_valid_choice_weight_reaches_trl_only_when_set() -> None:
    from anatomy_r1.training.args import grpo_args
    from anatomy_r1.training.config import load_config

    off = load_config(None, ["grpo.max_steps=1"])
    on = load_config(None, ["grpo.max_steps=1", "rewards.valid_choice=0.5"])
    assert off.rewards.spec() == {"accuracy": 1.0, "format": 0.5}
    assert grpo_args(on, "o").reward_weights == [1.0, 0.5, 0.5]


# --- answer forms per template -------------------------------------------------------------------------

RELEASE_OPTS = ["Gallbladder", "Liver", "Gut", "Omentum"]


def release_record(instruction: str, solution: str):
    from anatomy_r1.data.converters.release import convert_item

    lines = "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(RELEASE_OPTS))
    prompt = f"{instruction}\nQuestion:\nWhat anatomy is at the top-mid ?\nAnatomy Options:\n{lines}"
    return convert_item({"instruction": prompt, "solution": solution, "images": "/a/VID01/1.png"}, 0, "r")


def test_source_items_are_scored_in_their_own_answer_form():
    """A letter-form item's letter and a text-form item's text both earn the reward, and each item's SFT
    target is exactly what the reward credits; wrong answers in either form score zero."""
    from anatomy_r1.task.prompts import record_target

    tags = "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
    letter_item = release_record(f"Expert persona. Return the choice letter. {tags}", "C")
    text_item = release_record(f"Expert persona. Return the answer of the question. {tags}", "B")
    assert (letter_item.meta["source_answer_form"], text_item.meta["source_answer_form"]) == (
        "letter",
        "text",
    )
    targets = [record_target(letter_item, "source"), record_target(text_item, "source")]
    assert targets == ["<think></think> <answer>C</answer>", "<think></think> <answer>Liver</answer>"]
    columns = {"options": [RELEASE_OPTS] * 2, "answer_index": [2, 1]}
    assert accuracy_reward(targets, **columns) == [1.0, 1.0]
    funcs, _ = build_reward_funcs({"accuracy": 1.0, "format": 1.0}, "source")
    assert funcs == [accuracy_reward, format_reward]
    assert format_reward(targets) == [1.0, 1.0]
    wrong = ["<think></think> <answer>B</answer>", "<think></think> <answer>Gut</answer>"]
    assert accuracy_reward(wrong, **columns) == [0.0, 0.0]
    # the rule is the one every template has: the other form is read too
    other = ["<think></think> <answer>Gut</answer>", "<think></think> <answer>B</answer>"]
    assert accuracy_reward(other, **columns) == [1.0, 1.0]


@pytest.mark.parametrize("template", ["anatomy_r1", "medr1", "no_think", "compact", "compact_image_first"])
def test_letter_templates_targets_score_under_their_format(template):
    from anatomy_r1.data.schema import make_record
    from anatomy_r1.task.prompts import record_target, uses_think

    rec = make_record(id="q", images=["a.png"], question="Where?", options=OPTS, answer_index=1, source="t")
    target = record_target(rec, template)
    assert "<answer>B</answer>" in target
    funcs, _ = build_reward_funcs({"accuracy": 1.0, "format": 1.0}, template)
    assert funcs == [accuracy_reward, format_reward if uses_think(template) else format_reward_no_think]
    assert [f([target], options=[OPTS], answer_index=[1])[0] for f in funcs] == [1.0, 1.0]
