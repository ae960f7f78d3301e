"""A bad config or data file is refused before anything is written and before torch is imported."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

PROBE = """
import sys
from anatomy_r1.cli import main
rc = main(sys.argv[1:])
print("TORCH_IMPORTED" if "torch" in sys.modules else "NO_TORCH")
sys.exit(rc)
"""


def _refuse(cfg: Path, *overrides: str, lines: int = 1) -> tuple[str, str]:
    args = [sys.executable, "-c", PROBE, "train", "--config", str(cfg)]
    for o in overrides:
        args += ["--set", o]
    r = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == lines, r.stderr
    return errors[0], r.stdout


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "curriculum.backend=minilmm",
            "curriculum.backend: unknown similarity backend 'minilmm'.*did you mean 'minilm'",
        ),
        ("template=anatomy-r1", "template: unknown prompt template 'anatomy-r1'.*did you mean 'anatomy_r1'"),
        ("curriculum.backnd=minilm", "curriculum.backnd: not a known key; did you mean 'backend'"),
        ("gdqa.kindz=[reorder]", "gdqa.kindz: not a known key; did you mean 'kinds'"),
        ("model.dtype=fp16", "model.dtype: fp16 is refused for training"),
        ("data.image_root=/nonexistent-frames", r"48 image\(s\) not found under /nonexistent-frames: item "),
        ("curriculum.backend=matrix:prior", None),  # the control: this one is not refused here
    ],
)
def test_config_mistakes_fail_before_output_or_torch(
    override: str, expected: str | None, tmp_path: Path, write_config: Callable[..., Path], tiny_data: Path
) -> None:
    import re

    out = tmp_path / "run"
    cfg = write_config(out)
    if expected is None:
        # A label the prior lacks is named by file, line and item, still before anything is written.
        rows = [json.loads(x) for x in (tiny_data / "train.jsonl").read_text(encoding="utf-8").splitlines()]
        rows[5]["options"][1] = "Pancreas"
        if rows[5]["answer_index"] == 1:
            rows[5]["answer"] = "Pancreas"
        bad = tmp_path / "bad.jsonl"
        bad.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        # One line per unscorable option, then one saying how many and the way out.
        line, stdout = _refuse(cfg, f"data.train={bad}", f"data.image_root={tiny_data}", lines=2)
        assert re.search(r"bad\.jsonl:6: item '[^']+': option 'Pancreas'", line), line
    else:
        line, stdout = _refuse(cfg, override)
        assert re.search(expected, line), line
    assert "NO_TORCH" in stdout
    assert not out.exists()


def test_a_training_item_without_an_answer_fails_before_output(
    tmp_path: Path, write_config: Callable[..., Path], tiny_data: Path
) -> None:
    rows = [json.loads(x) for x in (tiny_data / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    del rows[3]["answer"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "run"
    line, stdout = _refuse(write_config(out), f"data.train={bad}", f"data.image_root={tiny_data}")
    assert "bad.jsonl:4" in line and "answer" in line
    assert "NO_TORCH" in stdout and not out.exists()


def test_fsdp1_with_a_frozen_tower_is_refused_by_train_from_the_launch_environment(
    tmp_path: Path, write_config: Callable[..., Path]
) -> None:
    import os

    out = tmp_path / "run"
    cfg = write_config(out, model={"freeze_vision": True})
    env = {**os.environ, "ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1", "FSDP_USE_ORIG_PARAMS": "false"}
    r = subprocess.run(
        [sys.executable, "-m", "anatomy_r1.cli", "train", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 2 and "model.freeze_vision with FSDP1" in r.stderr
    assert not out.exists()
    yaml.safe_load(cfg.read_text(encoding="utf-8"))  # the config itself was fine
