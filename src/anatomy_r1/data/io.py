"""Reading and writing canonical JSON Lines files, and writing any output file atomically.

Writes go to a temporary file in the destination folder and are renamed into place only when every
record was accepted, so a refused input never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from anatomy_r1.data.schema import Record
from anatomy_r1.errors import DataError


def iter_lines(path: str | os.PathLike[str]) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` for non-blank lines, decoding strictly so bad bytes name their line."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a file")
    with p.open("rb") as fh:
        for n, raw in enumerate(fh, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{p}:{n}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
            if n == 1 and text.startswith("\ufeff"):
                text = text[1:]
            if text.strip():
                yield n, text


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, parsed_object)``; a malformed or truncated line is an error naming it."""
    for n, text in iter_lines(path):
        try:
            yield n, json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{n}: invalid JSON ({e.msg} at column {e.colno})") from None


def iter_records(path: str | os.PathLike[str], *, check_unique: bool = True) -> Iterator[Record]:
    """Stream validated records from a canonical JSONL file."""
    seen: set[str] = set()
    for n, obj in iter_jsonl(path):
        rec = Record.from_dict(obj, where=f"{path}:{n}")
        if check_unique:
            if rec.id in seen:
                raise DataError(f"{path}:{n}: duplicate id {rec.id!r}")
            seen.add(rec.id)
        yield rec


def read_records(path: str | os.PathLike[str], *, allow_empty: bool = False) -> list[Record]:
    """Load and validate a whole canonical file; an empty file is refused unless ``allow_empty``."""
    records = list(iter_records(path))
    if not records and not allow_empty:
        raise DataError(f"{path}: no records (empty file)")
    return records


# One shared encoder: ``json.dumps`` with options builds a new encoder per call, which is a measurable
# share of conversion time at tens of thousands of records per second.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_encode_str = json.encoder.encode_basestring


def dumps_record(rec: Record) -> str:
    """One compact JSON line, byte-identical to encoding ``rec.to_dict()``.

    The fixed fields are assembled directly (only ``meta`` goes through the general encoder), which
    roughly halves the cost of the write path; anything unexpected in them falls back to the encoder.
    """
    if type(rec.answer_index) is int:
        s = _encode_str
        try:
            return (
                f'{{"id":{s(rec.id)},"images":[{",".join(map(s, rec.images))}],'
                f'"question":{s(rec.question)},"options":[{",".join(map(s, rec.options))}],'
                f'"answer_index":{rec.answer_index},"answer":{s(rec.answer)},"source":{s(rec.source)},'
                f'"meta":{_encode(rec.meta)}}}'
            )
        except TypeError:
            pass
    return _encode(rec.to_dict())


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file next to ``path``; rename over ``path`` on success, delete it on any exception."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as fh:
            yield fh
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, strict JSON (no NaN) through :func:`atomic_writer`.

    Marker and summary files (an experiment run's ``done.json``, ``summary.json``) are read to decide what
    is finished, so a half-written one must never exist.
    """
    with atomic_writer(path) as fh:
        fh.write(json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_records(
    path: str | os.PathLike[str],
    records: Iterable[Record],
    *,
    check_unique: bool = True,
    allow_empty: bool = False,
) -> int:
    """Write records atomically; returns the count. Duplicate ids and empty outputs are refused."""
    seen: set[str] = set()
    count = 0
    with atomic_writer(path) as fh:
        for rec in records:
            if check_unique:
                if rec.id in seen:
                    raise DataError(f"duplicate id {rec.id!r} (record {count + 1})")
                seen.add(rec.id)
            fh.write(dumps_record(rec))
            fh.write("\n")
            count += 1
        if count == 0 and not allow_empty:
            raise DataError(f"{path}: nothing to write (no records were produced)")
    return count


IMAGE_ROOT_RULE = (
    "an image path is looked up under the image root by its longest tail that exists there, down to its "
    "last folder and file name (an absolute path that exists as it is is used unchanged)"
)
"""The one-sentence statement of :func:`resolve_image`, shown in the command-line help."""


def image_tails(path: str) -> list[str]:
    """The relative forms of ``path`` that :func:`resolve_image` tries under a root, longest first.

    Released files store paths from their authors' machines (``/CholecT45/data/VID66/x.png``), Med-R1's
    splits store paths relative to the OmniMedVQA folder (``Images/MIAS/x.png``), and users point the root
    at whichever folder they have: the dataset's parent, the dataset, or the frame folders' parent. Trying
    the tails of the stored path finds the file in all of these without rewriting the data, while never
    dropping the last folder keeps ``VID66/000791.png`` from matching another video's ``000791.png``.
    """
    parts = [s for s in path.strip().split("/") if s and s != "."]
    if not parts:
        return [path.strip()]
    return ["/".join(parts[i:]) for i in range(max(1, len(parts) - 1))]


def resolve_image(path: str, image_root: str | os.PathLike[str] | None) -> Path:
    """Where training, evaluation and the data commands read the image ``path`` from.

    Without a root the path is used as it is. With one, an absolute path that exists is used unchanged;
    otherwise the first of :func:`image_tails` that exists under the root wins, and when none does the
    longest one is returned (so an error names the most literal place it was looked for).
    """
    p = path.strip()
    if image_root is None:
        return Path(p)
    root = os.fspath(image_root)
    if os.path.isabs(p) and os.path.isfile(p):
        return Path(p)
    tails = image_tails(p)
    for tail in tails:
        full = os.path.join(root, tail)
        if os.path.isfile(full):
            return Path(full)
    return Path(os.path.join(root, tails[0]))
