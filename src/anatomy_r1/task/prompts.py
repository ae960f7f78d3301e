"""Prompt templates that turn a canonical record into the text a model sees.

Records never store rendered prompts (see ``anatomy_r1.data.schema``): the same question is rendered with
whichever template an experiment names, and augmentation (GDQA) re-renders a reworded question or a
reordered option list through the ``question`` / ``options`` overrides. Letters are always derived from
option positions, so a reordered list cannot disagree with the letter the reward expects.

Templates
---------
``anatomy_r1``
    The released Anatomy-R1 instruction layout: surgeon persona, format instruction, then
    ``Question:\\n<q>\\nAnatomy Options:\\nA. ...``. Think in ``<think>``, answer in ``<answer>``.
``medr1``
    Med-R1's OmniMedVQA layout: ``<q> A)opt, B)opt ...`` followed by the think/answer instruction.
``no_think``
    The Anatomy-R1 layout with the answer-only instruction (the released SFT prompt); no ``<think>``.
``compact``
    A minimal prompt for tiny CPU models whose context must stay small.
``compact_text``
    ``compact`` asking for the chosen option's text instead of its letter. Tiny models trained from
    scratch learn "pixels -> class name" far faster than "pixels -> class -> letter of that option";
    the accuracy reward accepts either form.

Image placement
---------------
The paper's templates (and real Qwen-VL checkpoints' habits) put the image before the text. The compact
templates put it after the text, right before the model's turn: with M-RoPE the rotary offset between an
image cell and the answer tokens then no longer depends on how long the question and options are, so a
tiny model trained from scratch can learn to look up "the bottom-mid cell" by position at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from anatomy_r1.data.schema import MAX_OPTIONS, Record, letter
from anatomy_r1.errors import ConfigError

_PERSONA = (
    "You are an expert in cholecystectomy surgical procedures, and I will provide you with a clinical image "
    "of a cholecystectomy surgery. Please analyze the image and answer the question. You should only return "
    "the answer of the question, not any other text."
)
_THINK_INSTRUCTION = (
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags. "
    "The output answer format should be as follows:<think> ... </think> <answer>YOUR ANSWER HERE</answer>."
)
_ANSWER_ONLY_INSTRUCTION = (
    "Output the final answer in <answer> </answer> tags. "
    "The output answer format should be as follows:<answer>YOUR ANSWER HERE</answer>."
)
_MEDR1_INSTRUCTION = (
    "Output the thinking process in <think> </think> and final answer (option) in <answer> </answer> tags."
)
_COMPACT_INSTRUCTION = "Think in <think></think>, answer with the letter in <answer></answer>."
_COMPACT_TEXT_INSTRUCTION = "Think in <think></think>, then write the chosen option in <answer></answer>."


def _one_line(text: str) -> str:
    """Collapse whitespace runs so an option with a stray newline cannot break the lettered layout."""
    return " ".join(text.split())


def _lettered(options: list[str], sep: str) -> list[str]:
    return [f"{letter(i)}{sep}{_one_line(o)}" for i, o in enumerate(options)]


def _anatomy_r1(question: str, options: list[str]) -> str:
    opts = "\n".join(_lettered(options, ". "))
    return f"{_PERSONA} {_THINK_INSTRUCTION}\nQuestion:\n{question}\nAnatomy Options:\n{opts}"


def _no_think(question: str, options: list[str]) -> str:
    opts = "\n".join(_lettered(options, ". "))
    return f"{_PERSONA} {_ANSWER_ONLY_INSTRUCTION}\nQuestion:\n{question}\nAnatomy Options:\n{opts}"


def _medr1(question: str, options: list[str]) -> str:
    opts = ", ".join(_lettered(options, ")"))
    return f"{question} {opts} {_MEDR1_INSTRUCTION}"


def _compact(question: str, options: list[str]) -> str:
    opts = "\n".join(_lettered(options, ". "))
    return f"{question}\nOptions:\n{opts}\n{_COMPACT_INSTRUCTION}"


def _compact_text(question: str, options: list[str]) -> str:
    opts = "\n".join(_lettered(options, ". "))
    return f"{question}\nOptions:\n{opts}\n{_COMPACT_TEXT_INSTRUCTION}"


_RENDERERS: dict[str, Callable[[str, list[str]], str]] = {
    "anatomy_r1": _anatomy_r1,
    "medr1": _medr1,
    "no_think": _no_think,
    "compact": _compact,
    "compact_text": _compact_text,
}

#: Names accepted by ``render_prompt`` / ``build_messages`` / ``format_target``.
TEMPLATES: tuple[str, ...] = tuple(_RENDERERS)

#: Templates whose instruction asks for a ``<think>`` block; the others are answer-only. The reward
#: builder uses this to pick the matching format reward.
THINK_TEMPLATES: frozenset[str] = frozenset({"anatomy_r1", "medr1", "compact", "compact_text"})

#: Templates whose instruction asks for the option text rather than the letter.
TEXT_ANSWER_TEMPLATES: frozenset[str] = frozenset({"compact_text"})

#: Templates that place the image placeholders after the text (see "Image placement" above).
IMAGE_LAST_TEMPLATES: frozenset[str] = frozenset({"compact", "compact_text"})


def check_template(template: str) -> str:
    """Return ``template`` unchanged, or raise ``ConfigError`` listing the known names."""
    if template not in _RENDERERS:
        raise ConfigError(f"unknown prompt template {template!r}; choose one of {', '.join(TEMPLATES)}")
    return template


def uses_think(template: str) -> bool:
    """Whether ``template`` asks the model to reason inside ``<think></think>`` before answering."""
    return check_template(template) in THINK_TEMPLATES


def render_prompt(
    record: Record,
    template: str = "anatomy_r1",
    options: list[str] | None = None,
    question: str | None = None,
) -> str:
    """Render the text prompt for ``record``.

    ``options`` and ``question`` replace the record's own values so an augmented (reworded or reordered)
    variant is rendered exactly like an original; the caller is responsible for remapping the answer index.
    """
    render = _RENDERERS[check_template(template)]
    q = record.question if question is None else question
    opts = record.options if options is None else options
    if not isinstance(q, str) or not q.strip():
        raise ConfigError(f"item {record.id!r}: the question to render is empty")
    if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
        raise ConfigError(f"item {record.id!r}: options must be a list of strings")
    if not 1 <= len(opts) <= MAX_OPTIONS:
        raise ConfigError(f"item {record.id!r}: {len(opts)} options; a prompt needs 1 to {MAX_OPTIONS}")
    return render(q.strip(), opts)


def build_messages(
    record: Record,
    template: str = "anatomy_r1",
    options: list[str] | None = None,
    question: str | None = None,
) -> list[dict[str, Any]]:
    """Conversational prompt in the structured form TRL and Qwen-VL processors expect.

    One ``{"type": "image"}`` placeholder per record image, before or after the text as the template
    places it; TRL fills the placeholders from the dataset's image column in order, so the count must match
    the record's images.
    """
    text = render_prompt(record, template, options=options, question=question)
    return user_turn(text, len(record.images), template)


def user_turn(text: str, n_images: int, template: str) -> list[dict[str, Any]]:
    """The one user message for an already rendered prompt ``text`` with ``n_images`` image placeholders."""
    images: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
    part: list[dict[str, Any]] = [{"type": "text", "text": text}]
    content = part + images if check_template(template) in IMAGE_LAST_TEMPLATES else images + part
    return [{"role": "user", "content": content}]


def format_target(letter: str, rationale: str | None, template: str, answer_text: str | None = None) -> str:
    """Target completion for supervised warm-up in the format the template's instruction asks for.

    Think templates get ``<think>{rationale}</think> <answer>{letter}</answer>`` (an empty think block
    when no rationale is known); ``no_think`` gets ``<answer>{letter}</answer>`` and ignores the rationale.
    """
    think = uses_think(template)
    if not isinstance(letter, str) or not letter.strip():
        raise ConfigError("a target needs a non-empty answer letter")
    shown = letter.strip()
    if template in TEXT_ANSWER_TEMPLATES:
        if not isinstance(answer_text, str) or not answer_text.strip():
            raise ConfigError(f"template {template!r} answers with the option text; give answer_text")
        shown = " ".join(answer_text.split())
    answer = f"<answer>{shown}</answer>"
    if not think:
        return answer
    return f"<think>{(rationale or '').strip()}</think> {answer}"
