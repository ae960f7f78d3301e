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
``compact_image_first``
    ``compact`` word for word (answer with the letter) with the image before the text, as the release
    places it. Comparing it with ``compact`` isolates what the image's position does to a tiny model.
``source``
    Each item's own instruction, as its release file wrote it: ``meta.source_instruction``, then
    ``Question:\\n<q>\\n<meta.source_options_header>\\nA. ...``, image first. The answer form (letter or
    option text) is the item's ``meta.source_answer_form``, because the authors' files differ in what
    they ask for. The ``anatomy-r1`` converter keeps these three keys; a record without them cannot be
    rendered (:func:`check_template_fits` lists such records before a run starts). Think-block template:
    an item whose instruction asks for no ``<think>`` block is refused for training, since the format
    reward would then contradict its own instruction.

:data:`TEMPLATE_NAMES` lists every name a config may give. :data:`TEMPLATES` holds one template per
wording that renders any record from its question and options alone: it is what a tokenizer corpus
iterates (the tiny base model's, whose recipe key does not cover the corpus). ``compact_image_first``
repeats ``compact``'s words and ``source`` has no words of its own, so neither is in it. A template with
new words added to it changes the tokenizer of a newly built base model, so the recipe must change too.

Image placement
---------------
The paper's templates (and real Qwen-VL checkpoints' habits) put the image before the text. ``compact``
and ``compact_text`` put it after the text, right before the model's turn: with M-RoPE the rotary offset
between an image cell and the answer tokens then no longer depends on how long the question and options
are, so a tiny model trained from scratch can learn to look up "the bottom-mid cell" by position at all.
``compact_image_first`` and ``source`` keep the release's order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any, Literal

from anatomy_r1.data.schema import MAX_OPTIONS, Record, letter
from anatomy_r1.errors import ConfigError, DataError

AnswerForm = Literal["letter", "text"]

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

#: One template per wording that renders any valid record from its question and options alone (see above).
TEMPLATES: tuple[str, ...] = tuple(_RENDERERS)

#: Templates that render another's text unchanged and differ only in where the image goes.
_SAME_WORDS: dict[str, str] = {"compact_image_first": "compact"}

#: The template that renders each item with its own release instruction (see ``source`` above).
SOURCE_TEMPLATE = "source"

#: Every name ``check_template`` (so ``render_prompt``, ``build_messages``, ``format_target``) accepts.
TEMPLATE_NAMES: tuple[str, ...] = (*TEMPLATES, *_SAME_WORDS, SOURCE_TEMPLATE)

#: Templates whose instruction asks for a ``<think>`` block; the others are answer-only. The reward
#: builder uses this to pick the matching format reward.
THINK_TEMPLATES: frozenset[str] = frozenset(
    {"anatomy_r1", "medr1", "compact", "compact_text", "compact_image_first", SOURCE_TEMPLATE}
)

#: Templates whose instruction asks for the option text rather than the letter. ``source`` is in neither
#: this set nor the letter ones: its form is each item's own (:func:`answer_form`).
TEXT_ANSWER_TEMPLATES: frozenset[str] = frozenset({"compact_text"})

#: Templates that place the image placeholders after the text (see "Image placement" above).
IMAGE_LAST_TEMPLATES: frozenset[str] = frozenset({"compact", "compact_text"})

#: The ``meta`` keys ``source`` renders from; the ``anatomy-r1`` converter writes them.
SOURCE_INSTRUCTION = "source_instruction"
SOURCE_OPTIONS_HEADER = "source_options_header"
SOURCE_ANSWER_FORM = "source_answer_form"
ANSWER_FORMS: tuple[AnswerForm, ...] = ("letter", "text")

#: Items lacking what a template needs that :func:`check_template_fits` names before counting the rest.
UNFIT_LISTED = 5


def check_template(template: str) -> str:
    """Return ``template`` unchanged, or raise ``ConfigError`` listing the known names."""
    if template not in TEMPLATE_NAMES:
        raise ConfigError(f"unknown prompt template {template!r}; choose one of {', '.join(TEMPLATE_NAMES)}")
    return template


def _source_fields(record: Record) -> tuple[str, str, AnswerForm]:
    """``(instruction, options header, answer form)`` from the record's meta, or ``DataError`` naming
    the item and the first key that is missing or unusable.

    Each value is checked rather than trusted because hand-written JSONL can carry these keys too, and a
    header with a line break would shift every option line the reward's letters refer to.
    """
    meta = record.meta if isinstance(record.meta, dict) else {}
    instruction = meta.get(SOURCE_INSTRUCTION)
    header = meta.get(SOURCE_OPTIONS_HEADER)
    form = meta.get(SOURCE_ANSWER_FORM)
    where = f"item {record.id!r}: template {SOURCE_TEMPLATE!r}"
    if not isinstance(instruction, str) or not instruction.strip():
        raise DataError(
            f"{where} needs meta.{SOURCE_INSTRUCTION} (the item's own instruction, which the anatomy-r1 "
            "converter keeps); this item has none"
        )
    if not isinstance(header, str) or not header.strip() or "\n" in header.strip():
        raise DataError(f"{where} needs meta.{SOURCE_OPTIONS_HEADER} as one line, got {header!r}")
    if form not in ANSWER_FORMS:
        raise DataError(f"{where} needs meta.{SOURCE_ANSWER_FORM} 'letter' or 'text', got {form!r}")
    return instruction.strip(), header.strip(), form


