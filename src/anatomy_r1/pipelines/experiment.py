"""The ablation runner: every method of the paper's tables on one harness, several seeds, one report.

An experiment YAML names shared settings (data, a base ``TrainConfig``, evaluation) and a set of methods,
each a list of ``--set``-style overrides of that one base config. Because every method is a handful of
overrides of the same config, a table row differs from another only in what the method changes::

    name: synthetic
    seeds: 3                      # or a list: [0, 1, 2]
    data:
      synth: {seed: 20251219, n_train: 600, n_test: 300}   # or train: FILE, test: FILE, image_root: DIR
    base_config: null             # optional TrainConfig YAML (relative to this file); `base` is merged on top
    base: {template: compact_text, grpo: {max_steps: 120}}
    eval: {k: 5, greedy: true, batch_size: 32}
    methods:
      base: {train: false}        # zero-shot: the base model, evaluated only
      sft: {set: [method=sft]}
      grpo: {set: []}
      anatomy_r1: {set: [curriculum.enabled=true, gdqa.enabled=true]}

Equal budget: every RL method must train ``grpo.max_steps x per_device_train_batch_size x
gradient_accumulation_steps`` completions (checked; DAPO's dynamic sampling generates extra rollouts on
top, logged as ``dapo/extra_rollouts``). SFT trains on the same number of sequences: one SFT example per
GRPO completion, so ``sft.max_steps`` is derived unless a method sets it explicitly.

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

import copy
import json
import math
import re
import shutil
import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from anatomy_r1.errors import AnatomyR1Error, ConfigError
from anatomy_r1.training.config import TrainConfig, apply_overrides, config_from_dict, read_yaml_mapping

__all__ = [
    "KNOWN_METHODS",
    "ExperimentConfig",
    "ExperimentPlan",
    "RunSpec",
    "build_report",
    "invalid_gradient_summary",
    "load_experiment",
    "plan_experiment",
    "run_experiment",
]

#: The methods of the paper's comparison, in table order; other names are allowed and listed after them.
KNOWN_METHODS: tuple[str, ...] = (
    "base",
    "sft",
    "grpo",
    "dr_grpo",
    "dapo",
    "gpg",
    "grpo_ascl",
    "grpo_gdqa",
    "anatomy_r1",
)
DEFAULT_LABELS: dict[str, str] = {
    "base": "Base (zero-shot)",
    "sft": "SFT",
    "grpo": "GRPO",
    "dr_grpo": "Dr.GRPO",
    "dapo": "DAPO",
    "gpg": "GPG",
    "grpo_ascl": "GRPO + ASCL",
    "grpo_gdqa": "GRPO + GDQA",
    "anatomy_r1": "Anatomy-R1 (ASCL + GDQA)",
}
DONE_FILE = "done.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
INVALID_KEY = "invalid_gradient_ratio"


# ------------------------------------------------------------------------------------------- config
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SynthData(_Strict):
    """Arguments of :func:`anatomy_r1.data.synth.generate_benchmark`; the data lands in ``OUT/data``."""

    seed: int = 20251219
    n_train: int = 600
    n_val: int = 0
    n_test: int = 300
    image_size: int = 84


class DataSettings(_Strict):
    synth: SynthData | None = None
    train: str | None = None
    test: str | None = None
    image_root: str | None = None
    """Folder image paths resolve against; defaults to each data file's folder."""

    @model_validator(mode="after")
    def _one_source(self) -> DataSettings:
        files = self.train is not None or self.test is not None
        if self.synth is not None and files:
            raise ValueError("give either data.synth or data.train/data.test, not both")
        if self.synth is None and (self.train is None or self.test is None):
            raise ValueError("give data.synth, or both data.train and data.test")
        return self


class EvalSettings(_Strict):
    k: int = Field(5, ge=0)
    """Sampled completions per test question for Avg@k; 0 scores greedy only."""
    greedy: bool = True
    batch_size: int = Field(32, ge=1)
    max_new_tokens: int | None = Field(None, ge=1)
    """Defaults to the method's ``grpo.max_completion_length`` (the length it was trained to use)."""
    temperature: float = Field(1.0, gt=0)
    limit: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _something(self) -> EvalSettings:
        if self.k == 0 and not self.greedy:
            raise ValueError("eval needs k >= 1 or greedy: true")
        return self


