"""``anatomy-r1 experiment`` with per-run launches: printed scripts, ``accelerate launch`` per run, resuming.

The slow test is the path of a GPU user, on two CPU processes: a two-method comparison (GRPO and DAPO
with dynamic sampling) whose runs are printed as scripts, one of them run by hand as a scheduler would,
the rest launched by ``experiment`` itself, then a half-finished run resumed from its checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from anatomy_r1.cli import main
from anatomy_r1.pipelines.experiment.config import load_experiment
from anatomy_r1.pipelines.experiment.plan import plan_experiment
from anatomy_r1.training.config import load_config

REPO = Path(__file__).resolve().parents[2]
CPU_2PROC = REPO / "configs" / "accelerate" / "cpu_2proc.yaml"


def _exp(env: dict[str, Path], **base: object) -> dict:
    return {
        "name": "launch",
        "seeds": 1,
        "data": {
            "train": str(env["data"] / "train.jsonl"),
            "test": str(env["data"] / "test.jsonl"),
            "image_root": str(env["data"]),
        },
        "base": {
            "template": "compact_text",
            "model": {"path": str(env["model"])},
            "grpo": {
                "num_generations": 4,
                "per_device_train_batch_size": 4,  # x 2 processes: two groups per step
                "max_steps": 2,
                "max_completion_length": 8,
                "learning_rate": 1e-4,
            },
            "curriculum": {"backend": "matrix:prior"},
            "saving": {"save_steps": 1, "save_total_limit": 2},
            "logging": {"progress_bar": False},
            **base,
        },
        "eval": {"k": 2, "greedy": True, "batch_size": 8, "limit": 6},
        "methods": {
            "grpo": {"set": []},
            "dapo": {"set": ["grpo.loss_type=dapo", "grpo.epsilon_high=0.28", "dynamic_sampling=true"]},
        },
    }


def _write(path: Path, obj: dict) -> Path:
    path.write_text(yaml.safe_dump(obj, sort_keys=False), encoding="utf-8")
    return path


def test_print_writes_one_script_per_run_and_runs_nothing(
    tiny_env: dict[str, Path], tmp_path: Path, capsys
) -> None:
    cfg = _write(tmp_path / "exp.yaml", _exp(tiny_env))
    out = tmp_path / "out"
    args = ["experiment", "--config", str(cfg), "--out", str(out), "--launcher", "print"]
    assert main([*args, "--accelerate-config", str(CPU_2PROC), "--num-processes", "2"]) == 0
    printed = capsys.readouterr().out
    exp, base_dir = load_experiment(cfg)
    plan = plan_experiment(exp, base_dir, out)
    for run in plan.runs:
        script = run.run_dir / "run.sh"
        assert str(script) in printed
        assert not (run.run_dir / "train").exists() and not run.done_file.exists()  # nothing ran
        text = script.read_text()
        assert subprocess.run(["bash", "-n", str(script)], check=False).returncode == 0
        assert os.access(script, os.X_OK)
        # the run's resolved config, read by every process of the launch
        assert load_config(run.run_dir / "train_config.yaml") == run.cfg
        assert f"--config_file {CPU_2PROC}" in text and "--num_processes 2" in text
        assert "-m anatomy_r1.cli train \\\n" in text
        assert f"--config {run.run_dir / 'train_config.yaml'} $RESUME\n" in text
        assert "-m accelerate.commands.launch" in text
        flags = ["--template compact_text", "--dtype fp32", "--k 2", "--greedy", "--limit 6"]
        flags += ["--max-new-tokens 8", f"--seed {run.seed}", "--batch-size 8", "--engine hf"]
        for flag in flags:
            assert flag in text, flag
        assert f"--model {run.run_dir / 'train' / 'final'}" in text
    overview = (out / "launch_all.sh").read_text()
    assert [line.split()[1] for line in overview.splitlines() if line.startswith("bash ")] == [
        str(r.run_dir / "run.sh") for r in plan.runs
    ]
    assert "--report-only" in overview and "then the report:" in printed
    assert not (out / "results.md").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--accelerate-config", "CPU"], "apply to --launcher accelerate or print"),
        (["--num-processes", "2"], "apply to --launcher accelerate or print"),
        (["--launcher", "accelerate", "--accelerate-config", "nope.yaml"], "nope.yaml: no such file"),
        (["--launcher", "accelerate", "--num-processes", "0"], "at least 1"),
        (["--launcher", "print", "--report-only"], "--launcher does not apply"),
    ],
)
def test_launch_options_that_cannot_work_are_refused(
    tiny_env: dict[str, Path], tmp_path: Path, extra: list[str], message: str, capsys
) -> None:
    cfg = _write(tmp_path / "exp.yaml", _exp(tiny_env))
    extra = [str(CPU_2PROC) if x == "CPU" else x for x in extra]
    rc = main(["experiment", "--config", str(cfg), "--out", str(tmp_path / "out"), *extra])
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_eval_settings_reach_the_eval_command(tiny_env: dict[str, Path], tmp_path: Path) -> None:
    from anatomy_r1.pipelines.experiment.launch import LaunchSettings, eval_command

    raw = _exp(tiny_env, model={"path": str(tiny_env["model"]), "dtype": "bf16"})
    raw["eval"] = {"k": 3, "greedy": False, "engine": "vllm", "vllm_args": {"tensor_parallel_size": 2}}
    exp, base_dir = load_experiment(_write(tmp_path / "exp.yaml", raw))
    plan = plan_experiment(exp, base_dir, tmp_path / "out")
    cmd = eval_command(LaunchSettings(launcher="accelerate"), plan, plan.runs[0])
    assert cmd[:4] == [sys.executable, "-m", "anatomy_r1.cli", "eval"]
    text = " ".join(cmd)
    assert "--engine vllm --no-progress" in text and "--vllm-arg tensor_parallel_size=2" in text
    assert "--dtype bf16" in text and "--k 3" in text
    assert "--greedy" not in cmd and "--batch-size" not in cmd  # vLLM schedules its own batches

    raw["eval"] = {"vllm_args": {"tensor_parallel_size": 2}}
    from anatomy_r1.errors import ConfigError

    with pytest.raises(ConfigError, match=r"only apply with eval\.engine: vllm"):
        load_experiment(_write(tmp_path / "bad.yaml", raw))


@pytest.mark.slow
def test_two_method_comparison_with_per_run_launches_on_two_cpu_processes(
    tiny_env: dict[str, Path], tmp_path: Path, capsys
) -> None:
    cfg = _write(tmp_path / "exp.yaml", _exp(tiny_env))
    out = tmp_path / "out"
    base = ["experiment", "--config", str(cfg), "--out", str(out), "--accelerate-config", str(CPU_2PROC)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}

    # 1. print the runs, and run DAPO's script as a scheduler would (outside the experiment process)
    assert main([*base, "--launcher", "print"]) == 0
    dapo, grpo = out / "dapo" / "seed0", out / "grpo" / "seed0"
    r = subprocess.run(["bash", str(dapo / "run.sh")], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (dapo / "eval" / "metrics.json").is_file() and not (dapo / "done.json").exists()
    timings = json.loads((dapo / "timings.json").read_text())
    assert timings["train_seconds"] >= 0 and timings["eval_seconds"] >= 0
    rows = [json.loads(x) for x in (dapo / "train" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows if "dapo/refilled_groups" in x] == [1, 2]  # DAPO ran on 2 processes
    capsys.readouterr()

    # 2. the experiment collects DAPO and launches GRPO as its own accelerate launch + eval process
    assert main([*base, "--launcher", "accelerate"]) == 0
    log = capsys.readouterr().out
    assert "collected 1 run(s) finished outside this process: dapo/seed0" in log
    train_log = (grpo / "train.log").read_text()
    assert train_log.startswith("$ ") and "accelerate.commands.launch" in train_log.splitlines()[0]
    assert "--num_processes" not in train_log.splitlines()[0]  # the accelerate config says 2
    assert "--resume" not in train_log.splitlines()[0]
    assert (grpo / "eval.log").read_text().startswith("$ ")
    assert (grpo / "train" / "final" / "anatomy_r1_run.json").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["methods"]) == {"grpo", "dapo"} and not summary["failed"] and not summary["missing"]
    for m in ("grpo", "dapo"):
        assert summary["methods"][m]["avg_at_k"]["n"] == 1
        assert summary["methods"][m]["train_seconds"]["mean"] is not None
    assert summary["methods"]["dapo"]["invalid_gradient"] is not None
    md = (out / "results.md").read_text()
    assert "| GRPO |" in md and "| DAPO |" in md
    # metrics.jsonl is written once, by the main process of the launch
    grpo_steps = [json.loads(x)["step"] for x in (grpo / "train" / "metrics.jsonl").read_text().splitlines()]
    assert grpo_steps[:2] == [1, 2]

    # 3. a half-finished GRPO run (checkpoints, no final model, no evaluation) resumes with --resume
    dapo_done = (dapo / "done.json").stat().st_mtime_ns
    for p in (grpo / "done.json", grpo / "timings.json"):
        p.unlink()
    shutil.rmtree(grpo / "eval")
    shutil.rmtree(grpo / "train" / "final")
    assert (grpo / "train" / "checkpoint-2").is_dir()
    assert main([*base, "--launcher", "accelerate"]) == 0
    commands = [x for x in (grpo / "train.log").read_text().splitlines() if x.startswith("$ ")]
    assert len(commands) == 2 and commands[1].endswith("--resume")
    assert (grpo / "done.json").is_file() and (dapo / "done.json").stat().st_mtime_ns == dapo_done

    # 4. a printed script of a finished run does nothing
    r = subprocess.run(["bash", str(dapo / "run.sh")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "already finished" in r.stdout
