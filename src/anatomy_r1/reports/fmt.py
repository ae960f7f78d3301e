"""How every report and console line writes a number: percentages, point differences, signed values, cells.

One home for these rules, so that a rate reads the same in ``report.md``, ``metrics.md``, ``probe.md``,
``results.md`` and on the console, and so that the two kinds of "points" cannot be confused: a difference
of two fractions (0.353, multiplied by 100 here) and a number that is already in points (35.3, as
``gain_points`` and the probe's gaps are stored). Each function's argument name says which it takes.

A number that could not be computed arrives as ``None`` and is written as :data:`DASH` in Markdown
tables and as :data:`NA` in running text and console lines; every function takes ``missing`` for that.
This module imports nothing from the project, so any layer above ``reports`` can use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "DASH",
    "NA",
    "cell",
    "ci95",
    "fixed",
    "gap_with_ci",
    "percent",
    "percent_mean_std",
    "points",
    "signed",
    "signed_points",
]

DASH = "–"
"""A missing number in a Markdown table: an en dash keeps the column's alignment readable."""
NA = "n/a"
"""A missing number in running text and on the console."""


def percent(fraction: float | None, *, missing: str = DASH, symbol: bool = True) -> str:
    """A fraction in [0, 1] as a percentage with one decimal: ``0.353 -> "35.3%"``.

    ``symbol=False`` drops the ``%`` for tables whose header already says the unit.
    """
    if fraction is None:
        return missing
    return f"{100 * fraction:.1f}" + ("%" if symbol else "")


def points(fraction_difference: float | None, *, missing: str = DASH) -> str:
    """A difference of two fractions in signed percentage points: ``0.353 - 0.221 -> "+13.2"``."""
    return missing if fraction_difference is None else f"{100 * fraction_difference:+.1f}"


def signed(value: float | None, digits: int = 1, *, missing: str = DASH) -> str:
    """A number already on its final scale, with its sign: points (``35.3 -> "+35.3"``) or a
    correlation (``digits=2``: ``-0.31 -> "-0.31"``), so a reader sees the direction at a glance."""
    return missing if value is None else f"{value:+.{digits}f}"


def signed_points(already_points: float | None, unit: str = "points", *, missing: str = DASH) -> str:
    """A value already in percentage points with its unit: ``35.3 -> "+35.3 points"`` (or ``"pts"``).

    A missing value is written without the unit: "n/a points" would read as a count.
    """
    return missing if already_points is None else f"{already_points:+.1f} {unit}"


def ci95(interval_points: Sequence[float] | None) -> str:
    """A 95 % interval already in points as a suffix, ``" (95% CI +1.0 to +2.0)"``; empty without one."""
    if not interval_points:
        return ""
    return f" (95% CI {interval_points[0]:+.1f} to {interval_points[1]:+.1f})"


def gap_with_ci(gap: Mapping[str, Any], *, missing: str = DASH) -> str:
    """A probe gap ``{"points", "ci95"}``, both already in points: ``"+28.8 pts (95% CI +24.9 to +32.6)"``.

    A gap that could not be measured drops its interval too: an interval around nothing is noise.
    """
    if gap.get("points") is None:
        return missing
    return signed_points(gap["points"], "pts") + ci95(gap.get("ci95"))


def fixed(value: float | None, digits: int = 3, *, missing: str = DASH) -> str:
    """A plain number with a fixed count of decimals (S(q), a similarity, seconds): ``0.35 -> "0.350"``."""
    return missing if value is None else f"{value:.{digits}f}"


def percent_mean_std(stats: Mapping[str, Any], *, missing: str = DASH) -> str:
    """Fractions aggregated over seeds (``{"mean", "std", "n"}``) as ``"35.3 ± 1.1"`` in percent.

    One seed has no spread worth printing, so its mean stands alone; a table saying "in %" carries the
    unit, hence no ``%`` sign.
    """
    if stats["mean"] is None:
        return missing
    mean = percent(stats["mean"], symbol=False)
    if stats["n"] < 2:
        return mean
    return f"{mean} ± {percent(stats['std'], symbol=False)}"


def cell(text: Any) -> str:
    """Text made safe for one Markdown table cell: whitespace runs (line breaks too) become one space
    and pipes are escaped, so a label or a host name can never split or break its row."""
    return " ".join(str(text).split()).replace("|", "\\|")