class MethodSpec(_Strict):
    set: list[str] = Field(default_factory=list)
    """``KEY=VALUE`` overrides of the base config, as with ``anatomy-r1 train --set``."""
    train: bool = True
    """False evaluates the base model as is (zero-shot)."""
    label: str | None = None
    description: str = ""


class ExperimentConfig(_Strict):
    name: str
    description: str = ""
    seeds: int | list[int] = 3
    base_config: str | None = None
    base: dict[str, Any] = Field(default_factory=dict)
    data: DataSettings
    eval: EvalSettings = Field(default_factory=EvalSettings)
    methods: dict[str, MethodSpec]
    equal_budget: bool = True
    """Refuse RL methods whose completion budget differs from the others'."""
    keep_models: bool = True
    """False deletes each run's trained model after its evaluation (large models, many runs)."""
    torch_threads: int | None = Field(None, ge=1)
    """CPU threads for torch; tiny models on a small shared CPU run faster with 1 than with contention."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("must be a plain folder name (letters, digits, _ . -)")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: int | list[int]) -> int | list[int]:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be at least 1")
        if isinstance(v, list) and (not v or len(set(v)) != len(v)):
            raise ValueError("must be a non-empty list of distinct seeds")
        return v

    @field_validator("methods")
    @classmethod
    def _methods(cls, v: dict[str, MethodSpec]) -> dict[str, MethodSpec]:
        if not v:
            raise ValueError("name at least one method")
        for name in v:
            if not _NAME_RE.match(name):
                raise ValueError(f"method name {name!r} must be a plain folder name (letters, digits, _ . -)")
        return v

    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)

    def label(self, method: str) -> str:
        spec = self.methods[method]
        return spec.label or DEFAULT_LABELS.get(method, method)


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_experiment(path: str | Path) -> tuple[ExperimentConfig, Path]:
    """Read and validate an experiment YAML; returns it with the folder relative paths resolve against."""
    p = Path(path)
    raw = read_yaml_mapping(p, "experiment config")
    try:
        exp = ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"]) or "(top level)"
        raise ConfigError(f"{p}: {loc}: {first['msg']} ({len(e.errors())} problem(s))") from None
    return exp, p.resolve().parent


# ------------------------------------------------------------------------------------------- plan
class RunSpec(BaseModel):
    """One method x seed: its resolved training config and where it writes."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    method: str
    seed: int
    label: str
    train: bool
    cfg: TrainConfig
    run_dir: Path

    @property
    def done_file(self) -> Path:
        return self.run_dir / DONE_FILE


