"""The committed summary of an experiment: per method and seed, and the two paper-style figures.

``anatomy-r1 experiment`` writes each run's ``done.json`` (evaluation, invalid-gradient means) and training
``metrics.jsonl``. This script turns a finished experiment folder into what docs/results.md quotes:

* ``<name>_ablation.json``: per method and seed Avg@k, greedy accuracy, the invalid-answer rates, the
  invalid-gradient ratio (mean, first and last quarter of training, per class), per-class accuracy, DAPO's
  extra rollouts; per method the mean and standard deviation over seeds; the command and the git hash of
  the commit that last changed the experiment config;
* ``<name>_fig1_s_q_reward.png``: batch-mean S(q) and training accuracy reward over steps, ASCL against
  shuffled GRPO (the paper's Figure 1), mean over seeds with a band of one standard deviation;
* ``<name>_fig2_invalid_gradient.png``: the invalid-gradient ratio per class over training, with and
  without GDQA (the paper's Figure 2), mean over seeds.

    python benchmarks/ablation_summary.py --experiment runs/experiments/synthetic \\
        --config configs/experiments/synthetic.yaml --out docs/results
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from anatomy_r1.pipelines.experiment.config import KNOWN_METHODS
from anatomy_r1.reports.machine import machine_info
from anatomy_r1.reports.plots import read_metrics_jsonl
from anatomy_r1.training.config import read_yaml_mapping

INVALID = "invalid_gradient_ratio"


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and np.isfinite(v) else None


def _series(rows: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r["step"], _finite(r.get(key))) for r in rows if "step" in r]
    pts = [(s, v) for s, v in pts if v is not None]
    return np.array([p[0] for p in pts], dtype=float), np.array([p[1] for p in pts], dtype=float)


def _quarters(rows: list[dict[str, Any]], key: str) -> tuple[float | None, float | None]:
    """Mean of ``key`` over the first and the last quarter of the logged steps."""
    steps, values = _series(rows, key)
    if not len(steps):
        return None, None
    last = max(r["step"] for r in rows if "step" in r)
    early, late = values[steps <= last / 4], values[steps > 3 * last / 4]
    return (
        round(float(early.mean()), 4) if len(early) else None,
        round(float(late.mean()), 4) if len(late) else None,
    )


def run_summary(done: dict[str, Any]) -> dict[str, Any]:
    ev = done["eval"]
    out: dict[str, Any] = {
        "avg_at_k": ev["avg_at_k"],
        "greedy": ev["greedy"],
        "invalid_answer_rate": ev["invalid_rate"],
        "greedy_invalid_answer_rate": ev["greedy_invalid_rate"],
        "per_class": {
            c: {"n": v["n"], "avg_at_k": v["avg_at_k"], "greedy": v["greedy"]}
            for c, v in ev["per_class"].items()
        },
        "train_seconds": done.get("train_seconds"),
    }
    inv = done.get("invalid_gradient")
    if done.get("metrics_jsonl") and inv:
        rows = read_metrics_jsonl(Path(done["metrics_jsonl"]))
        early, late = _quarters(rows, INVALID)
        out["invalid_gradient_ratio"] = round(inv["mean"], 4)
        out["invalid_gradient_early"], out["invalid_gradient_late"] = early, late
        out["invalid_gradient_per_class"] = {
            c: dict(zip(("early", "late"), _quarters(rows, f"{INVALID}/{c}"), strict=True))
            for c in inv["per_class"]
        }
        extra = [v for r in rows if (v := _finite(r.get("dapo/extra_rollouts"))) is not None]
        if extra:
            out["dapo_extra_rollouts"] = int(sum(extra))
    return out


def _mean_std(values: list[Any]) -> dict[str, Any]:
    xs = [float(v) for v in values if isinstance(v, int | float)]
    if not xs:
        return {"mean": None, "std": None, "n": 0}
    return {
        "mean": round(float(np.mean(xs)), 4),
        "std": round(float(np.std(xs, ddof=1)), 4) if len(xs) > 1 else None,
        "n": len(xs),
    }


def _pct_cell(v: dict[str, Any]) -> str:
    if v["mean"] is None:
        return "–"
    return (
        f"{100 * v['mean']:.1f} ± {100 * v['std']:.1f}" if v["std"] is not None else f"{100 * v['mean']:.1f}"
    )


def _curves(
    exp: Path, method: str, seeds: list[int], key: str, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Per step: the mean over finished seeds of a trailing ``window``-step mean, and its std over seeds.

    Steps where a seed did not log ``key`` (a class no group of that step asked about) are left out of
    its window rather than counted as zero.
    """
    import warnings

    per_seed = []
    for s in seeds:
        run = exp / method / f"seed{s}"
        if not (run / "done.json").is_file():
            continue
        rows = read_metrics_jsonl(run / "train" / "metrics.jsonl")
        last = max((int(r["step"]) for r in rows if "step" in r), default=0)
        steps, values = _series(rows, key)
        a = np.full(last, np.nan)
        a[steps.astype(int) - 1] = values
        per_seed.append(a)
    if not per_seed:
        return None
    n = min(len(a) for a in per_seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing window is NaN, drawn as a gap
        smooth = np.stack(
            [[np.nanmean(a[max(0, i - window + 1) : i + 1]) for i in range(n)] for a in per_seed]
        )
        mean, std = np.nanmean(smooth, axis=0), np.nanstd(smooth, axis=0)
    x = np.arange(1, n + 1)
    return x[window - 1 :], mean[window - 1 :], std[window - 1 :]


#: Default arms of the two figures (the ``synthetic`` experiment's method names); ``--fig1``/``--fig2``
#: name others as ``method=label`` pairs.
FIG1_ARMS = (("grpo", "GRPO (shuffled)"), ("grpo_ascl", "GRPO + ASCL"), ("anatomy_r1", "Anatomy-R1"))
FIG2_ARMS = (("grpo", "GRPO"), ("grpo_gdqa", "GRPO + GDQA"), ("anatomy_r1", "Anatomy-R1"))
COLORS = ("tab:gray", "tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown")


def _arms(spec: list[str] | None, default: tuple[tuple[str, str], ...]) -> list[tuple[str, str, str]]:
    pairs = [tuple(x.split("=", 1)) if "=" in x else (x, x) for x in spec] if spec else list(default)
    return [(m, label, COLORS[i % len(COLORS)]) for i, (m, label) in enumerate(pairs)]


def figure1(exp: Path, seeds: list[int], path: Path, arms: list[tuple[str, str, str]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    panels = (
        ("curriculum/batch_mean_s_q", "batch-mean S(q)"),
        ("rewards/accuracy_reward/mean", "training accuracy reward"),
    )
    for ax, (key, title) in zip(axes, panels, strict=True):
        for method, label, color in arms:
            c = _curves(exp, method, seeds, key, 10)
            if c is None:
                continue
            x, m, s = c
            ax.plot(x, m, label=label, color=color)
            ax.fill_between(x, m - s, m + s, color=color, alpha=0.15)
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"ASCL vs shuffled GRPO, mean of {len(seeds)} seeds (10-step moving average, band: 1 std)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figure2(
    exp: Path, seeds: list[int], classes: list[str], path: Path, arms: list[tuple[str, str, str]]
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows = (len(classes) + cols - 1) // cols
    fig, axes = plt.subplots(
        rows, cols, figsize=(3 * cols, 2.5 * rows), sharex=True, sharey=True, squeeze=False
    )
    for ax, cls in zip(axes.flat, classes, strict=False):
        for method, label, color in arms:
            c = _curves(exp, method, seeds, f"{INVALID}/{cls}", 25)
            if c is not None:
                ax.plot(c[0], c[1], label=label, color=color)
        ax.set_title(cls, fontsize=9)
        ax.set_ylim(0, 1)
    for ax in axes.flat[len(classes) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(
        f"Invalid-gradient ratio per class over training, mean of {len(seeds)} seeds "
        "(trailing 25-step mean over the steps that drew the class)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown_tables(summary: dict[str, Any]) -> str:
    """The overall, per-class and invalid-gradient tables docs/results.md quotes (percentages)."""
    methods = summary["methods"]
    cols = ("avg_at_k", "greedy", "invalid_answer_rate", "invalid_gradient_ratio")
    cols += ("invalid_gradient_early", "invalid_gradient_late")
    out = [
        "| method | seeds | Avg@5 | greedy | invalid answers | invalid-gradient ratio | first quarter "
        "| last quarter |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in methods.values():
        cells = [_pct_cell(m["mean_std"][k]) for k in cols]
        out.append(f"| {m['label']} | {len(m['seeds'])} | " + " | ".join(cells) + " |")
    classes = sorted({c for m in methods.values() for c in m["per_class_mean_std"]})
    out += ["", "| method | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    for m in methods.values():
        pc = m["per_class_mean_std"]
        out.append(
            f"| {m['label']} | " + " | ".join(_pct_cell(pc[c]) if c in pc else "–" for c in classes) + " |"
        )
    inv = [m for m in methods.values() if m["invalid_gradient_per_class_mean"]]
    out += ["", "| method | " + " | ".join(classes) + " |", "|---|" + "---:|" * len(classes)]
    for m in inv:
        pc = m["invalid_gradient_per_class_mean"]

        def cell(c: str, pc: dict[str, Any] = pc) -> str:
            e, la = pc.get(c, {}).get("early"), pc.get(c, {}).get("late")
            return "–" if e is None or la is None else f"{100 * e:.0f} → {100 * la:.0f}"

        out.append(f"| {m['label']} | " + " | ".join(cell(c) for c in classes) + " |")
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", required=True, type=Path, help="the experiment's --out folder")
    ap.add_argument("--config", required=True, type=Path, help="the experiment YAML the runs used")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--fig1", nargs="+", metavar="METHOD=LABEL", help="arms of Figure 1 (S(q), reward)")
    ap.add_argument("--fig2", nargs="+", metavar="METHOD=LABEL", help="arms of Figure 2 (invalid gradient)")
    args = ap.parse_args()

    name = args.experiment.name
    done = sorted(args.experiment.glob("*/seed*/done.json"))
    if not done:
        raise SystemExit(f"{args.experiment}: no finished runs (*/seed*/done.json)")
    methods: dict[str, dict[str, Any]] = {}
    for f in done:
        d = json.loads(f.read_text(encoding="utf-8"))
        m = methods.setdefault(d["method"], {"label": d["label"], "seeds": {}})
        m["seeds"][str(d["seed"])] = run_summary(d)
    config_methods = list(read_yaml_mapping(args.config, "experiment config").get("methods") or {})
    order = {m: i for i, m in enumerate(config_methods or KNOWN_METHODS)}
    methods = dict(sorted(methods.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))
    keys = (
        "avg_at_k",
        "greedy",
        "invalid_answer_rate",
        "invalid_gradient_ratio",
        "invalid_gradient_early",
        "invalid_gradient_late",
    )
    for m in methods.values():
        runs = list(m["seeds"].values())
        m["mean_std"] = {k: _mean_std([r.get(k) for r in runs]) for k in keys}
        classes = sorted({c for r in runs for c in r["per_class"]})
        m["per_class_mean_std"] = {
            c: _mean_std([r["per_class"].get(c, {}).get("avg_at_k") for r in runs]) for c in classes
        }
        inv_classes = sorted({c for r in runs for c in r.get("invalid_gradient_per_class", {})})
        m["invalid_gradient_per_class_mean"] = {
            c: {
                part: _mean_std([r["invalid_gradient_per_class"].get(c, {}).get(part) for r in runs])["mean"]
                for part in ("early", "late")
            }
            for c in inv_classes
        }
    git_hash = subprocess.run(
        ["git", "log", "-1", "--format=%H", "--", str(args.config)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    seeds = sorted({int(s) for m in methods.values() for s in m["seeds"]})
    summary = {
        "experiment": name,
        "command": (
            f"anatomy-r1 experiment --config {args.config.as_posix()} --out {args.experiment.as_posix()}"
        ),
        "summary_command": " ".join(["python", Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "config": args.config.as_posix(),
        "config_git_hash": git_hash or None,
        # the runs' own torch threads are the experiment config's torch_threads
        "host": {k: machine_info()[k] for k in ("cpu", "cpu_count", "torch")}
        | {"python": platform.python_version()},
        "seeds": seeds,
        "methods": methods,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}_ablation.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    figure1(args.experiment, seeds, args.out / f"{name}_fig1_s_q_reward.png", _arms(args.fig1, FIG1_ARMS))
    classes = sorted(
        {
            c
            for m in methods.values()
            for r in m["seeds"].values()
            for c in r.get("invalid_gradient_per_class", {})
        }
    )
    fig2 = _arms(args.fig2, FIG2_ARMS)
    figure2(args.experiment, seeds, classes, args.out / f"{name}_fig2_invalid_gradient.png", fig2)
    md = markdown_tables(summary)
    (args.out / f"{name}_ablation.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
