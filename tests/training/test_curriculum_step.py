"""ASCL inside real TRL runs: the curriculum sampler feeds easy items (low S(q)) first.

``curriculum/batch_mean_s_q`` is logged every step from the S(q) of the items TRL actually drew; with
linear pacing it starts inside the easiest ``start_fraction`` of the data and rises, while without the
curriculum it hovers around the data mean from the first step. ``matrix:prior`` scores in milliseconds;
one test uses the default MiniLM encoder (a few seconds to load).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from statistics import mean
from typing import Any

import pytest

from anatomy_r1.cli import main

KEY = "curriculum/batch_mean_s_q"


@pytest.fixture(scope="module")
def scored(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[float]]:
    """The training file with S(q) already attached (as ``anatomy-r1 score`` would), and sorted scores."""
    from anatomy_r1.data.io import read_records, write_records
    from anatomy_r1.training.preflight import ensure_s_q

    records = ensure_s_q(read_records(tiny_data / "train.jsonl"), "matrix:prior", "mean")
    out = tmp_path_factory.mktemp("scored") / "train.jsonl"
    for r in records:
        r.images = [str((tiny_data / p).resolve()) for p in r.images]
    write_records(out, records)
    return out, sorted(float(r.meta["s_q"]) for r in records)


@pytest.mark.slow
def test_linear_pacing_raises_batch_difficulty_over_steps(
    tmp_path: Path,
    write_config: Callable[..., Path],
    scored: tuple[Path, list[float]],
    read_metrics: Callable[[Path], list[dict[str, Any]]],
) -> None:
    data, scores = scored
    steps = 6
    common: dict[str, Any] = {"data": {"train": str(data)}, "grpo": {"max_steps": steps}}
    cur, base = tmp_path / "curriculum", tmp_path / "baseline"
    cfg = write_config(
        cur,
        curriculum={"enabled": True, "backend": "matrix:prior", "pacing": "linear", "start_fraction": 0.2},
        **common,
    )
    assert main(["train", "--config", str(cfg)]) == 0
    assert main(["train", "--config", str(write_config(base, **common))]) == 0

    with_c = [r[KEY] for r in read_metrics(cur / "metrics.jsonl")]
    without = [r[KEY] for r in read_metrics(base / "metrics.jsonl")]
    assert len(with_c) == len(without) == steps  # logged every step in both runs

    # First batch: only the easiest ~20% are open (a quarter, for slack on ties).
    assert with_c[0] <= scores[len(scores) // 4] + 1e-6
    assert mean(with_c[-3:]) > mean(with_c[:3])
    # Without a curriculum the first batches are as hard as the data on average.
    assert mean(with_c[:2]) < mean(without)
    assert mean(with_c[:2]) < mean(scores)


@pytest.mark.slow
def test_minilm_backend_scores_and_logs(
    tmp_path: Path,
    write_config: Callable[..., Path],
    read_metrics: Callable[[Path], list[dict[str, Any]]],
) -> None:
    """The default backend end to end: items are scored at start-up and the step logs a valid mean."""
    out = tmp_path / "run"
    cfg = write_config(out, grpo={"max_steps": 1}, curriculum={"enabled": True, "backend": "minilm"})
    assert main(["train", "--config", str(cfg)]) == 0
    (row,) = read_metrics(out / "metrics.jsonl")
    assert 0.0 < row[KEY] < 1.0
