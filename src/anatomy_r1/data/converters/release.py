"""The Anatomy-R1 release format (``GRPO.json``): prompts with the question and lettered options inline.

Items carry no separate question/options fields, so both are parsed back out of the prompt text
(``instruction``, else ``sft_prompt`` / ``sft_instruction``): the text after the last ``Question:`` up to an
``... Options:`` header is the question, and the following ``A. text`` lines are the options.

The text before ``Question:`` (the persona and format instruction) is kept in ``meta.source_instruction``
and the header line (``Anatomy Options:``) in ``meta.source_options_header``, so the ``source`` prompt
template can render an item, reworded or not, exactly as its file did: the authors' files do not all ask
for the same thing. ``<image>`` placeholders in the SFT prompts are dropped from the instruction, since
where the image goes is the template's business. ``meta.source_answer_form`` says what the instruction
asks the answer to be, read from its wording by :func:`instruction_answer_form`.

Both ``solution`` (a letter) and ``answer`` (the option text) name the correct option; when both are
present they must agree, which catches items whose options were reshuffled without relabelling.

Release items carry no id, so a record is named ``<prefix>-<index>``, the prefix being ``--id-prefix`` or
the file's name (``GRPO-GDQA-17``): the authors released several files of the same shape, and ids made
from the position alone would collide as soon as two of them are used together.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anatomy_r1.data.converters.common import (
    ConvertOptions,
    Ids,
    Item,
    read_json_list,
    video_frame,
)
from anatomy_r1.data.converters.tidy import converted_record
from anatomy_r1.data.schema import LETTERS, Record
from anatomy_r1.errors import DataError

SOURCE = "anatomy-r1"
PROMPT_KEYS = ("instruction", "sft_prompt", "sft_instruction")

_RELATION = re.compile(
    r"\b(?:(?:to the |on the )?(?:left|right)(?: side)? of|above|below|within|horizontal|vertical)\b"
)


@functools.lru_cache(maxsize=4096)
def template_family(question: str) -> str:
    """Guess SSG-VQA's template family from the wording, since the release does not store it.

    SSG-VQA questions are built from CLEVR-style templates; the number of spatial relations and how they
    are joined tell the families apart: none is ``zero_hop``, one is ``one_hop``, two joined by "and"/"or"
    are ``single_and``/``single_or``, two chained are ``two_hop``. A heuristic: good for stratifying counts,
    not a ground truth. Cached (bounded) because released sets repeat the same wordings many times.
    """
    q = question.lower()
    n = len(_RELATION.findall(q))
    if n == 0:
        return "zero_hop"
    if n == 1:
        return "one_hop"
    if " and " in q or " both " in q:
        return "single_and"
    if " or " in q:
        return "single_or"
    return "two_hop"


_LETTER_WORD = re.compile(r"\bletters?\b")
_IMAGE_PLACEHOLDER = "<image>"


@functools.lru_cache(maxsize=64)
def instruction_answer_form(instruction: str) -> str:
    """``"letter"`` when the instruction mentions a letter (``letter``/``letters`` as a word, any case),
    else ``"text"``.

    The released instructions come in two versions that differ exactly there: one asks to "return the
    choice letter", the other to "return the answer of the question". An instruction that names no
    letter asks for the answer itself, which is an option's text. Cached: a file repeats one instruction.
    """
    return "letter" if _LETTER_WORD.search(instruction.casefold()) else "text"


def split_prompt(text: str) -> tuple[str, str, str, list[str]]:
    """Split a release prompt into ``(instruction, question, options header, options)``.

    The instruction is the text before the last ``Question:`` with ``<image>`` placeholders removed and
    surrounding whitespace stripped (empty when the prompt starts with the question); the header is the
    ``... Options:`` line as written. Raises ``ValueError`` with the reason.
    """
    start = text.rfind("Question:")
    if start < 0:
        raise ValueError("no 'Question:' in the prompt")
    header = text.find("Options:", start)
    line_start = text.rfind("\n", start, header) if header >= 0 else -1
    label = text[line_start + 1 : header].strip() if line_start >= 0 else ""
    if line_start < 0 or not (label == "" or label.isalpha()):
        raise ValueError("no 'Options:' header line after the question")
    question = text[start + 9 : line_start].strip()
    options: list[str] = []
    # Plain string checks rather than a regex per line: this loop runs for every option of every item.
    for raw in text[header + 8 :].split("\n"):
        line = raw.strip()
        if not line:
            continue
        if len(options) >= len(LETTERS):
            raise ValueError(f"more than {len(LETTERS)} options")
        expected = LETTERS[len(options)]
        if len(line) < 2 or line[1] not in ".)" or line[0] not in LETTERS:
            raise ValueError(f"option line {line!r} does not start with a letter and '.'")
        if line[0] != expected:
            raise ValueError(f"option {line[0]!r} is out of sequence (expected {expected!r})")
        options.append(line[2:].strip())
    instruction = text[:start].replace(_IMAGE_PLACEHOLDER, "").strip()
    return instruction, question, text[line_start + 1 : header + 8].strip(), options


def parse_prompt(text: str) -> tuple[str, list[str]]:
    """Split a release prompt into ``(question, options)``; raises ``ValueError`` with the reason."""
    _, question, _, options = split_prompt(text)
    return question, options


def _images(value: Any) -> list[str]:
    if isinstance(value, str) and value.strip():  # the release's usual single path
        return [value.strip()]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("'images' must be a path or a non-empty list of paths")
    return [v.strip() for v in value]


def convert_item(
    obj: Any, index: int, where: str, ctx: ConvertOptions | None = None, ids: Ids | None = None
) -> Record:
    """One release item -> a validated ``Record``; ``where`` prefixes every error."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in PROMPT_KEYS:
        prompt = obj.get(key)
        if isinstance(prompt, str):
            try:
                instruction, question, header, options = split_prompt(prompt)
            except ValueError as e:
                raise DataError(f"{where}: cannot read the question from {key!r}: {e}") from None
            break
    else:
        raise DataError(f"{where}: no prompt text (one of {', '.join(PROMPT_KEYS)})")
    if len(options) < 2:
        raise DataError(f"{where}: {len(options)} option(s) in the prompt; a question needs at least 2")

    solution, answer = obj.get("solution"), obj.get("answer")
    if solution is None and answer is None:
        raise DataError(f"{where}: neither 'solution' nor 'answer' names the correct option")
    if solution is not None:
        s = solution.strip().upper() if isinstance(solution, str) else None
        if s is None or len(s) != 1 or s not in LETTERS:
            raise DataError(f"{where}: 'solution' {solution!r} is not an option letter")
        answer_index = LETTERS.index(s)
        if answer_index >= len(options):
            raise DataError(
                f"{where}: 'solution' {s!r} is outside the {len(options)} options "
                f"(A-{LETTERS[len(options) - 1]})"
            )
        if answer is not None and (not isinstance(answer, str) or answer.strip() != options[answer_index]):
            raise DataError(
                f"{where}: 'solution' {s!r} ({options[answer_index]!r}) disagrees with 'answer' {answer!r}"
            )
    else:
        if not isinstance(answer, str) or answer.strip() not in options:
            raise DataError(f"{where}: 'answer' {answer!r} is not one of the options {options!r}")
        answer_index = options.index(answer.strip())

    try:
        images = _images(obj.get("images", obj.get("image")))
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None
    meta: dict[str, Any] = {"template_family": template_family(question)}
    if instruction:
        meta["source_instruction"] = instruction
        meta["source_options_header"] = header
        meta["source_answer_form"] = instruction_answer_form(instruction)
    vf = video_frame(images[0])
    if vf is not None:
        meta["video"], meta["frame"] = vf
    rid = obj.get("id")
    if rid is not None:  # otherwise the id already carries the index
        meta["orig"] = {"index": index}
    if ids is None:
        ids = Ids(None, SOURCE)
    return converted_record(
        id=ids.own(str(rid)) if rid is not None else ids.positional(index),
        images=images,
        question=question,
        options=options,
        answer_index=answer_index,
        source=SOURCE,
        meta=meta,
        where=where,
        ctx=ctx,
        class_from_answer=True,
    )


def read(path: Path, options: ConvertOptions) -> Iterator[Item]:
    """Stream records from a release JSON list."""
    ids = options.ids(path)
    return read_json_list(
        path, options, lambda obj, index, where: convert_item(obj, index, where, options, ids)
    )