class ExperimentPlan(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    exp: ExperimentConfig
    config_path: Path | None
    out: Path
    methods: list[str]
    seeds: list[int]
    runs: list[RunSpec]
    train_file: Path
    test_file: Path
    image_root: Path | None
    rl_budget: int | None
    """Completions each RL run trains on (max_steps x batch x accumulation)."""
    sft_examples: dict[str, int]


def _resolve(base: Path, p: str | None) -> Path | None:
    if p is None:
        return None
    q = Path(p).expanduser()
    return q if q.is_absolute() else (base / q).resolve()


def _rl_budget(cfg: TrainConfig) -> int:
    k = cfg.grpo
    return k.max_steps * k.per_device_train_batch_size * k.gradient_accumulation_steps


def plan_experiment(
    exp: ExperimentConfig,
    base_dir: Path,
    out: Path,
    *,
    seeds: int | None = None,
    only: Sequence[str] | None = None,
    config_path: Path | None = None,
) -> ExperimentPlan:
    """Resolve every run's ``TrainConfig`` (so a bad override fails before any training) and check budgets."""
    methods = list(exp.methods)
    if only:
        unknown = [m for m in only if m not in exp.methods]
        if unknown:
            raise ConfigError(
                f"--only: unknown method(s) {', '.join(unknown)}; the config has {', '.join(methods)}"
            )
        methods = [m for m in methods if m in set(only)]
    seed_list = exp.seed_list()
    if seeds is not None:
        if seeds < 1:
            raise ConfigError("--seeds must be at least 1")
        seed_list = list(range(seeds)) if isinstance(exp.seeds, int) else exp.seed_list()[:seeds]
        if len(seed_list) < seeds:
            start = max(seed_list) + 1
            seed_list += list(range(start, start + seeds - len(seed_list)))
    base_raw: dict[str, Any] = {}
    if exp.base_config is not None:
        bc = _resolve(base_dir, exp.base_config)
        assert bc is not None
        base_raw = read_yaml_mapping(bc, "base config")
    base_raw = _deep_merge(base_raw, exp.base)

    out = out.resolve()
    if exp.data.synth is not None:
        data_dir = out / "data"
        train_file, test_file, image_root = data_dir / "train.jsonl", data_dir / "test.jsonl", data_dir
    else:
        train_file = _resolve(base_dir, exp.data.train)  # type: ignore[assignment]
        test_file = _resolve(base_dir, exp.data.test)  # type: ignore[assignment]
        image_root = _resolve(base_dir, exp.data.image_root)

    def make(method: str, seed: int) -> TrainConfig:
        spec = exp.methods[method]
        try:
            raw = apply_overrides(copy.deepcopy(base_raw), spec.set)
        except ConfigError as e:
            raise ConfigError(f"method {method!r}: {e}") from None
        raw["seed"] = seed
        raw["name"] = f"{exp.name}-{method}-seed{seed}"
        raw["output_dir"] = str(out / method / f"seed{seed}" / "train")
        data = dict(raw.get("data") or {})
        data["train"] = str(train_file)
        data["image_root"] = str(image_root) if image_root is not None else None
        raw["data"] = data
        cfg = config_from_dict(raw, f"method {method!r}")
        if not spec.train:
            return cfg
        if cfg.method == "grpo":
            if cfg.grpo.max_steps <= 0:
                raise ConfigError(f"method {method!r}: set grpo.max_steps (> 0) so budgets are comparable")
            if cfg.dynamic_sampling or cfg.gpg:
                from anatomy_r1.training.variants import trainer_class_for

                trainer_class_for(cfg)
        return cfg

    resolved = {m: make(m, seed_list[0]) for m in methods}
    rl = {m: _rl_budget(c) for m, c in resolved.items() if exp.methods[m].train and c.method == "grpo"}
    budgets = set(rl.values())
    if exp.equal_budget and len(budgets) > 1:
        shown = ", ".join(f"{m}={b}" for m, b in rl.items())
        raise ConfigError(
            f"unequal RL budgets (max_steps x batch x accumulation completions): {shown}; "
            "make them equal or set equal_budget: false"
        )
    rl_budget = max(budgets) if budgets else None

    sft_examples: dict[str, int] = {}
    runs: list[RunSpec] = []
    for seed in seed_list:
        for m in methods:
            cfg = make(m, seed)
            spec = exp.methods[m]
            if spec.train and cfg.method == "sft":
                k = cfg.sft
                per_step = k.per_device_train_batch_size * k.gradient_accumulation_steps
                if k.max_steps <= 0:
                    if rl_budget is None:
                        raise ConfigError(
                            f"method {m!r}: set sft.max_steps (no RL method to take the budget from)"
                        )
                    k.max_steps = max(1, math.ceil(rl_budget / per_step))
                sft_examples[m] = k.max_steps * per_step
            runs.append(
                RunSpec(
                    method=m,
                    seed=seed,
                    label=exp.label(m),
                    train=spec.train,
                    cfg=cfg,
                    run_dir=out / m / f"seed{seed}",
                )
            )
    return ExperimentPlan(
        exp=exp,
        config_path=config_path,
        out=out,
        methods=methods,
        seeds=seed_list,
        runs=runs,
        train_file=train_file,
        test_file=test_file,
        image_root=image_root,
        rl_budget=rl_budget,
        sft_examples=sft_examples,
    )


# ------------------------------------------------------------------------------------------- runs
def _write_json(path: Path, obj: Any) -> None:
    from anatomy_r1.data.io import atomic_writer

    with atomic_writer(path) as fh:
        fh.write(json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


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
    from anatomy_r1.training.grpo import last_checkpoint

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
        max_new_tokens=ev.max_new_tokens or run.cfg.grpo.max_completion_length,
        batch_size=ev.batch_size,
        image_root=str(plan.image_root) if plan.image_root is not None else str(plan.test_file.parent),
        temperature=ev.temperature,
        seed=run.seed,
        dtype=run.cfg.model.dtype,
    )
    metrics, items = score_completions(records, sampled, greedy)
    write_eval_outputs(run.run_dir / "eval", metrics, items, completion_rows(sampled, greedy))
    return metrics


def _execute(plan: ExperimentPlan, run: RunSpec, records: list[Any], log: Callable[[str], None]) -> None:
    from anatomy_r1.models.base import resolve_model_path

    t0 = time.perf_counter()
    if run.train:
        model_path = _train(run, log)
    else:
        model_path = resolve_model_path(run.cfg.model.path)
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


# ------------------------------------------------------------------------------------------- report
def _stats(values: list[float | None]) -> dict[str, Any]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "n": 0, "values": values}
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": statistics.fmean(vals), "std": std, "n": len(vals), "values": values}


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _pm(s: dict[str, Any]) -> str:
    if s["mean"] is None:
        return "–"
    if s["n"] < 2:
        return f"{100 * s['mean']:.1f}"
    return f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f}"


