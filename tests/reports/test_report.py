"""write_report: required metrics, a Markdown report whose images exist, and all-or-nothing writing."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from anatomy_r1.reports import machine, report_markdown, report_summary
from anatomy_r1.reports import report as report_mod
from anatomy_r1.reports.report import write_report
from anatomy_r1.reports.report_summary import FIGURES, REQUIRED_KEYS
from anatomy_r1.training.config import TrainConfig

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def eval_metrics(acc: float, *, k: int = 0) -> dict[str, Any]:
    def block(a: float, n: int) -> dict[str, Any]:
        return {
            "n": n,
            "accuracy": a,
            "avg_at_k": a if k else None,
            "greedy_accuracy": a,
            "invalid_rate": 0.1 if k else None,
            "greedy_invalid_rate": 0.05,
        }

    return {
        **block(acc, 40),
        "k": k,
        "breakdowns": {
            "anatomy_class": {"liver": block(acc, 20), "cystic_duct": block(acc - 0.2, 20)},
            "template_family": {"zero_hop": block(acc, 25), "one_hop": block(acc - 0.1, 15)},
        },
    }


def train_rows(n: int = 12) -> list[dict[str, Any]]:
    rows = []
    for step in range(1, n + 1):
        rows.append(
            {
                "step": step,
                "reward": 0.5 + step / n,
                "rewards/accuracy_reward/mean": 0.25 + 0.5 * step / n,
                "invalid_gradient_ratio": 1.0 - step / n,
                "invalid_gradient_ratio/liver": 1.0 - step / n,
                "invalid_gradient_ratio/cystic_duct": 0.9,
                "curriculum/batch_mean_s_q": 0.2 + 0.05 * step,
                "gdqa/augmented_fraction": 0.25,
                "step_time": 0.5,
            }
        )
    rows.append({"step": n, "train_runtime": 6.0, "train_loss": 0.01})
    return rows


@pytest.fixture
def jsonl(tmp_path: Path) -> Path:
    p = tmp_path / "metrics.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in train_rows()) + '{"step": 13, "re', encoding="utf-8")
    return p


def call(out: Path, jsonl: Path | None, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "base_metrics": eval_metrics(0.25),
        "trained_metrics": eval_metrics(0.75),
        "n_test": 40,
        "train_metrics_jsonl": jsonl,
        "config": TrainConfig(name="demo", template="compact_text"),
        "timings": {"synthesize benchmark": 1.5, "train with GRPO": 30.0},
        "command": "anatomy-r1 demo --quick --out x",
    }
    args.update(kw)
    return write_report(out, **args)


def test_metrics_json_has_required_keys(tmp_path: Path, jsonl: Path) -> None:
    out = tmp_path / "report"
    summary = call(out, jsonl)
    on_disk = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert on_disk == summary
    for key in REQUIRED_KEYS:
        assert key in on_disk
    assert on_disk["base_accuracy"] == pytest.approx(0.25)
    assert on_disk["trained_accuracy"] == pytest.approx(0.75)
    assert on_disk["gain"] == pytest.approx(0.5)
    assert on_disk["gain_points"] == pytest.approx(50.0)
    assert on_disk["n_test"] == 40
    assert on_disk["accuracy_kind"] == "greedy"
    assert "base_avg_at_k" not in on_disk
    assert on_disk["per_class_accuracy"]["cystic_duct"] == {
        "n": 20,
        "base": pytest.approx(0.05),
        "trained": pytest.approx(0.55),
        "gain": pytest.approx(0.5),
    }
    assert set(on_disk["per_template_family_accuracy"]) == {"zero_hop", "one_hop"}
    assert on_disk["trained_greedy_invalid_rate"] == pytest.approx(0.05)
    assert on_disk["final_invalid_gradient_ratio"] == pytest.approx(0.0)
    assert on_disk["invalid_gradient_ratio_per_class"]["cystic_duct"]["late"] == pytest.approx(0.9)
    assert on_disk["training"]["last_step"] == 12
    assert on_disk["training"]["train_runtime"] == pytest.approx(6.0)
    assert on_disk["timings"]["train with GRPO"] == pytest.approx(30.0)
    assert on_disk["config"]["template"] == "compact_text"
    assert on_disk["command"] == "anatomy-r1 demo --quick --out x"


def test_avg_at_k_keys_when_sampled() -> None:
    summary = report_summary.build_summary(
        base_metrics=eval_metrics(0.3, k=4),
        trained_metrics=eval_metrics(0.6, k=4),
        n_test=40,
        rows=train_rows(),
        config=None,
        timings={},
        command="x",
    )
    assert "Avg@4" in report_markdown.report_markdown(summary)
    assert summary["base_avg_at_k"] == pytest.approx(0.3)
    assert summary["trained_avg_at_k"] == pytest.approx(0.6)
    assert summary["accuracy_kind"] == "Avg@4"
    assert summary["trained_invalid_rate"] == pytest.approx(0.1)


def test_report_md_references_existing_pngs(tmp_path: Path, jsonl: Path) -> None:
    out = tmp_path / "report"
    call(out, jsonl)
    md = (out / "report.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(images) == sorted(FIGURES.values())
    for name in images:
        data = (out / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 2000
    assert "25.0%" in md and "75.0%" in md and "+50.0" in md
    assert "anatomy-r1 demo --quick --out x" in md
    assert "| liver |" in md and "| zero_hop |" in md
    assert sorted(p.name for p in out.iterdir()) == sorted(["metrics.json", "report.md", *FIGURES.values()])
    assert all((p.stat().st_mode & 0o044) == 0o044 for p in [out, *out.iterdir()]), "report must be readable"


def test_missing_training_log_and_nan_metrics(tmp_path: Path) -> None:
    bad = {"accuracy": float("nan"), "breakdowns": {}}
    summary = call(tmp_path / "r", tmp_path / "absent.jsonl", base_metrics=bad, config=None, timings=None)
    assert summary["base_accuracy"] is None and summary["gain"] is None
    assert summary["final_invalid_gradient_ratio"] is None
    json.loads((tmp_path / "r" / "metrics.json").read_text(encoding="utf-8"))  # strict JSON, no NaN
    for name in FIGURES.values():
        assert (tmp_path / "r" / name).read_bytes()[:8] == PNG_SIGNATURE


def test_failure_mid_write_leaves_no_report(
    tmp_path: Path, jsonl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_a: Any, **_k: Any) -> Path:
        raise RuntimeError("disk full")

    monkeypatch.setattr(report_mod.plots, "plot_s_q_curves", boom)
    parent = tmp_path / "out"
    parent.mkdir()
    with pytest.raises(RuntimeError, match="disk full"):
        call(parent / "report", jsonl)
    assert list(parent.iterdir()) == []


def test_failure_keeps_previous_report_and_rerun_replaces_it(
    tmp_path: Path, jsonl: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report"
    call(out, jsonl)
    (out / "stale.txt").write_text("from an earlier run", encoding="utf-8")
    before = (out / "metrics.json").read_bytes()

    def boom(*_a: Any, **_k: Any) -> None:
        raise OSError("no space left")

    monkeypatch.setattr(report_mod, "report_markdown", boom)
    with pytest.raises(OSError):
        call(out, jsonl, trained_metrics=eval_metrics(0.9))
    assert (out / "metrics.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl", "report"]
    monkeypatch.undo()
    call(out, jsonl, trained_metrics=eval_metrics(0.9))
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "metrics.json").read_text())["trained_accuracy"] == pytest.approx(0.9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl", "report"]


def test_machine_is_recorded_and_described(tmp_path: Path, jsonl: Path) -> None:
    machine = {"cpu": "AMD EPYC | x", "cpu_count": 2, "torch": "2.13.0+cpu", "torch_threads": 2, "gpu": None}
    out = tmp_path / "report"
    summary = call(out, jsonl, machine=machine)
    assert summary["machine"] == machine
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "Measured on: AMD EPYC \\| x, 2 CPUs, torch 2.13.0+cpu with 2 threads, no GPU." in md
    # Without it, the report says nothing about the host rather than guessing.
    assert call(tmp_path / "r2", jsonl)["machine"] is None
    assert "Measured on" not in (tmp_path / "r2" / "report.md").read_text(encoding="utf-8")


def test_machine_info_describes_this_host() -> None:
    import torch

    info = machine.machine_info()
    assert info["cpu_count"] == os.cpu_count()
    assert info["torch"] == torch.__version__
    assert info["torch_threads"] == torch.get_num_threads()
    assert info["gpu"] is None or isinstance(info["gpu"], str)
    text = machine.describe_machine(info)
    assert f"torch {torch.__version__}" in text and "\n" not in text
