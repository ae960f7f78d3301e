"""Streaming reader for files holding one top-level JSON list.

Released VQA sets ship as a single JSON array that can reach a gigabyte, so ``json.load`` would hold the
whole file (and every parsed item) in memory. This reader decodes fixed-size chunks and pulls one item at a
time out of the buffer with :meth:`json.JSONDecoder.raw_decode`, keeping memory bounded by the chunk size
plus the largest single item. Errors name the line and the 0-based item index, which is what a user needs
to find the item in an editor or with ``jq '.[N]'``.
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anatomy_r1.errors import DataError

CHUNK_CHARS = 1 << 20
"""Bytes read per refill; large enough that refills are rare next to per-item work."""

_WS = re.compile(r"[ \t\n\r]*")
_decoder = json.JSONDecoder()


def iter_json_list(
    path: str | os.PathLike[str], *, chunk_size: int = CHUNK_CHARS
) -> Iterator[tuple[int, Any]]:
    """Yield ``(item_index, item)`` for each element of the top-level JSON list in ``path``.

    Refuses (with ``DataError`` naming file, line and item) an empty file, a top-level value that is not a
    list, invalid UTF-8, malformed or truncated JSON, and trailing content after the closing bracket.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a JSON file")
    return _items(p, chunk_size)


class _ChunkReader:
    """Strict incremental UTF-8 decoding that knows how many lines it has already handed out."""

    def __init__(self, path: Path, chunk_size: int) -> None:
        self.path = path
        self.chunk_size = chunk_size
        self.fh = path.open("rb")
        self.decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self.eof = False
        self.first = True
        self.lines_before = 0  # newlines in text already dropped from the front of the buffer
        self.pending_lines = 0  # newlines in text still held in the caller's buffer

    def read(self, n: int) -> str:
        if self.eof:
            return ""
        raw = self.fh.read(max(n, self.chunk_size))
        final = not raw
        try:
            text = self.decoder.decode(raw, final=final)
        except UnicodeDecodeError as e:
            line = self.lines_before + self.pending_lines + raw.count(b"\n", 0, e.start) + 1
            self.close()
            raise DataError(f"{self.path}:{line}: not valid UTF-8 ({e.reason})") from None
        if final:
            self.eof = True
            self.close()
        if self.first and text:
            self.first = False
            if text.startswith("\ufeff"):
                text = text[1:]
        return text

    def close(self) -> None:
        self.fh.close()


def _items(path: Path, chunk_size: int) -> Iterator[tuple[int, Any]]:
    reader = _ChunkReader(path, chunk_size)
    buf = ""
    pos = 0
    index = 0

    def line_at(i: int) -> int:
        return reader.lines_before + buf.count("\n", 0, i) + 1

    def refill() -> bool:
        """Drop consumed text, append the next chunk; False at end of file."""
        nonlocal buf, pos
        reader.lines_before += buf.count("\n", 0, pos)
        reader.pending_lines = buf.count("\n", pos)
        more = reader.read(len(buf) - pos)
        buf = buf[pos:] + more
        pos = 0
        return bool(more)

    def skip_ws() -> None:
        nonlocal pos
        while True:
            pos = _WS.match(buf, pos).end()  # type: ignore[union-attr]
            if pos < len(buf) or not refill():
                return

    try:
        skip_ws()
        if pos >= len(buf):
            raise DataError(f"{path}: empty file, expected a JSON list")
        if buf[pos] != "[":
            raise DataError(f"{path}:{line_at(pos)}: expected a JSON list ('[') at the top level")
        pos += 1
        skip_ws()
        if pos < len(buf) and buf[pos] == "]":
            pos += 1
        else:
            while True:
                while True:
                    try:
                        obj, end = _decoder.raw_decode(buf, pos)
                    except json.JSONDecodeError as e:
                        if refill():
                            continue
                        hint = "" if buf.rstrip().endswith("]") else "; the file looks truncated"
                        raise DataError(
                            f"{path}:{line_at(e.pos)}: item {index}: invalid JSON "
                            f"({e.msg.removesuffix(' starting at')}{hint})"
                        ) from None
                    # A value that touches the end of the buffer (a number) may continue in the next chunk.
                    if end >= len(buf) and refill():
                        continue
                    break
                yield index, obj
                index += 1
                pos = end
                skip_ws()
                if pos >= len(buf):
                    raise DataError(
                        f"{path}:{line_at(pos)}: item {index - 1}: truncated file (the list is never closed)"
                    )
                ch = buf[pos]
                if ch == "]":
                    pos += 1
                    break
                if ch != ",":
                    raise DataError(
                        f"{path}:{line_at(pos)}: expected ',' or ']' after item {index - 1}, found {ch!r}"
                    )
                pos += 1
                skip_ws()
        skip_ws()
        if pos < len(buf):
            raise DataError(f"{path}:{line_at(pos)}: unexpected content after the closing ']'")
    finally:
        reader.close()
