"""Med-R1's per-question-type split files: ``{"image", "problem", "solution"}`` items.

The options are inline in ``problem`` as ``<question> A)opt, B)opt, C)opt, D)opt``. Option texts can
contain commas, so the text is cut only at the letter markers, found in sequence (``, B)`` after ``A)``,
then ``, C)`` ...), never at bare commas. Items have no id; ``medr1-<index>`` is stable for a given file
and the index is kept in ``meta["orig"]``.

The file name carries the question type and split (``Anatomy Identification_train.json``); both go into
``meta`` because the items themselves do not say.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anatomy_r1.data.converters.common import ConvertOptions, Item, converted_record, read_json_list
from anatomy_r1.data.schema import LETTERS, Record
from anatomy_r1.data.vocab import label_from_display
from anatomy_r1.errors import DataError

SOURCE = "medr1"
ANATOMY_QUESTION_TYPE = "Anatomy Identification"
_SOLUTION = re.compile(r"\s*(?:<answer>\s*)?([A-Za-z])\s*(?:</answer>)?\s*")
_MARKERS = tuple(f", {c})" for c in LETTERS)


def parse_problem(problem: str) -> tuple[str, list[str]]:
    """Split ``problem`` into ``(question, options)``; raises ``ValueError`` with the reason."""
    b = problem.find(_MARKERS[1])
    if b < 0:
        raise ValueError("fewer than two options (no ', B)' marker)")
    a = problem.rfind("A)", 0, b)
    if a < 0 or (a > 0 and not problem[a - 1].isspace()):
        raise ValueError("no 'A)' option marker before ', B)'")
    question = problem[:a].strip()
    options = [problem[a + 2 : b].strip()]
    start = b + 4
    for marker in _MARKERS[2:]:
        nxt = problem.find(marker, start)
        if nxt < 0:
            break
        options.append(problem[start:nxt].strip())
        start = nxt + 4
    options.append(problem[start:].strip())
    return question, options


def split_info(path: Path) -> dict[str, str]:
    """``Anatomy Identification_train.json`` -> question type and split; empty for other names."""
    stem, sep, split = path.stem.rpartition("_")
    if sep and split in ("train", "val", "test") and stem:
        return {"question_type": stem, "split": split}
    return {}


def convert_item(
    obj: Any, index: int, where: str, file_meta: dict[str, str], ctx: ConvertOptions | None = None
) -> Record:
    """One Med-R1 item -> a validated ``Record``."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    problem = obj.get("problem")
    if not isinstance(problem, str):
        raise DataError(f"{where}: missing 'problem' text")
    try:
        question, options = parse_problem(problem)
    except ValueError as e:
        raise DataError(f"{where}: {e}") from None
    solution = obj.get("solution")
    m = _SOLUTION.fullmatch(solution) if isinstance(solution, str) else None
    if m is None:
        raise DataError(f"{where}: 'solution' {solution!r} is not '<answer> X </answer>'")
    answer_index = LETTERS.index(m.group(1).upper())
    if answer_index >= len(options):
        raise DataError(
            f"{where}: answer letter {m.group(1).upper()!r} is outside the {len(options)} options"
        )
    image = obj.get("image")
    if not isinstance(image, str) or not image.strip():
        raise DataError(f"{where}: missing 'image' path")
    image = image.strip()
    meta: dict[str, Any] = dict(file_meta)
    if meta.get("question_type") == ANATOMY_QUESTION_TYPE:
        meta["anatomy_class"] = label_from_display(options[answer_index])
    parts = image.split("/")
    if len(parts) >= 3 and parts[0] == "Images":
        meta["dataset"] = parts[1]
    meta["orig"] = {"index": index}
    return converted_record(
        id=f"{SOURCE}-{index}",
        images=[image],
        question=question,
        options=options,
        answer_index=answer_index,
        source=SOURCE,
        meta=meta,
        where=where,
        ctx=ctx,
    )


def read(path: Path, options: ConvertOptions) -> Iterator[Item]:
    """Stream records from a Med-R1 split file."""
    file_meta = split_info(path)
    return read_json_list(
        path, options, lambda obj, index, where: convert_item(obj, index, where, file_meta, options)
    )
