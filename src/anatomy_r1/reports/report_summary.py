"""The numbers of a training run's before/after report: what ``metrics.json`` holds and how it is derived.

Two evaluations (base and trained model, as ``score_completions`` returns them) and the run's
``metrics.jsonl`` become one flat, strict-JSON dictionary: accuracies and their gain, per-group tables,
the invalid-gradient ratio per class, early/late training curves, timings and the settings. Tests, the
experiment tables and CI read that dictionary; :mod:`.report_markdown` writes it for people, and
:mod:`.report` stores both.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from anatomy_r1.reports import plots

__all__ = ["FIGURES", "GROUP_KEYS", "REQUIRED_KEYS", "build_summary", "config_dict", "diff"]

#: Figures every report folder holds, by role.
FIGURES: dict[str, str] = {
    "reward": "reward_curve.png",
    "per_class_accuracy": "per_class_accuracy.png",
    "s_q": "s_q_curve.png",
    "invalid_gradient": "invalid_gradient_per_class.png",
}
#: Keys ``metrics.json`` always has (values may be ``null`` where a number could not be computed).
REQUIRED_KEYS: tuple[str, ...] = ("base_accuracy", "trained_accuracy", "n_test", "gain", "gain_points")
#: ``meta`` breakdowns that get a per-group table, with the name of that table in the summary.
GROUP_KEYS: tuple[tuple[str, str], ...] = (
    ("anatomy_class", "per_class"),
    ("template_family", "per_template_family"),
)


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


def config_dict(config: Any) -> dict[str, Any] | None:
    """The run's settings as plain JSON, whether given as a ``TrainConfig`` or already as a mapping."""
    if config is None:
        return None
    if hasattr(config, "model_dump"):
        return config.model_dump(mode="json")
    if isinstance(config, Mapping):
        return dict(config)
    raise TypeError(f"config must be a TrainConfig or a mapping, got {type(config).__name__}")


def _accuracy_kind(metrics: Mapping[str, Any]) -> str:
    """Which number ``metrics["accuracy"]`` is: Avg@k when samples were drawn, else greedy accuracy."""
    if _num(metrics.get("avg_at_k")) is not None:
        return f"Avg@{metrics.get('k', 'k')}"
    return "greedy"


def diff(a: float | None, b: float | None) -> float | None:
    """``b - a``, or ``None`` when either side could not be computed (a gain must never be invented)."""
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
            "gain": diff(b_acc, t_acc),
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


def build_summary(
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
    """The ``metrics.json`` dictionary (see :func:`anatomy_r1.reports.report.write_report` for the inputs).

    Every number that is not finite becomes ``null``, so the file is strict JSON and a consumer sees
    "not computed" rather than a NaN that compares false with everything.
    """
    base_acc = _num(base_metrics.get("accuracy"))
    trained_acc = _num(trained_metrics.get("accuracy"))
    gain = diff(base_acc, trained_acc)
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
    for key, name in GROUP_KEYS:
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
