"""Per-run launches: each run's training as its own ``accelerate launch``, or the commands as shell scripts.

The inline launcher trains every run inside the ``experiment`` process, which cannot hold a 7B model
under ZeRO-3 across GPUs. The other launchers turn a run into two commands:

1. training: ``python -m accelerate.commands.launch [--config_file F] [--num_processes N]
   -m anatomy_r1.cli train --config <run>/train_config.yaml [--resume]``, where ``train_config.yaml`` is
   the run's fully resolved ``TrainConfig`` (the same config the inline launcher trains), so every
   process of the launch reads the same file;
2. evaluation: ``python -m anatomy_r1.cli eval --model <run>/train/final ...`` with the experiment's eval
   settings and the run's template, dtype and seed spelled out.

``accelerate`` runs both, one run after another, with their output in ``<run>/train.log`` and
``<run>/eval.log``. ``print`` writes them as ``<run>/run.sh`` (plus ``OUT/launch_all.sh``) for a scheduler
such as SLURM and runs nothing; the script decides at run time what is left to do (skip a finished
step, ``--resume`` from a checkpoint), so it can be requeued. Either way a run ends by writing
``<run>/timings.json`` next to its ``eval/`` outputs, and the report step builds ``done.json`` from
what the run wrote (:func:`anatomy_r1.pipelines.experiment.run.collect_finished`).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from anatomy_r1.data.io import write_json
from anatomy_r1.errors import ConfigError
from anatomy_r1.pipelines.experiment.plan import ExperimentPlan, RunSpec
from anatomy_r1.training.config import dump_config

__all__ = [
    "LAUNCHERS",
    "TIMINGS_FILE",
    "TRAIN_CONFIG",
    "LaunchSettings",
    "eval_command",
    "launch_run",
    "train_command",
    "write_run_script",
]

LAUNCHERS = ("inline", "accelerate", "print")
TRAIN_CONFIG = "train_config.yaml"
TIMINGS_FILE = "timings.json"
RUN_SCRIPT = "run.sh"
OVERVIEW_SCRIPT = "launch_all.sh"


@dataclass(frozen=True)
class LaunchSettings:
    """How each run is started; ``python`` is the interpreter the commands run with."""

    launcher: str = "inline"
    accelerate_config: Path | None = None
    num_processes: int | None = None
    python: str = sys.executable

    def check(self) -> LaunchSettings:
        """Refuse a launcher option that the chosen launcher would ignore, or a config that is not there."""
        if self.launcher not in LAUNCHERS:
            raise ConfigError(f"--launcher must be one of {', '.join(LAUNCHERS)}, not {self.launcher!r}")
        if self.launcher == "inline" and (self.accelerate_config is not None or self.num_processes):
            raise ConfigError(
                "--accelerate-config and --num-processes apply to --launcher accelerate or print; "
                "the inline launcher trains inside this process"
            )
        if self.num_processes is not None and self.num_processes < 1:
            raise ConfigError("--num-processes must be at least 1")
        if self.accelerate_config is not None and not self.accelerate_config.is_file():
            raise ConfigError(f"--accelerate-config: {self.accelerate_config}: no such file")
        return self


def train_config_path(run: RunSpec) -> Path:
    return run.run_dir / TRAIN_CONFIG


def write_train_config(run: RunSpec) -> Path:
    """The run's resolved training config, the one file every process of its launch reads."""
    path = train_config_path(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    dump_config(run.cfg, path)
    return path


def train_command(settings: LaunchSettings, run: RunSpec, *, resume: bool) -> list[str]:
    cmd = [settings.python, "-m", "accelerate.commands.launch"]
    if settings.accelerate_config is not None:
        cmd += ["--config_file", str(settings.accelerate_config.resolve())]
    if settings.num_processes:
        cmd += ["--num_processes", str(settings.num_processes)]
    cmd += ["-m", "anatomy_r1.cli", "train", "--config", str(train_config_path(run))]
    if resume:
        cmd.append("--resume")
    return cmd


def model_dir(run: RunSpec) -> Path:
    """Where the model a run evaluates lives: its trained ``final/``, or the base model as configured."""
    return Path(run.cfg.output_dir) / "final" if run.train else Path(run.cfg.model.path)


def eval_command(settings: LaunchSettings, plan: ExperimentPlan, run: RunSpec) -> list[str]:
    """``anatomy-r1 eval`` with every setting the inline evaluation uses spelled out (no defaults)."""
    import yaml

    ev = plan.exp.eval
    image_root = plan.image_root if plan.image_root is not None else plan.test_file.parent
    max_new = ev.max_new_tokens or run.cfg.grpo_setting("max_completion_length")
    cmd = [
        settings.python, "-m", "anatomy_r1.cli", "eval",
        "--model", str(model_dir(run)),
        "--data", str(plan.test_file),
        "--out", str(run.run_dir / "eval"),
        "--image-root", str(image_root),
        "--k", str(ev.k),
        "--template", run.cfg.template,
        "--dtype", run.cfg.model.dtype,
        "--max-new-tokens", str(max_new),
        "--temperature", str(ev.temperature),
        "--seed", str(run.seed),
        "--engine", ev.engine,
        "--no-progress",
    ]  # fmt: skip
    if ev.greedy:
        cmd.append("--greedy")
    if ev.engine == "hf":
        cmd += ["--batch-size", str(ev.batch_size)]
    for key, value in ev.vllm_args.items():
        cmd += ["--vllm-arg", f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"]
    if ev.limit:
        cmd += ["--limit", str(ev.limit)]
    return cmd


def _resume_state(train_dir: Path) -> bool:
    """Resume from the newest complete checkpoint; without one an interrupted run starts over cleanly."""
    from anatomy_r1.training.run import last_checkpoint

    if last_checkpoint(train_dir) is not None:
        return True
    if train_dir.exists():
        shutil.rmtree(train_dir)
    return False


def _thread_env(plan: ExperimentPlan) -> dict[str, str]:
    import os

    env = dict(os.environ)
    if plan.exp.torch_threads:
        env["OMP_NUM_THREADS"] = str(plan.exp.torch_threads)
    return env


def _run_logged(cmd: list[str], log_file: Path, env: dict[str, str], what: str) -> None:
    """Run ``cmd`` with its output appended to ``log_file``; a failure names the log and shows its end."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {shlex.join(cmd)}\n")
        fh.flush()
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, check=False).returncode
    if rc != 0:
        tail = "\n".join(log_file.read_text(encoding="utf-8", errors="replace").splitlines()[-40:])
        raise RuntimeError(f"{what} exited with status {rc} (log: {log_file})\n{tail}")


def launch_run(
    settings: LaunchSettings, plan: ExperimentPlan, run: RunSpec, log: Callable[[str], None]
) -> dict[str, float]:
    """Train (unless finished) and evaluate one run as separate processes; returns its timings."""
    env = _thread_env(plan)
    t0 = time.perf_counter()
    if run.train and not (model_dir(run) / "config.json").is_file():
        train_dir = Path(run.cfg.output_dir)
        resume = _resume_state(train_dir)
        if resume:
            log(f"  resuming from the last checkpoint in {train_dir}")
        write_train_config(run)
        _run_logged(train_command(settings, run, resume=resume), run.run_dir / "train.log", env, "training")
    run.run_dir.mkdir(parents=True, exist_ok=True)
    t1 = time.perf_counter()
    _run_logged(eval_command(settings, plan, run), run.run_dir / "eval.log", env, "evaluation")
    timings = {
        "train_seconds": round(t1 - t0, 2) if run.train else 0.0,
        "eval_seconds": round(time.perf_counter() - t1, 2),
    }
    write_json(run.run_dir / TIMINGS_FILE, timings)
    return timings


def _sh(cmd: list[str], python: str) -> str:
    """A command line for the script, one option per line, the interpreter as ``$PYTHON`` (overridable)."""
    parts = ['"$PYTHON"' if i == 0 and c == python else shlex.quote(c) for i, c in enumerate(cmd)]
    out = parts[0]
    for part in parts[1:]:
        out += (" \\\n    " if part.startswith("--") else " ") + part
    return out


def write_run_script(settings: LaunchSettings, plan: ExperimentPlan, run: RunSpec) -> Path:
    """``<run>/run.sh``: the run's training and evaluation, safe to rerun or requeue."""
    q = shlex.quote
    train_dir = Path(run.cfg.output_dir)
    lines = [
        "#!/usr/bin/env bash",
        f"# {plan.exp.name}: {run.label}, seed {run.seed} (experiment --launcher print).",
        "# Safe to rerun or requeue: a finished step is skipped and an interrupted training resumes from",
        "# its newest complete checkpoint. PYTHON may name another interpreter with anatomy-r1 installed.",
        "set -euo pipefail",
        f'PYTHON="${{PYTHON:-{settings.python}}}"',
        f"RUN={q(str(run.run_dir))}",
        f"TRAIN={q(str(train_dir))}",
    ]
    if plan.exp.torch_threads:
        lines.append(f"export OMP_NUM_THREADS={plan.exp.torch_threads}")
    lines += [
        'if [ -f "$RUN/eval/metrics.json" ]; then echo "already finished: $RUN"; exit 0; fi',
        "T0=$SECONDS",
    ]
    if run.train:
        write_train_config(run)
        train = _sh(train_command(settings, run, resume=False), settings.python)
        lines += [
            'if [ ! -f "$TRAIN/final/config.json" ]; then',
            '  RESUME=""',
            '  if compgen -G "$TRAIN/checkpoint-*/trainer_state.json" > /dev/null; then',
            '    RESUME="--resume"',
            "  else",
            '    rm -rf "$TRAIN"  # interrupted before its first checkpoint: start over cleanly',
            "  fi",
            "  " + train.replace("\n", "\n  ") + " $RESUME",
            "fi",
        ]
    lines += ["T1=$SECONDS", _sh(eval_command(settings, plan, run), settings.python)]
    train_s = "$((T1 - T0))" if run.train else "0"
    lines.append(
        f'printf \'{{"train_seconds": %d, "eval_seconds": %d}}\\n\' {train_s} $((SECONDS - T1))'
        f' > "$RUN/{TIMINGS_FILE}"'
    )
    if run.train and not plan.exp.keep_models:
        lines.append('rm -rf "$TRAIN/final" "$TRAIN"/checkpoint-*  # keep_models: false')
    path = run.run_dir / RUN_SCRIPT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def write_overview(
    settings: LaunchSettings, plan: ExperimentPlan, scripts: list[Path], report: list[str]
) -> Path:
    """``OUT/launch_all.sh``: every run script in plan order, then the report; or submit them one by one."""
    lines = [
        "#!/usr/bin/env bash",
        f"# {plan.exp.name}: {len(scripts)} run(s), each a self-contained script. Run them in order here,",
        "# or hand each to a scheduler (e.g. `sbatch --gpus=8 <run>/run.sh`) and build the report (last",
        "# line) when all are done.",
        "set -euo pipefail",
        f'PYTHON="${{PYTHON:-{settings.python}}}"',
        "export PYTHON",
        *[f"bash {shlex.quote(str(s))}" for s in scripts],
        _sh(report, settings.python),
    ]
    path = plan.out / OVERVIEW_SCRIPT
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def report_command(settings: LaunchSettings, plan: ExperimentPlan, args: list[str]) -> list[str]:
    """The ``experiment --report-only`` command that collects what the runs wrote into the report."""
    cfg = [] if plan.config_path is None else ["--config", str(plan.config_path)]
    return [settings.python, "-m", "anatomy_r1.cli", "experiment", *cfg, "--out", str(plan.out),
            *args, "--report-only"]  # fmt: skip
