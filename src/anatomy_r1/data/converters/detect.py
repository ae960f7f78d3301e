"""Telling an input's format from its content, for ``--format auto`` and for pointing at the right format.

The released files have no extension or header that says what they are (Anatomy-R1's ``GRPO.json``,
Med-R1's splits and OmniMedVQA's files are all JSON lists), but each format's items have a field no other
format uses, so the first item is enough: ``instruction``/``sft_prompt`` (the Anatomy-R1 release),
``problem`` (Med-R1), ``gt_answer``/``option_A`` (OmniMedVQA), ``options`` with ``answer_index`` (the
canonical records). Only the first item (or line) is read, so detection costs the same on any file size.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from anatomy_r1.data.converters.release import PROMPT_KEYS
from anatomy_r1.data.io import iter_jsonl
from anatomy_r1.errors import DataError

SNIFF_BYTES = 1 << 16
"""Bytes read to see how a file starts; one line of a canonical file is far shorter."""

_ITEM_NAMES = {
    "anatomy-r1": "Anatomy-R1 release items",
    "medr1": "Med-R1 split items",
    "omnimedvqa": "OmniMedVQA items",
    "jsonl": "canonical records",
}


def item_format(obj: Any) -> str | None:
    """The format whose items look like ``obj`` (by the fields only that format uses), or None."""
    if not isinstance(obj, Mapping):
        return None
    keys = obj.keys()
    if any(k in keys for k in PROMPT_KEYS):
        return "anatomy-r1"
    if "problem" in keys:
        return "medr1"
    if "gt_answer" in keys or "option_A" in keys:
        return "omnimedvqa"
    if "options" in keys and "answer_index" in keys:
        return "jsonl"
    return None


def _describe_unknown(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = ", ".join(sorted(map(str, obj))[:8]) or "none"
        return f"its first item's fields ({keys}) match no format"
    return f"its first item is a JSON {type(obj).__name__}, not an object"


def detect_format(path: str | Path) -> tuple[str | None, str]:
    """``(format, why)`` for the input at ``path``; the format is None when the content fits none.

    ``why`` is a short phrase for messages either way ("a JSON list of Med-R1 split items", "an empty
    file"). Never raises for a readable input: a file that cannot be read as any format is a None.
    """
    p = Path(path)
    if p.is_dir():
        return "ssgvqa", "a folder (read as an SSG-VQA qa_txt tree)"
    if not p.is_file():
        return None, "no such file"
    with p.open("rb") as fh:
        head = fh.read(SNIFF_BYTES).decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if not head:
        return None, "an empty file"
    if head[0] == "[":
        return _detect_list(p)
    if head[0] == "{":
        try:
            first = _first(iter_jsonl(p))
        except DataError:
            first = None
        if first is None:
            return None, "JSON that is neither a list nor one object per line"
        obj = first[1]
        kind = item_format(obj)
        if kind == "jsonl":
            return "jsonl", "JSON Lines of canonical records"
        if kind is not None:
            return None, f"JSON Lines of {_ITEM_NAMES[kind]}, while --format {kind} reads a JSON list"
        return None, f"JSON Lines, but {_describe_unknown(obj)}"
    if "|" in head.split("\n", 1)[0] and p.suffix == ".txt":
        return "ssgvqa", "an SSG-VQA question file"
    return None, "neither JSON nor an SSG-VQA question file"


def _first(items: Iterator[tuple[int, Any]]) -> tuple[int, Any] | None:
    """The first element of a streaming reader, which is then closed so its file is released now."""
    try:
        return next(items, None)
    finally:
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _detect_list(path: Path) -> tuple[str | None, str]:
    from anatomy_r1.data.converters.jsonlist import iter_json_list

    try:
        first = _first(iter_json_list(path))
    except DataError as e:
        return None, f"a JSON list whose first item cannot be read ({e})"
    if first is None:
        return None, "an empty JSON list"
    kind = item_format(first[1])
    if kind == "jsonl":
        return None, "a JSON list of canonical records, while canonical files hold one record per line"
    if kind is not None:
        return kind, f"a JSON list of {_ITEM_NAMES[kind]}"
    return None, f"a JSON list, but {_describe_unknown(first[1])}"
