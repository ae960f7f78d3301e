"""Running an experiment: train and evaluate every planned run not yet finished, then write the report.

Layout of ``OUT``::

    data/                        the synthesized benchmark (synth data only)
    <method>/seed<k>/train/      trainer output: config.yaml, metrics.jsonl, final/
    <method>/seed<k>/eval/       items.jsonl, metrics.json, metrics.md, completions.jsonl
    <method>/seed<k>/done.json   the run's summary; its presence marks the run finished (reruns skip it)
    <method>/seed<k>/error.txt   the traceback of a failed run (the others still run)
    <method>/seed<k>/train_config.yaml, train.log, eval.log, timings.json, run.sh
                                 per-run launches only (see ``launch``)
    results.md  summary.json  figures/*.png  launch_all.sh (print launcher)

Runs are resumable at two levels: a finished run (``done.json``) is skipped, and an unfinished one
continues from its last checkpoint. A run that finished outside this process (a printed script) is
recognised by its ``eval/metrics.json`` and summarised into ``done.json`` before anything else.
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anatomy_r1.data.io import write_json
from anatomy_r1.errors import AnatomyR1Error, ConfigError
from anatomy_r1.pipelines.experiment.launch import (
    TIMINGS_FILE,
    LaunchSettings,
    launch_run,
    model_dir,
    report_command,
    write_overview,
    write_run_script,
)
from anatomy_r1.pipelines.experiment.plan import ExperimentPlan, RunSpec
from anatomy_r1.reports import fmt
from anatomy_r1.reports.experiment_report import build_report

__all__ = ["collect_finished", "invalid_gradient_summary", "run_experiment"]

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
    from anatomy_r1.evaluation.predictions import completion_rows, score_completions
    from anatomy_r1.reports.eval_report import write_eval_outputs

    ev = plan.exp.eval
    common: dict[str, Any] = {
        "k": ev.k,
        "greedy": ev.greedy,
        "template": run.cfg.template,
        "max_new_tokens": ev.max_new_tokens or run.cfg.grpo_setting("max_completion_length"),
        "image_root": str(plan.image_root) if plan.image_root is not None else str(plan.test_file.parent),
        "temperature": ev.temperature,
        "seed": run.seed,
        "dtype": run.cfg.model.dtype,
    }
    if ev.engine == "vllm":
        from anatomy_r1.evaluation.vllm_engine import generate_with_vllm

        sampled, greedy = generate_with_vllm(str(model_path), records, engine_args=ev.vllm_args, **common)
    else:
        from anatomy_r1.evaluation.generate import generate_completions

        sampled, greedy = generate_completions(
            str(model_path),
            records,
            batch_size=ev.batch_size,
            image_cache_mb=run.cfg.data.image_cache_mb,
            **common,
        )
    metrics, items = score_completions(records, sampled, greedy)
    write_eval_outputs(run.run_dir / "eval", metrics, items, completion_rows(sampled, greedy))
    return metrics


def _record_done(plan: ExperimentPlan, run: RunSpec, timings: dict[str, Any]) -> None:
    """Write ``done.json`` from what the run wrote (``eval/metrics.json``, ``train/metrics.jsonl``).

    Every launcher ends here, so a run trained inline, by ``accelerate launch`` or by a script a scheduler
    ran gives the report the same summary.
    """
    metrics = json.loads((run.run_dir / "eval" / "metrics.json").read_text(encoding="utf-8"))
    metrics_jsonl = Path(run.cfg.output_dir) / "metrics.jsonl"
    done = {
        "method": run.method,
        "label": run.label,
        "seed": run.seed,
        "trained": run.train,
        "train_method": run.cfg.method if run.train else None,
        "model": str(model_dir(run)),
        "train_seconds": timings.get("train_seconds") if run.train else 0.0,
        "eval_seconds": timings.get("eval_seconds"),
        "eval": _eval_summary(metrics),
        "invalid_gradient": invalid_gradient_summary(metrics_jsonl) if run.train else None,
        "metrics_jsonl": str(metrics_jsonl) if run.train and metrics_jsonl.is_file() else None,
        "config": run.cfg.model_dump(mode="json"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(run.done_file, done)
    if run.train and not plan.exp.keep_models:
        train_dir = Path(run.cfg.output_dir)
        for d in [train_dir / "final", *train_dir.glob("checkpoint-*")]:
            shutil.rmtree(d, ignore_errors=True)


def collect_finished(plan: ExperimentPlan, log: Callable[[str], None] = print) -> list[str]:
    """Give ``done.json`` to runs that finished elsewhere: ``eval/metrics.json`` written, no summary yet.

    A printed run script (or a launch interrupted between evaluation and its summary) leaves exactly
    that; evaluation only starts once training has finished, so its metrics mark the run complete.
    Timings come from the run's ``timings.json`` when it wrote one. Returns the runs collected.
    """
    collected = []
    for run in plan.runs:
        if run.done_file.is_file() or not (run.run_dir / "eval" / "metrics.json").is_file():
            continue
        tf = run.run_dir / TIMINGS_FILE
        timings = json.loads(tf.read_text(encoding="utf-8")) if tf.is_file() else {}
        _record_done(plan, run, timings)
        collected.append(f"{run.method}/seed{run.seed}")
    if collected:
        log(f"collected {len(collected)} run(s) finished outside this process: {', '.join(collected)}")
    return collected


def _execute(
    plan: ExperimentPlan, run: RunSpec, records: list[Any], log: Callable[[str], None], launch: LaunchSettings
) -> None:
    from anatomy_r1.pipelines.base_model import resolve_model_path

    # Training and evaluation take local folders; a builtin: spec is resolved (built if needed) here,
    # once, rather than by every process of a launch at the same time.
    run.cfg.model.path = str(resolve_model_path(run.cfg.model.path))
    if launch.launcher == "accelerate":
        timings = launch_run(launch, plan, run, log)
    else:
        t0 = time.perf_counter()
        if run.train:
            model_path = _train(run, log)
        else:
            model_path = Path(run.cfg.model.path)
            run.run_dir.mkdir(parents=True, exist_ok=True)
        t1 = time.perf_counter()
        _evaluate(plan, run, model_path, records)
        timings = {"train_seconds": round(t1 - t0, 2), "eval_seconds": round(time.perf_counter() - t1, 2)}
    _record_done(plan, run, timings)


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
    write_json(marker, want)


def run_experiment(
    plan: ExperimentPlan,
    *,
    log: Callable[[str], None] = print,
    report_only: bool = False,
    launch: LaunchSettings | None = None,
    report_args: Sequence[str] = (),
) -> dict[str, Any]:
    """Run every planned run not yet finished, then write ``results.md``, ``summary.json`` and figures.

    ``launch`` says how (:mod:`~anatomy_r1.pipelines.experiment.launch`; inline by default). With the
    ``print`` launcher nothing runs: each unfinished run gets its script and the summary lists them
    under ``scripts``; ``report_args`` are the planning options the printed report command repeats.
    A run that raises is recorded in its ``error.txt`` and the others go on; the summary lists it. The
    returned summary has ``failed`` (list of ``method/seed``) for the caller's exit status.
    """
    launch = (launch or LaunchSettings()).check()
    plan.out.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    collect_finished(plan, log)
    if launch.launcher == "print" and not report_only:
        return _print_runs(plan, launch, log, report_args)
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
        how = "" if launch.launcher == "inline" else f", each launched as its own process ({launch.launcher})"
        log(
            f"experiment {plan.exp.name}: {len(plan.runs)} runs ({len(plan.methods)} methods x "
            f"{len(plan.seeds)} seeds), {len(plan.runs) - len(todo)} already finished{how}"
        )
        for i, run in enumerate(todo, 1):
            log(f"[{i}/{len(todo)}] {run.method} seed {run.seed}: {'train + eval' if run.train else 'eval'}")
            err = run.run_dir / "error.txt"
            try:
                _execute(plan, run, records, log, launch)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # one failed run must not lose the rest of a long experiment
                run.run_dir.mkdir(parents=True, exist_ok=True)
                err.write_text(traceback.format_exc(), encoding="utf-8")
                kind = "" if isinstance(e, AnatomyR1Error | RuntimeError) else f"{type(e).__name__}: "
                first = str(e).splitlines()[0] if str(e) else ""
                log(f"  FAILED: {kind}{first} (details in {err})")
                failed.append(f"{run.method}/seed{run.seed}")
                continue
            err.unlink(missing_ok=True)
            d = json.loads(run.done_file.read_text(encoding="utf-8"))["eval"]
            log(
                f"  Avg@{d['k']} {fmt.percent(d['avg_at_k'], symbol=False)}, "
                f"greedy {fmt.percent(d['greedy'], symbol=False)} (written to {run.run_dir})"
            )
    summary = build_report(plan, failed=failed)
    log(f"results: {plan.out / 'results.md'}")
    return summary


def _print_runs(
    plan: ExperimentPlan, launch: LaunchSettings, log: Callable[[str], None], report_args: Sequence[str]
) -> dict[str, Any]:
    """Write each unfinished run's script and the overview; run nothing but the data synthesis."""
    _ensure_data(plan, log)  # the scripts read the data; synthesizing it is cheap and deterministic
    todo = [r for r in plan.runs if not r.done_file.is_file()]
    scripts = [write_run_script(launch, plan, r) for r in todo]
    report = report_command(launch, plan, list(report_args))
    overview = write_overview(launch, plan, scripts, report)
    n_done = len(plan.runs) - len(todo)
    log(f"experiment {plan.exp.name}: {len(scripts)} run script(s) to launch, {n_done} already finished")
    for script in scripts:
        log(f"  {script}")
    log(f"all in order: bash {overview}")
    log(f"then the report: {shlex.join(report)}")
    return {"failed": [], "scripts": [str(s) for s in scripts], "overview": str(overview)}
