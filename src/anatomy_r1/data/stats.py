"""Counts that tell whether a converted set is balanced: per class, dataset, answer letter, family, options.

Computing is separate from rendering so the numbers can be checked in tests and reused in reports without
a terminal; rendering uses ``rich`` tables and plain-text bars for the S(q) histogram.

A record's anatomy class is ``meta["anatomy_class"]`` when a converter could name it. An anatomy
identification question without one (a Med-R1 split whose file name does not say its question type was
converted, say) is counted under its answer's label, since the answer of such a question *is* the anatomy;
the table marks how many classes were read that way. What stays unknown is counted by reason, so the table
says why instead of showing a bare ``(unknown)``. The dataset is ``meta["dataset"]`` (OmniMedVQA, Med-R1)
or, for records converted before that was kept, the ``<dataset>`` of an ``Images/<dataset>/...`` path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from anatomy_r1.data.schema import Record
from anatomy_r1.data.vocab import label_from_display

UNKNOWN = "(unknown)"
ANATOMY_QUESTION_TYPE = "anatomy identification"
"""OmniMedVQA's question type whose answer names the anatomy shown (compared case-insensitively)."""
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
    dataset: Counter[str] = field(default_factory=Counter)
    dataset_classes: dict[str, Counter[str]] = field(default_factory=dict)
    class_from_answer: int = 0
    """Records whose class is their answer's label (anatomy identification without ``anatomy_class``)."""
    unknown_why: Counter[str] = field(default_factory=Counter)
    """Why the class of each ``(unknown)`` record could not be named."""
    s_q: list[int] | None = None
    s_q_invalid: int = 0

    def add(self, rec: Record) -> None:
        meta = rec.meta
        self.n += 1
        cls = self._anatomy_class(rec)
        self.anatomy_class[cls] += 1
        dataset = dataset_of(rec)
        if dataset is not None:
            self.dataset[dataset] += 1
            self.dataset_classes.setdefault(dataset, Counter())[cls] += 1
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

    def _anatomy_class(self, rec: Record) -> str:
        meta = rec.meta
        cls = meta.get("anatomy_class")
        if isinstance(cls, str) and cls:
            return cls
        qtype = meta.get("question_type")
        if isinstance(qtype, str) and qtype.strip().casefold() == ANATOMY_QUESTION_TYPE:
            self.class_from_answer += 1
            return label_from_display(rec.answer)
        self.unknown_why[unknown_reason(rec)] += 1
        return UNKNOWN


def unknown_reason(rec: Record) -> str:
    """Why ``rec`` has no anatomy class, in words a user can act on."""
    qtype = rec.meta.get("question_type")
    if qtype is not None:
        return f"question type {qtype!r} does not name an anatomy"
    if rec.source == "medr1":
        return (
            "Med-R1 items state no question type; it is read from the split's file name "
            "('Anatomy Identification_train.json'), which this file was converted without"
        )
    return "no meta.anatomy_class and no meta.question_type"


def dataset_of(rec: Record) -> str | None:
    """``meta["dataset"]``, else the ``<dataset>`` of an OmniMedVQA-style ``Images/<dataset>/<file>`` path."""
    name = rec.meta.get("dataset")
    if isinstance(name, str) and name:
        return name
    for img in rec.images:
        parts = [s for s in img.strip().split("/") if s]
        for i, part in enumerate(parts[:-2]):
            if part == "Images":
                return parts[i + 1]
    return None


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
    if stats.class_from_answer:
        con.print(
            f"{stats.class_from_answer} records have no meta.anatomy_class; as anatomy identification "
            "questions they are counted under their answer's label"
        )
    for why, n in stats.unknown_why.most_common():
        con.print(f"{UNKNOWN} {n} records: {why}")
    if stats.dataset:
        t = Table(title="records per dataset", title_justify="left")
        for col, justify in (
            ("dataset", "left"),
            ("count", "right"),
            ("share", "right"),
            ("classes", "right"),
        ):
            t.add_column(col, justify=justify)  # type: ignore[arg-type]
        t.add_column("most common class")
        items = stats.dataset.most_common()
        for name, n in items[:MAX_ROWS]:
            classes = stats.dataset_classes[name]
            top, top_n = classes.most_common(1)[0]
            t.add_row(
                name, str(n), f"{100 * n / max(stats.n, 1):.1f}%", str(len(classes)), f"{top} ({top_n})"
            )
        if len(items) > MAX_ROWS:
            rest = sum(n for _, n in items[MAX_ROWS:])
            t.add_row(f"({len(items) - MAX_ROWS} more)", str(rest), f"{100 * rest / max(stats.n, 1):.1f}%")
        undated = stats.n - sum(stats.dataset.values())
        if undated:
            t.add_row("(none)", str(undated), f"{100 * undated / max(stats.n, 1):.1f}%")
        con.print(t)
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
