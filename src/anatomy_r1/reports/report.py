"""The before/after report of one training run: ``metrics.json``, ``report.md`` and the figures.

``metrics.json`` is the machine-readable result (what tests, the experiment tables and CI read);
``report.md`` is the same numbers for people, with the training curves embedded, the settings that
produced them and the exact command to reproduce them.

The report folder is built in a temporary sibling folder and renamed into place only when every file is
written, so a crash (a plot that fails, a full disk, an interrupt) leaves either the previous report or
none, never a folder whose ``report.md`` points at images that do not exist or whose ``metrics.json``
disagrees with the figures.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from anatomy_r1.reports import plots

__all__ = ["FIGURES", "REQUIRED_KEYS", "write_report"]

#: Figures every report folder holds, by role.
FIGURES: dict[str, str] = {
    "reward": "reward_curve.png",
    "per_class_accuracy": "per_class_accuracy.png",
    "s_q": "s_q_curve.png",
    "invalid_gradient": "invalid_gradient_per_class.png",
}
#: Keys ``metrics.json`` always has (values may be ``null`` where a number could not be computed).
REQUIRED_KEYS: tuple[str, ...] = ("base_accuracy", "trained_accuracy", "n_test", "gain", "gain_points")
_GROUP_KEYS: tuple[tuple[str, str], ...] = (
    ("anatomy_class", "per_class"),
    ("template_family", "per_template_family"),
)


# ---------------------------------------------------------------------------------------------- helpers
def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _json_safe(value: Any) -> Any:
    """NaN/inf become ``null`` (strict JSON), paths become strings, tuples become lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _config_dict(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    if hasattr(config, "model_dump"):
        return config.model_dump(mode="json")
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(f"config must be a TrainConfig or a mapping, got {type(config).__name__}")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _points(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:+.1f}"


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _accuracy_kind(metrics: Mapping[str, Any]) -> str:
    """Which number ``metrics["accuracy"]`` is: Avg@k when samples were drawn, else greedy accuracy."""
    if _num(metrics.get("avg_at_k")) is not None:
        return f"Avg@{metrics.get('k', 'k')}"
    return "greedy"


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def _group_table(
    base: Mapping[str, Any], trained: Mapping[str, Any], key: str
) -> dict[str, dict[str, float | int | None]]:
    """``{group: {n, base, trained, gain}}`` over the union of groups in both evaluations."""
    b_groups = (base.get("breakdowns") or {}).get(key) or {}
    t_groups = (trained.get("breakdowns") or {}).get(key) or {}
    out: dict[str, dict[str, float | int | None]] = {}
    for name in sorted({*b_groups, *t_groups}):
        b = b_groups.get(name) if isinstance(b_groups.get(name), Mapping) else {}
        t = t_groups.get(name) if isinstance(t_groups.get(name), Mapping) else {}
        b_acc, t_acc = _num(b.get("accuracy")), _num(t.get("accuracy"))
        n = t.get("n", b.get("n"))
        out[str(name)] = {
            "n": n if isinstance(n, int) else None,
            "base": b_acc,
            "trained": t_acc,
            "gain": _diff(b_acc, t_acc),
        }
    return out


def _training_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    steps, acc = plots.metric_series(rows, plots.ACCURACY_KEY)
    _, reward = plots.metric_series(rows, "reward")
    _, s_q = plots.metric_series(rows, plots.S_Q_KEY)
    _, aug = plots.metric_series(rows, "gdqa/augmented_fraction")
    _, step_time = plots.metric_series(rows, "step_time")
    acc_early, acc_late = plots.early_late(acc)
    s_q_early, s_q_late = plots.early_late(s_q)
    all_steps = [s for s in (_num(r.get("step")) for r in rows) if s is not None]
    runtime = next((_num(r.get("train_runtime")) for r in reversed(rows) if "train_runtime" in r), None)
    return {
        "log_rows": len(rows),
        "last_step": int(max(all_steps)) if all_steps else None,
        "accuracy_reward_early": acc_early,
        "accuracy_reward_late": acc_late,
        "accuracy_reward_final": acc[-1] if acc else None,
        "reward_final": reward[-1] if reward else None,
        "batch_mean_s_q_early": s_q_early,
        "batch_mean_s_q_late": s_q_late,
        "gdqa_augmented_fraction_mean": sum(aug) / len(aug) if aug else None,
        "mean_step_time": sum(step_time) / len(step_time) if step_time else None,
        "train_runtime": runtime,
        "n_accuracy_points": len(steps),
    }


def _default_command() -> str:
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("anatomy-r1", "__main__.py"):
        argv[0] = "anatomy-r1"
    return shlex.join(argv)


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip() or None
    except OSError:
        pass
    import platform

    return platform.processor() or None


def machine_info() -> dict[str, Any]:
    """What the timings depend on: CPU model and cores, torch and its threads, the GPU if any."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
    }


def describe_machine(machine: Mapping[str, Any]) -> str:
    """One line for the report, e.g. ``AMD EPYC, 2 CPUs, torch 2.13.0+cpu with 2 threads, no GPU``."""
    cpu = machine.get("cpu") or "unknown CPU"
    parts = [str(cpu)]
    if machine.get("cpu_count"):
        parts.append(f"{machine['cpu_count']} CPUs")
    if machine.get("torch"):
        threads = machine.get("torch_threads")
        parts.append(f"torch {machine['torch']}" + (f" with {threads} threads" if threads else ""))
    parts.append(f"GPU {machine['gpu']}" if machine.get("gpu") else "no GPU")
    return ", ".join(_cell(p) for p in parts)


# ---------------------------------------------------------------------------------------------- content
def _summary_dict(
    *,
    base_metrics: Mapping[str, Any],
    trained_metrics: Mapping[str, Any],
    n_test: int,
    rows: Sequence[Mapping[str, Any]],
    config: dict[str, Any] | None,
    timings: Mapping[str, float],
    command: str,
    machine: Mapping[str, Any] | None = None,
    probe: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    base_acc = _num(base_metrics.get("accuracy"))
    trained_acc = _num(trained_metrics.get("accuracy"))
    gain = _diff(base_acc, trained_acc)
    out: dict[str, Any] = {
        "base_accuracy": base_acc,
        "trained_accuracy": trained_acc,
        "n_test": n_test,
        "gain": gain,
        "gain_points": None if gain is None else 100 * gain,
        "accuracy_kind": _accuracy_kind(trained_metrics),
    }
    for prefix, m in (("base", base_metrics), ("trained", trained_metrics)):
        for field in ("avg_at_k", "greedy_accuracy"):
            v = _num(m.get(field))
            if v is not None:
                out[f"{prefix}_{field}"] = v
        if _num(m.get("avg_at_k")) is not None:
            out[f"{prefix}_k"] = m.get("k")
        out[f"{prefix}_invalid_rate"] = _num(m.get("invalid_rate"))
        out[f"{prefix}_greedy_invalid_rate"] = _num(m.get("greedy_invalid_rate"))
    for key, name in _GROUP_KEYS:
        out[f"{name}_accuracy"] = _group_table(base_metrics, trained_metrics, key)
    inv = plots.invalid_gradient_by_class(rows)
    out["final_invalid_gradient_ratio"] = (inv.get("all") or {}).get("final")
    out["invalid_gradient_ratio_per_class"] = inv
    out["training"] = _training_summary(rows)
    out["timings"] = {str(k): _num(v) for k, v in timings.items()}
    out["machine"] = dict(machine) if machine else None
    out["probe"] = dict(probe) if probe else None
    out["figures"] = dict(FIGURES)
    out["command"] = command
    out["config"] = config
    return _json_safe(out)


def _signed(v: Any, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:+.{digits}f}"


def _markdown(s: Mapping[str, Any], title: str = "Anatomy-R1 demo report") -> str:
    cfg = s.get("config") or {}
    grpo = cfg.get("grpo") or {}
    cur = cfg.get("curriculum") or {}
    gdqa = cfg.get("gdqa") or {}
    kind = s["accuracy_kind"]
    lines = [
        f"# {title}",
        "",
        f"**{kind} accuracy on {s['n_test']} held-out test questions: "
        f"{_pct(s['base_accuracy'])} before GRPO → {_pct(s['trained_accuracy'])} after "
        f"({_points(s['gain'])} points).**",
        "",
        "## What was run",
        "",
        f"- base model: `{(cfg.get('model') or {}).get('path', '?')}`; "
        f"prompt template `{cfg.get('template', '?')}`",
        f"- method: {str(cfg.get('method', 'grpo')).upper()}, seed {cfg.get('seed', '?')}, "
        f"{grpo.get('max_steps', '?')} steps, {grpo.get('num_generations', '?')} completions per group, "
        f"{grpo.get('per_device_train_batch_size', '?')} completions per batch, "
        f"learning rate {grpo.get('learning_rate', '?')}",
        f"- ASCL curriculum: {'on' if cur.get('enabled') else 'off'}"
        + (f" (backend `{cur.get('backend')}`, {cur.get('pacing')} pacing)" if cur.get("enabled") else ""),
        f"- GDQA: {'on' if gdqa.get('enabled') else 'off'}"
        + (f" (wordings: {', '.join(gdqa.get('kinds') or [])})" if gdqa.get("enabled") else ""),
        f"- training data: `{(cfg.get('data') or {}).get('train', '?')}`",
        "",
        "Command:",
        "",
        "```",
        s.get("command") or "",
        "```",
        "",
        "## Before / after",
        "",
        "| metric | base | trained | change (points) |",
        "|---|---:|---:|---:|",
        f"| accuracy ({kind}) | {_pct(s['base_accuracy'])} | {_pct(s['trained_accuracy'])} | "
        f"{_points(s['gain'])} |",
    ]
    rows: list[tuple[str, str]] = []
    if kind != "greedy":  # the headline is Avg@k; show the greedy number beside it
        rows.append(("greedy accuracy", "greedy_accuracy"))
    rows += [
        ("invalid answers (greedy)", "greedy_invalid_rate"),
        ("invalid answers (sampled)", "invalid_rate"),
    ]
    for label, field in rows:
        b, t = s.get(f"base_{field}"), s.get(f"trained_{field}")
        if b is not None or t is not None:
            lines.append(f"| {label} | {_pct(b)} | {_pct(t)} | {_points(_diff(b, t))} |")
    for _, name in _GROUP_KEYS:
        table = s.get(f"{name}_accuracy") or {}
        if not table:
            continue
        heading = "anatomy class" if name == "per_class" else "template family"
        lines += [
            "",
            f"### By {heading}",
            "",
            f"| {heading} | n | base | trained | change (points) |",
            "|---|---:|---:|---:|---:|",
        ]
        for group, row in table.items():
            n = "–" if row.get("n") is None else str(row["n"])
            lines.append(
                f"| {_cell(group)} | {n} | {_pct(row.get('base'))} | {_pct(row.get('trained'))} | "
                f"{_points(row.get('gain'))} |"
            )
    lines += ["", f"![Accuracy by anatomy class]({FIGURES['per_class_accuracy']})", ""]
    tr = s.get("training") or {}
    pr = s.get("probe")
    if pr:
        ci = pr.get("gap_ci95")
        ci_text = f" (95% CI {ci[0]:+.1f} to {ci[1]:+.1f})" if ci else ""
        lines += [
            "",
            "## Are similar choices harder? (ASCL's premise, `anatomy-r1 probe`)",
            "",
            f"The {pr['n_questions']} test questions re-posed with their least and most similar distractors: "
            f"Avg@{pr['k']} {_pct(pr['easiest_avg_at_k'])} vs {_pct(pr['hardest_avg_at_k'])}, a gap of "
            f"**{_signed(pr['gap_points'])} points**{ci_text}. Spearman ρ between S(q) and per-question "
            f"accuracy on the questions as given: **{_signed(pr['spearman_s_q'], 2)}**.",
        ]
        if pr.get("oracle_gap_points") is not None:
            lines.append(
                f"The world's oracle (Bayes-optimal reader) has a gap of {_signed(pr['oracle_gap_points'])} "
                f"points and ρ {_signed(pr['oracle_spearman_s_q'], 2)}. Full report: `../probe/probe.md`."
            )
        lines.append("")
    lines += [
        "## Training",
        "",
        f"Accuracy reward (training batches): {_pct(tr.get('accuracy_reward_early'))} in the first quarter "
        f"of logged steps → {_pct(tr.get('accuracy_reward_late'))} in the last quarter "
        f"({tr.get('last_step') or 0} steps logged).",
        "",
        f"![Accuracy reward during training]({FIGURES['reward']})",
        "",
        (
            "Batch-mean answer-choice similarity S(q): with the ASCL curriculum it starts low (easy, "
            "dissimilar options) and rises as harder questions are admitted."
            if cur.get("enabled")
            else "Batch-mean answer-choice similarity S(q): without a curriculum batches are drawn at "
            "random, so it stays flat (and is absent when nothing scored the data)."
        ),
        "",
        f"![Batch-mean S(q)]({FIGURES['s_q']})",
        "",
        "### Invalid-gradient ratio per anatomy class",
        "",
        "Share of GRPO groups whose completions all got the same reward, so they carry no gradient. "
        f"Final overall value: {_pct(s.get('final_invalid_gradient_ratio'))}.",
        "",
    ]
    inv = s.get("invalid_gradient_ratio_per_class") or {}
    if inv:
        lines += ["| class | early | late | final |", "|---|---:|---:|---:|"]
        for cls, row in inv.items():
            lines.append(
                f"| {_cell(cls)} | {_pct(row.get('early'))} | {_pct(row.get('late'))} | "
                f"{_pct(row.get('final'))} |"
            )
        lines.append("")
    lines += [f"![Invalid-gradient ratio per class]({FIGURES['invalid_gradient']})", ""]
    timings = s.get("timings") or {}
    if timings:
        lines += ["## Timings", "", "| step | seconds |", "|---|---:|"]
        lines += [f"| {_cell(k)} | {'–' if v is None else f'{v:.1f}'} |" for k, v in timings.items()]
        lines.append("")
        machine = s.get("machine")
        if machine:
            lines += [f"Measured on: {describe_machine(machine)}.", ""]
    if cfg:
        lines += [
            "## Training configuration",
            "",
            "```yaml",
            yaml.safe_dump(cfg, sort_keys=False).rstrip(),
            "```",
            "",
        ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- writing
def _draw_figures(
    folder: Path,
    rows: Sequence[Mapping[str, Any]],
    base_metrics: Mapping[str, Any],
    trained_metrics: Mapping[str, Any],
) -> None:
    runs = {"GRPO run": rows}
    plots.plot_reward_curves(runs, folder / FIGURES["reward"])
    plots.plot_per_class_accuracy(
        {"base": base_metrics, "trained": trained_metrics}, folder / FIGURES["per_class_accuracy"]
    )
    plots.plot_s_q_curves(runs, folder / FIGURES["s_q"])
    plots.plot_invalid_gradient_per_class(runs, folder / FIGURES["invalid_gradient"])


def _swap_into_place(staged: Path, dest: Path) -> None:
    """Replace ``dest`` by ``staged``; an existing ``dest`` is restored if the final rename fails."""
    if not dest.exists():
        os.rename(staged, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    old.rmdir()
    os.rename(dest, old)
    try:
        os.rename(staged, dest)
    except BaseException:
        os.rename(old, dest)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_report(
    out_dir: str | os.PathLike[str],
    *,
    base_metrics: Mapping[str, Any],
    trained_metrics: Mapping[str, Any],
    n_test: int,
    train_metrics_jsonl: str | os.PathLike[str] | None,
    config: Any = None,
    timings: Mapping[str, float] | None = None,
    command: str | None = None,
    title: str = "Anatomy-R1 demo report",
    machine: Mapping[str, Any] | None = None,
    probe: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``metrics.json``, ``report.md`` and the four figures to ``out_dir``; return the metrics dict.

    ``base_metrics`` / ``trained_metrics`` are evaluation metrics as ``score_completions`` returns them;
    ``train_metrics_jsonl`` is the run's ``metrics.jsonl`` (missing or partial is fine: the curves are
    then empty); ``config`` is the ``TrainConfig`` (or its dict) that trained the model; ``timings`` are
    seconds per pipeline step; ``command`` is the command line shown for reproduction (default: this
    process's own); ``title`` heads ``report.md``; ``machine`` (see :func:`machine_info`) says where the
    timings were taken, since the same run takes twice as long on one 2-core host as on another;
    ``probe`` holds the premise check's headline numbers (:func:`anatomy_r1.evaluation.probe.headline`).
    An existing ``out_dir`` is replaced as a whole, and only once everything is written.
    """
    dest = Path(out_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    rows = plots.read_metrics_jsonl(train_metrics_jsonl) if train_metrics_jsonl is not None else []
    summary = _summary_dict(
        base_metrics=base_metrics,
        trained_metrics=trained_metrics,
        n_test=int(n_test),
        rows=rows,
        config=_config_dict(config),
        timings=timings or {},
        command=command if command is not None else _default_command(),
        machine=machine,
        probe=probe,
    )
    staged = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        os.chmod(staged, 0o777 & ~plots.current_umask())  # mkdtemp makes it private; a report is not
        _draw_figures(staged, rows, base_metrics, trained_metrics)
        (staged / "metrics.json").write_text(
            json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8"
        )
        (staged / "report.md").write_text(_markdown(summary, title), encoding="utf-8")
        _swap_into_place(staged, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staged)
        raise
    return summary
