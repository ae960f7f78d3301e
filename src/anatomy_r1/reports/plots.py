"""Training and evaluation figures for reports and experiment tables.

Every function writes exactly one PNG and returns its path. The figures are built on matplotlib's
object API with an explicit Agg canvas instead of ``pyplot``: no global backend or figure registry is
touched, so importing this module never changes how a caller's own plots behave, and plotting works on
headless machines. PNG metadata that would differ between machines (software version) is dropped and
colours follow the order of the runs, so the same inputs give the same image.

Inputs come from long runs that may still be writing or may have crashed: a missing key, a ``null`` or
NaN value, or a truncated last line of ``metrics.jsonl`` is skipped, never an error. When nothing at all
is plottable the PNG still appears and says "no data", so a report always has its images.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = [
    "ACCURACY_KEY",
    "INVALID_KEY",
    "S_Q_KEY",
    "class_accuracies",
    "early_late",
    "invalid_gradient_by_class",
    "metric_series",
    "plot_invalid_gradient_per_class",
    "plot_per_class_accuracy",
    "plot_reward_curves",
    "plot_s_q_curves",
    "read_metrics_jsonl",
]

ACCURACY_KEY = "rewards/accuracy_reward/mean"
S_Q_KEY = "curriculum/batch_mean_s_q"
INVALID_KEY = "invalid_gradient_ratio"
_INVALID_PREFIX = INVALID_KEY + "/"

#: A run is a path to its ``metrics.jsonl`` or the rows already read from it.
RunSource = str | os.PathLike[str] | Sequence[Mapping[str, Any]]

_COLORS = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
_DPI = 110


# ---------------------------------------------------------------------------------------------- reading
def read_metrics_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl``; unreadable lines (a truncated last line of a live run) are skipped.

    A missing file gives ``[]``: a run that crashed before its first log step simply has no curve.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return []
    rows: list[dict[str, Any]] = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            rows.append(obj)
    return rows


def _rows(source: RunSource) -> list[Mapping[str, Any]]:
    if isinstance(source, str | os.PathLike):
        return read_metrics_jsonl(source)
    return [r for r in source if isinstance(r, Mapping)]


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def metric_series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """``(steps, values)`` where ``key`` holds a finite number; a row without ``step`` uses its index."""
    steps: list[float] = []
    values: list[float] = []
    for i, row in enumerate(rows):
        v = _finite(row.get(key))
        if v is None:
            continue
        s = _finite(row.get("step"))
        steps.append(float(i) if s is None else s)
        values.append(v)
    return steps, values


def _ema(values: Sequence[float], smooth: float) -> list[float]:
    """TensorBoard-style exponential smoothing with bias correction, so the curve starts at the data."""
    if not 0.0 < smooth < 1.0:
        return list(values)
    out: list[float] = []
    acc = 0.0
    for i, v in enumerate(values, start=1):
        acc = smooth * acc + (1.0 - smooth) * v
        out.append(acc / (1.0 - smooth**i))
    return out


def early_late(values: Sequence[float], fraction: float = 0.25) -> tuple[float | None, float | None]:
    """Means of the first and last ``fraction`` of a series (at least one point each), or ``None``."""
    vals = [v for v in values if _finite(v) is not None]
    if not vals:
        return None, None
    n = max(1, math.ceil(len(vals) * fraction))
    return sum(vals[:n]) / n, sum(vals[-n:]) / n


# ---------------------------------------------------------------------------------------------- writing
def _new_figure(width: float = 7.0, height: float = 4.2) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def current_umask() -> int:
    """The process umask, read without changing it (``os.umask`` must set one to read it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _save(fig: Figure, out: str | os.PathLike[str]) -> Path:
    """Write the PNG through a temporary file in the target folder so a reader never sees half an image."""
    dest = Path(out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png", dpi=_DPI, metadata={"Software": None})
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it private; a figure is not
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def _no_data(out: str | os.PathLike[str], title: str, why: str = "no data") -> Path:
    fig = _new_figure(6.0, 3.5)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=16, color="#666666", transform=ax.transAxes)
    return _save(fig, out)


def _color(i: int) -> str:
    return _COLORS[i % len(_COLORS)]


def _line_plot(
    runs: Mapping[str, RunSource],
    out: str | os.PathLike[str],
    key: str,
    *,
    title: str,
    ylabel: str,
    smooth: float,
) -> Path:
    series = {label: metric_series(_rows(src), key) for label, src in runs.items()}
    series = {label: sv for label, sv in series.items() if sv[0]}
    if not series:
        return _no_data(out, title, f"no data for {key}")
    fig = _new_figure()
    ax = fig.add_subplot()
    for i, (label, (steps, values)) in enumerate(series.items()):
        color = _color(i)
        smoothed = _ema(values, smooth)
        if smoothed != values:
            ax.plot(steps, values, color=color, alpha=0.25, linewidth=1.0)
        ax.plot(
            steps, smoothed, color=color, linewidth=2.0, label=label, marker="o" if len(steps) == 1 else None
        )
    ax.set_title(title)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    fig.tight_layout()
    return _save(fig, out)


# ---------------------------------------------------------------------------------------------- figures
def plot_reward_curves(
    runs: Mapping[str, RunSource],
    out: str | os.PathLike[str],
    key: str = ACCURACY_KEY,
    smooth: float = 0.6,
) -> Path:
    """One curve per run of ``key`` over training steps; raw values faint, EMA-smoothed values bold.

    ``smooth`` is the EMA weight in [0, 1); 0 plots the raw values only. GRPO rewards are noisy per step
    (a batch holds a handful of groups), so the trend is only visible smoothed.
    """
    ylabel = "accuracy reward" if key == ACCURACY_KEY else key
    return _line_plot(runs, out, key, title="Training reward", ylabel=ylabel, smooth=smooth)


def plot_s_q_curves(
    runs: Mapping[str, RunSource],
    out: str | os.PathLike[str],
    smooth: float = 0.0,
) -> Path:
    """Batch-mean answer-choice similarity S(q) over steps: ASCL rises from easy to hard, shuffled stays flat.

    A run that logged no S(q) (no curriculum and no GDQA, so nothing scored its data) is left out.
    """
    return _line_plot(
        runs, out, S_Q_KEY, title="Batch-mean S(q) during training", ylabel="batch mean S(q)", smooth=smooth
    )


def _class_keys(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for k in row:
            if isinstance(k, str) and k.startswith(_INVALID_PREFIX) and len(k) > len(_INVALID_PREFIX):
                seen.setdefault(k[len(_INVALID_PREFIX) :], None)
    return list(seen)


def invalid_gradient_by_class(
    rows: Sequence[Mapping[str, Any]], fraction: float = 0.25
) -> dict[str, dict[str, float | None]]:
    """Per anatomy class (plus ``all``): early, late and final invalid-gradient ratio of one run.

    Early/late are means over the first/last ``fraction`` of the logged values; a class appears only in
    steps where one of its groups was drawn, so each class has its own time axis.
    """
    result: dict[str, dict[str, float | None]] = {}
    for cls in ["all", *sorted(_class_keys(rows))]:
        key = INVALID_KEY if cls == "all" else _INVALID_PREFIX + cls
        _, values = metric_series(rows, key)
        if not values:
            continue
        early, late = early_late(values, fraction)
        result[cls] = {"early": early, "late": late, "final": values[-1], "n_logged": float(len(values))}
    return result


def plot_invalid_gradient_per_class(
    runs: Mapping[str, RunSource],
    out: str | os.PathLike[str],
    fraction: float = 0.25,
) -> Path:
    """Grouped bars per anatomy class: invalid-gradient ratio early (light) vs late (solid) for each run.

    The share of all-equal-reward groups is the share of the batch GRPO cannot learn from; the paper's
    Fig. 2 shows it is highest for the classes that are hardest to tell apart.
    """
    title = "Invalid-gradient ratio per class (early vs late)"
    per_run = {label: invalid_gradient_by_class(_rows(src), fraction) for label, src in runs.items()}
    per_run = {label: d for label, d in per_run.items() if d}
    if not per_run:
        return _no_data(out, title, "no invalid-gradient data")
    classes: list[str] = []
    for d in per_run.values():
        for cls in d:
            if cls not in classes:
                classes.append(cls)
    classes = ["all", *sorted(c for c in classes if c != "all")] if "all" in classes else sorted(classes)
    n_bars = 2 * len(per_run)
    width = 0.8 / n_bars
    fig = _new_figure(max(7.0, 0.9 * len(classes) + 2.5), 4.4)
    ax = fig.add_subplot()
    for i, (label, d) in enumerate(per_run.items()):
        color = _color(i)
        for j, phase in enumerate(("early", "late")):
            xs: list[float] = []
            hs: list[float] = []
            for c_idx, cls in enumerate(classes):
                v = d.get(cls, {}).get(phase)
                if v is None:
                    continue
                xs.append(c_idx - 0.4 + (2 * i + j + 0.5) * width)
                hs.append(v)
            if xs:
                ax.bar(
                    xs, hs, width=width, color=color, alpha=0.35 if phase == "early" else 0.95,
                    edgecolor=color, label=f"{label} ({phase})",
                )  # fmt: skip
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels([c.replace("_", " ") for c in classes], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("share of groups with all-equal rewards")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # bars can reach 1.0
    fig.tight_layout()
    return _save(fig, out)


def class_accuracies(metrics: Mapping[str, Any], key: str = "anatomy_class") -> dict[str, float]:
    """``{group: accuracy}`` from an evaluation metrics dict's ``breakdowns[key]``; bad groups skipped."""
    groups = (metrics.get("breakdowns") or {}).get(key) if isinstance(metrics, Mapping) else None
    if not isinstance(groups, Mapping):
        return {}
    out: dict[str, float] = {}
    for name, g in groups.items():
        v = _finite(g.get("accuracy")) if isinstance(g, Mapping) else None
        if v is not None:
            out[str(name)] = v
    return out


def plot_per_class_accuracy(
    results: Mapping[str, Mapping[str, Any]],
    out: str | os.PathLike[str],
    key: str = "anatomy_class",
) -> Path:
    """Grouped bars of accuracy per ``breakdowns[key]`` group, one bar per result, ``overall`` first."""
    title = f"Accuracy by {key.replace('_', ' ')}"
    per_result: dict[str, dict[str, float]] = {}
    for label, metrics in results.items():
        accs = class_accuracies(metrics, key)
        overall = _finite(metrics.get("accuracy")) if isinstance(metrics, Mapping) else None
        if overall is not None:
            accs = {"overall": overall, **accs}
        if accs:
            per_result[label] = accs
    if not per_result:
        return _no_data(out, title)
    groups: list[str] = []
    for accs in per_result.values():
        for g in accs:
            if g not in groups:
                groups.append(g)
    groups = (["overall"] if "overall" in groups else []) + sorted(g for g in groups if g != "overall")
    width = 0.8 / len(per_result)
    fig = _new_figure(max(7.0, 0.8 * len(groups) + 2.5), 4.4)
    ax = fig.add_subplot()
    for i, (label, accs) in enumerate(per_result.items()):
        xs = [g_idx - 0.4 + (i + 0.5) * width for g_idx, g in enumerate(groups) if g in accs]
        hs = [accs[g] for g in groups if g in accs]
        ax.bar(xs, hs, width=width, color=_color(i), label=label)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([g.replace("_", " ") for g in groups], rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    fig.tight_layout()
    return _save(fig, out)
