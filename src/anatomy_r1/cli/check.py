"""``anatomy-r1 check``: run a GPU recipe for a few real steps on this CPU and say what the real run will do.

Exit status 0 when every run of the file would start; 2 (with one ``error:`` line per refusal) when the
real run would refuse any of them.
"""

from __future__ import annotations

import argparse
import sys

from anatomy_r1.cli import add_override_option


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check",
        help="check a training or experiment config on this CPU before renting GPUs (a few real steps)",
        description=(
            "Read the config as train does, refuse what the real run would refuse, then train a few real "
            "steps on the CPU with the shipped tiny Qwen2.5-VL in place of the model (vLLM through stand-in "
            "engines, DeepSpeed/FSDP from --accelerate-config) and print what the run will do: records, S(q) "
            "spread and backend, the questions GDQA can treat as difficult, how rollouts are generated, "
            "master-weight precision, image tokens per frame."
        ),
    )
    p.add_argument("--config", required=True, metavar="FILE", help="a train config, or an experiment config")
    add_override_option(p, "grpo.use_vllm=true")
    p.add_argument(
        "--accelerate-config",
        metavar="FILE",
        help="the accelerate config the run will be launched with (processes, DeepSpeed, FSDP)",
    )
    p.add_argument(
        "--method",
        action="append",
        default=[],
        metavar="NAME",
        help="with an experiment config: check only this method (repeatable; default all)",
    )
    p.add_argument("--steps", type=int, default=2, help="training steps to run (default 2)")
    p.add_argument("--data", metavar="FILE", help="train on this data file instead of data.train")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from anatomy_r1.pipelines.check import check_file, render

    results = check_file(
        args.config,
        args.overrides,
        accelerate_config=args.accelerate_config,
        methods=args.method or None,
        steps=args.steps,
        data=args.data,
    )
    print(render(args.config, results))
    if args.json:
        from anatomy_r1.data.io import write_json

        write_json(args.json, [r.to_dict() for r in results])
    refused = [r for r in results if r.refusals]
    for r in refused:
        for line in r.refusals:
            prefix = "" if len(results) == 1 else f"{r.name}: "
            print(f"error: {prefix}{line}", file=sys.stderr)
    return 2 if refused else 0
