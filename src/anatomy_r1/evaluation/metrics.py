"""Accuracy metrics for multiple-choice completions: Avg@k, greedy accuracy, breakdowns, invalid rate.

The paper reports Avg@k: k completions are sampled per question and the accuracy of each of the k runs
is averaged. With the same k for every question this equals the mean over questions of the share of
correct samples, which is how it is computed here (so an item with fewer samples still weighs one item).
A greedy completion, when given, is scored separately as plain accuracy.

Answers are read with ``anatomy_r1.task.answers.extract_choice``, the same rules the GRPO accuracy
reward uses. A completion with no readable choice counts as wrong and as *invalid*; an item with no
completion at all counts as wrong and as *missing* (it has no completions, so it adds nothing to the
invalid rate). ``metrics.md`` is rendered from these numbers by :mod:`anatomy_r1.reports.eval_report`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from anatomy_r1.data.schema import Record
from anatomy_r1.errors import DataError
from anatomy_r1.task.answers import extract_choice

#: ``Record.meta`` keys that get a per-value breakdown when at least one record carries them.
BREAKDOWN_KEYS: tuple[str, ...] = ("anatomy_class", "modality", "question_type", "template_family")
#: Group name for records that lack a breakdown key other records have.
MISSING_GROUP = "(missing)"


@dataclass(slots=True)
class ItemResult:
    """Extracted choices for one record; ``greedy_choice`` is meaningful only when ``has_greedy``."""

    record: Record
    sampled_choices: list[int | None] = field(default_factory=list)
    has_greedy: bool = False
    greedy_choice: int | None = None

    @property
    def sampled_correct(self) -> list[bool]:
        return [c is not None and c == self.record.answer_index for c in self.sampled_choices]

    @property
    def greedy_correct(self) -> bool:
        choice = self.greedy_choice
        return self.has_greedy and choice is not None and choice == self.record.answer_index


def judge(
    records: Sequence[Record],
    sampled: Mapping[str, Sequence[str]],
    greedy: Mapping[str, str] | None = None,
) -> list[ItemResult]:
    """Extract every completion's choice, one result per record in record order.

    Completions for ids that are not among ``records`` are a ``DataError``: scoring them silently against
    nothing would hide a mismatched data file.
    """
    by_id = {r.id: r for r in records}
    for source, ids in (("sampled", sampled), ("greedy", greedy or {})):
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise DataError(
                f"{len(unknown)} {source} completion id(s) are not in the data, e.g. {unknown[0]!r}"
            )
    results: list[ItemResult] = []
    for rec in records:
        res = ItemResult(rec)
        res.sampled_choices = [extract_choice(c, rec.options) for c in sampled.get(rec.id, ())]
        if greedy is not None and rec.id in greedy:
            res.has_greedy = True
            res.greedy_choice = extract_choice(greedy[rec.id], rec.options)
        results.append(res)
    return results


def _ratio(num: float, den: int) -> float | None:
    return num / den if den else None


def _summary(results: Iterable[ItemResult], *, with_sampled: bool, with_greedy: bool) -> dict[str, Any]:
    """Metric block for a group of items; ``with_*`` say whether that kind of completion exists at all."""
    n = samples = invalid = greedy_given = greedy_invalid = greedy_right = missing = 0
    per_item_acc = 0.0
    for res in results:
        n += 1
        correct = res.sampled_correct
        samples += len(correct)
        invalid += sum(c is None for c in res.sampled_choices)
        if correct:
            per_item_acc += sum(correct) / len(correct)
        if res.has_greedy:
            greedy_given += 1
            greedy_invalid += res.greedy_choice is None
            greedy_right += res.greedy_correct
        if not correct and not res.has_greedy:
            missing += 1
    avg = _ratio(per_item_acc, n) if with_sampled else None
    greedy_acc = _ratio(greedy_right, n) if with_greedy else None
    return {
        "n": n,
        "accuracy": avg if avg is not None else greedy_acc,
        "avg_at_k": avg,
        "greedy_accuracy": greedy_acc,
        "invalid_rate": _ratio(invalid, samples),
        "greedy_invalid_rate": _ratio(greedy_invalid, greedy_given),
        "n_completions": samples,
        "missing": missing,
    }


def _group_name(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def aggregate(results: Sequence[ItemResult], *, greedy_given: bool) -> dict[str, Any]:
    """JSON-serialisable metrics for judged items; see ``compute_metrics``."""
    counts = [len(r.sampled_choices) for r in results if r.sampled_choices]
    with_sampled = bool(counts)
    metrics = _summary(results, with_sampled=with_sampled, with_greedy=greedy_given)
    metrics["k"] = max(counts, default=0)
    metrics["k_min"] = min(counts, default=0)
    metrics["missing_ids"] = [r.record.id for r in results if not r.sampled_choices and not r.has_greedy]
    breakdowns: dict[str, dict[str, Any]] = {}
    for key in BREAKDOWN_KEYS:
        if not any(key in r.record.meta for r in results):
            continue
        groups: dict[str, list[ItemResult]] = {}
        for r in results:
            name = _group_name(r.record.meta[key]) if key in r.record.meta else MISSING_GROUP
            groups.setdefault(name, []).append(r)
        breakdowns[key] = {
            name: _summary(groups[name], with_sampled=with_sampled, with_greedy=greedy_given)
            for name in sorted(groups)
        }
    metrics["breakdowns"] = breakdowns
    return metrics


def compute_metrics(
    records: Sequence[Record],
    sampled: Mapping[str, Sequence[str]],
    greedy: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Metrics over ``records`` for sampled completions per id (Avg@k) and optional greedy completions.

    Keys: ``n`` (items), ``k`` / ``k_min`` (most / fewest samples of an item with samples),
    ``n_completions``, ``avg_at_k``, ``greedy_accuracy``, ``accuracy`` (Avg@k, or greedy accuracy when
    nothing was sampled), ``invalid_rate`` / ``greedy_invalid_rate`` (share of completions with no
    readable choice), ``missing`` / ``missing_ids`` (items with no completion; counted wrong), and
    ``breakdowns[key][value]`` with the same per-group fields for each of ``BREAKDOWN_KEYS`` present in
    ``meta``. Rates are ``None`` when their denominator is zero.
    """
    return aggregate(judge(records, sampled, greedy), greedy_given=greedy is not None)
