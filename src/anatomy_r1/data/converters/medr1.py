"""Med-R1's per-question-type split files: ``{"image", "problem", "solution"}`` items.

The options are inline in ``problem`` as ``<question> A)opt, B)opt, C)opt, D)opt``. Option texts can
contain commas, so the text is cut only at the letter markers, found in sequence (``, B)`` after ``A)``,
then ``, C)`` ...), never at bare commas. Items have no id; ``<prefix>-<index>`` is stable for a given
file, the prefix being ``--id-prefix`` or the file's name with spaces as ``_``
(``Anatomy_Identification_train-17``), so the splits of one release can be converted and used together;
the index is kept in ``meta["orig"]``.

The file name carries the question type and split (``Anatomy Identification_train.json``); both go into
``meta`` because the items themselves do not say. OmniMedVQA's question types are recognised whatever the
case and separators (``anatomy_identification_test.json``); the image path ``Images/<dataset>/<file>``
gives ``meta["dataset"]``.
"""

from __future__ import annotations

import re
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
from anatomy_r1.data.provenance import ANATOMY_QUESTION_TYPE, dataset_from_image
from anatomy_r1.data.schema import LETTERS, Record
from anatomy_r1.errors import DataError

SOURCE = "medr1"
QUESTION_TYPES = (
    "Anatomy Identification",
    "Disease Diagnosis",
    "Lesion Grading",
    "Modality Recognition",
    "Other Biological Attributes",
)
"""OmniMedVQA's question types, as Med-R1 names its per-type split files."""
NO_TYPE_NOTE = (
    "items without a question type (the file name is not '<Question Type>_<split>.json'), "
    "so without an anatomy class"
)
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


SPLITS = ("train", "val", "test")


def _words(text: str) -> str:
    return " ".join(w for w in re.split(r"[\s_-]+", text.casefold()) if w)


_KNOWN_TYPES = {_words(t): t for t in QUESTION_TYPES}


def split_info(path: Path) -> dict[str, str]:
    """The question type and split a Med-R1 file's name states; empty when it states neither.

    Med-R1 names its files ``<Question Type>_<split>.json``; copies are often renamed or sorted into
    folders (``anatomy_identification_test.json``, ``Anatomy Identification/train.json``), so a known
    OmniMedVQA question type is found anywhere in the file or folder name, in any case and with any
    separators. Other words are not taken for a question type (``medr1_train.json`` states none).
    Without a question type, the records get no anatomy class: only an anatomy identification
    question's answer names an anatomy.
    """
    info: dict[str, str] = {}
    stem, folder = f" {_words(path.stem)} ", _words(path.parent.name)
    for key, name in _KNOWN_TYPES.items():
        if f" {key} " in stem or key == folder:
            info["question_type"] = name
            break
    found = [s for s in SPLITS if f" {s} " in stem]
    if len(found) == 1:
        info["split"] = found[0]
    return info


def convert_item(
    obj: Any,
    index: int,
    where: str,
    file_meta: dict[str, str],
    ctx: ConvertOptions | None = None,
    ids: Ids | None = None,
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
    dataset = dataset_from_image(image)
    if dataset is not None:
        meta["dataset"] = dataset
    meta["orig"] = {"index": index}
    return converted_record(
        id=(ids or Ids(None, SOURCE)).positional(index),
        images=[image],
        question=question,
        options=options,
        answer_index=answer_index,
        source=SOURCE,
        meta=meta,
        where=where,
        ctx=ctx,
        class_from_answer=meta.get("question_type") == ANATOMY_QUESTION_TYPE,
    )


def read(path: Path, options: ConvertOptions) -> Iterator[Item]:
    """Stream records from a Med-R1 split file."""
    file_meta = split_info(path)
    ids = options.ids(path)
    typeless = "question_type" not in file_meta

    def one(obj: Any, index: int, where: str) -> Record:
        rec = convert_item(obj, index, where, file_meta, options, ids)
        if typeless:  # counted once converted: a refused item is reported as refused, not as typeless
            options.notes[NO_TYPE_NOTE] += 1
        return rec

    return read_json_list(path, options, one)
