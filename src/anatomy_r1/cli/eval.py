"""``anatomy-r1 eval``: score completions from a predictions file, or generate them with a model first.

Predictions mode needs no model, GPU or images, so results from vLLM, an API or another framework are
scored with exactly the rules used for GRPO rewards. Model mode generates with
``anatomy_r1.evaluation.generate`` (transformers) or ``anatomy_r1.evaluation.vllm_engine``
(``--engine vllm``), imported only then because they pull in torch, and shares all scoring and writing
with predictions mode. The prompt template, completion length and precision default to those of the run
that trained the model (``anatomy_r1.evaluation.run_settings``), so a model is evaluated with the prompt
and length it learned; ``metrics.json`` records each of them and where it came from.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from anatomy_r1.errors import ConfigError, DataError
from anatomy_r1.reports import fmt

# Options that only make sense when generating; in predictions mode they are refused rather than ignored.
_MODEL_ONLY = (
    "k", "greedy", "template", "batch_size", "max_new_tokens", "limit", "temperature", "seed",
    "dtype", "engine", "progress", "vllm_args", "min_pixels", "max_pixels",
)  # fmt: skip
# ``template``, ``max_new_tokens`` and ``dtype`` default to the model's training run (run_settings).
_DEFAULTS: dict[str, Any] = {
    "k": 5,
    "greedy": False,
    "batch_size": 8,
    "limit": None,
    "temperature": 1.0,
    "seed": 0,
    "engine": "hf",
    "progress": True,
    "min_pixels": None,
    "max_pixels": None,
}
_FLAGS = {"progress": "--no-progress", "vllm_args": "--vllm-arg"}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score predictions (Avg@k, greedy, per-class) or evaluate a model",
        description=(
            "Score multiple-choice completions. Give --predictions PRED.jsonl (lines {id, completion}, "
            "several per id for Avg@k) to score completions produced elsewhere, or --model DIR to generate "
            "them first. Writes items.jsonl, metrics.json and metrics.md (and completions.jsonl in model "
            "mode) to --out."
        ),
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--predictions", metavar="PRED.jsonl", help="completions to score")
    src.add_argument("--model", metavar="DIR", help="model to generate completions with")
    p.add_argument("--data", required=True, metavar="FILE", help="canonical JSONL data file")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--image-root", metavar="DIR", help="folder image paths are resolved against (model mode)")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="count data items without any completion as wrong instead of refusing",
    )
    g = p.add_argument_group("model mode")
    g.add_argument("--k", type=int, default=None, help="sampled completions per item for Avg@k (default 5)")
    g.add_argument("--greedy", action="store_true", default=None, help="also score one greedy completion")
    g.add_argument(
        "--template",
        default=None,
        help="prompt template (default: the one the model was trained with, read from its run's "
        "anatomy_r1_run.json or ../config.yaml; anatomy_r1 for a model of no run); a different one "
        "is used with a warning",
    )
    g.add_argument(
        "--dtype",
        default=None,
        metavar="NAME",
        help="weights and compute precision: fp32, bf16, fp16 or float32, bfloat16, float16 (default: the "
        "run's model.dtype, else fp32)",
    )
    g.add_argument("--batch-size", type=int, default=None, help="generation batch size (default 8)")
    g.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="completion length limit (default: the run's grpo.max_completion_length, else 1024)",
    )
    g.add_argument("--limit", type=int, default=None, help="evaluate only the first N items")
    g.add_argument("--temperature", type=float, default=None, help="sampling temperature (default 1.0)")
    g.add_argument("--seed", type=int, default=None, help="sampling seed (default 0)")
    g.add_argument(
        "--no-progress", dest="progress", action="store_false", default=None, help="hide the progress bar"
    )
    g.add_argument(
        "--engine",
        choices=("hf", "vllm"),
        default=None,
        help="generate with transformers (hf, default) or vLLM (needs the vllm extra)",
    )
    g.add_argument(
        "--vllm-arg",
        dest="vllm_args",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="argument of vllm.LLM, YAML-typed (repeatable): --vllm-arg tensor_parallel_size=2",
    )
    g.add_argument("--min-pixels", type=int, default=None, help="Qwen-VL: upscale smaller images to this")
    g.add_argument("--max-pixels", type=int, default=None, help="Qwen-VL: downscale larger images to this")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.predictions is not None:
        given = [
            _FLAGS.get(name, f"--{name.replace('_', '-')}")
            for name in _MODEL_ONLY
            if getattr(args, name) is not None
        ]
        if given:
            raise ConfigError(f"{', '.join(given)} only apply with --model, not --predictions")
        return _run_predictions(args)
    args.batch_size_given = args.batch_size is not None
    for name, default in _DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    return _run_model(args)


def _run_predictions(args: argparse.Namespace) -> int:
    from anatomy_r1.evaluation.predictions import score_predictions_file
    from anatomy_r1.reports.eval_report import write_eval_outputs

    metrics, items = score_predictions_file(args.predictions, args.data, allow_missing=args.allow_missing)
    write_eval_outputs(args.out, metrics, items)
    _report(metrics, args.out)
    return 0


def _resolve_run_settings(args: argparse.Namespace, model_dir: str) -> dict[str, Any]:
    """Template, completion length and dtype from the model's training run unless given.

    An option that differs from the run's value is honoured with a ``warning:``, since it changes what
    is measured; returns the settings with their origins, for ``metrics.json``.
    """
    from anatomy_r1.evaluation.run_settings import resolve_run_settings

    resolved = resolve_run_settings(  # checks the template, which the run's record may name
        model_dir,
        {"template": args.template, "max_new_tokens": args.max_new_tokens, "dtype": args.dtype},
    )
    for line in resolved.warnings:
        print(f"warning: {line}", file=sys.stderr)
    args.template = resolved.value("template")
    args.max_new_tokens = resolved.value("max_new_tokens")
    args.dtype = resolved.value("dtype")
    return resolved.as_json()


def _engine_args(args: argparse.Namespace) -> dict[str, Any]:
    """``--vllm-arg KEY=VALUE`` pairs, YAML-typed; refused with the HF engine, where they would do nothing."""
    import yaml

    if args.engine != "vllm":
        if args.vllm_args:
            raise ConfigError("--vllm-arg only applies with --engine vllm")
        return {}
    if args.batch_size_given:
        raise ConfigError("--batch-size does not apply with --engine vllm (vLLM schedules its own batches)")
    out: dict[str, Any] = {}
    for item in args.vllm_args or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--vllm-arg {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            out[key.strip()] = value
    return out


def _check_model_args(args: argparse.Namespace) -> None:
    from anatomy_r1.evaluation.run_settings import check_generation_options

    check_generation_options(
        template=args.template,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
        dtype=args.dtype,
    )
    if args.k < 0 or (args.k == 0 and not args.greedy):
        raise ConfigError("--k must be at least 1 (or 0 together with --greedy)")
    if not args.temperature > 0:
        raise ConfigError("--temperature must be positive")


def _check_generated(
    sampled: Any, greedy: Any, ids: set[str]
) -> tuple[dict[str, list[str]], dict[str, str] | None]:
    """Refuse malformed generation output before it is scored or written."""
    if not isinstance(sampled, dict) or not all(
        isinstance(v, list) and all(isinstance(c, str) for c in v) for v in sampled.values()
    ):
        raise DataError("generation returned sampled completions that are not {id: [str, ...]}")
    if greedy is not None and (
        not isinstance(greedy, dict) or not all(isinstance(c, str) for c in greedy.values())
    ):
        raise DataError("generation returned greedy completions that are not {id: str}")
    unknown = [i for i in (*sampled, *(greedy or {})) if i not in ids]
    if unknown:
        raise DataError(f"generation returned completions for unknown id {unknown[0]!r}")
    return sampled, greedy


def _run_model(args: argparse.Namespace) -> int:
    from anatomy_r1.data.io import read_records
    from anatomy_r1.evaluation.predictions import check_coverage, completion_rows, score_completions
    from anatomy_r1.reports.eval_report import write_eval_outputs

    engine_args = _engine_args(args)
    if args.engine == "vllm":
        from anatomy_r1.evaluation.vllm_engine import require_vllm

        require_vllm()  # before anything is loaded or written
    _check_model_args(args)
    records = read_records(args.data)
    if args.limit is not None:
        records = records[: args.limit]
    from anatomy_r1.data.images import default_image_root
    from anatomy_r1.pipelines.base_model import resolve_model_path

    model_dir = str(resolve_model_path(args.model))
    run_settings = _resolve_run_settings(args, model_dir)

    # the same default as training: image paths are relative to the data file's folder
    image_root = default_image_root(args.data, args.image_root)
    common: dict[str, Any] = {
        "k": args.k,
        "greedy": bool(args.greedy),
        "template": args.template,
        "max_new_tokens": args.max_new_tokens,
        "image_root": image_root,
        "temperature": args.temperature,
        "seed": args.seed,
        "dtype": args.dtype,
        "progress": args.progress,
    }
    if args.engine == "vllm":
        if args.min_pixels is not None or args.max_pixels is not None:
            raise ConfigError(
                "--min-pixels/--max-pixels apply to --engine hf; with vLLM pass "
                "--vllm-arg 'mm_processor_kwargs={min_pixels: N, max_pixels: M}'"
            )
        from anatomy_r1.evaluation.vllm_engine import generate_with_vllm

        sampled, greedy = generate_with_vllm(model_dir, records, engine_args=engine_args, **common)
    else:
        from anatomy_r1.evaluation.generate import generate_completions

        sampled, greedy = generate_completions(
            model_dir,
            records,
            batch_size=args.batch_size,
            min_pixels=args.min_pixels,
            max_pixels=args.max_pixels,
            **common,
        )
    sampled, greedy = _check_generated(sampled, greedy, {r.id for r in records})
    check_coverage(records, sampled, greedy, allow_missing=args.allow_missing, where=f"model {args.model}")
    metrics, items = score_completions(records, sampled, greedy)
    metrics["settings"] = {
        "model": str(args.model),
        "data": str(args.data),
        "image_root": image_root,
        **run_settings,
        "k": args.k,
        "greedy": bool(args.greedy),
        "temperature": args.temperature,
        "seed": args.seed,
        "limit": args.limit,
        "engine": args.engine,
        "batch_size": args.batch_size if args.engine == "hf" else None,
    }
    write_eval_outputs(args.out, metrics, items, completion_rows(sampled, greedy))
    _report(metrics, args.out)
    return 0


def _report(metrics: dict[str, Any], out: str) -> None:
    parts = [f"{metrics['n']} items"]
    if metrics.get("avg_at_k") is not None:
        parts.append(f"Avg@{metrics['k']} {fmt.percent(metrics['avg_at_k'])}")
    if metrics.get("greedy_accuracy") is not None:
        parts.append(f"greedy {fmt.percent(metrics['greedy_accuracy'])}")
    parts.append(f"invalid {fmt.percent(metrics.get('invalid_rate'), missing=fmt.NA)}")
    if metrics.get("missing"):
        parts.append(f"{metrics['missing']} missing (counted wrong)")
    print(f"{', '.join(parts)} -> {out}")
