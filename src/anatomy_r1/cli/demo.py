"""``anatomy-r1 demo``: the whole method end to end on a CPU, with a before/after report.

The pipeline lives in :mod:`anatomy_r1.pipelines.demo`; it is imported only when the command runs, so
``anatomy-r1 --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from anatomy_r1.cli import add_override_option


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="synthesize data, evaluate the base model, train with GRPO, evaluate again, write a report",
        description=(
            "End-to-end demo on the synthetic anatomy benchmark: synthesize it into OUT/data, build or "
            "reuse the tiny base model, evaluate it on the held-out test split, train with GRPO (ASCL + "
            "GDQA, as the demo config says) into OUT/run, evaluate the trained model the same way, and "
            "write OUT/report (report.md, metrics.json, figures). Refuses a non-empty OUT unless --force."
        ),
    )
    p.add_argument("--out", default="demo-out", metavar="DIR", help="output folder (default demo-out)")
    p.add_argument(
        "--config", metavar="FILE", help="training config (default: the demo config shipped in the package)"
    )
    add_override_option(p, "grpo.max_steps=50")
    p.add_argument(
        "--seed", type=int, default=None, help="seed for data and training (default: the config's)"
    )
    p.add_argument(
        "--quick", action="store_true", help="tiny smoke run: 40 train / 40 test questions, 4 GRPO steps"
    )
    p.add_argument(
        "--n-train", type=int, default=None, help="training questions (default 2000; 40 with --quick)"
    )
    p.add_argument(
        "--n-test", type=int, default=None, help="held-out test questions (default 500; 40 with --quick)"
    )
    p.add_argument("--image-size", type=int, default=84, help="frame size in pixels (default 84)")
    p.add_argument(
        "--k",
        type=int,
        default=5,
        help="sampled completions per question for Avg@k, the paper's metric (default 5; 0: greedy only)",
    )
    p.add_argument("--eval-batch-size", type=int, default=64, help="generation batch size (default 64)")
    p.add_argument("--force", action="store_true", help="clear OUT first if it holds an earlier demo run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from anatomy_r1.pipelines.demo import DemoOptions, run_demo

    run_demo(
        DemoOptions(
            out=Path(args.out),
            config=args.config,
            overrides=list(args.overrides),
            seed=args.seed,
            quick=args.quick,
            n_train=args.n_train,
            n_test=args.n_test,
            image_size=args.image_size,
            k=args.k,
            eval_batch_size=args.eval_batch_size,
            force=args.force,
        )
    )
    return 0
