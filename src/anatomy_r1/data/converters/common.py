"""Pieces shared by the format readers: options, the reader contract, image checks, path parsing.

A reader turns one input (a file or a directory) into ``(where, record)`` pairs, where ``where`` names the
file and the line or 0-based item index. Readers raise ``DataError`` for a bad item and count deliberately
dropped ones (a non-anatomy SSG-VQA answer, a class outside ``--classes``) in ``ConvertOptions.skipped``, so
the command can report them without a second pass.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from anatomy_r1.data.answer_options import DistractorStrategy, RandomDistractors
from anatomy_r1.data.schema import Record
from anatomy_r1.data.vocab import ANATOMY_LABELS, label_from_display
from anatomy_r1.errors import ConfigError, DataError

Item = tuple[str, Record]
"""A converted record with the location (``file:line`` or ``file:item N``) it came from."""


@dataclass
class ConvertOptions:
    """Settings a reader may use; formats ignore what does not apply to them.

    ``classes`` keeps only records whose ``meta["anatomy_class"]`` is listed (for SSG-VQA it is also the
    distractor vocabulary). ``strategy`` picks SSG-VQA distractors; ``seed`` makes that choice reproducible.
    """

    classes: tuple[str, ...] | None = None
    seed: int = 0
    strategy: DistractorStrategy = field(default_factory=RandomDistractors)
    skipped: Counter[str] = field(default_factory=Counter)
    repaired: Counter[str] = field(default_factory=Counter)

    def keeps(self, anatomy_class: str | None) -> bool:
        """Apply the ``classes`` filter, counting what it drops."""
        if self.classes is None:
            return True
        if anatomy_class in self.classes:
            return True
        self.skipped["class not in --classes"] += 1
        return False


def drop_duplicate_options(
    options: list[str], answer_index: int, options_ctx: ConvertOptions | None = None
) -> tuple[list[str], int]:
    """Remove later copies of a *wrong* option that repeats another up to case and spacing.

    Released sets contain distractor pairs such as "Right atrium" / "Right Atrium"; the canonical schema
    refuses them because rewards match answers by text. Dropping the copy keeps the question answerable
    and unambiguous. A duplicate of the correct option is left alone (validation then refuses the item),
    because which copy was meant cannot be known.
    """
    if len({o.strip().casefold() for o in options}) == len(options):  # the common case, cheaply
        return options, answer_index
    keys = [" ".join(o.split()).casefold() for o in options]
    answer_key = keys[answer_index]
    if keys.count(answer_key) > 1:
        return options, answer_index
    seen: set[str] = set()
    kept: list[str] = []
    new_index = answer_index
    for i, (o, k) in enumerate(zip(options, keys, strict=True)):
        if k in seen:
            continue
        seen.add(k)
        if i == answer_index:
            new_index = len(kept)
        kept.append(o)
    if options_ctx is not None:
        options_ctx.repaired["items had a repeated wrong option removed"] += 1
    return kept, new_index


def converted_record(
    *,
    id: str,
    images: list[str],
    question: str,
    options: list[str],
    answer_index: int,
    source: str,
    meta: dict[str, Any],
    where: str,
    ctx: ConvertOptions | None,
) -> Record:
    """A converter's record: ``answer`` derived from the options, then :func:`validated`.

    The counterpart of :func:`anatomy_r1.data.schema.make_record` for released files, which may repeat a
    wrong option and are repaired rather than refused.
    """
    rec = Record(
        id=id,
        images=images,
        question=question,
        options=options,
        answer_index=answer_index,
        answer=options[answer_index],
        source=source,
        meta=meta,
    )
    return validated(rec, where, ctx)


def validated(rec: Record, where: str, ctx: ConvertOptions | None = None) -> Record:
    """Validate ``rec``; if only a repeated wrong option breaks it, drop the copy and validate again.

    Repairing after a failed validation, rather than checking every item up front, keeps the cost off
    the common path.
    """
    try:
        rec.validate(where)
    except DataError:
        options, index = drop_duplicate_options(rec.options, rec.answer_index, ctx)
        if options is rec.options:
            raise
        rec.options, rec.answer_index, rec.answer = options, index, options[index]
        rec.validate(where)
    return rec


class Reader(Protocol):
    """A format: yields converted records from ``path`` (file or directory) in a stable order."""

    def __call__(self, path: Path, options: ConvertOptions) -> Iterator[Item]: ...


def normalise_classes(classes: Iterable[str] | None) -> tuple[str, ...] | None:
    """Accept labels or display names (``cystic_plate``, ``"Cystic Plate"``); refuse unknown ones early."""
    if classes is None:
        return None
    out: list[str] = []
    for c in classes:
        label = label_from_display(c)
        if label not in ANATOMY_LABELS:
            raise ConfigError(f"unknown anatomy class {c!r}; choose from {', '.join(ANATOMY_LABELS)}")
        if label not in out:
            out.append(label)
    if not out:
        raise ConfigError("--classes needs at least one class")
    return tuple(out)


_VIDEO_FRAME = re.compile(r"(?:^|[/\\])(VID\d+)[/\\](?:.*[/\\])?([^/\\]+?)(?:\.[A-Za-z0-9]+)?\s*$")


def video_frame(path: str) -> tuple[str, str] | None:
    """``/CholecT45/data/VID66/000791.png`` -> ``("VID66", "000791")``; None when the path has no video."""
    head, _, name = path.strip().rpartition("/")
    video = head.rpartition("/")[2]
    if video.startswith("VID") and video[3:].isdigit() and name:  # the usual layout, without a regex
        return video, name.rpartition(".")[0] or name
    m = _VIDEO_FRAME.search(path)
    return (m.group(1), m.group(2)) if m else None


class ImageChecker:
    """Checks that referenced images exist, mirroring :func:`anatomy_r1.data.io.resolve_image`.

    Works on strings with ``os.path`` rather than ``pathlib`` and remembers the last path it checked,
    because several questions usually share one frame and the check is the costliest part of converting.

    With ``decode=True`` it also remembers where each existing image is used, and :meth:`decode_found`
    then decodes every distinct one as training does: a file can exist and still be truncated or not an
    image at all, and that would otherwise surface only when its item is fetched, hours into a run.
    """

    def __init__(
        self, image_root: str | os.PathLike[str] | None, *, allow_missing: bool, decode: bool = False
    ) -> None:
        self.root = os.fspath(image_root) if image_root is not None else None
        self.allow_missing = allow_missing
        self.decode = decode
        self.missing = 0
        self.decoded = 0
        self.found: list[tuple[str, str, str]] = []
        """``(where, item id, resolved path)`` of every existing image, when ``decode`` is on."""
        self._last: str | None = None
        self._last_ok = True

    def _exists(self, path: str) -> bool:
        # A missing file costs ``isfile`` a raised and caught exception, about twice the price of
        # ``os.access``; images are usually all present or all absent, so follow the last outcome.
        if not self._last_ok:
            return os.access(path, os.F_OK) and os.path.isfile(path)
        return os.path.isfile(path)

    def resolve(self, path: str) -> str:
        p = path.strip()
        if self.root is None:
            return p
        if os.path.isabs(p):
            if os.path.isfile(p):
                return p
            return os.path.join(self.root, os.path.splitdrive(p)[1].lstrip("/\\"))
        return os.path.join(self.root, p)

    def check(self, rec: Record, where: str) -> None:
        for img in rec.images:
            if img == self._last:
                ok = self._last_ok
            else:
                ok = self._exists(self.resolve(img))
                self._last, self._last_ok = img, ok
            if not ok:
                if not self.allow_missing:
                    raise DataError(
                        f"{where}: image not found: {self.resolve(img)} "
                        "(pass --image-root DIR, or --allow-missing-images for text-only work)"
                    )
                self.missing += 1
            elif self.decode:
                self.found.append((where, rec.id, self.resolve(img)))

    def decode_found(self, workers: int = 1) -> list[tuple[str, str]]:
        """Decode each distinct image :meth:`check` found; ``(where, message)`` per use of a broken one.

        Every file is decoded once however many items share it, in ``workers`` processes when more than
        one; problems come back in the order the items were checked whatever the number of workers.
        """
        from anatomy_r1.data.images import decode_problem

        paths = list(dict.fromkeys(p for _, _, p in self.found))
        if workers > 1 and len(paths) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: the caller may hold threads (torch, a test runner) that fork would copy.
            ctx = multiprocessing.get_context("spawn")
            chunk = max(1, min(64, len(paths) // (workers * 4)))
            with ProcessPoolExecutor(max_workers=min(workers, len(paths)), mp_context=ctx) as pool:
                results = list(pool.map(decode_problem, paths, chunksize=chunk))
        else:
            results = [decode_problem(p) for p in paths]
        self.decoded = len(paths)
        bad = {p: r for p, r in zip(paths, results, strict=True) if r is not None}
        return [(where, f"{where}: item {rid!r}: {bad[p]}") for where, rid, p in self.found if p in bad]


def check_unique(items: Iterator[Item]) -> Iterator[Item]:
    """Refuse a repeated id; the one structure whose size grows with the input (a set of ids)."""
    seen: set[str] = set()
    add = seen.add
    for where, rec in items:
        if rec.id in seen:
            raise DataError(f"{where}: duplicate id {rec.id!r} (an earlier item has it)")
        add(rec.id)
        yield where, rec


def read_json_list(
    path: Path, options: ConvertOptions, convert: Callable[[Any, int, str], Record]
) -> Iterator[Item]:
    """The streaming loop every JSON-list format shares: locate, convert, keep the requested classes."""
    from anatomy_r1.data.converters.jsonlist import iter_json_list

    prefix = f"{path}:item "
    keeps = options.keeps
    for index, obj in iter_json_list(path):
        where = f"{prefix}{index}"
        rec = convert(obj, index, where)
        if keeps(rec.meta.get("anatomy_class")):
            yield where, rec