def _method_summary(done: list[dict[str, Any]]) -> dict[str, Any]:
    classes = sorted({c for d in done for c in d["eval"]["per_class"]})
    per_class = {}
    for c in classes:
        cells = [d["eval"]["per_class"].get(c, {}) for d in done]
        per_class[c] = {
            "n": cells[0].get("n") if cells else None,
            "avg_at_k": _stats([x.get("avg_at_k") for x in cells]),
            "greedy": _stats([x.get("greedy") for x in cells]),
        }
    inv = [d.get("invalid_gradient") for d in done]
    inv_classes = sorted({c for x in inv if x for c in x["per_class"]})
    return {
        "seeds": [d["seed"] for d in done],
        "avg_at_k": _stats([d["eval"]["avg_at_k"] for d in done]),
        "greedy": _stats([d["eval"]["greedy"] for d in done]),
        "invalid_rate": _stats([d["eval"]["invalid_rate"] for d in done]),
        "per_class": per_class,
        "invalid_gradient": None
        if not any(inv)
        else {
            "mean": _stats([x["mean"] if x else None for x in inv]),
            "per_class": {
                c: _stats([x["per_class"].get(c) if x else None for x in inv]) for c in inv_classes
            },
        },
        "train_seconds": _stats([d.get("train_seconds") for d in done]),
        "eval_seconds": _stats([d.get("eval_seconds") for d in done]),
    }


def _figures(
    plan: ExperimentPlan, done: dict[str, list[dict[str, Any]]], summary: dict[str, Any]
) -> list[dict[str, str]]:
    """Draw the report figures; a figure that fails is listed with its error instead of ending the report."""
    figs: list[dict[str, str]] = []
    fig_dir = plan.out / "figures"
    try:
        from anatomy_r1.reports import plots
    except ImportError as e:  # pragma: no cover - plotting is a core dependency
        return [{"file": "", "title": "figures", "error": f"plotting unavailable: {e}"}]

    def first_metrics(methods: Sequence[str]) -> dict[str, str]:
        runs = {}
        for m in methods:
            for d in done.get(m, []):
                if d.get("metrics_jsonl"):
                    runs[f"{plan.exp.label(m)} (seed {d['seed']})"] = d["metrics_jsonl"]
                    break
        return runs

    def accuracy_view(key: str) -> dict[str, dict[str, Any]]:
        res = {}
        for m in plan.methods:
            s = summary["methods"].get(m)
            if not s or s[key]["mean"] is None:
                continue
            res[plan.exp.label(m)] = {
                "accuracy": s[key]["mean"],
                "breakdowns": {
                    "anatomy_class": {c: {"accuracy": v[key]["mean"]} for c, v in s["per_class"].items()}
                },
            }
        return res

    jobs: list[tuple[str, str, Callable[[Path], Path]]] = [
        (
            "reward_curves.png",
            "Training accuracy reward: ASCL vs GRPO (first seed)",
            lambda p: plots.plot_reward_curves(first_metrics(["grpo", "grpo_ascl", "anatomy_r1"]), p),
        ),
        (
            "s_q_curves.png",
            "Batch-mean S(q) during training: ASCL vs GRPO (first seed)",
            lambda p: plots.plot_s_q_curves(first_metrics(["grpo", "grpo_ascl", "anatomy_r1"]), p),
        ),
        (
            "invalid_gradient_per_class.png",
            "Invalid-gradient ratio per class, early vs late: GDQA vs GRPO (first seed)",
            lambda p: plots.plot_invalid_gradient_per_class(
                first_metrics(["grpo", "grpo_gdqa", "anatomy_r1"]), p
            ),
        ),
    ]
    if plan.exp.eval.k > 0:
        jobs.append(
            (
                "per_class_avg_at_k.png",
                f"Avg@{plan.exp.eval.k} per anatomy class (mean over seeds)",
                lambda p: plots.plot_per_class_accuracy(accuracy_view("avg_at_k"), p),
            )
        )
    if plan.exp.eval.greedy:
        jobs.append(
            (
                "per_class_greedy.png",
                "Greedy accuracy per anatomy class (mean over seeds)",
                lambda p: plots.plot_per_class_accuracy(accuracy_view("greedy"), p),
            )
        )
    for name, title, draw in jobs:
        try:
            draw(fig_dir / name)
            figs.append({"file": f"figures/{name}", "title": title})
        except Exception as e:  # a broken figure must not cost the tables
            figs.append({"file": f"figures/{name}", "title": title, "error": f"{type(e).__name__}: {e}"})
    return figs


