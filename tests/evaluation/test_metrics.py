"""Metrics: Avg@k, greedy accuracy, invalid rate, missing items and per-group breakdowns."""

from __future__ import annotations

import json

import pytest

from anatomy_r1.data.schema import make_record
from anatomy_r1.errors import DataError
from anatomy_r1.evaluation.metrics import compute_metrics
from anatomy_r1.reports.eval_report import metrics_to_markdown

OPTS = ["Liver", "Gallbladder", "Gut"]


def rec(rid: str, answer: int, **meta):
    return make_record(
        id=rid, images=["x.png"], question="q?", options=OPTS, answer_index=answer, source="t", meta=meta
    )


def ans(letter: str) -> str:
    return f"<think>t</think><answer>{letter}</answer>"


def test_avg_at_k_is_mean_of_per_item_accuracy_and_breakdowns():
    records = [
        rec("a", 0, anatomy_class="Liver", modality="endoscopy"),
        rec("b", 1, anatomy_class="Gallbladder", modality="endoscopy"),
        rec("c", 2, anatomy_class="Gut"),
        rec("d", 1, anatomy_class="Gallbladder", modality="ct"),
    ]
    sampled = {
        "a": [ans("A"), ans("A"), ans("B"), "junk"],  # 2/4, 1 invalid
        "b": [ans("B")] * 4,  # 4/4
        "c": [ans("A"), ans("A, C"), ans("C"), ans("Gut")],  # 2/4, 1 invalid
        "d": [ans("C"), ans("C"), ans("C"), ans("C")],  # 0/4
    }
    m = compute_metrics(records, sampled)
    assert m["n"] == 4 and m["k"] == 4 and m["k_min"] == 4 and m["n_completions"] == 16
    assert m["avg_at_k"] == pytest.approx((0.5 + 1 + 0.5 + 0) / 4)
    assert m["accuracy"] == m["avg_at_k"]
    assert m["invalid_rate"] == pytest.approx(2 / 16)
    assert m["greedy_accuracy"] is None and m["greedy_invalid_rate"] is None
    assert m["missing"] == 0 and m["missing_ids"] == []
    classes = m["breakdowns"]["anatomy_class"]
    assert list(classes) == ["Gallbladder", "Gut", "Liver"]
    assert classes["Gallbladder"]["n"] == 2 and classes["Gallbladder"]["avg_at_k"] == pytest.approx(0.5)
    assert classes["Gut"]["invalid_rate"] == pytest.approx(0.25)
    assert classes["Liver"]["avg_at_k"] == pytest.approx(0.5)
    modality = m["breakdowns"]["modality"]
    assert list(modality) == ["(missing)", "ct", "endoscopy"]
    assert modality["(missing)"]["n"] == 1 and modality["endoscopy"]["avg_at_k"] == pytest.approx(0.75)
    assert "question_type" not in m["breakdowns"] and "template_family" not in m["breakdowns"]
    json.dumps(m, allow_nan=False)


def test_unequal_sample_counts_weigh_items_equally():
    m = compute_metrics(
        [rec("a", 0), rec("b", 0)], {"a": [ans("A")], "b": [ans("A"), ans("B"), ans("B"), ans("B")]}
    )
    assert m["avg_at_k"] == pytest.approx((1 + 0.25) / 2)
    assert (m["k"], m["k_min"]) == (4, 1)


def test_greedy_and_missing_items():
    records = [rec("a", 0), rec("b", 1), rec("c", 2)]
    m = compute_metrics(records, {"a": [ans("A")], "b": [ans("A")]}, {"a": ans("A"), "b": "nothing"})
    assert m["avg_at_k"] == pytest.approx(1 / 3)
    assert m["greedy_accuracy"] == pytest.approx(1 / 3)
    assert m["greedy_invalid_rate"] == pytest.approx(0.5)
    assert m["missing"] == 1 and m["missing_ids"] == ["c"]


def test_greedy_only():
    m = compute_metrics([rec("a", 0), rec("b", 1)], {}, {"a": ans("A"), "b": ans("A")})
    assert m["avg_at_k"] is None and m["invalid_rate"] is None and m["k"] == 0
    assert m["accuracy"] == m["greedy_accuracy"] == pytest.approx(0.5)


def test_non_string_meta_values_group_by_json():
    m = compute_metrics(
        [rec("a", 0, question_type=["x", 1]), rec("b", 0, question_type=3)],
        {"a": [ans("A")], "b": [ans("B")]},
    )
    assert set(m["breakdowns"]["question_type"]) == {'["x", 1]', "3"}


def test_unknown_ids_are_refused():
    with pytest.raises(DataError, match="not in the data"):
        compute_metrics([rec("a", 0)], {"zz": [ans("A")]})
    with pytest.raises(DataError, match="greedy"):
        compute_metrics([rec("a", 0)], {"a": [ans("A")]}, {"zz": ans("A")})


def test_markdown_lists_every_group():
    records = [rec("a", 0, anatomy_class="Liver"), rec("b", 1, anatomy_class="Gall|bladder\nx"), rec("c", 2)]
    m = compute_metrics(
        records, {"a": [ans("A")] * 5, "b": [ans("B")] * 5, "c": [ans("A")] * 5}, {"a": ans("A")}
    )
    md = metrics_to_markdown(m)
    assert "| Avg@5 accuracy | 66.7% |" in md
    assert "| greedy accuracy | 33.3% |" in md
    assert "## By anatomy_class" in md
    assert "| Liver | 1 | 100.0% | 100.0% | 0.0% |" in md
    assert "| Gall\\|bladder x | 1 | 100.0% | 0.0% | 0.0% |" in md
    assert "| (missing) | 1 | 0.0% | 0.0% | 0.0% |" in md
    assert metrics_to_markdown(compute_metrics(records, {}, {"a": ans("A")})).count("–") >= 2
