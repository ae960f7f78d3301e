"""``anatomy-r1 experiment``: every method of an experiment YAML x several seeds, then one report.

The experiment file and every method's resolved training config are validated before torch is
imported, so a typo fails at once instead of after the first hour of training.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


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
        help="rebuild results.md, summary.json and figures from finished runs without running anything",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from anatomy_r1.pipelines.experiment.config import load_experiment
    from anatomy_r1.pipelines.experiment.plan import plan_experiment
    from anatomy_r1.pipelines.experiment.run import run_experiment

    exp, base_dir = load_experiment(args.config)
    out = Path(args.out) if args.out else Path("runs") / "experiments" / exp.name
    plan = plan_experiment(
        exp, base_dir, out, seeds=args.seeds, only=args.only, config_path=Path(args.config).resolve()
    )
    if args.dry_run:
        print(f"experiment {exp.name} -> {plan.out}")
        print(f"seeds: {plan.seeds}; RL budget: {plan.rl_budget} completions per run")
        for r in plan.runs:
            state = "done" if r.done_file.is_file() else "todo"
            what = "eval only" if not r.train else r.cfg.method
            print(f"  [{state}] {r.method:<12} seed {r.seed}: {what}")
        return 0
    summary = run_experiment(plan, report_only=args.report_only)
    return 1 if summary["failed"] else 0
