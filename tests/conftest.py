"""Session-wide fixtures: an isolated model cache, a small synthetic benchmark and tiny Qwen2.5-VL models.

Training tests use a random-weight tiny model built in seconds rather than the SFT-warmed
``builtin:tiny-base`` (shipped with the package; rebuilding it takes minutes). ``ANATOMY_R1_CACHE``
points at a session temp folder, so nothing a test does reads or writes the user's
``~/.cache/anatomy_r1``; subprocesses inherit it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test session gets its own model cache; the previous value is restored afterwards."""
    cache = tmp_path_factory.mktemp("anatomy_r1_cache")
    old = os.environ.get("ANATOMY_R1_CACHE")
    os.environ["ANATOMY_R1_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("ANATOMY_R1_CACHE", None)
    else:
        os.environ["ANATOMY_R1_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """48 training questions on 84-px frames (the tiny model's native size), plus derived files.

    * ``train.jsonl``: as generated (image paths relative to the folder, the default image root);
    * ``warm.jsonl``: the same questions with no rationale, so SFT targets are short enough
      (``<think></think> <answer>Gut</answer>``) to fit a 12-token GRPO completion.
    """
    from anatomy_r1.data.io import read_records, write_records
    from anatomy_r1.data.synth import generate_benchmark

    root = tmp_path_factory.mktemp("tiny_data")
    generate_benchmark(root, seed=7, n_train=48, n_val=0, n_test=0, n_perception=0, image_size=84)
    records = read_records(root / "train.jsonl")
    for r in records:
        r.meta.pop("rationale", None)
    write_records(root / "warm.jsonl", records)
    return root


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> Path:
    """Random-weight tiny Qwen2.5-VL whose tokenizer is trained on every prompt template (~3 s)."""
    from anatomy_r1.data.io import read_records
    from anatomy_r1.models.tiny import TinySpec, build_tiny_model
    from anatomy_r1.task.prompts import TEMPLATES, format_target, render_prompt

    records = read_records(tiny_data / "train.jsonl")
    corpus = [render_prompt(r, t) for r in records for t in TEMPLATES]
    corpus += [format_target(r.answer_letter, None, "compact_text", r.answer) for r in records]
    corpus += [format_target(r.answer_letter, None, "compact", r.answer) for r in records]
    return build_tiny_model(tmp_path_factory.mktemp("tiny_model") / "model", corpus, TinySpec())


@pytest.fixture(scope="session")
def warm_model(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path, tiny_model: Path) -> Path:
    """The tiny model after 25 SFT steps through ``anatomy-r1 sft`` (about 10-20 s on two cores).

    A random model never writes an answer tag, so every GRPO group is all-zero, every advantage is zero
    and no weight moves; after this warm-up it answers in format and picks options at about chance, which
    gives the reward spread a real update needs.
    """
    from anatomy_r1.cli import main

    out = tmp_path_factory.mktemp("warm_model")
    cfg = out / "sft.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "name": "warm",
                "output_dir": str(out / "run"),
                "template": "compact_text",
                "model": {"path": str(tiny_model)},
                "data": {"train": str(tiny_data / "warm.jsonl")},
                "sft": {"per_device_train_batch_size": 8, "learning_rate": 0.003, "max_steps": 25},
                "logging": {"logging_steps": 5, "progress_bar": False},
                "saving": {"save_steps": 1000},
            }
        ),
        encoding="utf-8",
    )
    assert main(["sft", "--config", str(cfg)]) == 0
    return out / "run" / "final"


def _base_config(data: Path, model_dir: Path, out: Path, /, **sections: Any) -> dict[str, Any]:
    """A small GRPO config as a plain dict; ``sections`` update top-level keys or merge into sections."""
    raw: dict[str, Any] = {
        "name": "t",
        "method": "grpo",
        "seed": 0,
        "output_dir": str(out),
        "template": "compact_text",
        "model": {"path": str(model_dir)},
        "data": {"train": str(data / "train.jsonl")},
        "grpo": {
            "num_generations": 4,
            "per_device_train_batch_size": 8,
            "max_completion_length": 12,
            "max_steps": 3,
            "learning_rate": 1e-4,
            "loss_type": "grpo",
            "lr_scheduler_type": "constant",
            "gradient_checkpointing": False,
        },
        # S(q) is logged for every run; the built-in prior scores it instantly (MiniLM takes ~5 s to load).
        "curriculum": {"backend": "matrix:prior"},
        "logging": {"logging_steps": 1, "progress_bar": False},
        "saving": {"save_steps": 1000},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


@pytest.fixture
def write_config(tmp_path: Path, tiny_data: Path, tiny_model: Path) -> Callable[..., Path]:
    """``write_config(out_dir, **sections)`` writes a GRPO config YAML and returns its path."""
    counter = iter(range(1000))

    def write(out: Path | None = None, /, **sections: Any) -> Path:
        raw = _base_config(tiny_data, tiny_model, out or tmp_path / "run", **sections)
        path = tmp_path / f"config{next(counter)}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        return path

    return write


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    import json

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if "train_runtime" not in r]


@pytest.fixture(scope="session")
def read_metrics() -> Callable[[Path], list[dict[str, Any]]]:
    """``read_metrics(path)``: the per-step rows of ``metrics.jsonl``, without the end-of-run summary."""
    return _read_metrics