def build_report(plan: ExperimentPlan, *, failed: Sequence[str] = ()) -> dict[str, Any]:
    """Aggregate every finished run into ``summary.json``, ``results.md`` and ``figures/``."""
    done: dict[str, list[dict[str, Any]]] = {}
    missing: list[str] = []
    for run in plan.runs:
        if run.done_file.is_file():
            done.setdefault(run.method, []).append(json.loads(run.done_file.read_text(encoding="utf-8")))
        elif f"{run.method}/seed{run.seed}" not in failed:
            missing.append(f"{run.method}/seed{run.seed}")
    ev = plan.exp.eval
    n_test = next((d[0]["eval"]["n"] for d in done.values() if d), None)
    first_cfg = plan.runs[0].cfg if plan.runs else None
    summary: dict[str, Any] = {
        "experiment": plan.exp.name,
        "description": plan.exp.description,
        "config": str(plan.config_path) if plan.config_path else None,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seeds": plan.seeds,
        "eval": {**ev.model_dump(), "n_test": n_test},
        "budget": {
            "rl_completions_per_run": plan.rl_budget,
            "num_generations": first_cfg.grpo.num_generations if first_cfg else None,
            "sft_examples_per_run": plan.sft_examples,
        },
        "methods": {
            m: {"label": plan.exp.label(m), **_method_summary(done[m])} for m in plan.methods if m in done
        },
        "failed": list(failed),
        "missing": missing,
    }
    summary["figures"] = _figures(plan, done, summary)
    _write_json(plan.out / "summary.json", summary)
    from anatomy_r1.data.io import atomic_writer

    with atomic_writer(plan.out / "results.md") as fh:
        fh.write(_markdown(plan, summary))
    return summary


