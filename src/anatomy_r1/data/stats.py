"""Counts that tell whether a converted set is balanced: per class, answer letter, family, option count.

Computing is separate from rendering so the numbers can be checked in tests and reused in reports without
a terminal; rendering uses ``rich`` tables and plain-text bars for the S(q) histogram.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from anatomy_r1.data.schema import Record

UNKNOWN = "(unknown)"
SQ_BINS = 10
BAR_WIDTH = 40
MAX_ROWS = 30
"""Longest table shown; OmniMedVQA-style sets have a hundred-odd classes and the tail is noise."""


@dataclass
class DatasetStats:
    """Counts over a record stream; ``s_q`` is None when no record carries ``meta["s_q"]``."""

    n: int = 0
    anatomy_class: Counter[str] = field(default_factory=Counter)
    answer_letter: Counter[str] = field(default_factory=Counter)
    family: Counter[str] = field(default_factory=Counter)
    n_options: Counter[int] = field(default_factory=Counter)
    split: Counter[str] = field(default_factory=Counter)
    source: Counter[str] = field(default_factory=Counter)
    s_q: list[int] | None = None
    s_q_invalid: int = 0

    def add(self, rec: Record) -> None:
        meta = rec.meta
        self.n += 1
        self.anatomy_class[meta.get("anatomy_class") or UNKNOWN] += 1
        self.answer_letter[rec.answer_letter] += 1
        self.family[meta.get("template_family") or meta.get("question_type") or UNKNOWN] += 1
        self.n_options[len(rec.options)] += 1
        self.source[rec.source] += 1
        if "split" in meta:
            self.split[str(meta["split"])] += 1
        if "s_q" in meta:
            if self.s_q is None:
                self.s_q = [0] * SQ_BINS
            b = sq_bin(meta["s_q"])
            if b is None:
                self.s_q_invalid += 1
            else:
                self.s_q[b] += 1


def sq_bin(value: Any) -> int | None:
    """Bin of an S(q) value in ``[0, 1]`` (1.0 falls in the last bin); None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        return None
    return min(int(value * SQ_BINS), SQ_BINS - 1)


def compute_stats(records: Iterable[Record]) -> DatasetStats:
    stats = DatasetStats()
    for rec in records:
        stats.add(rec)
    return stats


def bar(count: int, largest: int, width: int = BAR_WIDTH) -> str:
    """A text bar scaled to the largest count; any non-zero count shows at least one block."""
    if largest <= 0 or count <= 0:
        return ""
    return "█" * max(1, round(width * count / largest))


def render_stats(stats: DatasetStats, title: str, console: Any | None = None) -> None:
    """Print the tables with ``rich`` (imported here so the command module stays light to import)."""
    from rich.console import Console
    from rich.table import Table

    con = console if console is not None else Console()
    con.print(f"[bold]{title}[/bold]: {stats.n} records")

    def table(name: str, counts: Counter[Any], *, by_key: bool = False) -> None:
        t = Table(title=name, title_justify="left")
        t.add_column(name.split(" per ")[-1])
        t.add_column("count", justify="right")
        t.add_column("share", justify="right")
        items = sorted(counts.items()) if by_key else counts.most_common()
        for key, n in items[:MAX_ROWS]:
            t.add_row(str(key), str(n), f"{100 * n / max(stats.n, 1):.1f}%")
        if len(items) > MAX_ROWS:
            rest = sum(n for _, n in items[MAX_ROWS:])
            t.add_row(f"({len(items) - MAX_ROWS} more)", str(rest), f"{100 * rest / max(stats.n, 1):.1f}%")
        con.print(t)

    table("records per anatomy class", stats.anatomy_class)
    table("records per answer letter", stats.answer_letter, by_key=True)
    table("records per question family", stats.family)
    table("records per number of options", stats.n_options, by_key=True)
    if stats.split:
        table("records per split", stats.split)
    if len(stats.source) > 1:
        table("records per source", stats.source)
    if stats.s_q is not None:
        t = Table(title="S(q) histogram", title_justify="left")
        t.add_column("S(q)")
        t.add_column("count", justify="right")
        t.add_column("")
        largest = max(stats.s_q)
        for i, n in enumerate(stats.s_q):
            lo, hi = i / SQ_BINS, (i + 1) / SQ_BINS
            close = "]" if i == SQ_BINS - 1 else ")"
            t.add_row(f"[{lo:.1f}, {hi:.1f}{close}", str(n), bar(n, largest))
        con.print(t)
        if stats.s_q_invalid:
            con.print(f"{stats.s_q_invalid} records have an S(q) outside 0..1 or not a number")
