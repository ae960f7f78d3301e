"""The probe's report: ``probe.md``, its two plots, and writing every output in one piece.

The numbers come from :mod:`anatomy_r1.evaluation.probe`; this module only presents and stores them,
writing every number through :mod:`anatomy_r1.reports.fmt`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anatomy_r1.errors import ConfigError
from anatomy_r1.evaluation.confusion import confusion_similarity
from anatomy_r1.evaluation.probe import SETS
from anatomy_r1.evaluation.probe_vocabulary import mixing_warnings
from anatomy_r1.reports import fmt
from anatomy_r1.reports.plots import current_umask

QUARTILE_PLOT = "accuracy_by_s_q_quartile.png"
CONFUSION_PLOT = "confusion_vs_similarity.png"
SIMILARITY_FILE = "confusion_similarity.json"
"""The model's confusions as a ``matrix:FILE`` similarity, for a curriculum that follows this model."""
OUTPUT_FILES = (
    "probe.json",
    SIMILARITY_FILE,
    "probe.md",
    "questions.jsonl",
    "completions.jsonl",
    QUARTILE_PLOT,
    CONFUSION_PLOT,
)
_MD_PAIRS = 25
"""Confusion pairs shown in ``probe.md``; ``probe.json`` has all of them."""


def probe_to_markdown(probe: Mapping[str, Any]) -> str:
    """The human-readable report: settings, the three measurements as tables, and how to read them."""
    st = probe.get("settings", {})
    k = probe["levels"]["original"].get("k") or st.get("k", "k")
    avg = f"Avg@{k}"
    lines = ["# Does answer-choice similarity predict difficulty?", ""]
    if st:
        lines += ["| setting | value |", "|---|---|"]
        keys = ("model", "data", "backend", "vocabulary", "vocabulary_by", "k", "seed", "template",
                "max_new_tokens", "dtype", "image_root")  # fmt: skip
        for key in keys:
            if key in st:
                value = st[key]
                if isinstance(value, Mapping) and "value" in value:  # a setting that may come from the run
                    value = f"{value['value']} (from {value.get('from', '?')})"
                value = ", ".join(value) if isinstance(value, list) else value
                lines.append(f"| {key} | {' '.join(str(value).split()).replace('|', '/')} |")
        lines.append("")
    lines += [
        f"{probe['n_questions']} questions probed out of {probe['n_records']} records; "
        f"{probe['n_skipped_not_in_vocabulary']} skipped because the answer is not in the vocabulary, "
        f"{probe['n_skipped_too_few_labels']} because the vocabulary has fewer labels than the question "
        f"has options. Vocabulary: {len(probe['vocabulary'])} labels.",
        "",
    ]
    groups = probe.get("vocabulary_groups") or {}
    by = list(probe.get("vocabulary_by") or [])
    if groups:
        lines += [
            f"Distractors come from the labels of each question's own {' and '.join(by)} "
            f"({len(groups)} groups).",
            "",
        ]
    mixing = probe.get("vocabulary_mixing") or {}
    lines += [f"**Mixed vocabulary:** {line}." for line in mixing_warnings(mixing, probe["n_questions"], by)]
    if any(m.get("n_questions") for m in mixing.values()):
        lines.append("")
    lines += [
        "## 1. Same questions, easiest vs hardest distractors",
        "",
        f"| set | n | mean S(q) | {avg} | greedy | invalid |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in SETS:
        lv = probe["levels"][name]
        lines.append(
            f"| {name} | {lv['n']} | {fmt.fixed(lv['mean_s_q'])} | {fmt.percent(lv['avg_at_k'])} | "
            f"{fmt.percent(lv['greedy_accuracy'])} | {fmt.percent(lv['invalid_rate'])} |"
        )
    lines += ["", f"Gap easiest − hardest, {avg}: {fmt.gap_with_ci(probe['gap']['avg_at_k'])}."]
    if "greedy" in probe["gap"]:
        lines.append(f"Gap easiest − hardest, greedy: {fmt.gap_with_ci(probe['gap']['greedy'])}.")
    lines += [
        "",
        "A positive gap whose interval excludes 0 supports the premise: the same question is harder when "
        "its distractors are more alike. (Paired bootstrap over questions.)",
        "",
    ]
    oracle = probe.get("oracle")
    if oracle:
        av = oracle["avg"]
        lines += [
            "The synthetic world's oracle (the Bayes-optimal reader of each frame, given the offered "
            f"options) scores {fmt.percent(av['original'])} as given, "
            f"{fmt.percent(av['easiest'])} easiest and {fmt.percent(av['hardest'])} hardest: "
            f"a gap of {fmt.signed_points(oracle['gap_points'], 'pts')}; "
            f"Spearman ρ (S(q), oracle accuracy) {fmt.fixed(oracle['spearman_s_q'])}.",
            "",
        ]
    lines += [
        "## 2. S(q) of the questions as given vs their accuracy",
        "",
    ]
    sq = probe["s_q_vs_accuracy"]
    lines.append(f"Spearman ρ (S(q), per-question {avg}): {fmt.fixed(sq['spearman_avg_at_k'])}")
    if sq.get("spearman_greedy") is not None or "greedy" in probe["gap"]:
        lines.append(f"Spearman ρ (S(q), greedy correct): {fmt.fixed(sq.get('spearman_greedy'))}")
    lines += [
        "",
        f"| S(q) quartile | n | S(q) range | mean S(q) | {avg} | greedy |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for q in sq["quartiles"]:
        rng = fmt.DASH if q["n"] == 0 else f"{fmt.fixed(q['s_q_min'])} – {fmt.fixed(q['s_q_max'])}"
        lines.append(
            f"| Q{q['quartile']} | {q['n']} | {rng} | {fmt.fixed(q['s_q_mean'])} | "
            f"{fmt.percent(q['avg_at_k'])} | {fmt.percent(q.get('greedy_accuracy'))} |"
        )
    lines += [
        "",
        "A negative ρ (accuracy falling from Q1 to Q4) means the file's own spread of S(q) predicts errors. "
        "Quartiles split by rank; equal S(q) values stay in one quartile.",
        "",
        "## 3. Confusion between classes vs their similarity",
        "",
    ]
    conf = probe["confusion"]
    lines.append(
        f"Spearman ρ (sim(A, B), confusion rate) over {conf['n_pairs']} pairs: "
        f"{fmt.fixed(conf['spearman'])}. "
        f"Rate = completions answering B / completions where B was offered and A was right "
        f"({conf['counted']})."
    )
    lines += [
        "",
        "| true A | answered B | picks | offered | rate | sim(A, B) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in conf["pairs"][:_MD_PAIRS]:
        lines.append(
            f"| {row['true']} | {row['answered']} | {row['picks']} | {row['offered']} | "
            f"{fmt.percent(row['rate'])} | {fmt.fixed(row['similarity'])} |"
        )
    if len(conf["pairs"]) > _MD_PAIRS:
        lines += [
            "",
            f"{_MD_PAIRS} of {len(conf['pairs'])} pairs shown, most confused first; all are in probe.json.",
        ]
    lines += [
        "",
        f"![accuracy by S(q) quartile]({QUARTILE_PLOT})",
        "",
        f"![confusion vs similarity]({CONFUSION_PLOT})",
    ]
    return "\n".join(lines) + "\n"


_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e")
_DPI = 110


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Any, path: Path) -> Path:
    # Same conventions as anatomy_r1.reports.plots: no machine-specific metadata, so equal inputs give
    # equal bytes.
    fig.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})
    return path


