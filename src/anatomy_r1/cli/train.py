"""``anatomy-r1 train`` and ``anatomy-r1 sft``: run one experiment config with GRPO or SFT.

The config is read and validated before torch, transformers or TRL are imported, so a typo in a key
fails in well under a second with ``error: ...`` and exit status 2 instead of after model loading.
Under ``accelerate launch`` every process runs this same command; only the main process prints.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from anatomy_r1.cli import add_override_option
from anatomy_r1.errors import ConfigError


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, metavar="FILE", help="experiment YAML (see configs/)")
    add_override_option(p, "grpo.max_steps=10")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in the output directory (model, optimizer, RNG, "
        "data order, GDQA difficulty tracker); the config must match the run's config.yaml except for "
        "grpo/sft max_steps and num_train_epochs, logging.* and saving.*",
    )
    p.add_argument(
        "--output-dir", metavar="DIR", help="where checkpoints, metrics and final/ go (overrides output_dir)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a model with GRPO (optionally ASCL + GDQA) or SFT, as the config's method says",
        description=(
            "Train from an experiment config. Writes OUTPUT_DIR/config.yaml, metrics.jsonl, checkpoint-N/ "
            "and final/. Refuses to start over an output directory that already holds checkpoints "
            "unless --resume is given."
        ),
    )
    _add_common(p)
    p.set_defaults(func=run, force_method=None)

    s = subparsers.add_parser(
        "sft",
        help="supervised fine-tuning: the same as 'train' with method forced to sft",
        description="Alias of 'train' that forces method: sft (the SFT baseline and warm-up).",
    )
    _add_common(s)
    s.set_defaults(func=run, force_method="sft")


def summarize_metrics(path: Path) -> dict[str, Any]:
    """Last logged step, reward and accuracy reward from ``metrics.jsonl`` (None where never logged), and
    per logged step the share of groups GDQA acted on (reworded, or a variant row)."""
    from anatomy_r1.reports.plots import metric_series, read_metrics_jsonl
    from anatomy_r1.training.summary import gdqa_acting_fraction

    rows = read_metrics_jsonl(path)

    def last(key: str) -> float | None:
        _, values = metric_series(rows, key)
        return values[-1] if values else None

    step = last("step")
    accuracy = next(
        (k for row in rows for k in row if k.startswith("rewards/accuracy") and k.endswith("/mean")), None
    )
    return {
        "step": None if step is None else int(step),
        "reward": last("reward"),
        "accuracy": None if accuracy is None else last(accuracy),
        "loss": last("loss"),
        "gdqa": [a for a in map(gdqa_acting_fraction, rows) if a is not None],
    }


def _fmt(v: Any) -> str:
    if isinstance(v, float) and math.isfinite(v):
        return f"{v:.3f}"
    return "n/a" if v is None else str(v)


def run(args: argparse.Namespace) -> int:
    from anatomy_r1.training.config import load_config

    overrides = list(args.overrides or [])
    if args.force_method:
        overrides.append(f"method={args.force_method}")
    cfg = load_config(args.config, overrides)
    if args.output_dir:
        cfg.output_dir = args.output_dir
    if not cfg.data.train:
        raise ConfigError(f"{args.config}: data.train is not set")
    if not Path(cfg.data.train).is_file():
        raise ConfigError(f"data.train: {cfg.data.train}: no such file")

    # Everything that can be refused without the model is refused here, before any output is written and
    # before torch and TRL are imported.
    from anatomy_r1.training.launch import LaunchSetup
    from anatomy_r1.training.preflight import check_launch, preflight_records
    from anatomy_r1.training.run import check_output_dir, is_main_process

    check_launch(cfg, LaunchSetup.from_env(grpo=cfg.grpo))  # precision, FSDP
    check_output_dir(Path(cfg.output_dir), args.resume)
    from anatomy_r1.pipelines.base_model import resolve_model_path

    cfg.model.path = str(resolve_model_path(cfg.model.path))
    inputs = preflight_records(cfg)  # items, frames present, S(q), GDQA's policy

    if cfg.method == "sft":
        from anatomy_r1.training.sft import run_sft

        final = run_sft(cfg, resume=args.resume, records=inputs.records)
    else:
        from anatomy_r1.training.grpo import run_grpo

        final = run_grpo(cfg, resume=args.resume, inputs=inputs)

    if is_main_process():
        s = summarize_metrics(Path(cfg.output_dir) / "metrics.jsonl")
        print(f"final model: {final}")
        if cfg.method == "sft":
            print(f"{cfg.name}: sft, {_fmt(s['step'])} steps, last loss {_fmt(s['loss'])}")
        else:
            print(
                f"{cfg.name}: grpo, {_fmt(s['step'])} steps, last reward {_fmt(s['reward'])}, "
                f"last accuracy reward {_fmt(s['accuracy'])}"
            )
            if cfg.gdqa.enabled and s["gdqa"]:
                share = sum(s["gdqa"]) / len(s["gdqa"])
                print(
                    f"{cfg.name}: GDQA acted on {100 * share:.1f} % of groups (reworded at rollout or "
                    f"drawn as a variant row) over {len(s['gdqa'])} logged steps"
                )
                if share == 0:
                    print(
                        f"warning: {cfg.name}: GDQA was enabled but augmented no group; the run "
                        "trained plain GRPO (see run_summary.json in the output folder)",
                        file=sys.stderr,
                    )
    return 0
