"""The before/after report of one training run: ``metrics.json``, ``report.md`` and the figures.

``metrics.json`` is the machine-readable result (what tests, the experiment tables and CI read; built by
:mod:`.report_summary`); ``report.md`` is the same numbers for people (:mod:`.report_markdown`), with the
training curves embedded, the settings that produced them and the exact command to reproduce them.

The report folder is built in a temporary sibling folder and renamed into place only when every file is
written, so a crash (a plot that fails, a full disk, an interrupt) leaves either the previous report or
none, never a folder whose ``report.md`` points at images that do not exist or whose ``metrics.json``
disagrees with the figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from anatomy_r1.reports import plots
from anatomy_r1.reports.report_markdown import report_markdown
from anatomy_r1.reports.report_summary import FIGURES, build_summary, config_dict

__all__ = ["write_report"]


def _default_command() -> str:
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("anatomy-r1", "__main__.py"):
        argv[0] = "anatomy-r1"
    return shlex.join(argv)


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
    process's own); ``title`` heads ``report.md``; ``machine`` (see :func:`~.machine.machine_info`) says
    where the timings were taken, since the same run takes twice as long on one 2-core host as on another;
    ``probe`` holds the premise check's headline numbers (:func:`anatomy_r1.evaluation.probe.headline`).
    An existing ``out_dir`` is replaced as a whole, and only once everything is written.
    """
    dest = Path(out_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    rows = plots.read_metrics_jsonl(train_metrics_jsonl) if train_metrics_jsonl is not None else []
    summary = build_summary(
        base_metrics=base_metrics,
        trained_metrics=trained_metrics,
        n_test=int(n_test),
        rows=rows,
        config=config_dict(config),
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
        (staged / "report.md").write_text(report_markdown(summary, title), encoding="utf-8")
        _swap_into_place(staged, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(staged)
        raise
    return summary
