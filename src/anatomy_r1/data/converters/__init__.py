"""Converters from public VQA formats to canonical JSON Lines, and the registry that names them.

Each format is a module exposing ``read(path, options)`` (see :class:`~.common.Reader`); the registry maps
the command-line name to it. :func:`convert` is the one pipeline every format goes through: read, check ids
and images, write atomically. It reads the whole input even after a bad item, so one run names every bad
item (up to :data:`~.common.MAX_REPORTED`), and writes nothing then: the output goes to a temporary file
that is renamed into place only at the end, so a refused input leaves no output file behind.

A new format registers itself with :func:`register_format`; the ``--format`` choices follow the registry.
Format names are matched ignoring case, ``-`` and ``_`` (``anatomy_r1``, ``Med-R1``), and ``auto`` reads
the format from the content (:mod:`.detect`); when an input fails under a format given by name but looks
like another one, the error says so.
"""

from __future__ import annotations

import difflib
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from anatomy_r1.data.answer_options import DistractorStrategy, RandomDistractors
from anatomy_r1.data.converters import jsonl, medr1, omnimedvqa, release, ssgvqa
from anatomy_r1.data.converters.common import (
    MAX_REPORTED,
    ConvertOptions,
    ConvertProblems,
    ImageChecker,
    Item,
    Problems,
    Reader,
    check_id_prefix,
    check_unique,
    normalise_classes,
)
from anatomy_r1.data.converters.detect import detect_format
from anatomy_r1.data.images import default_image_root
from anatomy_r1.data.io import write_records
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import ConfigError, DataError

__all__ = [
    "AUTO",
    "MAX_REPORTED",
    "ConvertOptions",
    "ConvertProblems",
    "ConvertSummary",
    "Format",
    "canonical_format_name",
    "convert",
    "detect_format",
    "formats",
    "get_format",
    "iter_converted",
    "register_format",
    "resolve_format",
]

AUTO = "auto"
"""The ``--format`` value that reads the format from the input's content."""


@dataclass(frozen=True)
class Format:
    """A registered input format.

    ``positional_ids`` says the reader derives ids from positions (file, line, index), so they are unique
    by construction and the pipeline can skip the id set that would otherwise grow with the input.
    """

    name: str
    read: Reader
    positional_ids: bool
    description: str


_REGISTRY: dict[str, Format] = {}


def register_format(fmt: Format) -> None:
    """Add (or replace) a format under ``fmt.name``."""
    _REGISTRY[fmt.name] = fmt


def formats() -> tuple[str, ...]:
    """Registered format names, in registration order (the CLI's ``--format`` choices)."""
    return tuple(_REGISTRY)


def _name_key(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name.casefold())


def canonical_format_name(name: str) -> str:
    """The registered name (or ``auto``) that ``name`` spells, ignoring case, ``-`` and ``_``.

    ``anatomy_r1`` and ``Anatomy-R1`` are both the release format: the package and its config templates
    use the underscore spelling, so users type it. Anything else is refused, naming the closest names.
    """
    known = (AUTO, *_REGISTRY)
    by_key = {_name_key(n): n for n in known}
    found = by_key.get(_name_key(name))
    if found is not None:
        return found
    close = difflib.get_close_matches(_name_key(name), list(by_key), n=2, cutoff=0.5)
    hint = f"did you mean {' or '.join(by_key[c] for c in close)}? " if close else ""
    raise ConfigError(f"unknown format {name!r}; {hint}choose from {', '.join(known)}")


def get_format(name: str) -> Format:
    fmt = canonical_format_name(name)
    if fmt == AUTO:
        raise ConfigError(f"format {AUTO!r} needs an input to look at; use resolve_format(name, input)")
    return _REGISTRY[fmt]


def resolve_format(name: str, input: str | os.PathLike[str]) -> tuple[str, bool]:
    """``(format, detected)``: the format ``name`` spells, or for ``auto`` the one ``input`` looks like."""
    fmt = canonical_format_name(name)
    if fmt != AUTO:
        return fmt, False
    found, why = detect_format(Path(input))
    if found is None:
        if why in ("an empty file", "no such file"):
            raise DataError(f"{input}: {why.removeprefix('an ')}")
        raise DataError(f"{input}: cannot tell its format: {why}; pass --format ({', '.join(_REGISTRY)})")
    return found, True


def _format_hint(fmt: str, input: str | os.PathLike[str]) -> str | None:
    """``"<input> looks like --format X (why)"`` when the content fits a format other than ``fmt``."""
    found, why = detect_format(Path(input))
    if found is None or found == fmt:
        return None
    return f"{input} looks like --format {found} ({why}), not --format {fmt}"


register_format(Format("anatomy-r1", release.read, False, "Anatomy-R1 release JSON list (GRPO.json)"))
register_format(Format("omnimedvqa", omnimedvqa.read, False, "OmniMedVQA JSON list (option_A.., gt_answer)"))
register_format(Format("medr1", medr1.read, True, "Med-R1 split JSON list (image, problem, solution)"))
register_format(Format("ssgvqa", ssgvqa.read, True, "SSG-VQA qa_txt/VIDxx/<frame>.txt tree"))
register_format(Format("jsonl", jsonl.read, False, "canonical JSON Lines (validated, re-written)"))


