"""OmniMedVQA's own JSON format: one list of items with ``option_A`` .. ``option_D`` fields.

``gt_answer`` holds the correct option's *text*, not a letter. It is matched exactly first, then ignoring
case and runs of whitespace (some items differ from their option only in case); an answer that matches no
option, or matches several after normalising, is refused rather than guessed. Options are separate fields,
so commas inside them need no special care. ``question_id`` becomes the record id (with ``--id-prefix``
in front when one is given), so a repeated id is an error (the command checks uniqueness); an item without
one is named ``<prefix>-<index>``, the prefix defaulting to the file's name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anatomy_r1.data.converters.common import (
    ConvertOptions,
    Ids,
    Item,
    read_json_list,
)
from anatomy_r1.data.converters.tidy import converted_record
from anatomy_r1.data.provenance import ANATOMY_QUESTION_TYPE
from anatomy_r1.data.schema import LETTERS, Record
from anatomy_r1.errors import DataError

SOURCE = "omnimedvqa"
_OPTION_KEYS = tuple(f"option_{c}" for c in LETTERS)
_OPTION_KEY_SET = frozenset(_OPTION_KEYS)


def _text(value: Any) -> str | None:
    """Option and answer values are strings, but numeric answers appear as JSON numbers in some files."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _norm(s: str) -> str:
    return " ".join(s.split()).casefold()


def match_answer(answer: str, options: list[str]) -> int:
    """Index of the option ``answer`` names; raises ``ValueError`` when none or several match."""
    try:
        return options.index(answer)
    except ValueError:
        pass
    a = _norm(answer)
    hits = [i for i, o in enumerate(options) if _norm(o) == a]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise ValueError(f"'gt_answer' {answer!r} matches none of the options {options!r}")
    raise ValueError(f"'gt_answer' {answer!r} matches several options {options!r}")


def convert_item(
    obj: Any, index: int, where: str, ctx: ConvertOptions | None = None, ids: Ids | None = None
) -> Record:
    """One OmniMedVQA item -> a validated ``Record``."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    options: list[str] = []
    for key in _OPTION_KEYS:
        if key not in obj:
            break
        text = _text(obj[key])
        if text is None:
            raise DataError(f"{where}: {key!r} must be a string, got {obj[key]!r}")
        options.append(text)
    if len(obj.keys() & _OPTION_KEY_SET) != len(options):
        raise DataError(f"{where}: option fields are not consecutive from option_A ({sorted(obj)})")
    if len(options) < 2:
        raise DataError(f"{where}: {len(options)} option(s); a question needs at least 2")
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        raise DataError(f"{where}: missing 'question' text")
    answer = _text(obj.get("gt_answer"))
    if answer is None:
        raise DataError(f"{where}: missing 'gt_answer'")
    try:
        answer_index = match_answer(answer, options)
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None
    image = obj.get("image_path")
    if not isinstance(image, str) or not image.strip():
        raise DataError(f"{where}: missing 'image_path'")

    meta: dict[str, Any] = {}
    qtype = obj.get("question_type")
    if qtype is not None:
        meta["question_type"] = qtype
    modality = obj.get("modality_type", obj.get("modality"))
    if modality is not None:
        meta["modality"] = modality
    if "dataset" in obj:
        meta["dataset"] = obj["dataset"]
    meta["orig"] = {"index": index}
    qid = obj.get("question_id")
    if ids is None:
        ids = Ids(None, SOURCE)
    return converted_record(
        id=ids.own(str(qid)) if qid is not None else ids.positional(index),
        images=[image.strip()],
        question=question.strip(),
        options=options,
        answer_index=answer_index,
        source=SOURCE,
        meta=meta,
        where=where,
        ctx=ctx,
        class_from_answer=qtype == ANATOMY_QUESTION_TYPE,
    )


def read(path: Path, options: ConvertOptions) -> Iterator[Item]:
    """Stream records from an OmniMedVQA JSON list."""
    ids = options.ids(path)
    return read_json_list(
        path, options, lambda obj, index, where: convert_item(obj, index, where, options, ids)
    )
