"""Canonical JSON Lines in, canonical JSON Lines out: loading validates every record.

Converting a canonical file re-writes it normalised (compact separators, fixed field order, blank lines
dropped), which is how hand-edited or externally produced files are checked before training. The
``--classes`` filter applies as for the other formats.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from anatomy_r1.data.converters.common import ConvertOptions, Item
from anatomy_r1.data.io import iter_jsonl
from anatomy_r1.data.schema import Record


def read(path: Path, options: ConvertOptions) -> Iterator[Item]:
    """Stream validated records with their ``file:line`` locations."""
    keeps = options.keeps
    for n, obj in iter_jsonl(path):
        where = f"{path}:{n}"
        rec = Record.from_dict(obj, where=where)
        if keeps(rec.meta.get("anatomy_class")):
            yield where, rec