@dataclass
class ConvertSummary:
    """What a conversion did; ``skipped`` counts deliberately dropped items by reason."""

    format: str
    input: str
    output: str | None
    written: int = 0
    missing_images: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    repaired: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    detected: bool = False

    def line(self) -> str:
        """The one-line report the command prints."""
        parts = [f"wrote {self.written} records to {self.output}"]
        if self.detected:
            parts[0] += f" (format {self.format}, detected)"
        if self.skipped:
            detail = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
            parts.append(f"skipped {sum(self.skipped.values())} ({detail})")
        for why, n in sorted(self.repaired.items()):
            parts.append(f"{n} {why}")
        for what, n in sorted(self.notes.items()):
            parts.append(f"{n} {what}")
        if self.missing_images:
            parts.append(f"{self.missing_images} missing images")
        return "; ".join(parts)


def iter_converted(
    fmt: str,
    path: str | os.PathLike[str],
    *,
    image_root: str | os.PathLike[str] | None = None,
    allow_missing_images: bool = False,
    classes: Iterable[str] | None = None,
    seed: int = 0,
    strategy: DistractorStrategy | None = None,
    summary: ConvertSummary | None = None,
    id_prefix: str | None = None,
    problems: Problems | None = None,
) -> Iterator[Item]:
    """Stream ``(where, record)`` from an input of format ``fmt``, with ids and images checked.

    ``summary`` (when given) receives the skipped and missing-image counts as the stream is consumed.
    Without ``problems`` the first bad item raises its ``DataError``; with it, bad items are added there
    and left out of the stream, and only an input that stops being readable raises.
    """
    spec = get_format(resolve_format(fmt, path)[0])
    options = ConvertOptions(
        classes=normalise_classes(classes),
        seed=seed,
        strategy=strategy if strategy is not None else RandomDistractors(),
        id_prefix=check_id_prefix(id_prefix),
        problems=problems,
    )
    if summary is not None:
        options.skipped = summary.skipped
        options.repaired = summary.repaired
        options.notes = summary.notes
    images = ImageChecker(image_root, allow_missing=allow_missing_images)
    items = spec.read(Path(path), options)
    if not spec.positional_ids:
        items = check_unique(items, options)
    check = images.check
    try:
        for where, rec in items:
            try:
                check(rec, where)
            except DataError as e:
                options.reject(e)
                continue
            yield where, rec
    finally:
        if summary is not None:
            summary.missing_images = images.missing


class _BadItems(Exception):
    """Stops :func:`convert`'s write once the input had bad items; never leaves :func:`convert`."""


def convert(
    fmt: str,
    input: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    image_root: str | os.PathLike[str] | None = None,
    allow_missing_images: bool = False,
    classes: Iterable[str] | None = None,
    seed: int = 0,
    strategy: DistractorStrategy | None = None,
    id_prefix: str | None = None,
) -> ConvertSummary:
    """Convert ``input`` to canonical JSONL at ``out``; on any ``DataError`` no output file is left.

    ``fmt`` may be ``auto``. Every bad item is collected; a single one is raised as a ``DataError``
    with its own message, several as :class:`ConvertProblems`. Without ``image_root`` images are looked
    up relative to ``out``'s folder, which is where training and evaluation look for them when the
    config names no image root, so an output that converts is an output they can read.
    """
    if Path(out).resolve() == Path(input).resolve():
        raise ConfigError(f"{out}: the output would overwrite the input")
    check_id_prefix(id_prefix)
    name, detected = resolve_format(fmt, input)
    summary = ConvertSummary(format=name, input=os.fspath(input), output=os.fspath(out), detected=detected)
    problems = Problems(MAX_REPORTED)
    stream = iter_converted(
        name,
        input,
        image_root=default_image_root(os.fspath(out), None if image_root is None else os.fspath(image_root)),
        allow_missing_images=allow_missing_images,
        classes=classes,
        seed=seed,
        strategy=strategy,
        summary=summary,
        id_prefix=id_prefix,
        problems=problems,
    )

    def refused() -> DataError:
        lines = problems.lines(f"{input}: {problems.count} problems; nothing was written to {out}")
        hint = None if detected else _format_hint(name, input)
        if len(lines) == 1:
            return DataError(lines[0] + (f"; {hint}" if hint else ""))
        return ConvertProblems(lines + ([hint] if hint else []))

    def records() -> Iterator[Record]:
        n = 0
        for _, rec in stream:
            if problems.count:  # the output will be discarded; keep reading only to find every problem
                continue
            n += 1
            yield rec
        if problems.count:
            raise _BadItems  # abandons the write; reported below with every problem found
        if n == 0:
            why = f" ({summary.line().partition('; ')[2]})" if summary.skipped else ""
            raise DataError(f"{input}: no records to write{why}")

    try:
        summary.written = write_records(out, records(), check_unique=False)
    except _BadItems:
        raise refused() from None
    except DataError as e:
        if problems.count:  # an unreadable stretch after bad items: report them all, it last
            problems.add(str(e))
            raise refused() from None
        if not detected:
            hint = _format_hint(name, input)
            if hint is not None:
                raise DataError(f"{e}; {hint}") from None
        raise
    return summary