def _markdown(plan: ExperimentPlan, s: dict[str, Any]) -> str:
    exp, ev = plan.exp, plan.exp.eval
    k = ev.k
    L: list[str] = [f"# Experiment `{exp.name}`", ""]
    if exp.description:
        L += [exp.description.strip(), ""]
    methods = [m for m in plan.methods if m in s["methods"]]
    n_gen = s["budget"]["num_generations"]
    budget = s["budget"]["rl_completions_per_run"]
    L += [
        f"- config: `{s['config']}`" if s["config"] else "- config: (in memory)",
        f"- generated: {s['generated_at']}; seeds: {', '.join(map(str, s['seeds']))} "
        "(every number below is mean ± sample std over seeds)",
        f"- test set: {s['eval']['n_test'] if s['eval']['n_test'] is not None else '?'} questions "
        f"from `{plan.test_file}`",
        f"- evaluation: Avg@{k} = mean over questions of the share of {k} sampled completions "
        f"(temperature {ev.temperature}) that are correct; greedy = one greedy completion per question"
        if k
        else "- evaluation: greedy completion per question",
    ]
    if budget:
        L.append(
            f"- budget: every RL method trains on {budget} completions ({budget // max(1, n_gen or 1)} "
            f"questions x {n_gen} generations); DAPO's dynamic sampling generates extra rollouts on top "
            "(`dapo/extra_rollouts` in its metrics.jsonl)"
        )
    for m, n in s["budget"]["sft_examples_per_run"].items():
        L.append(f"- `{m}` trains on {n} supervised examples (one per RL completion)")
    L += ["", "## Overall", ""]
    hdr = "| Method | " + (f"Avg@{k} | " if k else "") + ("Greedy | " if ev.greedy else "")
    hdr += "Invalid answers | Invalid-gradient ratio | Seeds | Train time (s) |"
    L += [hdr, "|" + "---|" + "---:|" * (hdr.count("|") - 2)]
    for m in methods:
        r = s["methods"][m]
        inv = r["invalid_gradient"]["mean"] if r["invalid_gradient"] else None
        row = f"| {r['label']} | " + (f"{_pm(r['avg_at_k'])} | " if k else "")
        row += f"{_pm(r['greedy'])} | " if ev.greedy else ""
        row += f"{_pm(r['invalid_rate'])} | {_pm(inv) if inv else '–'} | {len(r['seeds'])} | "
        t = r["train_seconds"]["mean"]
        row += f"{t:.0f} |" if t else "– |"
        L.append(row)
    L += [
        "",
        "Accuracies and rates in %. *Invalid answers*: sampled completions with no readable option. "
        "*Invalid-gradient ratio*: share of GRPO groups whose rewards were all equal (zero advantage, so no "
        "gradient), averaged over training steps; for DAPO it covers every rollout, refills included. "
        "A value without ± comes from a single seed.",
    ]
    classes = sorted({c for m in methods for c in s["methods"][m]["per_class"]})
    for key, title in (("avg_at_k", f"Avg@{k}"), ("greedy", "greedy accuracy")):
        if (key == "avg_at_k" and not k) or (key == "greedy" and not ev.greedy) or not classes:
            continue
        L += ["", f"## Per anatomy class: {title}", ""]
        L.append("| Method | " + " | ".join(c.replace("_", " ") for c in classes) + " |")
        L.append("|---|" + "---:|" * len(classes))
        n_row = {}
        for m in methods:
            for c, v in s["methods"][m]["per_class"].items():
                n_row.setdefault(c, v.get("n"))
        L.append("| *test questions* | " + " | ".join(str(n_row.get(c) or "–") for c in classes) + " |")
        for m in methods:
            pc = s["methods"][m]["per_class"]
            L.append(
                f"| {s['methods'][m]['label']} | "
                + " | ".join(_pm(pc[c][key]) if c in pc else "–" for c in classes)
                + " |"
            )
    inv_methods = [m for m in methods if s["methods"][m]["invalid_gradient"]]
    inv_classes = sorted({c for m in inv_methods for c in s["methods"][m]["invalid_gradient"]["per_class"]})
    if inv_methods and inv_classes:
        L += ["", "## Invalid-gradient ratio per anatomy class (mean over training steps)", ""]
        L.append("| Method | " + " | ".join(c.replace("_", " ") for c in inv_classes) + " |")
        L.append("|---|" + "---:|" * len(inv_classes))
        for m in inv_methods:
            pc = s["methods"][m]["invalid_gradient"]["per_class"]
            L.append(
                f"| {s['methods'][m]['label']} | "
                + " | ".join(_pm(pc[c]) if c in pc else "–" for c in inv_classes)
                + " |"
            )
    if s["figures"]:
        L += ["", "## Figures", ""]
        for f in s["figures"]:
            if f.get("error"):
                L.append(f"- {f['title']}: not drawn ({f['error']})")
            else:
                L += [f"**{f['title']}**", "", f"![{f['title']}]({f['file']})", ""]
    L += ["", "## Methods", ""]
    for m in plan.methods:
        spec = exp.methods[m]
        what = (
            "zero-shot (no training)"
            if not spec.train
            else ", ".join(f"`{x}`" for x in spec.set) or "base config"
        )
        desc = f" {spec.description}" if spec.description else ""
        L.append(f"- **{exp.label(m)}** (`{m}`): {what}.{desc}")
    if s["failed"] or s["missing"]:
        L += ["", "## Incomplete", ""]
        for r in s["failed"]:
            L.append(f"- `{r}` failed: see `{r}/error.txt`")
        for r in s["missing"]:
            L.append(f"- `{r}` not run yet")
    L += [
        "",
        "Per-run outputs: `<method>/seed<k>/done.json` (summary), `eval/metrics.md`, `train/metrics.jsonl`. "
        "Rerunning the same command skips finished runs and rebuilds this report.",
    ]
    return "\n".join(L) + "\n"
