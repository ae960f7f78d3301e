"""``anatomy-r1 experiment``: every method of an experiment YAML x several seeds, then one report.

The experiment file and every method's resolved training config are validated before torch is
imported, so a typo fails at once instead of after the first hour of training. ``--launcher`` chooses
whether runs train inside this process or each as its own ``accelerate launch`` (executed here or
written as scripts for a scheduler); see :mod:`anatomy_r1.pipelines.experiment.launch`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from anatomy_r1.errors import ConfigError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "experiment",
        help="run the baselines/ablations of an experiment config over seeds and write results.md",
        description=(
            "Train and evaluate every method of an experiment config (configs/experiments/*.yaml) for each "
            "seed, then write OUT/results.md, OUT/summary.json and OUT/figures/. Finished runs "
            "(OUT/<method>/seed<k>/done.json) are skipped, so rerunning the command resumes."
        ),
    )
    p.add_argument("--config", required=True, metavar="FILE", help="experiment YAML")
    p.add_argument("--seeds", type=int, metavar="N", help="number of seeds (overrides the config's seeds)")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/experiments/<name>)")
    p.add_argument("--only", nargs="+", metavar="METHOD", help="run only these methods")
    p.add_argument("--dry-run", action="store_true", help="validate and print the plan; train nothing")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild results.md, summary.json and figures from finished runs without running anything "
        "(runs finished by printed scripts are collected first)",
    )
    g = p.add_argument_group("per-run launches")
    g.add_argument(
        "--launcher",
        choices=("inline", "accelerate", "print"),
        default="inline",
        help="inline: train every run in this process (default); accelerate: train each run as its own "
        "'accelerate launch' and evaluate it as its own process; print: write those commands as one "
        "script per run (OUT/<method>/seed<k>/run.sh) and OUT/launch_all.sh, and run nothing",
    )
    g.add_argument(
        "--accelerate-config",
        metavar="FILE",
        help="accelerate config for each run's training (e.g. configs/accelerate/deepspeed_zero3.yaml)",
    )
    g.add_argument(
        "--num-processes", type=int, metavar="N", help="processes per training launch (accelerate's default)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from anatomy_r1.pipelines.experiment.config import load_experiment
    from anatomy_r1.pipelines.experiment.launch import LaunchSettings
    from anatomy_r1.pipelines.experiment.plan import plan_experiment
    from anatomy_r1.pipelines.experiment.run import run_experiment

    launch = LaunchSettings(
        launcher=args.launcher,
        accelerate_config=Path(args.accelerate_config) if args.accelerate_config else None,
        num_processes=args.num_processes,
    ).check()
    if args.report_only and args.launcher != "inline":
        raise ConfigError("--report-only runs nothing, so --launcher does not apply")
    exp, base_dir = load_experiment(args.config)
    out = Path(args.out) if args.out else Path("runs") / "experiments" / exp.name
    plan = plan_experiment(
        exp, base_dir, out, seeds=args.seeds, only=args.only, config_path=Path(args.config).resolve()
    )
    if args.dry_run:
        print(f"experiment {exp.name} -> {plan.out}")
        print(f"seeds: {plan.seeds}; RL budget: {plan.rl_budget} completions per run")
        print(f"launcher: {launch.launcher}")
        for r in plan.runs:
            state = "done" if r.done_file.is_file() else "todo"
            what = "eval only" if not r.train else r.cfg.method
            print(f"  [{state}] {r.method:<12} seed {r.seed}: {what}")
        return 0
    report_args = [
        *(["--seeds", str(args.seeds)] if args.seeds else []),
        *(["--only", *args.only] if args.only else []),
    ]
    summary = run_experiment(plan, report_only=args.report_only, launch=launch, report_args=report_args)
    return 1 if summary["failed"] else 0
