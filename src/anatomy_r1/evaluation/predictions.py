"""Scoring completions, shared by every way completions are produced.

Completions produced elsewhere (vLLM, an API, another framework) arrive as a predictions file; the
model mode of ``anatomy-r1 eval`` and the training pipeline produce them in memory. All of them go
through ``score_completions`` (and are written by :mod:`anatomy_r1.reports.eval_report`) so the numbers
are comparable.

Predictions file: JSON Lines, one completion per line, ``{"id": str, "completion": str}`` plus an optional
``"kind"`` (``"sampled"``, the default, or ``"greedy"``; at most one greedy line per id). Several sampled
lines per id give Avg@k. Other keys are ignored, so ``completions.jsonl`` written by the model mode can be
re-scored as a predictions file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from anatomy_r1.data.io import iter_jsonl, read_records
from anatomy_r1.data.schema import LETTERS, Record
from anatomy_r1.errors import DataError
from anatomy_r1.evaluation.metrics import aggregate, judge

KINDS = ("sampled", "greedy")


def read_predictions(
    path: str | os.PathLike[str], known_ids: set[str] | None = None
) -> tuple[dict[str, list[str]], dict[str, str] | None, int]:
    """Parse a predictions file into ``(sampled per id, greedy per id or None, line count)``.

    Every problem is a ``DataError`` naming ``file:line``: malformed or truncated JSON and bad UTF-8 (via
    ``iter_jsonl``), a line that is not an object, a missing/empty/non-string id, a missing or non-string
    completion, an unknown kind, a second greedy line for an id, and an id not in ``known_ids``.
    """
    sampled: dict[str, list[str]] = {}
    greedy: dict[str, str] = {}
    count = 0
    for n, obj in iter_jsonl(path):
        where = f"{path}:{n}"
        if not isinstance(obj, dict):
            raise DataError(
                f"{where}: expected a JSON object with 'id' and 'completion', got {type(obj).__name__}"
            )
        pid = obj.get("id")
        if not isinstance(pid, str) or not pid.strip():
            raise DataError(f"{where}: 'id' must be a non-empty string")
        if "completion" not in obj:
            raise DataError(f"{where}: missing 'completion' for id {pid!r}")
        completion = obj["completion"]
        if not isinstance(completion, str):
            raise DataError(
                f"{where}: 'completion' for id {pid!r} must be a string, got {type(completion).__name__}"
            )
        kind = obj.get("kind", "sampled")
        if kind not in KINDS:
            raise DataError(f"{where}: 'kind' must be one of {', '.join(KINDS)}, got {kind!r}")
        if known_ids is not None and pid not in known_ids:
            raise DataError(f"{where}: id {pid!r} is not in the data file")
        if kind == "greedy":
            if pid in greedy:
                raise DataError(f"{where}: a second greedy completion for id {pid!r}")
            greedy[pid] = completion
        else:
            sampled.setdefault(pid, []).append(completion)
        count += 1
    if count == 0:
        raise DataError(f"{path}: no predictions (empty file)")
    return sampled, (greedy or None), count


def missing_ids(
    records: Sequence[Record], sampled: Mapping[str, Sequence[str]], greedy: Mapping[str, str] | None
) -> list[str]:
    """Ids of records with no completion of any kind."""
    g = greedy or {}
    return [r.id for r in records if not sampled.get(r.id) and r.id not in g]


def check_coverage(
    records: Sequence[Record],
    sampled: Mapping[str, Sequence[str]],
    greedy: Mapping[str, str] | None,
    *,
    allow_missing: bool,
    where: str,
) -> list[str]:
    """Return the uncovered ids; raise unless ``allow_missing`` because a silent gap inflates accuracy."""
    missing = missing_ids(records, sampled, greedy)
    if missing and not allow_missing:
        shown = ", ".join(repr(i) for i in missing[:3])
        raise DataError(
            f"{where}: {len(missing)} item(s) in the data have no prediction (e.g. {shown}); "
            "pass --allow-missing to count them as wrong"
        )
    return missing


def score_completions(
    records: Sequence[Record],
    sampled: Mapping[str, Sequence[str]],
    greedy: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Metrics plus one item row per completion: ``{"id", "kind", "extracted", "correct"}``.

    ``extracted`` is the chosen letter or ``None`` for an invalid answer. Rows follow ``sampled`` in its
    own order (ids in insertion order, then each id's completions in order), then the greedy completions;
    records without completions have no rows and are reported in ``metrics["missing_ids"]``.
    """
    results = judge(records, sampled, greedy)
    metrics = aggregate(results, greedy_given=greedy is not None)
    by_id = {r.record.id: r for r in results}
    items: list[dict[str, Any]] = []
    for pid in sampled:
        res = by_id[pid]
        for choice, correct in zip(res.sampled_choices, res.sampled_correct, strict=True):
            items.append(_item(pid, "sampled", choice, correct))
    for pid in greedy or {}:
        res = by_id[pid]
        items.append(_item(pid, "greedy", res.greedy_choice, res.greedy_correct))
    return metrics, items


def _item(pid: str, kind: str, choice: int | None, correct: bool) -> dict[str, Any]:
    extracted = None if choice is None else LETTERS[choice]
    return {"id": pid, "kind": kind, "extracted": extracted, "correct": correct}


def completion_rows(
    sampled: Mapping[str, Sequence[str]], greedy: Mapping[str, str] | None = None
) -> list[dict[str, str]]:
    """``completions.jsonl`` rows ``{"id", "completion", "kind"}``, readable back by ``read_predictions``."""
    rows = [{"id": i, "completion": c, "kind": "sampled"} for i, cs in sampled.items() for c in cs]
    rows += [{"id": i, "completion": c, "kind": "greedy"} for i, c in (greedy or {}).items()]
    return rows


def score_predictions_file(
    predictions: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    allow_missing: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Score a predictions file against a canonical data file: ``(metrics, item rows)``.

    Images are not opened or checked: the completions already exist, so only ids, options and answers
    matter. Every input check runs here, before the caller writes anything
    (:func:`anatomy_r1.reports.eval_report.write_eval_outputs`).
    """
    records = read_records(data)
    sampled, greedy, _ = read_predictions(predictions, {r.id for r in records})
    check_coverage(records, sampled, greedy, allow_missing=allow_missing, where=str(predictions))
    return score_completions(records, sampled, greedy)
