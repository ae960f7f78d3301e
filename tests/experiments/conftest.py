"""Shared fixtures: a random-weight tiny Qwen2.5-VL and a small synthetic benchmark, built once per session.

A random tiny model (not the SFT-warmed ``builtin:tiny-base``) keeps the fixture to seconds; the tests
check plumbing and bookkeeping, never accuracy.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from anatomy_r1.data.io import read_records
    from anatomy_r1.data.synth import generate_benchmark
    from anatomy_r1.models.tiny import TinySpec, build_tiny_model
    from anatomy_r1.task.prompts import format_target, render_prompt

    root = tmp_path_factory.mktemp("tiny_env")
    data = root / "data"
    generate_benchmark(data, seed=7, n_train=48, n_val=0, n_test=12, n_perception=0, image_size=56)
    records = read_records(data / "train.jsonl")
    corpus = [render_prompt(r, "compact_text") for r in records]
    corpus += [format_target(r.answer_letter, None, "compact_text", r.answer) for r in records]
    model = build_tiny_model(root / "model", corpus, TinySpec(vocab_size=400, num_layers=2, image_size=56))
    return {"root": root, "data": data, "model": Path(model)}
