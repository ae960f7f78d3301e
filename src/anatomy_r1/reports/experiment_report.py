"""The experiment report: ``summary.json``, ``results.md`` and ``figures/`` from the finished runs.

Every number is aggregated over seeds (mean and sample standard deviation) from the runs'
``<method>/seed<k>/done.json`` files, so the report can be rebuilt at any time without running anything.
The plan that names the runs (:class:`anatomy_r1.pipelines.experiment.plan.ExperimentPlan`) belongs to
the pipelines layer above this one, so the report states what it reads of it (:class:`ExperimentPlanLike`)
instead of importing it.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from anatomy_r1.data.io import atomic_writer, write_json
from anatomy_r1.reports import fmt

__all__ = ["ExperimentPlanLike", "build_report"]


class ExperimentPlanLike(Protocol):
    """What the report reads of an experiment plan; ``ExperimentPlan`` has all of it.

    ``exp`` is the experiment config (name, description, ``eval`` settings, ``methods`` and ``label``);
    each of ``runs`` has ``method``, ``seed``, ``cfg`` and ``done_file``.
    """

    exp: Any
    config_path: Path | None
    out: Path
    methods: list[str]
    seeds: list[int]
    runs: Sequence[Any]
    test_file: Path
    rl_budget: int | None
    sft_examples: Mapping[str, int]


def _stats(values: list[float | None]) -> dict[str, Any]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "n": 0, "values": values}
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return {"mean": statistics.fmean(vals), "std": std, "n": len(vals), "values": values}


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
    plan: ExperimentPlanLike, done: dict[str, list[dict[str, Any]]], summary: dict[str, Any]
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


def build_report(plan: ExperimentPlanLike, *, failed: Sequence[str] = ()) -> dict[str, Any]:
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
            "num_generations": first_cfg.grpo_setting("num_generations") if first_cfg else None,
            "sft_examples_per_run": plan.sft_examples,
        },
        "methods": {
            m: {"label": plan.exp.label(m), **_method_summary(done[m])} for m in plan.methods if m in done
        },
        "failed": list(failed),
        "missing": missing,
    }
    summary["figures"] = _figures(plan, done, summary)
    write_json(plan.out / "summary.json", summary)
    with atomic_writer(plan.out / "results.md") as fh:
        fh.write(_markdown(plan, summary))
    return summary


def _markdown(plan: ExperimentPlanLike, s: dict[str, Any]) -> str:
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
        row = f"| {r['label']} | " + (f"{fmt.percent_mean_std(r['avg_at_k'])} | " if k else "")
        row += f"{fmt.percent_mean_std(r['greedy'])} | " if ev.greedy else ""
        row += f"{fmt.percent_mean_std(r['invalid_rate'])} | "
        row += f"{fmt.percent_mean_std(inv) if inv else fmt.DASH} | {len(r['seeds'])} | "
        row += f"{fmt.fixed(r['train_seconds']['mean'] or None, 0)} |"  # a zero-shot method trains 0 s
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
        L.append("| *test questions* | " + " | ".join(str(n_row.get(c) or fmt.DASH) for c in classes) + " |")
        for m in methods:
            pc = s["methods"][m]["per_class"]
            L.append(
                f"| {s['methods'][m]['label']} | "
                + " | ".join(fmt.percent_mean_std(pc[c][key]) if c in pc else fmt.DASH for c in classes)
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
                + " | ".join(fmt.percent_mean_std(pc[c]) if c in pc else fmt.DASH for c in inv_classes)
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
