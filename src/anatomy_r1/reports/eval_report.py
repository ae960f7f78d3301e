"""An evaluation's outputs: ``metrics.md`` for people, and every file of an eval folder written at once.

The numbers come from :mod:`anatomy_r1.evaluation.metrics` (through
:func:`anatomy_r1.evaluation.predictions.score_completions`); this module only presents and stores them,
so every way completions are produced (``anatomy-r1 eval`` in either mode, the demo, the experiment
runner) writes the same files in the same words.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from anatomy_r1.errors import DataError
from anatomy_r1.reports import fmt


def metrics_to_markdown(metrics: Mapping[str, Any]) -> str:
    """Human-readable report of ``compute_metrics`` output: a summary table plus one table per breakdown."""
    k = metrics.get("k", 0)
    avg_label = f"Avg@{k}" if k else "Avg@k"
    rows = [
        ("items (n)", str(metrics.get("n", 0))),
        ("samples per item (k)", str(k) if metrics.get("k_min", k) == k else f"{metrics.get('k_min')}–{k}"),
        (f"{avg_label} accuracy", fmt.percent(metrics.get("avg_at_k"))),
        ("greedy accuracy", fmt.percent(metrics.get("greedy_accuracy"))),
        ("invalid answers (sampled)", fmt.percent(metrics.get("invalid_rate"))),
        ("invalid answers (greedy)", fmt.percent(metrics.get("greedy_invalid_rate"))),
        ("missing items (counted wrong)", str(metrics.get("missing", 0))),
    ]
    lines = ["# Evaluation metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    settings = metrics.get("settings")
    if isinstance(settings, Mapping) and settings:
        # the numbers above depend on these, so the report says them and where each came from
        lines += ["", "## Settings", "", "| setting | value | from |", "|---|---|---|"]
        for name, value in settings.items():
            if isinstance(value, Mapping) and "value" in value:
                lines.append(
                    f"| {fmt.cell(name)} | {fmt.cell(value['value'])} | {fmt.cell(value.get('from', ''))} |"
                )
            else:
                lines.append(f"| {fmt.cell(name)} | {fmt.cell(value)} | |")
    for key, groups in (metrics.get("breakdowns") or {}).items():
        lines += [
            "",
            f"## By {fmt.cell(key)}",
            "",
            f"| {fmt.cell(key)} | n | {avg_label} | greedy | invalid |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, g in groups.items():
            lines.append(
                f"| {fmt.cell(name)} | {g.get('n', 0)} | {fmt.percent(g.get('avg_at_k'))} | "
                f"{fmt.percent(g.get('greedy_accuracy'))} | {fmt.percent(g.get('invalid_rate'))} |"
            )
    return "\n".join(lines) + "\n"


def _jsonl(rows: Sequence[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows)


def write_eval_outputs(
    out_dir: str | os.PathLike[str],
    metrics: Mapping[str, Any],
    items: Sequence[Mapping[str, Any]],
    completions: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Path]:
    """Write ``items.jsonl``, ``metrics.json``, ``metrics.md`` (and ``completions.jsonl``) into ``out_dir``.

    Everything is serialised first, then staged as temporary files in ``out_dir`` and renamed into place
    only when all were written, so an error leaves neither partial files nor a mix of old and new outputs;
    a folder this call created is removed again on failure. Returns the written paths by file name.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: exists and is not a directory")
    payloads = {
        "items.jsonl": _jsonl(items),
        "metrics.json": json.dumps(metrics, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        "metrics.md": metrics_to_markdown(metrics),
    }
    if completions is not None:
        payloads["completions.jsonl"] = _jsonl(completions)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[str, Path]] = []
    try:
        for name, text in payloads.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out)
            staged.append((tmp, out / name))
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
        for tmp, dest in staged:
            os.replace(tmp, dest)
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return {name: out / name for name in payloads}
