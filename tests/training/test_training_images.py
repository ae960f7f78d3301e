"""Frames in training: the first generation batch is decoded before the first step, and the cache bound
set in the config (``data.image_cache_mb``) reaches the datasets the trainers fetch from."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anatomy_r1.cli import main


def _load(cfg_path: Path) -> Any:
    from anatomy_r1.training.config import load_config

    return load_config(cfg_path)


@pytest.mark.parametrize("curriculum", [False, True])
def test_the_check_decodes_what_training_draws_first_and_leaves_the_order_alone(
    curriculum: bool, tmp_path: Path, tiny_data: Path, write_config: Callable[..., Path]
) -> None:
    from anatomy_r1.data.io import read_records
    from anatomy_r1.training.dataset import check_first_batch_images, image_cache_of
    from anatomy_r1.training.grpo import build_grpo_trainer

    section = {"enabled": curriculum, "backend": "matrix:prior", "pacing": "linear"}
    cfg = _load(write_config(data={"image_cache_mb": 3}, curriculum=section))
    records = read_records(tiny_data / "train.jsonl")
    trainer = build_grpo_trainer(cfg, records, str(tiny_data))
    cache = image_cache_of(trainer.train_dataset)
    assert cache.max_bytes == 3 * 2**20

    checked = check_first_batch_images(trainer, cfg.data.train)
    assert len(checked) == trainer.args.generation_batch_size // trainer.args.num_generations
    frames = {p for r in records if r.id in checked for p in r.images}
    assert cache.misses == len(frames) and all(p in cache for p in frames)  # decoded once, kept for step 1

    first = next(iter(trainer.get_train_dataloader()))  # what step 1 fetches, after the check
    assert list(dict.fromkeys(row["id"] for row in first)) == checked


def test_train_refuses_a_broken_first_frame_before_any_step(
    tmp_path: Path,
    tiny_data: Path,
    write_config: Callable[..., Path],
    read_metrics: Callable[[Path], list[dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two questions, so both are in the first generation batch; the first one's frame is cut in half."""
    data = tmp_path / "data"
    rows = [json.loads(line) for line in (tiny_data / "train.jsonl").read_text().splitlines()[:2]]
    for i, row in enumerate(rows):
        (data / "img").mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_data / row["images"][0], data / "img" / f"{i}.png")
        row["images"] = [f"img/{i}.png"]
    bad = data / "img" / "0.png"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    train = data / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    out = tmp_path / "run"
    cfg = write_config(out, data={"train": str(train)}, grpo={"max_steps": 2})
    assert main(["train", "--config", str(cfg)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1, err
    assert err[0].startswith(
        f"error: {train}: first training batch: item {rows[0]['id']!r}: cannot decode image {bad}"
    ), err
    metrics = out / "metrics.jsonl"
    assert not metrics.exists() or read_metrics(metrics) == []
    assert not (out / "final").exists()

    # It fails before TRL's training loop begins (optimizer, DeepSpeed, vLLM start-up), not at its fetch.
    from transformers import TrainerCallback

    from anatomy_r1.errors import DataError
    from anatomy_r1.training.grpo import run_grpo

    class Began(TrainerCallback):  # type: ignore[misc]
        began = False

        def on_train_begin(self, *args: Any, **kwargs: Any) -> None:
            Began.began = True

    cfg2 = _load(write_config(tmp_path / "run2", data={"train": str(train)}, grpo={"max_steps": 2}))
    with pytest.raises(DataError, match="first training batch"):
        run_grpo(cfg2, callbacks=[Began()])
    assert not Began.began


def test_image_cache_mb_reaches_both_datasets_and_is_validated(
    tiny_data: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from anatomy_r1.data.images import DEFAULT_IMAGE_CACHE_MB
    from anatomy_r1.data.io import read_records
    from anatomy_r1.training.dataset import build_rl_dataset, build_sft_dataset, image_cache_of

    records = read_records(tiny_data / "train.jsonl")[:4]
    for build in (build_rl_dataset, build_sft_dataset):
        assert image_cache_of(build(records, "compact_text", str(tiny_data), 0)).max_bytes == 0
        default = image_cache_of(build(records, "compact_text", str(tiny_data)))
        assert default.max_bytes == DEFAULT_IMAGE_CACHE_MB * 2**20
    assert _load(write_config()).data.image_cache_mb == DEFAULT_IMAGE_CACHE_MB
    assert main(["train", "--config", str(write_config(data={"image_cache_mb": -1}))]) == 2
    assert "image_cache_mb" in capsys.readouterr().err
