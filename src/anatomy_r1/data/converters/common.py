"""What every format reader shares: options and problems, ids, image checks, frame paths, reading loops.

Repairing a released item into a record is :mod:`.tidy`'s job.

A reader turns one input (a file or a directory) into ``(where, record)`` pairs, where ``where`` names the
file and the line or 0-based item index. Readers hand a bad item's ``DataError`` to
:meth:`ConvertOptions.reject` and go on with the next item, so one run can name every bad item (or, without
a collector, the first one stops the stream); they count deliberately dropped items (a non-anatomy SSG-VQA
answer, a class outside ``--classes``) in ``ConvertOptions.skipped``, so the command can report them without
a second pass. Problems that make the rest of an input unreadable (bad bytes, broken JSON) are raised.
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
from anatomy_r1.data.io import image_tails
from anatomy_r1.data.schema import Record
from anatomy_r1.data.vocab import ANATOMY_LABELS, label_from_display
from anatomy_r1.errors import ConfigError, DataError

Item = tuple[str, Record]
"""A converted record with the location (``file:line`` or ``file:item N``) it came from."""


MAX_REPORTED = 20
"""A refused input lists at most this many problems, then says how many more there were."""


class Problems:
    """The refused items of one run: the first ``limit`` messages are kept, the rest only counted.

    Keeping only a bounded prefix means an input in the wrong format (every item refused) costs no more
    memory than a good one, while the user still sees enough lines to recognise the pattern.
    """

    def __init__(self, limit: int = MAX_REPORTED) -> None:
        self.limit = limit
        self.messages: list[str] = []
        self.count = 0

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.messages) < self.limit:
            self.messages.append(message)

    def lines(self, summary: str | None = None) -> list[str]:
        """The report: one line per kept problem, how many were left out, and ``summary`` when several."""
        out = list(self.messages)
        if self.count > len(self.messages):
            out.append(f"... and {self.count - len(self.messages)} more problems")
        if summary is not None and self.count > 1:
            out.append(summary)
        return out


class ConvertProblems(DataError):
    """Several items were refused; ``lines`` holds one message per line of the report.

    The command prints each line as its own ``error:`` line; the exception's text is the lines joined.
    """

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


@dataclass
class ConvertOptions:
    """Settings a reader may use; formats ignore what does not apply to them.

    ``classes`` keeps only records whose ``meta["anatomy_class"]`` is listed (for SSG-VQA it is also the
    distractor vocabulary). ``strategy`` picks SSG-VQA distractors; ``seed`` makes that choice reproducible.
    ``id_prefix`` is ``--id-prefix`` as given (``None``: each format's default, see :class:`Ids`).
    ``problems`` collects refused items; without it the first refused item raises.
    """

    classes: tuple[str, ...] | None = None
    seed: int = 0
    strategy: DistractorStrategy = field(default_factory=RandomDistractors)
    skipped: Counter[str] = field(default_factory=Counter)
    repaired: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    """Items converted as they are but lacking something worth saying (counted by what)."""
    id_prefix: str | None = None
    problems: Problems | None = None

    def keeps(self, anatomy_class: str | None) -> bool:
        """Apply the ``classes`` filter, counting what it drops."""
        if self.classes is None:
            return True
        if anatomy_class in self.classes:
            return True
        self.skipped["class not in --classes"] += 1
        return False

    def reject(self, error: DataError) -> None:
        """Record a refused item and let the reader go on, or raise when nothing collects problems."""
        if self.problems is None:
            raise error
        self.problems.add(str(error))

    def ids(self, path: Path, default: str | None = None) -> Ids:
        """The id scheme for items read from ``path``; ``default`` overrides the file-name prefix."""
        return Ids(self.id_prefix, default if default is not None else default_id_prefix(path))


def default_id_prefix(path: Path) -> str:
    """The input's file name without its extension, runs of spaces as ``_``.

    Formats whose items carry no id number them by position; prefixing the number with the file's name
    keeps two files converted with defaults (``GRPO-ASC-Learning.json``, ``GRPO-GDQA.json``) from both
    producing ``...-0`` to ``...-999``, so their outputs can be validated and trained on together.
    """
    stem = path.stem if path.suffix else path.name
    return "_".join(stem.split()) or "item"


def check_id_prefix(prefix: str | None) -> str | None:
    """Refuse an ``--id-prefix`` that would make ids empty-headed or hard to use on a command line."""
    if prefix is None:
        return None
    if not prefix.strip() or prefix != prefix.strip() or any(c.isspace() for c in prefix):
        raise ConfigError(f"--id-prefix {prefix!r}: must be non-empty and contain no spaces")
    return prefix


@dataclass(frozen=True)
class Ids:
    """How a reader names records: ``<prefix>-<position>`` for items without an id of their own.

    ``explicit`` is ``--id-prefix`` (``None`` when not given). An item's own id (OmniMedVQA's
    ``question_id``, a canonical record's ``id``) is kept as it is unless a prefix was given explicitly,
    because those ids are meant to be looked up in the source; an explicit prefix goes in front of every
    id, which is how two sets whose own ids overlap are told apart.
    """

    explicit: str | None
    default: str

    def positional(self, key: object) -> str:
        return f"{self.explicit if self.explicit is not None else self.default}-{key}"

    def own(self, rid: str) -> str:
        return rid if self.explicit is None else f"{self.explicit}-{rid}"


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
    """Checks that referenced images exist, finding them exactly as :func:`anatomy_r1.data.io.resolve_image`.

    Works on strings with ``os.path`` rather than ``pathlib``, remembers the last path it checked (several
    questions usually share one frame) and which folders exist (a tail of the stored path whose folder is
    absent costs a dictionary lookup, not a system call), because the check is the costliest part of
    converting.

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
        self._last_full = ""
        self._prefix = "" if self.root is None else self.root if self.root.endswith("/") else self.root + "/"
        self._dirs: dict[str, bool] = {}
        self._folders: dict[str, tuple[str, list[str]]] = {}
        """Stored folder -> (where its longest tail would be, the candidate folders that exist)."""

    def _isdir(self, folder: str) -> bool:
        known = self._dirs.get(folder)
        if known is None:
            known = self._dirs[folder] = os.path.isdir(folder)
        return known

    def locate(self, path: str) -> tuple[str, bool]:
        """``(resolved path, whether it exists)``; the path is the one an error should name when missing.

        Candidates are :func:`~anatomy_r1.data.io.image_tails` under the root, as in ``resolve_image``;
        which of their folders exist is worked out once per stored folder, so an image costs one
        ``isfile`` per existing candidate folder and none when no candidate folder exists.
        """
        p = path.strip()
        if self.root is None:
            return p, os.path.isfile(p)
        if p.startswith("/") and self._isdir(os.path.dirname(p)) and os.path.isfile(p):
            return p, True
        head, _, name = p.rpartition("/")
        if not name or name == ".":
            tails = image_tails(p)
            for tail in tails:
                if os.path.isfile(self._prefix + tail):
                    return self._prefix + tail, True
            return self._prefix + tails[0], False
        entry = self._folders.get(head)
        if entry is None:
            folders = [(self._prefix + tail).rpartition("/")[0] or "/" for tail in image_tails(p)]
            entry = self._folders[head] = (folders[0], [f for f in folders if self._isdir(f)])
        longest, existing = entry
        for folder in existing:
            full = f"{folder}/{name}"
            if os.path.isfile(full):
                return full, True
        return f"{longest}/{name}", False

    def resolve(self, path: str) -> str:
        return self.locate(path)[0]

    def _missing_message(self, where: str, img: str, full: str) -> str:
        if self.root is None:
            return (
                f"{where}: image not found: {full} "
                "(pass --image-root DIR, or --allow-missing-images for text-only work)"
            )
        tails = image_tails(img)
        shortest = f" down to {os.path.join(self.root, tails[-1])}" if len(tails) > 1 else ""
        return (
            f"{where}: image not found: {img.strip()} under {self.root} (tried {full}{shortest}; "
            "pass the right --image-root, or --allow-missing-images for text-only work)"
        )

    def check(self, rec: Record, where: str) -> None:
        for img in rec.images:
            if img == self._last:
                ok, full = self._last_ok, self._last_full
            else:
                full, ok = self.locate(img)
                self._last, self._last_ok, self._last_full = img, ok, full
            if not ok:
                if not self.allow_missing:
                    raise DataError(self._missing_message(where, img, full))
                self.missing += 1
            elif self.decode:
                self.found.append((where, rec.id, full))

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


def check_unique(items: Iterator[Item], options: ConvertOptions | None = None) -> Iterator[Item]:
    """Refuse a repeated id; the one structure whose size grows with the input (a set of ids)."""
    seen: set[str] = set()
    add = seen.add
    for where, rec in items:
        if rec.id in seen:
            err = DataError(f"{where}: duplicate id {rec.id!r} (an earlier item has it)")
            if options is None:
                raise err
            options.reject(err)
            continue
        add(rec.id)
        yield where, rec


def read_json_list(
    path: Path, options: ConvertOptions, convert: Callable[[Any, int, str], Record]
) -> Iterator[Item]:
    """The streaming loop every JSON-list format shares: locate, convert, keep the requested classes.

    A bad item is handed to :meth:`ConvertOptions.reject` and reading goes on; a file that stops being
    readable JSON raises from :func:`~.jsonlist.iter_json_list`, since nothing after it can be trusted.
    """
    from anatomy_r1.data.converters.jsonlist import iter_json_list

    prefix = f"{path}:item "
    keeps = options.keeps
    for index, obj in iter_json_list(path):
        where = f"{prefix}{index}"
        try:
            rec = convert(obj, index, where)
        except DataError as e:
            options.reject(e)
            continue
        if keeps(rec.meta.get("anatomy_class")):
            yield where, rec
