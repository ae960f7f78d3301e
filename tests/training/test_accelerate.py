"""Multi-process training under ``accelerate launch`` on CPU, and the shipped launcher configs.

The two-process run uses one GRPO group per step split across the processes (2 completions each), so
it checks exactly what distributed GRPO depends on: both processes draw the same curriculum order, GDQA
gives each member the wording of its *global* position, the tracker sees whole groups, and only the main
process writes metrics and prints.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ACCEL = REPO / "configs" / "accelerate"

# Records, per process and generation batch, the rows TRL is about to generate for (after GDQA).
SPY_ENTRY = """
import json, os, sys

import trl

from anatomy_r1.cli import main

_orig = trl.GRPOTrainer._generate_and_score_completions


def _spy(self, inputs):
    rank = self.accelerator.process_index
    with open(os.path.join(os.environ["SPY_DIR"], f"rank{rank}.jsonl"), "a", encoding="utf-8") as fh:
        fh.write(json.dumps({
            "step": self.state.global_step,
            "world": self.accelerator.num_processes,
            "ids": [r["id"] for r in inputs],
            "prompts": [r["prompt_text"] for r in inputs],
        }) + "\\n")
    return _orig(self, inputs)


trl.GRPOTrainer._generate_and_score_completions = _spy
sys.exit(main(sys.argv[1:]))
"""


def test_cpu_accelerate_config_parses() -> None:
    cfg = yaml.safe_load((ACCEL / "cpu_2proc.yaml").read_text(encoding="utf-8"))
    assert cfg["num_processes"] == 2 and cfg["use_cpu"] is True and cfg["num_machines"] == 1
    # MULTI_GPU + use_cpu selects the torchrun launcher on CPU; MULTI_CPU would start one process.
    assert cfg["distributed_type"] == "MULTI_GPU"


def test_deepspeed_zero3_config_is_stage_3() -> None:
    cfg = yaml.safe_load((ACCEL / "deepspeed_zero3.yaml").read_text(encoding="utf-8"))
    assert cfg["distributed_type"] == "DEEPSPEED" and cfg["use_cpu"] is False
    ds_file = REPO / cfg["deepspeed_config"]["deepspeed_config_file"]  # relative to the repo root
    ds = json.loads(ds_file.read_text(encoding="utf-8"))
    assert ds["zero_optimization"]["stage"] == 3
    assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    # Values the trainer owns are left to it, so the experiment config is the single source of truth.
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "gradient_clipping"):
        assert ds[key] == "auto"
    assert "mixed_precision" not in cfg  # precision comes from the JSON ("auto" -> model.dtype)


def test_scaling_doc_config_is_a_valid_experiment() -> None:
    """The YAML example in docs/scaling.md validates against TrainConfig (no stale or misspelled keys)."""
    from anatomy_r1.training.config import config_from_dict

    text = (REPO / "docs" / "scaling.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S) if "method:" in b]
    assert blocks
    for b in blocks:
        cfg = config_from_dict(yaml.safe_load(b), "docs/scaling.md")
        assert cfg.model.dtype == "bf16" and cfg.grpo["use_vllm"]
    for path in re.findall(r"configs/accelerate/[\w.]+", text):
        assert (REPO / path).is_file(), path


def test_python_dash_m_cli_works() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "anatomy_r1.cli", "train", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "--resume" in r.stdout and "--output-dir" in r.stdout


@pytest.mark.slow
def test_two_cpu_processes_agree_on_groups_curriculum_and_gdqa(
    tmp_path: Path,
    write_config: Callable[..., Path],
    tiny_data: Path,
    read_metrics: Callable[[Path], list[dict[str, Any]]],
) -> None:
    from anatomy_r1.augment import CompositeGenerator, group_wordings
    from anatomy_r1.data.io import read_records
    from anatomy_r1.task.prompts import render_prompt

    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which(
        "accelerate"
    )
    if accelerate is None:
        pytest.skip("accelerate launcher not installed")
    out, spy_dir = tmp_path / "run", tmp_path / "spy"
    spy_dir.mkdir()
    entry = tmp_path / "entry.py"
    entry.write_text(SPY_ENTRY, encoding="utf-8")
    cfg = write_config(
        out,
        grpo={"max_steps": 2, "per_device_train_batch_size": 2},  # 4 completions = 1 group over 2 processes
        curriculum={"enabled": True, "backend": "matrix:prior"},
        gdqa={"enabled": True, "s_q_threshold": 0.0},
    )
    env = {**os.environ, "SPY_DIR": str(spy_dir), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    r = subprocess.run(
        [
            accelerate,
            "launch",
            "--config_file",
            str(ACCEL / "cpu_2proc.yaml"),
            str(entry),
            "train",
            "--config",
            str(cfg),
        ],
        capture_output=True,
        text=True,
        timeout=420,
        env=env,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("final model:") == 1  # only the main process prints

    logs = {
        rank: [json.loads(x) for x in (spy_dir / f"rank{rank}.jsonl").read_text().splitlines()]
        for rank in (0, 1)
    }
    assert [e["world"] for e in logs[0] + logs[1]] == [2] * 4
    originals = {rec.id: rec for rec in read_records(tiny_data / "train.jsonl")}
    generator = CompositeGenerator(kinds=("template", "lexical", "reorder"))
    for a, b in zip(logs[0], logs[1], strict=True):
        assert a["step"] == b["step"]
        ids = a["ids"] + b["ids"]
        assert len(set(ids)) == 1  # both processes drew the same item for the shared group
        rec = originals[ids[0]]
        prompts = a["prompts"] + b["prompts"]
        # Member m (global position) got exactly the wording the assignment gives member m.
        expected = [
            render_prompt(member, "compact_text")
            for member in group_wordings(rec, 4, generator, 0, a["step"])
        ]
        assert prompts == expected
        assert len(set(prompts)) > 1

    rows = read_metrics(out / "metrics.jsonl")
    assert [row["step"] for row in rows] == [1, 2]  # written once, by the main process
    assert all(row["gdqa/wordings_per_group"] > 1 and "curriculum/batch_mean_s_q" in row for row in rows)
    assert (out / "final" / "config.json").is_file()
    tracker = json.loads((out / "final" / "anatomy_r1_state.json").read_text())["tracker"]
    assert sum(it["groups"] for it in tracker["items"].values()) == 2  # whole groups, one per step


def _cpu_copy(src: Path, dst: Path, **changes: Any) -> Path:
    """A shipped accelerate config on 2 CPU processes (torchrun over gloo), otherwise unchanged."""
    cfg = yaml.safe_load(src.read_text(encoding="utf-8"))
    cfg.update({"num_processes": 2, "use_cpu": True, **changes})
    dst.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return dst


def test_fsdp1_with_a_frozen_vision_tower_is_refused_and_fsdp2_is_not(tmp_path: Path) -> None:
    from anatomy_r1.training.config import load_config
    from anatomy_r1.training.launch import LaunchSetup
    from anatomy_r1.training.preflight import launch_refusals

    fsdp2 = LaunchSetup.from_accelerate_config(ACCEL / "fsdp2.yaml")
    cfg2 = yaml.safe_load((ACCEL / "fsdp2.yaml").read_text(encoding="utf-8"))
    cfg2["fsdp_config"]["fsdp_version"] = 1
    (tmp_path / "fsdp1.yaml").write_text(yaml.safe_dump(cfg2), encoding="utf-8")
    fsdp1 = LaunchSetup.from_accelerate_config(tmp_path / "fsdp1.yaml")
    cfg2["fsdp_config"]["fsdp_use_orig_params"] = True
    (tmp_path / "orig.yaml").write_text(yaml.safe_dump(cfg2), encoding="utf-8")
    orig = LaunchSetup.from_accelerate_config(tmp_path / "orig.yaml")
    frozen = load_config(None, ["model.freeze_vision=true", "model.dtype=bf16"])
    (line,) = launch_refusals(frozen, fsdp1)
    assert "model.freeze_vision with FSDP1" in line and "fsdp1.yaml" in line and "fsdp_version: 2" in line
    assert launch_refusals(frozen, fsdp2) == [] and launch_refusals(frozen, orig) == []
    assert launch_refusals(load_config(None, []), fsdp1) == []  # nothing frozen: FSDP1 is fine


@pytest.mark.slow
def test_two_cpu_processes_train_with_fsdp2_and_a_frozen_vision_tower(
    tmp_path: Path, write_config: Callable[..., Path], warm_model: Path
) -> None:
    """FSDP2 shards the frozen tower beside trainable weights: it stays as loaded, the rest moves."""
    from safetensors.torch import load_file

    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which(
        "accelerate"
    )
    assert accelerate is not None, "accelerate's launcher is a dependency"
    out = tmp_path / "run"
    cfg = write_config(
        out,
        model={"path": str(warm_model), "freeze_vision": True},
        grpo={"max_steps": 2, "per_device_train_batch_size": 4},
    )
    launch_cfg = _cpu_copy(ACCEL / "fsdp2.yaml", tmp_path / "fsdp2_cpu.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = ["launch", "--config_file", str(launch_cfg), "-m", "anatomy_r1.cli", "train", "--config"]
    r = subprocess.run(
        [accelerate, *command, str(cfg)],
        capture_output=True,
        text=True,
        timeout=420,
        env=env,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    before = load_file(str(warm_model / "model.safetensors"))
    after = load_file(str(out / "final" / "model.safetensors"))
    vision = [k for k in before if ".visual." in f".{k}"]
    language = [k for k in before if ".layers." in k and k not in vision]
    assert vision and language
    assert all(bool((before[k] == after[k]).all()) for k in vision)
    assert any(not bool((before[k] == after[k]).all()) for k in language)
