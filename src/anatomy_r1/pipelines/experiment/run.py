"""Running an experiment: train and evaluate every planned run not yet finished, then write the report.

Layout of ``OUT``::

    data/                        the synthesized benchmark (synth data only)
    <method>/seed<k>/train/      trainer output: config.yaml, metrics.jsonl, final/
    <method>/seed<k>/eval/       items.jsonl, metrics.json, metrics.md, completions.jsonl
    <method>/seed<k>/done.json   the run's summary; its presence marks the run finished (reruns skip it)
    <method>/seed<k>/error.txt   the traceback of a failed run (the others still run)
    results.md  summary.json  figures/*.png

Runs are resumable at two levels: a finished run (``done.json``) is skipped, and an unfinished one
continues from its last checkpoint.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anatomy_r1.errors import AnatomyR1Error, ConfigError
from anatomy_r1.pipelines.experiment.plan import ExperimentPlan, RunSpec
from anatomy_r1.pipelines.experiment.report import _pct, _write_json, build_report

__all__ = ["invalid_gradient_summary", "run_experiment"]

INVALID_KEY = "invalid_gradient_ratio"


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def invalid_gradient_summary(metrics_jsonl: Path) -> dict[str, Any] | None:
    """Mean invalid-gradient ratio over the logged training steps, overall and per anatomy class.

    The ratio is the share of GRPO groups whose rewards were all equal (zero advantage, no gradient);
    a class's mean is over the steps in which one of its groups was drawn. None for runs that log none
    (SFT, zero-shot).
    """
    from anatomy_r1.reports.plots import read_metrics_jsonl

    rows = read_metrics_jsonl(metrics_jsonl)
    overall: list[float] = []
    per_class: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            v = _finite(value)
            if v is None or not isinstance(key, str):
                continue
            if key == INVALID_KEY:
                overall.append(v)
            elif key.startswith(INVALID_KEY + "/"):
                per_class.setdefault(key[len(INVALID_KEY) + 1 :], []).append(v)
    if not overall:
        return None
    return {
        "mean": sum(overall) / len(overall),
        "n_steps": len(overall),
        "per_class": {c: sum(v) / len(v) for c, v in sorted(per_class.items())},
    }


def _eval_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    per_class = {}
    for cls, g in (metrics.get("breakdowns", {}).get("anatomy_class") or {}).items():
        per_class[cls] = {"n": g.get("n"), "avg_at_k": g.get("avg_at_k"), "greedy": g.get("greedy_accuracy")}
    return {
        "n": metrics.get("n"),
        "k": metrics.get("k"),
        "avg_at_k": metrics.get("avg_at_k"),
        "greedy": metrics.get("greedy_accuracy"),
        "invalid_rate": metrics.get("invalid_rate"),
        "greedy_invalid_rate": metrics.get("greedy_invalid_rate"),
        "per_class": per_class,
    }


def _train(run: RunSpec, log: Callable[[str], None]) -> Path:
    from anatomy_r1.training.run import last_checkpoint

    final = Path(run.cfg.output_dir) / "final"
    if (final / "config.json").is_file():
        return final
    train_dir = Path(run.cfg.output_dir)
    resume = last_checkpoint(train_dir) is not None
    if not resume and train_dir.exists():
        shutil.rmtree(train_dir)  # an interrupted run without checkpoints: start it over cleanly
    if resume:
        log(f"  resuming from {last_checkpoint(train_dir)}")
    if run.cfg.method == "sft":
        from anatomy_r1.training.sft import run_sft

        return run_sft(run.cfg, resume=resume)
    from anatomy_r1.training.grpo import run_grpo

    return run_grpo(run.cfg, resume=resume)


def _evaluate(plan: ExperimentPlan, run: RunSpec, model_path: Path, records: list[Any]) -> dict[str, Any]:
    from anatomy_r1.evaluation.generate import generate_completions
    from anatomy_r1.evaluation.predictions import completion_rows, score_completions, write_eval_outputs

    ev = plan.exp.eval
    sampled, greedy = generate_completions(
        str(model_path),
        records,
        k=ev.k,
        greedy=ev.greedy,
        template=run.cfg.template,
        max_new_tokens=ev.max_new_tokens or run.cfg.grpo_setting("max_completion_length"),
        batch_size=ev.batch_size,
        image_root=str(plan.image_root) if plan.image_root is not None else str(plan.test_file.parent),
        temperature=ev.temperature,
        seed=run.seed,
        dtype=run.cfg.model.dtype,
        image_cache_mb=run.cfg.data.image_cache_mb,
    )
    metrics, items = score_completions(records, sampled, greedy)
    write_eval_outputs(run.run_dir / "eval", metrics, items, completion_rows(sampled, greedy))
    return metrics


def _execute(plan: ExperimentPlan, run: RunSpec, records: list[Any], log: Callable[[str], None]) -> None:
    from anatomy_r1.pipelines.base_model import resolve_model_path

    t0 = time.perf_counter()
    # Training and evaluation take local folders; a builtin: spec is resolved (built if needed) here.
    run.cfg.model.path = str(resolve_model_path(run.cfg.model.path))
    if run.train:
        model_path = _train(run, log)
    else:
        model_path = Path(run.cfg.model.path)
        run.run_dir.mkdir(parents=True, exist_ok=True)
    t1 = time.perf_counter()
    metrics = _evaluate(plan, run, model_path, records)
    t2 = time.perf_counter()
    metrics_jsonl = Path(run.cfg.output_dir) / "metrics.jsonl"
    done = {
        "method": run.method,
        "label": run.label,
        "seed": run.seed,
        "trained": run.train,
        "train_method": run.cfg.method if run.train else None,
        "model": str(model_path),
        "train_seconds": round(t1 - t0, 2) if run.train else 0.0,
        "eval_seconds": round(t2 - t1, 2),
        "eval": _eval_summary(metrics),
        "invalid_gradient": invalid_gradient_summary(metrics_jsonl) if run.train else None,
        "metrics_jsonl": str(metrics_jsonl) if run.train and metrics_jsonl.is_file() else None,
        "config": run.cfg.model_dump(mode="json"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_json(run.done_file, done)
    if run.train and not plan.exp.keep_models:
        train_dir = Path(run.cfg.output_dir)
        for d in [train_dir / "final", *train_dir.glob("checkpoint-*")]:
            shutil.rmtree(d, ignore_errors=True)


def _ensure_data(plan: ExperimentPlan, log: Callable[[str], None]) -> None:
    synth = plan.exp.data.synth
    if synth is None:
        for p in (plan.train_file, plan.test_file):
            if not p.is_file():
                raise ConfigError(f"data file not found: {p}")
        return
    data_dir = plan.train_file.parent
    marker = data_dir / "synth.json"
    want = synth.model_dump()
    if marker.is_file():
        have = json.loads(marker.read_text(encoding="utf-8"))
        if have != want:
            raise ConfigError(
                f"{data_dir} holds a benchmark synthesized with other settings ({have}); "
                "use another --out or delete that folder"
            )
        return
    from anatomy_r1.data.synth import generate_benchmark

    log(f"synthesizing the benchmark into {data_dir}")
    generate_benchmark(
        data_dir,
        seed=synth.seed,
        n_train=synth.n_train,
        n_val=synth.n_val,
        n_test=synth.n_test,
        n_perception=0,
        image_size=synth.image_size,
    )
    _write_json(marker, want)


def run_experiment(
    plan: ExperimentPlan,
    *,
    log: Callable[[str], None] = print,
    report_only: bool = False,
) -> dict[str, Any]:
    """Run every planned run not yet finished, then write ``results.md``, ``summary.json`` and figures.

    A run that raises is recorded in its ``error.txt`` and the others go on; the summary lists it. The
    returned summary has ``failed`` (list of ``method/seed``) for the caller's exit status.
    """
    plan.out.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    if not report_only:
        if plan.exp.torch_threads:
            import torch

            torch.set_num_threads(plan.exp.torch_threads)
        _ensure_data(plan, log)
        from anatomy_r1.data.io import read_records

        records = read_records(plan.test_file)
        if plan.exp.eval.limit:
            records = records[: plan.exp.eval.limit]
        todo = [r for r in plan.runs if not r.done_file.is_file()]
        log(
            f"experiment {plan.exp.name}: {len(plan.runs)} runs ({len(plan.methods)} methods x "
            f"{len(plan.seeds)} seeds), {len(plan.runs) - len(todo)} already finished"
        )
        for i, run in enumerate(todo, 1):
            log(f"[{i}/{len(todo)}] {run.method} seed {run.seed}: {'train + eval' if run.train else 'eval'}")
            err = run.run_dir / "error.txt"
            try:
                _execute(plan, run, records, log)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # one failed run must not lose the rest of a long experiment
                run.run_dir.mkdir(parents=True, exist_ok=True)
                err.write_text(traceback.format_exc(), encoding="utf-8")
                kind = "" if isinstance(e, AnatomyR1Error) else f"{type(e).__name__}: "
                log(f"  FAILED: {kind}{e} (traceback in {err})")
                failed.append(f"{run.method}/seed{run.seed}")
                continue
            err.unlink(missing_ok=True)
            d = json.loads(run.done_file.read_text(encoding="utf-8"))["eval"]
            log(
                f"  Avg@{d['k']} {_pct(d['avg_at_k'])}, greedy {_pct(d['greedy'])} (written to {run.run_dir})"
            )
    summary = build_report(plan, failed=failed)
    log(f"results: {plan.out / 'results.md'}")
    return summary
