"""Which labels a probe may offer as distractors, per question: the vocabulary and its groups.

A file that pools source datasets or question types has labels that make no sense as each other's
distractors, so the vocabulary can be restricted to each question's own group (``--vocabulary-by``),
and a probe that mixes groups says so. Which questions can be re-posed at all (answer in the vocabulary,
enough labels for their option count) is decided here too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from anatomy_r1.data import vocab
from anatomy_r1.data.provenance import dataset_of
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import ConfigError


def resolve_vocabulary(spec: str, records: Sequence[Record]) -> list[str]:
    """The label vocabulary distractors are drawn from: ``auto`` or comma-separated labels.

    ``auto`` is every answer and every offered option of the file, as labels: the classes the data itself
    uses, so nothing the model was never asked about is introduced. Display names are accepted in a list
    (``Cystic Plate`` = ``cystic_plate``); duplicates are dropped. On a file that pools datasets or
    question types, ``auto`` pools their labels too; ``build_probe_sets(..., by=...)`` keeps each
    question's distractors within its own group.
    """
    text = spec.strip()
    if text.lower() == "auto":
        found = {vocab.label_from_display(r.answer) for r in records}
        found.update(vocab.label_from_display(o) for r in records for o in r.options)
        return sorted(x for x in found if x)
    labels = [vocab.label_from_display(part) for part in text.split(",")]
    labels = list(dict.fromkeys(x for x in labels if x))
    if not labels:
        raise ConfigError("--vocabulary: no labels given; pass comma-separated labels or 'auto'")
    return labels


GROUP_FIELDS: tuple[str, ...] = ("dataset", "question_type")
"""Record fields a vocabulary can be restricted by (``--vocabulary-by``). A file that pools several
source datasets (OmniMedVQA: one per body region and modality) or question types (anatomy, modality,
disease) has labels that make no sense as each other's distractors: a radius X-ray question offered
"Breast Tissue", an eye question offered "Costovertebral Junction"."""
FIELD_WORDS = {"dataset": ("dataset", "datasets"), "question_type": ("question type", "question types")}
"""How warnings and errors name each field, singular and plural."""
_NO_GROUP = "(none)"

GroupKey = tuple[str | None, ...]


def record_group(record: Record, name: str) -> str | None:
    """The record's ``dataset`` or ``question_type``; None when the record does not say.

    ``meta[name]`` first. A record converted from Med-R1 or OmniMedVQA without ``meta.dataset`` still
    names its dataset in its image path, ``Images/<dataset>/<file>`` (also below a re-rooted prefix), read
    as ``anatomy-r1 data stats`` reads it (:func:`~anatomy_r1.data.provenance.dataset_of`).
    """
    if name == "dataset":
        return dataset_of(record)
    value = record.meta.get(name)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def parse_vocabulary_by(spec: str | None) -> tuple[str, ...]:
    """``--vocabulary-by``: ``none`` (one vocabulary for the file) or fields from :data:`GROUP_FIELDS`,
    comma-separated."""
    text = (spec or "none").strip().lower()
    if text in ("", "none"):
        return ()
    fields = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [f for f in fields if f not in GROUP_FIELDS]
    if unknown or not fields:
        raise ConfigError(
            f"--vocabulary-by {spec!r}: unknown field {unknown[0] if unknown else ''!r}; use "
            f"{', '.join(GROUP_FIELDS)} (comma-separated to combine them) or none"
        )
    return tuple(dict.fromkeys(fields))


def group_key(record: Record, by: Sequence[str]) -> GroupKey:
    return tuple(record_group(record, name) for name in by)


def group_name(by: Sequence[str], key: GroupKey) -> str:
    """``dataset=ACRIMA, question_type=Anatomy Identification``: a group as the outputs name it."""
    return ", ".join(f"{name}={_NO_GROUP if v is None else v}" for name, v in zip(by, key, strict=True))


def _record_labels(record: Record) -> set[str]:
    labels = {vocab.label_from_display(o) for o in record.options}
    labels.add(vocab.label_from_display(record.answer))
    labels.discard("")
    return labels


def labels_by_group(records: Iterable[Record], by: Sequence[str]) -> dict[GroupKey, set[str]]:
    """Every label each group of records uses, as answer or option."""
    out: dict[GroupKey, set[str]] = {}
    for r in records:
        out.setdefault(group_key(r, by), set()).update(_record_labels(r))
    return out


def record_vocabularies(
    records: Sequence[Record], vocabulary: Sequence[str], by: Sequence[str] = ()
) -> list[list[str]]:
    """The vocabulary each record's distractors are drawn from, aligned with ``records``.

    Without ``by`` it is ``vocabulary`` for every record. With it, a record gets the labels of
    ``vocabulary`` (in its order) that records of its own group use, so a question is re-posed only with
    choices its own dataset or question type offers. Records of one group share one list.
    """
    labels = list(vocabulary)
    if not by:
        return [labels] * len(records)
    used = labels_by_group(records, by)
    per_group = {key: [x for x in labels if x in found] for key, found in used.items()}
    return [per_group[group_key(r, by)] for r in records]


def unoffered_labels(vocabulary: Sequence[str], vocabularies: Sequence[Sequence[str]]) -> list[str]:
    """Labels of ``vocabulary`` that no record's own vocabulary holds, in ``vocabulary``'s order.

    Restricted by group (:func:`record_vocabularies`), an explicit label that no record of the file uses
    is offered to no question at all; the caller says so rather than probe with less than was asked for.
    """
    offered = {x for labels in {id(v): v for v in vocabularies}.values() for x in labels}
    return [x for x in vocabulary if x not in offered]


def select_questions(
    records: Sequence[Record],
    vocabulary: Sequence[str],
    *,
    by: Sequence[str] = (),
    vocabularies: Sequence[Sequence[str]] | None = None,
) -> tuple[list[Record], int, int]:
    """``(eligible, n answer not in vocabulary, n vocabulary smaller than the option count)``.

    With ``by``, each record is checked against its own group's vocabulary (:func:`record_vocabularies`;
    pass its result as ``vocabularies`` when the caller needs it too, so the groups are read once).
    """
    if vocabularies is None:
        vocabularies = record_vocabularies(records, vocabulary, by)
    eligible: list[Record] = []
    outside = too_few = 0
    known_sets: dict[int, set[str]] = {}
    for r, labels in zip(records, vocabularies, strict=True):
        known = known_sets.setdefault(id(labels), set(labels))
        if vocab.label_from_display(r.answer) not in known:
            outside += 1
        elif len(known) < len(r.options):
            too_few += 1
        else:
            eligible.append(r)
    return eligible, outside, too_few


def vocabulary_mixing(
    records: Sequence[Record],
    questions: Sequence[Record],
    posed: Sequence[Sequence[Record]],
    fields: Sequence[str] = GROUP_FIELDS,
) -> dict[str, dict[str, Any]]:
    """Which re-posed questions offer a choice that, in this file, only another group uses.

    For each field with two or more groups among ``records`` (records that do not say form a group of
    their own), a question counts when one of its re-posed versions (``posed``, aligned with
    ``questions``) offers a label that occurs in the file but never in a record of the question's own
    group. Labels that occur nowhere in the file (from an explicit vocabulary) are not counted: the file
    cannot say where they belong. Returns ``{field: {"groups", "n_questions", "example"}}``, the example
    naming the first such question, its group, the foreign choice and the groups that do use it.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in fields:
        used = labels_by_group(records, (name,))
        if len(used) < 2:
            continue
        owners: dict[str, list[str | None]] = {}
        for key, labels in used.items():
            for lab in labels:
                owners.setdefault(lab, []).append(key[0])
        count = 0
        example: dict[str, Any] | None = None
        for i, rec in enumerate(questions):
            own = record_group(rec, name)
            mine = used.get((own,), set())
            foreign = [
                o
                for versions in posed
                for o in versions[i].options
                if (lab := vocab.label_from_display(o)) in owners and lab not in mine
            ]
            if not foreign:
                continue
            count += 1
            if example is None:
                others = sorted(
                    g if g is not None else _NO_GROUP for g in owners[vocab.label_from_display(foreign[0])]
                )
                example = {
                    "id": rec.id,
                    "group": own if own is not None else _NO_GROUP,
                    "option": foreign[0],
                    "option_groups": others,
                }
        out[name] = {"groups": len(used), "n_questions": count, "example": example}
    return out


def mixing_warnings(
    mixing: Mapping[str, Mapping[str, Any]], n_questions: int, by: Sequence[str]
) -> list[str]:
    """One warning line per field whose groups the re-posed questions mix: how many, an example, and the
    ``--vocabulary-by`` value that keeps each question within its own group."""
    lines = []
    for name, info in mixing.items():
        if not info["n_questions"]:
            continue
        one, many = FIELD_WORDS.get(name, (name, name))
        ex = info["example"]
        flag = ",".join(dict.fromkeys([*by, name]))
        lines.append(
            f"{info['n_questions']} of {n_questions} questions are re-posed with choices that occur "
            f"only under another {one} ({info['groups']} {many} in the file), e.g. item {ex['id']!r} "
            f"({one} {ex['group']}) is offered {ex['option']!r} ({one} "
            f"{', '.join(ex['option_groups'][:3])}); "
            f"pass --vocabulary-by {flag} to draw each question's distractors from its own {one}"
        )
    return lines
