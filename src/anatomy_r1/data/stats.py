"""Counts that tell whether a converted set is balanced: per class, dataset, answer letter, family, options.

Computing is separate from rendering so the numbers can be checked in tests and reused in reports without
a terminal; rendering uses ``rich`` tables and plain-text bars for the S(q) histogram.

A record's anatomy class is ``meta["anatomy_class"]`` when a converter could name it. An anatomy
identification question without one (a Med-R1 split whose file name does not say its question type was
converted, say) is counted under its answer's label, since the answer of such a question *is* the anatomy;
the table marks how many classes were read that way. What stays unknown is counted by reason, so the table
says why instead of showing a bare ``(unknown)``. The dataset is ``meta["dataset"]`` (OmniMedVQA, Med-R1)
or, for records converted before that was kept, the ``<dataset>`` of an ``Images/<dataset>/...`` path
(:func:`~anatomy_r1.data.provenance.dataset_of`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from anatomy_r1.data.provenance import ANATOMY_QUESTION_TYPE, dataset_of
from anatomy_r1.data.schema import Record
from anatomy_r1.data.vocab import label_from_display

if TYPE_CHECKING:
    from rich.console import JustifyMethod

UNKNOWN = "(unknown)"
_ANATOMY_TYPE = ANATOMY_QUESTION_TYPE.casefold()
"""Compared case-insensitively: hand-written files spell the question type their own way."""
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
    dataset_classes: dict[str, Counter[str]] = field(default_factory=dict)
    """Anatomy classes per dataset, for records whose dataset is known (:func:`dataset_of`)."""
    class_from_answer: int = 0
    """Records whose class is their answer's label (anatomy identification without ``anatomy_class``)."""
    unknown_why: Counter[str] = field(default_factory=Counter)
    """Why the class of each ``(unknown)`` record could not be named."""
    s_q: list[int] | None = None
    s_q_invalid: int = 0

    @property
    def dataset(self) -> Counter[str]:
        """Records per dataset: what :attr:`dataset_classes` counts, summed, so the two cannot disagree."""
        return Counter({name: sum(classes.values()) for name, classes in self.dataset_classes.items()})

    def add(self, rec: Record) -> None:
        meta = rec.meta
        self.n += 1
        cls = self._anatomy_class(rec)
        self.anatomy_class[cls] += 1
        dataset = dataset_of(rec)
        if dataset is not None:
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
        if isinstance(qtype, str) and qtype.strip().casefold() == _ANATOMY_TYPE:
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

    def share(n: int) -> str:
        return f"{100 * n / max(stats.n, 1):.1f}%"

    def table(
        name: str,
        counts: Counter[Any],
        *,
        by_key: bool = False,
        more: Sequence[tuple[str, JustifyMethod, Callable[[Any], str]]] = (),
        none: int = 0,
    ) -> None:
        """Count and share per key, largest first; ``more`` adds columns (name, alignment, cell of a
        key), ``none`` a last row for the records the breakdown has no key for."""
        t = Table(title=name, title_justify="left")
        t.add_column(name.split(" per ")[-1])
        t.add_column("count", justify="right")
        t.add_column("share", justify="right")
        for col, justify, _ in more:
            t.add_column(col, justify=justify)
        items = sorted(counts.items()) if by_key else counts.most_common()
        for key, n in items[:MAX_ROWS]:
            t.add_row(str(key), str(n), share(n), *(cell(key) for _, _, cell in more))
        if len(items) > MAX_ROWS:
            rest = sum(n for _, n in items[MAX_ROWS:])
            t.add_row(f"({len(items) - MAX_ROWS} more)", str(rest), share(rest))
        if none:
            t.add_row("(none)", str(none), share(none))
        con.print(t)

    table("records per anatomy class", stats.anatomy_class)
    if stats.class_from_answer:
        con.print(
            f"{stats.class_from_answer} records have no meta.anatomy_class; as anatomy identification "
            "questions they are counted under their answer's label"
        )
    for why, n in stats.unknown_why.most_common():
        con.print(f"{UNKNOWN} {n} records: {why}")
    per_dataset = stats.dataset
    if per_dataset:

        def top_class(name: str) -> str:
            top, n = stats.dataset_classes[name].most_common(1)[0]
            return f"{top} ({n})"

        table(
            "records per dataset",
            per_dataset,
            more=(
                ("classes", "right", lambda name: str(len(stats.dataset_classes[name]))),
                ("most common class", "left", top_class),
            ),
            none=stats.n - sum(per_dataset.values()),
        )
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
