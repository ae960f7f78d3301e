"""Checkpoints and ``--resume``: a run killed with SIGKILL continues where its last checkpoint left off.

What must survive the kill: model/optimizer/step (TRL/transformers), the GDQA difficulty tracker
(``anatomy_r1_state.json`` in each checkpoint), and a ``metrics.jsonl`` without duplicated steps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from anatomy_r1.cli import main

GDQA_ON = {"enabled": True, "s_q_threshold": 0.0}
PRIOR = {"backend": "matrix:prior"}


def test_resume_without_checkpoint_exits_2(
    tmp_path: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    cfg = write_config(out)
    assert main(["train", "--config", str(cfg), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume: no complete checkpoint under") and str(out) in err
    (out / "checkpoint-2").mkdir(parents=True)  # a folder cut off mid-save does not count
    assert main(["train", "--config", str(cfg), "--resume"]) == 2
    assert "no complete checkpoint" in capsys.readouterr().err


def test_fresh_run_over_checkpoints_is_refused(
    tmp_path: Path, write_config: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    (out / "checkpoint-4").mkdir(parents=True)
    (out / "checkpoint-4" / "trainer_state.json").write_text("{}")
    for cmd in ("train", "sft"):
        assert main([cmd, "--config", str(write_config(out))]) == 2
        err = capsys.readouterr().err
        assert "already holds checkpoints" in err and "--resume" in err
    assert not (out / "config.yaml").exists()


def test_last_checkpoint_skips_partial_folders(tmp_path: Path) -> None:
    from anatomy_r1.training.run import last_checkpoint

    assert last_checkpoint(tmp_path / "absent") is None
    assert last_checkpoint(tmp_path) is None
    for n in (2, 4, 10):
        (tmp_path / f"checkpoint-{n}").mkdir()
    (tmp_path / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-latest").mkdir()
    # checkpoint-10 has no trainer_state.json: the run died while writing it. Numeric order, not text.
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")


def test_metrics_rows_after_the_checkpoint_are_dropped_on_resume(tmp_path: Path) -> None:
    from anatomy_r1.training.callbacks import JsonlMetricsCallback

    p = tmp_path / "metrics.jsonl"
    p.write_text("".join(json.dumps({"step": s, "reward": 0.1 * s}) + "\n" for s in (1, 2, 3)) + "{broken\n")
    cb = JsonlMetricsCallback(p)
    cb.on_train_begin(None, SimpleNamespace(is_world_process_zero=True, global_step=2), None)
    assert [json.loads(x)["step"] for x in p.read_text().splitlines()] == [1, 2]
    cb.on_train_begin(None, SimpleNamespace(is_world_process_zero=True, global_step=0), None)
    assert len(p.read_text().splitlines()) == 2  # a fresh start (step 0) leaves the file alone


def _wait_for_checkpoint(proc: subprocess.Popen[bytes], out: Path, timeout: float = 240.0) -> Path:
    """Poll until checkpoint-2 or checkpoint-4 is complete (its tracker file is written last)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n in (4, 2):
            if (out / f"checkpoint-{n}" / "anatomy_r1_state.json").is_file():
                return out / f"checkpoint-{n}"
        if proc.poll() is not None:
            pytest.fail(f"training exited (rc {proc.returncode}) before writing a checkpoint")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no checkpoint within the timeout")


