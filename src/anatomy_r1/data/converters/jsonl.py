"""Canonical JSON Lines in, canonical JSON Lines out: loading validates every record.

Converting a canonical file re-writes it normalised (compact separators, fixed field order, blank lines
dropped), which is how hand-edited or externally produced files are checked before training. The
``--classes`` filter applies as for the other formats. Ids are kept, with ``--id-prefix`` in front when one
is given.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from anatomy_r1.data.converters.common import ConvertOptions, Item
from anatomy_r1.data.io import iter_jsonl
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import DataError


def read(path: Path, options: ConvertOptions) -> Iterator[Item]:
    """Stream validated records with their ``file:line`` locations; a bad record is rejected, not fatal."""
    keeps = options.keeps
    ids = options.ids(path)
    for n, obj in iter_jsonl(path):
        where = f"{path}:{n}"
        try:
            rec = Record.from_dict(obj, where=where)
        except DataError as e:
            options.reject(e)
            continue
        rec.id = ids.own(rec.id)
        if keeps(rec.meta.get("anatomy_class")):
            yield where, rec
