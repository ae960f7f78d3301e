"""Converters from public VQA formats to canonical JSON Lines, and the registry that names them.

Each format is a module exposing ``read(path, options)`` (see :class:`~.common.Reader`); the registry maps
the command-line name to it. :func:`convert` is the one pipeline every format goes through: read, check ids
and images, write atomically. Because the output is written to a temporary file and renamed only at the
end, an input refused at any item leaves no output file behind.

A new format registers itself with :func:`register_format`; the ``--format`` choices follow the registry.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from anatomy_r1.data.answer_options import DistractorStrategy, RandomDistractors
from anatomy_r1.data.converters import anatomy_r1, jsonl, medr1, omnimedvqa, ssgvqa
from anatomy_r1.data.converters.common import (
    ConvertOptions,
    ImageChecker,
    Item,
    Reader,
    check_unique,
    normalise_classes,
)
from anatomy_r1.data.io import write_records
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import ConfigError, DataError

__all__ = [
    "ConvertOptions",
    "ConvertSummary",
    "Format",
    "convert",
    "formats",
    "get_format",
    "iter_converted",
    "register_format",
]


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


def get_format(name: str) -> Format:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown format {name!r}; choose from {', '.join(_REGISTRY)}") from None


register_format(Format("anatomy-r1", anatomy_r1.read, False, "Anatomy-R1 release JSON list (GRPO.json)"))
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

    def line(self) -> str:
        """The one-line report the command prints."""
        parts = [f"wrote {self.written} records to {self.output}"]
        if self.skipped:
            detail = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
            parts.append(f"skipped {sum(self.skipped.values())} ({detail})")
        for why, n in sorted(self.repaired.items()):
            parts.append(f"{n} {why}")
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
) -> Iterator[Item]:
    """Stream ``(where, record)`` from an input of format ``fmt``, with ids and images checked.

    ``summary`` (when given) receives the skipped and missing-image counts as the stream is consumed.
    """
    spec = get_format(fmt)
    options = ConvertOptions(
        classes=normalise_classes(classes),
        seed=seed,
        strategy=strategy if strategy is not None else RandomDistractors(),
    )
    if summary is not None:
        options.skipped = summary.skipped
        options.repaired = summary.repaired
    images = ImageChecker(image_root, allow_missing=allow_missing_images)
    items = spec.read(Path(path), options)
    if not spec.positional_ids:
        items = check_unique(items)
    check = images.check
    try:
        for where, rec in items:
            check(rec, where)
            yield where, rec
    finally:
        if summary is not None:
            summary.missing_images = images.missing


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
) -> ConvertSummary:
    """Convert ``input`` to canonical JSONL at ``out``; on any ``DataError`` no output file is left."""
    if Path(out).resolve() == Path(input).resolve():
        raise ConfigError(f"{out}: the output would overwrite the input")
    summary = ConvertSummary(format=fmt, input=os.fspath(input), output=os.fspath(out))
    stream = iter_converted(
        fmt,
        input,
        image_root=image_root,
        allow_missing_images=allow_missing_images,
        classes=classes,
        seed=seed,
        strategy=strategy,
        summary=summary,
    )

    def records() -> Iterator[Record]:
        n = 0
        for _, rec in stream:
            n += 1
            yield rec
        if n == 0:
            why = f" ({summary.line().partition('; ')[2]})" if summary.skipped else ""
            raise DataError(f"{input}: no records to write{why}")

    summary.written = write_records(out, records(), check_unique=False)
    return summary
