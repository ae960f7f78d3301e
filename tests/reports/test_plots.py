"""The report figures: valid PNGs from clean, damaged and empty inputs, and byte-identical on re-run."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from anatomy_r1.reports.plots import (
    class_accuracies,
    early_late,
    invalid_gradient_by_class,
    metric_series,
    plot_invalid_gradient_per_class,
    plot_per_class_accuracy,
    plot_reward_curves,
    plot_s_q_curves,
    read_metrics_jsonl,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CLASSES = ("gallbladder", "cystic_duct", "liver")


def assert_png(path: Path, min_bytes: int = 2000) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > min_bytes
    assert not list(path.parent.glob(f".{path.name}.*")), "temporary file left behind"


def synthetic_rows(n: int, *, curriculum: bool, seed: int = 0) -> list[dict[str, Any]]:
    rows = []
    for step in range(1, n + 1):
        t = step / n
        row: dict[str, Any] = {
            "step": step,
            "reward": 0.5 + 0.4 * t,
            "rewards/accuracy_reward/mean": 0.25 + 0.5 * t + 0.05 * math.sin(step + seed),
            "rewards/format_reward/mean": 1.0,
            "invalid_gradient_ratio": 0.8 - 0.5 * t,
            "curriculum/batch_mean_s_q": (0.3 + 0.5 * t) if curriculum else 0.55 + 0.02 * math.cos(step),
            "step_time": 1.2,
        }
        for i, cls in enumerate(CLASSES):
            if (step + i) % 2 == 0:  # classes appear only in some steps
                row[f"invalid_gradient_ratio/{cls}"] = min(1.0, 0.9 - 0.4 * t + 0.05 * i)
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]], tail: str = "") -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + tail, encoding="utf-8")
    return path


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    return {
        "ASCL": write_jsonl(tmp_path / "ascl.jsonl", synthetic_rows(30, curriculum=True)),
        "GRPO (shuffled)": write_jsonl(tmp_path / "grpo.jsonl", synthetic_rows(30, curriculum=False, seed=3)),
    }


def eval_metrics(acc: float) -> dict[str, Any]:
    return {
        "n": 30,
        "accuracy": acc,
        "greedy_accuracy": acc,
        "avg_at_k": None,
        "breakdowns": {
            "anatomy_class": {
                cls: {"n": 10, "accuracy": acc - 0.1 * i, "greedy_accuracy": acc - 0.1 * i}
                for i, cls in enumerate(CLASSES)
            }
        },
    }


def test_read_metrics_jsonl_skips_truncated_last_line_and_junk(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", synthetic_rows(3, curriculum=True), tail='{"step": 4, "rew')
    rows = read_metrics_jsonl(path)
    assert [r["step"] for r in rows] == [1, 2, 3]
    (tmp_path / "junk.jsonl").write_text('[1, 2]\n\n{"step": 1}\nnot json\n', encoding="utf-8")
    assert read_metrics_jsonl(tmp_path / "junk.jsonl") == [{"step": 1}]
    assert read_metrics_jsonl(tmp_path / "absent.jsonl") == []


def test_metric_series_skips_missing_null_nan_and_bool() -> None:
    rows = [
        {"step": 1, "x": 0.5},
        {"step": 2},
        {"step": 3, "x": None},
        {"step": 4, "x": float("nan")},
        {"step": 5, "x": True},
        {"x": 0.7},
        {"step": 7, "x": 1},
    ]
    assert metric_series(rows, "x") == ([1.0, 5.0, 7.0], [0.5, 0.7, 1.0])


def test_early_late() -> None:
    assert early_late([1.0, 1.0, 0.0, 0.0], 0.5) == (1.0, 0.0)
    assert early_late([0.4]) == (0.4, 0.4)
    assert early_late([]) == (None, None)


def test_all_plots_from_clean_runs(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "figs"
    assert_png(plot_reward_curves(runs, out / "reward.png"))
    assert_png(plot_reward_curves(runs, out / "fmt.png", key="reward", smooth=0.0))
    assert_png(plot_s_q_curves(runs, out / "s_q.png"))
    assert_png(plot_invalid_gradient_per_class(runs, out / "invalid.png"))
    assert_png(
        plot_per_class_accuracy({"base": eval_metrics(0.3), "trained": eval_metrics(0.7)}, out / "acc.png")
    )


def test_plots_accept_rows_instead_of_paths(tmp_path: Path) -> None:
    rows = {"run": synthetic_rows(10, curriculum=True)}
    assert_png(plot_reward_curves(rows, tmp_path / "r.png"))
    assert_png(plot_invalid_gradient_per_class(rows, tmp_path / "i.png"))


def test_plots_are_deterministic(runs: dict[str, Path], tmp_path: Path) -> None:
    a = plot_reward_curves(runs, tmp_path / "a.png").read_bytes()
    b = plot_reward_curves(runs, tmp_path / "b.png").read_bytes()
    assert a == b
    res = {"base": eval_metrics(0.3), "trained": eval_metrics(0.7)}
    assert plot_per_class_accuracy(res, tmp_path / "c.png").read_bytes() == (
        plot_per_class_accuracy(res, tmp_path / "d.png").read_bytes()
    )


def test_damaged_inputs_are_tolerated(tmp_path: Path) -> None:
    rows = synthetic_rows(12, curriculum=True)
    for r in rows[::3]:
        r["rewards/accuracy_reward/mean"] = float("nan")
        r.pop("curriculum/batch_mean_s_q")
        r["invalid_gradient_ratio/liver"] = None
    # json.dumps writes NaN as a bare token, which json.loads reads back as nan
    damaged = write_jsonl(tmp_path / "damaged.jsonl", rows, tail='{"step": 13, "invalid_gradient_ratio": 0.')
    only_train_summary = write_jsonl(tmp_path / "summary.jsonl", [{"step": 12, "train_runtime": 3.0}])
    runs = {"damaged": damaged, "summary only": only_train_summary, "missing file": tmp_path / "nope.jsonl"}
    assert_png(plot_reward_curves(runs, tmp_path / "r.png"))
    assert_png(plot_s_q_curves(runs, tmp_path / "s.png"))
    assert_png(plot_invalid_gradient_per_class(runs, tmp_path / "i.png"))
    broken_metrics = {
        "nan": {"accuracy": float("nan"), "breakdowns": {"anatomy_class": {"liver": {"accuracy": None}}}},
        "no breakdowns": {"accuracy": 0.5},
        "odd": {"breakdowns": {"anatomy_class": {"liver": "oops", "cystic_duct": {"accuracy": 0.25}}}},
    }
    assert_png(plot_per_class_accuracy(broken_metrics, tmp_path / "a.png"))
    assert class_accuracies(broken_metrics["odd"]) == {"cystic_duct": 0.25}


@pytest.mark.parametrize("kind", ["empty dict", "empty file", "no usable key"])
def test_no_data_still_writes_a_png(kind: str, tmp_path: Path) -> None:
    if kind == "empty dict":
        runs: dict[str, Any] = {}
    elif kind == "empty file":
        runs = {"run": write_jsonl(tmp_path / "e.jsonl", [])}
    else:
        runs = {"run": write_jsonl(tmp_path / "e.jsonl", [{"step": 1, "loss": 0.1}])}
    assert_png(plot_reward_curves(runs, tmp_path / "r.png"), min_bytes=1000)
    assert_png(plot_s_q_curves(runs, tmp_path / "s.png"), min_bytes=1000)
    assert_png(plot_invalid_gradient_per_class(runs, tmp_path / "i.png"), min_bytes=1000)
    assert_png(plot_per_class_accuracy({}, tmp_path / "a.png"), min_bytes=1000)


def test_invalid_gradient_by_class_summary() -> None:
    rows = synthetic_rows(20, curriculum=True)
    summary = invalid_gradient_by_class(rows)
    assert list(summary) == ["all", *sorted(CLASSES)]
    for vals in summary.values():
        assert vals["early"] is not None and vals["late"] is not None
        assert vals["early"] > vals["late"]
    assert summary["all"]["final"] == pytest.approx(rows[-1]["invalid_gradient_ratio"])
    assert invalid_gradient_by_class([]) == {}
