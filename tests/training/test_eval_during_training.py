"""``data.eval`` reaches TRL's ``eval_dataset``, and is never accepted without a schedule to evaluate it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anatomy_r1.cli import main
from anatomy_r1.data.io import read_records, write_records


@pytest.fixture(scope="module")
def eval_file(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """Eight held-out questions in another folder; their images resolve against ``data.image_root``."""
    out = tmp_path_factory.mktemp("heldout") / "eval.jsonl"
    write_records(out, read_records(tiny_data / "train.jsonl")[-8:])
    return out


def test_grpo_evaluates_data_eval_on_trls_schedule(
    tmp_path: Path,
    write_config: Callable[..., Path],
    tiny_data: Path,
    eval_file: Path,
    read_metrics: Callable[[Path], list[dict[str, Any]]],
) -> None:
    out = tmp_path / "run"
    cfg = write_config(
        out,
        data={"eval": str(eval_file), "image_root": str(tiny_data)},
        grpo={"max_steps": 2, "eval_strategy": "steps", "eval_steps": 1, "per_device_eval_batch_size": 8},
    )
    assert main(["train", "--config", str(cfg)]) == 0
    rows = read_metrics(out / "metrics.jsonl")
    evals = [r for r in rows if "eval_reward" in r]
    assert [r["step"] for r in evals] == [1, 2]
    # the held-out pass is scored by the same rewards and group metrics as training
    assert all("eval_rewards/accuracy_reward/mean" in r and "eval_invalid_gradient_ratio" in r for r in evals)
    assert all("eval_reward" not in r for r in rows if "reward" in r)  # train rows stay train rows
    run = json.loads((out / "final" / "anatomy_r1_run.json").read_text())
    assert run["method"] == "grpo" and run["template"] == "compact_text"


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"data": {"eval": "EVAL"}}, "data.eval is set but grpo.eval_strategy is 'no'"),
        ({"grpo": {"eval_strategy": "steps"}}, "data.eval (the file to evaluate) is not set"),
        ({"method": "sft", "data": {"eval": "EVAL"}}, "sft.extra.eval_strategy is 'no'"),
    ],
)
def test_eval_file_and_eval_schedule_come_together(
    write_config: Callable[..., Path], eval_file: Path, sections: dict[str, Any], message: str, capsys
) -> None:
    if "data" in sections:
        sections = {**sections, "data": {"eval": str(eval_file)}}
    cfg = write_config(**sections)
    assert main(["train", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {cfg}:") and message in err