def _no_data(ax: Any, why: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=14, color="#666666", transform=ax.transAxes)


def plot_quartiles(probe: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Bars of accuracy per S(q) quartile, with the easiest and hardest re-posed sets as reference lines."""
    quarts = probe["s_q_vs_accuracy"]["quartiles"]
    k = probe["levels"]["original"].get("k") or "k"
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    ax.set_title("Accuracy by S(q) quartile (questions as given)")
    if not any(q["n"] for q in quarts):
        _no_data(ax, "no questions")
        return _save_png(fig, Path(path))
    has_greedy = any(q.get("greedy_accuracy") is not None for q in quarts)
    width = 0.38 if has_greedy else 0.6
    xs = np.arange(4)
    avg = [q["avg_at_k"] or 0.0 for q in quarts]
    ax.bar(xs - (width / 2 if has_greedy else 0), avg, width=width, color=_COLORS[0], label=f"Avg@{k}")
    if has_greedy:
        g = [q.get("greedy_accuracy") or 0.0 for q in quarts]
        ax.bar(xs + width / 2, g, width=width, color=_COLORS[2], label="greedy")
    for name, color in (("easiest", _COLORS[3]), ("hardest", _COLORS[1])):
        v = probe["levels"][name]["avg_at_k"]
        if v is not None:
            ax.axhline(v, color=color, linestyle="--", linewidth=1.2, label=f"re-posed {name} (Avg@{k})")
    ax.set_xticks(xs)
    ax.set_xticklabels(
        [
            f"Q{q['quartile']}\n"
            + ("(empty)" if q["n"] == 0 else f"{fmt.fixed(q['s_q_min'], 2)}–{fmt.fixed(q['s_q_max'], 2)}")
            + f"\nn={q['n']}"
            for q in quarts
        ],
        fontsize=8,
    )
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_xlabel("S(q) quartile (low = dissimilar choices)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return _save_png(fig, Path(path))


def plot_confusion(probe: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Scatter of confusion rate against sim(A, B), one point per pair, size growing with its offers."""
    conf = probe["confusion"]
    pairs = conf["pairs"]
    fig = _figure(7.0, 4.6)
    ax = fig.add_subplot()
    rho = conf.get("spearman")
    ax.set_title(
        "Confusion rate vs class similarity" + ("" if rho is None else f" (Spearman ρ = {fmt.fixed(rho, 2)})")
    )
    if not pairs:
        _no_data(ax, "no confusion pairs")
        return _save_png(fig, Path(path))
    x = np.array([p["similarity"] for p in pairs])
    y = np.array([p["rate"] for p in pairs])
    offered = np.array([p["offered"] for p in pairs], dtype=float)
    sizes = 12.0 + 60.0 * np.sqrt(offered / offered.max())
    ax.scatter(x, y, s=sizes, color=_COLORS[0], alpha=0.6, edgecolors="none")
    for p in pairs[:8]:
        if p["picks"] > 0:
            ax.annotate(
                f"{p['true']}→{p['answered']}".replace("_", " "),
                (p["similarity"], p["rate"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel("sim(A, B) under the backend")
    ax.set_ylabel("rate of answering B when A is right")
    ax.set_ylim(-0.02, max(0.1, float(y.max()) * 1.15))
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _save_png(fig, Path(path))


def _jsonl(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows)


def write_probe_outputs(
    out_dir: str | os.PathLike[str],
    probe: Mapping[str, Any],
    question_rows: Sequence[Mapping[str, Any]],
    completions: Sequence[Mapping[str, Any]],
) -> dict[str, Path]:
    """Write every output into a staging folder next to ``out_dir``, then move it into place.

    A new ``out_dir`` appears in one rename, complete; an existing one has its files replaced only after
    all of them were written. Either way a failure (a full disk, a plotting error) leaves no half-filled
    ``out_dir`` and no staging folder behind.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    texts = {
        "probe.json": json.dumps(probe, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        SIMILARITY_FILE: json.dumps(
            confusion_similarity(probe["confusion"]["pairs"], probe["vocabulary"]), indent=1
        )
        + "\n",
        "probe.md": probe_to_markdown(probe),
        "questions.jsonl": _jsonl(question_rows),
        "completions.jsonl": _jsonl(completions),
    }
    created_parents = [p for p in reversed(out.absolute().parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name, text in texts.items():
            (stage / name).write_text(text, encoding="utf-8")
        plot_quartiles(probe, stage / QUARTILE_PLOT)
        plot_confusion(probe, stage / CONFUSION_PLOT)
        if out.exists():
            for name in OUTPUT_FILES:
                os.replace(stage / name, out / name)
            stage.rmdir()
        else:
            os.chmod(stage, 0o777 & ~current_umask())  # mkdtemp makes it private; a report folder is not
            os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for p in reversed(created_parents):
            with contextlib.suppress(OSError):
                p.rmdir()
        raise
    return {name: out / name for name in OUTPUT_FILES}
