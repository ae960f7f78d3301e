"""``report.md``: a training run's before/after numbers for people, one function per section.

Everything shown comes from the ``metrics.json`` dictionary (:mod:`.report_summary`), so the two files
cannot disagree; numbers are written by :mod:`.fmt`, the same way as in every other report.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from anatomy_r1.reports import fmt
from anatomy_r1.reports.machine import describe_machine
from anatomy_r1.reports.report_summary import FIGURES, GROUP_KEYS, diff

__all__ = ["report_markdown"]


def _what_was_run(s: Mapping[str, Any], title: str, cfg: Mapping[str, Any]) -> list[str]:
    """The headline result, the settings that produced it and the command that reproduces it."""
    grpo = cfg.get("grpo") or {}
    cur = cfg.get("curriculum") or {}
    gdqa = cfg.get("gdqa") or {}
    kind = s["accuracy_kind"]
    return [
        f"# {title}",
        "",
        f"**{kind} accuracy on {s['n_test']} held-out test questions: "
        f"{fmt.percent(s['base_accuracy'])} before GRPO → {fmt.percent(s['trained_accuracy'])} after "
        f"({fmt.points(s['gain'])} points).**",
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
    ]


def _before_after(s: Mapping[str, Any]) -> list[str]:
    """The base and trained model side by side: overall, invalid answers, then per group."""
    kind = s["accuracy_kind"]
    lines = [
        "## Before / after",
        "",
        "| metric | base | trained | change (points) |",
        "|---|---:|---:|---:|",
        f"| accuracy ({kind}) | {fmt.percent(s['base_accuracy'])} | {fmt.percent(s['trained_accuracy'])} | "
        f"{fmt.points(s['gain'])} |",
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
            lines.append(f"| {label} | {fmt.percent(b)} | {fmt.percent(t)} | {fmt.points(diff(b, t))} |")
    for _, name in GROUP_KEYS:
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
            n = fmt.DASH if row.get("n") is None else str(row["n"])
            lines.append(
                f"| {fmt.cell(group)} | {n} | {fmt.percent(row.get('base'))} | "
                f"{fmt.percent(row.get('trained'))} | {fmt.points(row.get('gain'))} |"
            )
    return [*lines, "", f"![Accuracy by anatomy class]({FIGURES['per_class_accuracy']})", ""]


def _premise(pr: Mapping[str, Any]) -> list[str]:
    """The probe's headline (ASCL's premise on the trained model), with the world's oracle when known."""
    lines = [
        "",
        "## Are similar choices harder? (ASCL's premise, `anatomy-r1 probe`)",
        "",
        f"The {pr['n_questions']} test questions re-posed with their least and most similar distractors: "
        f"Avg@{pr['k']} {fmt.percent(pr['easiest_avg_at_k'])} vs {fmt.percent(pr['hardest_avg_at_k'])}, "
        f"a gap of **{fmt.signed(pr['gap_points'], missing=fmt.NA)} points**{fmt.ci95(pr.get('gap_ci95'))}. "
        f"Spearman ρ between S(q) and per-question accuracy on the questions as given: "
        f"**{fmt.signed(pr['spearman_s_q'], 2, missing=fmt.NA)}**.",
    ]
    if pr.get("oracle_gap_points") is not None:
        lines.append(
            "The world's oracle (Bayes-optimal reader) has a gap of "
            f"{fmt.signed(pr['oracle_gap_points'], missing=fmt.NA)} points and ρ "
            f"{fmt.signed(pr['oracle_spearman_s_q'], 2, missing=fmt.NA)}. Full report: `../probe/probe.md`."
        )
    return [*lines, ""]


def _training(s: Mapping[str, Any], curriculum_on: bool) -> list[str]:
    """Training curves: the accuracy reward, batch-mean S(q) and the invalid-gradient ratio per class."""
    tr = s.get("training") or {}
    lines = [
        "## Training",
        "",
        f"Accuracy reward (training batches): {fmt.percent(tr.get('accuracy_reward_early'))} in the first "
        f"quarter of logged steps → {fmt.percent(tr.get('accuracy_reward_late'))} in the last quarter "
        f"({tr.get('last_step') or 0} steps logged).",
        "",
        f"![Accuracy reward during training]({FIGURES['reward']})",
        "",
        (
            "Batch-mean answer-choice similarity S(q): with the ASCL curriculum it starts low (easy, "
            "dissimilar options) and rises as harder questions are admitted."
            if curriculum_on
            else "Batch-mean answer-choice similarity S(q): without a curriculum batches are drawn at "
            "random, so it stays flat (and is absent when nothing scored the data)."
        ),
        "",
        f"![Batch-mean S(q)]({FIGURES['s_q']})",
        "",
        "### Invalid-gradient ratio per anatomy class",
        "",
        "Share of GRPO groups whose completions all got the same reward, so they carry no gradient. "
        f"Final overall value: {fmt.percent(s.get('final_invalid_gradient_ratio'))}.",
        "",
    ]
    inv = s.get("invalid_gradient_ratio_per_class") or {}
    if inv:
        lines += ["| class | early | late | final |", "|---|---:|---:|---:|"]
        for cls, row in inv.items():
            lines.append(
                f"| {fmt.cell(cls)} | {fmt.percent(row.get('early'))} | {fmt.percent(row.get('late'))} | "
                f"{fmt.percent(row.get('final'))} |"
            )
        lines.append("")
    return [*lines, f"![Invalid-gradient ratio per class]({FIGURES['invalid_gradient']})", ""]


def _timings(s: Mapping[str, Any]) -> list[str]:
    """Seconds per pipeline step, and the machine they were measured on."""
    timings = s.get("timings") or {}
    if not timings:
        return []
    lines = ["## Timings", "", "| step | seconds |", "|---|---:|"]
    lines += [f"| {fmt.cell(k)} | {fmt.fixed(v, 1)} |" for k, v in timings.items()]
    lines.append("")
    machine = s.get("machine")
    if machine:
        lines += [f"Measured on: {describe_machine(machine)}.", ""]
    return lines


def _configuration(cfg: Mapping[str, Any]) -> list[str]:
    """The whole training config, so the report alone is enough to rerun it."""
    return [
        "## Training configuration",
        "",
        "```yaml",
        yaml.safe_dump(cfg, sort_keys=False).rstrip(),
        "```",
        "",
    ]


def report_markdown(s: Mapping[str, Any], title: str = "Anatomy-R1 demo report") -> str:
    """``report.md`` for the summary ``s`` (:func:`~.report_summary.build_summary`), headed ``title``."""
    cfg = s.get("config") or {}
    lines = [*_what_was_run(s, title, cfg), *_before_after(s)]
    if s.get("probe"):
        lines += _premise(s["probe"])
    lines += _training(s, bool((cfg.get("curriculum") or {}).get("enabled")))
    lines += _timings(s)
    if cfg:
        lines += _configuration(cfg)
    return "\n".join(lines)
