"""The canonical multiple-choice record every source is converted into.

One record is one question about one or more images. Letters are never stored: they are derived from the
position of an option, so a reordered option list can never disagree with a stored letter. Prompt
rendering is a separate step (``anatomy_r1.task.prompts``), which keeps the data format independent of
any one model's chat template.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

from anatomy_r1.errors import DataError

LETTERS = string.ascii_uppercase
MIN_OPTIONS = 2
MAX_OPTIONS = len(LETTERS)
FIELDS = ("id", "images", "question", "options", "answer_index", "answer", "source", "meta")


def letter(index: int) -> str:
    """Letter shown for the option at ``index`` (0 -> "A")."""
    if not 0 <= index < MAX_OPTIONS:
        raise ValueError(f"option index {index} has no letter (0..{MAX_OPTIONS - 1})")
    return LETTERS[index]


@dataclass(slots=True)
class Record:
    """One multiple-choice question; see README "Data format" for the field contract."""

    id: str
    images: list[str]
    question: str
    options: list[str]
    answer_index: int
    answer: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def answer_letter(self) -> str:
        return letter(self.answer_index)

    @property
    def letters(self) -> list[str]:
        return [letter(i) for i in range(len(self.options))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "images": list(self.images),
            "question": self.question,
            "options": list(self.options),
            "answer_index": self.answer_index,
            "answer": self.answer,
            "source": self.source,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, obj: Any, where: str = "record") -> Record:
        """Build and validate a record from parsed JSON; ``where`` names the file and line in errors."""
        if not isinstance(obj, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        missing = [k for k in FIELDS if k not in obj and k != "meta"]
        if missing:
            raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
        unknown = sorted(set(obj) - set(FIELDS))
        if unknown:
            raise DataError(f"{where}: unknown field(s) {', '.join(unknown)}")
        rec = cls(
            id=obj["id"],
            images=obj["images"],
            question=obj["question"],
            options=obj["options"],
            answer_index=obj["answer_index"],
            answer=obj["answer"],
            source=obj["source"],
            meta=obj.get("meta", {}),
        )
        rec.validate(where)
        return rec

    def validate(self, where: str = "record") -> None:
        """Raise ``DataError`` naming ``where`` and the field when the record breaks the contract."""
        if not isinstance(self.id, str) or not self.id.strip():
            raise DataError(f"{where}: 'id' must be a non-empty string")
        where = f"{where} (id {self.id!r})"
        if not isinstance(self.images, list) or not all(isinstance(p, str) and p for p in self.images):
            raise DataError(f"{where}: 'images' must be a list of non-empty path strings")
        if not isinstance(self.question, str) or not self.question.strip():
            raise DataError(f"{where}: 'question' must be a non-empty string")
        if not isinstance(self.options, list) or not all(isinstance(o, str) for o in self.options):
            raise DataError(f"{where}: 'options' must be a list of strings")
        if not MIN_OPTIONS <= len(self.options) <= MAX_OPTIONS:
            raise DataError(
                f"{where}: {len(self.options)} option(s); a question needs {MIN_OPTIONS} to {MAX_OPTIONS}"
            )
        if any(not o.strip() for o in self.options):
            raise DataError(f"{where}: empty option text")
        if len({o.strip().casefold() for o in self.options}) != len(self.options):
            raise DataError(f"{where}: duplicate option texts {self.options!r}")
        if isinstance(self.answer_index, bool) or not isinstance(self.answer_index, int):
            raise DataError(f"{where}: 'answer_index' must be an integer")
        if not 0 <= self.answer_index < len(self.options):
            raise DataError(
                f"{where}: answer_index {self.answer_index} is outside the {len(self.options)} options"
            )
        if not isinstance(self.answer, str) or self.answer != self.options[self.answer_index]:
            raise DataError(
                f"{where}: 'answer' {self.answer!r} is not options[{self.answer_index}] "
                f"{self.options[self.answer_index]!r}"
            )
        if not isinstance(self.source, str) or not self.source:
            raise DataError(f"{where}: 'source' must be a non-empty string")
        if not isinstance(self.meta, dict):
            raise DataError(f"{where}: 'meta' must be an object")


def make_record(
    *,
    id: str,
    images: list[str],
    question: str,
    options: list[str],
    answer_index: int,
    source: str,
    meta: dict[str, Any] | None = None,
    where: str = "record",
) -> Record:
    """Build a validated record, deriving ``answer`` from the options so the two cannot disagree."""
    if not isinstance(options, list) or not 0 <= answer_index < len(options):
        raise DataError(f"{where}: answer index {answer_index} is outside the {len(options)} options")
    rec = Record(
        id=id,
        images=images,
        question=question,
        options=options,
        answer_index=answer_index,
        answer=options[answer_index],
        source=source,
        meta=meta or {},
    )
    rec.validate(where)
    return rec