@pytest.mark.slow
def test_sigkill_then_resume_finishes_with_tracker_and_metrics_intact(
    tmp_path: Path,
    write_config: Callable[..., Path],
    read_metrics: Callable[[Path], list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "run"
    cfg = write_config(
        out,
        grpo={"max_steps": 6},
        saving={"save_steps": 2, "save_total_limit": None},
        gdqa=GDQA_ON,
        curriculum=PRIOR,
    )
    exe = Path(sys.executable).with_name("anatomy-r1")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "anatomy_r1.cli"]
    proc = subprocess.Popen(
        [*cmd, "train", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        seen = _wait_for_checkpoint(proc, out)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "final").exists()

    from anatomy_r1.training.run import last_checkpoint
    from anatomy_r1.training.trainer import AnatomyR1GRPOTrainer

    ckpt = Path(last_checkpoint(out) or "")
    assert ckpt.name in ("checkpoint-2", "checkpoint-4") and int(ckpt.name[11:]) >= int(seen.name[11:])
    for d in out.glob("checkpoint-*"):
        if (d / "trainer_state.json").is_file():
            assert (d / "anatomy_r1_state.json").is_file()
    saved_tracker = json.loads((ckpt / "anatomy_r1_state.json").read_text())["tracker"]
    start = int(ckpt.name.split("-")[1])
    assert sum(it["groups"] for it in saved_tracker["items"].values()) == start * 2  # 2 groups per step

    # Spy on the restore: the tracker right after loading must equal the checkpoint's file.
    restored: list[dict[str, Any]] = []
    original = AnatomyR1GRPOTrainer.load_extra_state

    def spy(self: Any, state: dict[str, Any]) -> None:
        original(self, state)
        restored.append(self._policy.tracker.state_dict())

    monkeypatch.setattr(AnatomyR1GRPOTrainer, "load_extra_state", spy)
    assert main(["train", "--config", str(cfg), "--resume"]) == 0

    assert len(restored) == 1 and restored[0] == saved_tracker
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4, 5, 6], steps  # continued from the checkpoint, no step logged twice
    state = json.loads((out / "final" / "anatomy_r1_state.json").read_text())["tracker"]
    # 6 steps x 2 groups: the groups seen before the kill are still counted after it.
    assert sum(it["groups"] for it in state["items"].values()) == 12
    for item_id, st in saved_tracker["items"].items():
        assert state["items"][item_id]["groups"] >= st["groups"]
    trainer_state = json.loads((out / "checkpoint-6" / "trainer_state.json").read_text())
    assert trainer_state["global_step"] == 6


# ------------------------------------------------------------------------- resuming under a changed config


def test_config_changes_are_named_by_dotted_key() -> None:
    from anatomy_r1.training.run import config_changes

    saved = {
        "output_dir": "runs/a",
        "model": {"path": "/m", "lora": None},
        "grpo": {"learning_rate": 1e-4, "max_steps": 3},
        "logging": {"logging_steps": 1, "tensorboard": False},
    }
    new = {
        "output_dir": "/abs/runs/a",  # the folder the saved config was read from: never a change
        "model": {"path": "/m", "lora": {"r": 8}},
        "grpo": {"learning_rate": 2e-4, "max_steps": 3, "beta": 0.0},  # beta 0.0 is TRL's default
        "logging": {"logging_steps": 1, "report_to": "none"},
    }
    changes = config_changes(saved, new)
    assert set(changes) == {"model.lora", "grpo.learning_rate", "logging.tensorboard", "logging.report_to"}
    assert changes["grpo.learning_rate"] == (1e-4, 2e-4)
    assert changes["model.lora"] == (None, {"r": 8})


@pytest.mark.slow
def test_resume_refuses_a_changed_config_and_accepts_more_steps(
    tmp_path: Path,
    write_config: Callable[..., Path],
    read_metrics: Callable[[Path], list[dict[str, Any]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "run"
    cfg = write_config(out, grpo={"max_steps": 2}, saving={"save_steps": 2})
    assert main(["train", "--config", str(cfg)]) == 0
    saved = (out / "config.yaml").read_text(encoding="utf-8")
    capsys.readouterr()

    # A new learning rate (and a new pacing) would make the checkpoint's history disagree with its record.
    changed = ["--set", "grpo.learning_rate=2.0e-4", "--set", "curriculum.pacing=root"]
    assert main(["train", "--config", str(cfg), "--resume", *changed]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume:") and err.count("\n") == 1
    assert "grpo.learning_rate: 0.0001 -> 0.0002" in err and 'curriculum.pacing: "linear" -> "root"' in err
    assert (out / "config.yaml").read_text(encoding="utf-8") == saved
    assert not (out / "config_history.jsonl").exists()
    assert not (out / "checkpoint-3").exists()

    # More steps and another logging cadence only extend and observe the run: it continues.
    more = ["--set", "grpo.max_steps=4", "--set", "logging.logging_steps=2"]
    assert main(["train", "--config", str(cfg), "--resume", *more]) == 0
    assert (out / "config.yaml").read_text(encoding="utf-8") == saved  # never overwritten
    assert json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["global_step"] == 4
    steps = [r["step"] for r in read_metrics(out / "metrics.jsonl")]
    assert steps == [1, 2, 4], steps  # logged every step, then every second step after the resume
    (entry,) = [json.loads(line) for line in (out / "config_history.jsonl").read_text().splitlines()]
    assert entry["event"] == "resume" and entry["checkpoint"] == "checkpoint-2" and entry["time"]
    assert entry["changes"] == {
        "grpo.max_steps": {"from": 2, "to": 4},
        "logging.logging_steps": {"from": 1, "to": 2},
    }


def test_resume_may_change_the_image_cache_bound_only() -> None:
    from anatomy_r1.training.run import RESUME_MAY_CHANGE

    assert "data.image_cache_mb" in RESUME_MAY_CHANGE
    assert not any(k.startswith("data.") and k != "data.image_cache_mb" for k in RESUME_MAY_CHANGE)
