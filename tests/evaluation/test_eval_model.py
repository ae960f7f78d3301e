"""``anatomy-r1 eval --model`` with real generation from a tiny checkpoint (the other eval tests fake it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anatomy_r1.cli import main
from anatomy_r1.data.io import read_records


@pytest.mark.slow
def test_eval_model_generates_scores_and_writes_every_output(
    tiny_data: Path, warm_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    rc = main(
        [
            "eval",
            "--model",
            str(warm_model),
            "--data",
            str(tiny_data / "warm.jsonl"),
            "--out",
            str(out),
            "--k",
            "2",
            "--greedy",
            "--template",
            "compact_text",
            "--max-new-tokens",
            "16",
            "--batch-size",
            "8",
            "--limit",
            "12",
        ]
    )
    assert rc == 0
    records = read_records(tiny_data / "warm.jsonl")[:12]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 12 and metrics["k"] == 2
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    # two sampled completions and one greedy completion per question, each judged
    assert len(items) == 12 * 3
    assert {i["id"] for i in items} == {r.id for r in records}
    completions = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert len(completions) == 12 * 3 and all(isinstance(c["completion"], str) for c in completions)
    # the metrics agree with the per-item judgements written next to them
    sampled = [i for i in items if i["kind"] == "sampled"]
    assert metrics["avg_at_k"] == pytest.approx(sum(i["correct"] for i in sampled) / len(sampled))
    assert 0.0 <= metrics["invalid_rate"] <= 1.0


def test_eval_model_refuses_a_folder_that_is_not_a_model(tiny_data: Path, tmp_path: Path, capsys) -> None:
    rc = main(
        [
            "eval",
            "--model",
            str(tmp_path),
            "--data",
            str(tiny_data / "warm.jsonl"),
            "--out",
            str(tmp_path / "o"),
            "--greedy",
            "--k",
            "0",
        ]
    )
    assert rc == 2
    assert "not a local model directory" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
