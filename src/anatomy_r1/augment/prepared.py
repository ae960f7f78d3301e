"""Variants prepared ahead of training: ``anatomy-r1 augment`` output, or wordings written offline by an LLM.

A slow paraphraser (a 7B model, a human reviewer) cannot run inside every GRPO step, and a sampling model
would give different processes different wordings. Writing the variants to a file once fixes them: every
process reads the same file, and the trainer's groups see exactly what was reviewed.

The file is canonical JSONL (the format ``augment`` writes): each line a record whose ``meta.variant_of``
names the original's id. Every variant is checked against its original with the same contract as the
generated ones (:func:`~anatomy_r1.augment.variants.validate_variant`: same answer, same option texts,
same images) before training starts, so a bad line fails the run at once, naming the file and the id.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from anatomy_r1.augment.variants import VariantError, validate_variant, wording_key
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import DataError


class PreparedVariants:
    """Variants read from a file, by original id, in file order."""

    name = "file"

    def __init__(self, by_original: dict[str, list[Record]], source: str = "<memory>") -> None:
        self.by_original = by_original
        self.source = source

    @classmethod
    def from_file(cls, path: str | Path) -> PreparedVariants:
        from anatomy_r1.data.io import read_records

        p = Path(path).expanduser()
        if not p.is_file():
            raise DataError(f"{p}: no such variants file (gdqa.variants_file)")
        by: dict[str, list[Record]] = {}
        for rec in read_records(p):
            original = rec.meta.get("variant_of")
            if not isinstance(original, str) or not original:
                raise DataError(f"{p}: record {rec.id!r} has no meta.variant_of naming its original")
            by.setdefault(original, []).append(rec)
        if not by:
            raise DataError(f"{p}: no variants in the file")
        return cls(by, str(p))

    def check(self, records: Iterable[Record]) -> int:
        """Validate every variant against its original among ``records``; returns how many originals match.

        A variant whose original is not among ``records`` is an error too: it usually means the file was
        made for another data file, and training would silently use none of it.
        """
        index = {r.id: r for r in records}
        for original_id, variants in self.by_original.items():
            original = index.get(original_id)
            if original is None:
                raise DataError(
                    f"{self.source}: variant {variants[0].id!r} names original {original_id!r}, "
                    "which is not in the training data"
                )
            for v in variants:
                try:
                    validate_variant(original, v)
                except VariantError as e:
                    raise DataError(f"{self.source}: {e}") from None
        return len(self.by_original)

    def variants(self, record: Record) -> list[Record]:
        """The file's variants of ``record`` with a wording of their own (duplicates dropped)."""
        seen = {wording_key(record)}
        out = []
        for v in self.by_original.get(record.id, ()):
            key = wording_key(v)
            if key not in seen:
                seen.add(key)
                out.append(v)
        return out