def _source(record: Record, question: str, options: list[str]) -> str:
    instruction, header, _ = _source_fields(record)
    opts = "\n".join(_lettered(options, ". "))
    return f"{instruction}\nQuestion:\n{question}\n{header}\n{opts}"


def _fixed_form(template: str) -> AnswerForm | None:
    """The answer form every item takes under ``template``; None for ``source``, where each item says."""
    if template == SOURCE_TEMPLATE:
        return None
    return "text" if template in TEXT_ANSWER_TEMPLATES else "letter"


def answer_form(record: Record, template: str) -> AnswerForm:
    """What ``template`` asks ``record``'s answer to be: the option's ``"letter"`` or its ``"text"``.

    Fixed per template except for ``source``, where it is the item's own (``DataError`` when missing).
    """
    fixed = _fixed_form(check_template(template))
    return _source_fields(record)[2] if fixed is None else fixed


def _unfit(record: Record, template: str) -> str | None:
    """Why ``record`` cannot be trained on with ``template`` (``None`` when it can)."""
    if template != SOURCE_TEMPLATE:
        return None
    try:
        instruction, _, _ = _source_fields(record)
    except DataError as e:
        return str(e)
    if "<think>" not in instruction:
        return (
            f"item {record.id!r}: its instruction asks for no <think> block, but template "
            f"{SOURCE_TEMPLATE!r} trains towards one (the release's GRPO instruction asks for it)"
        )
    return None


def check_template_fits(records: Iterable[Record], template: str, path: str | os.PathLike[str]) -> None:
    """Raise one ``DataError`` naming ``path`` and the first items ``template`` cannot train on.

    Meant for a run's checks before it writes anything: otherwise the first such item would fail while
    the dataset is built, after the output folder exists, and name only itself. Templates that render
    from the question and options alone fit every valid record; ``ConfigError`` for an unknown name.
    """
    check_template(template)
    unfit: list[str] = []
    count = 0
    for rec in records:
        problem = _unfit(rec, template)
        if problem is not None:
            count += 1
            if len(unfit) < UNFIT_LISTED:
                unfit.append(problem)
    if count:
        more = f"; and {count - len(unfit)} more" if count > len(unfit) else ""
        raise DataError(
            f"{os.fspath(path)}: {count} item(s) cannot be used with template {template!r}: "
            f"{'; '.join(unfit)}{more}"
        )


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
    check_template(template)
    q = record.question if question is None else question
    opts = record.options if options is None else options
    if not isinstance(q, str) or not q.strip():
        raise ConfigError(f"item {record.id!r}: the question to render is empty")
    if not isinstance(opts, list) or not all(isinstance(o, str) for o in opts):
        raise ConfigError(f"item {record.id!r}: options must be a list of strings")
    if not 1 <= len(opts) <= MAX_OPTIONS:
        raise ConfigError(f"item {record.id!r}: {len(opts)} options; a prompt needs 1 to {MAX_OPTIONS}")
    if template == SOURCE_TEMPLATE:
        return _source(record, q.strip(), opts)
    return _RENDERERS[_SAME_WORDS.get(template, template)](q.strip(), opts)


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


def format_target(
    letter: str,
    rationale: str | None,
    template: str,
    answer_text: str | None = None,
    form: AnswerForm | None = None,
) -> str:
    """Target completion for supervised warm-up in the format the template's instruction asks for.

    Think templates get ``<think>{rationale}</think> <answer>{letter}</answer>`` (an empty think block
    when no rationale is known); ``no_think`` gets ``<answer>{letter}</answer>`` and ignores the rationale.
    Text-answer templates show ``answer_text`` instead of the letter. ``form`` is the item's answer form:
    required for ``source``, whose form differs per item, and for any other template it must agree with
    the template's, so a caller passing :func:`answer_form` everywhere cannot train the wrong form.
    """
    think = uses_think(template)
    if not isinstance(letter, str) or not letter.strip():
        raise ConfigError("a target needs a non-empty answer letter")
    fixed = _fixed_form(template)
    if form is None and fixed is None:
        raise ConfigError(
            f"template {template!r} answers in each item's own form; give form (see record_target)"
        )
    if form is not None and (form not in ANSWER_FORMS or (fixed is not None and form != fixed)):
        raise ConfigError(
            f"template {template!r} answers with the {fixed or 'letter or text'}, not form {form!r}"
        )
    shown = letter.strip()
    if (form or fixed) == "text":
        if not isinstance(answer_text, str) or not answer_text.strip():
            raise ConfigError(f"template {template!r} answers with the option text; give answer_text")
        shown = " ".join(answer_text.split())
    answer = f"<answer>{shown}</answer>"
    if not think:
        return answer
    return f"<think>{(rationale or '').strip()}</think> {answer}"


def record_target(record: Record, template: str) -> str:
    """:func:`format_target` for ``record``: its letter or option text as the template (or, for ``source``,
    the item) asks, after its ``meta.rationale`` when it has one."""
    return format_target(
        record.answer_letter,
        record.meta.get("rationale"),
        template,
        record.answer,
        form=answer_form(record, template),
    )
