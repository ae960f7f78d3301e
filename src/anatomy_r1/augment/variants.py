"""Question variants for group-diverse question augmentation (GDQA), behind one interface.

GRPO normalises rewards within the G rollouts of one prompt; when all G get the same reward the advantage
is zero and the group teaches nothing. GDQA gives the rollouts of a hard question different wordings of the
*same* question, so their reasoning (and so their rewards) can differ while the group still asks one thing.
Every variant therefore keeps the correct answer text, the option set and the images of its original;
:func:`validate_variant` enforces that contract for every generator, including user-supplied ones.

Generators:

* :class:`OptionReorderer`: permutes the options and re-letters them (the answer index follows the text);
* :class:`QuestionTemplateRephraser`: parses a templated SSG-VQA-style question into its structure and
  renders it through the other question templates able to express the same structure;
* ``LexicalParaphraser`` and ``ExternalParaphraseGenerator`` (``anatomy_r1.augment.paraphrase``):
  free-form rewording;
* ``CompositeGenerator`` (``anatomy_r1.augment.composite``): chains the above to reach up to ``n``
  distinct wordings.
"""

from __future__ import annotations

import copy
import itertools
import random
import re
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from anatomy_r1.data.schema import Record
from anatomy_r1.errors import DataError

KINDS: tuple[str, ...] = ("rerefer", "template", "lexical", "reorder")
"""Generator kinds the composite (and the ``augment`` command) can combine, in the order they are tried."""
DEFAULT_KINDS: tuple[str, ...] = ("template", "lexical", "reorder")
"""The kinds used when none are named: those that need no scene graph."""


class VariantError(DataError):
    """A generated variant would change what the question asks or what its answer is."""


@runtime_checkable
class VariantGenerator(Protocol):
    """Produces up to ``n`` variants of ``record``; all randomness comes from ``rng`` (deterministic)."""

    name: str

    def variants(self, record: Record, n: int, rng: random.Random) -> list[Record]: ...


# --- wording identity and validation ---------------------------------------------------------------------

_SPACE_BEFORE_PUNCT = re.compile(r"\s+([?.!,;:])")


def normalize_question(text: str) -> str:
    """Case-, spacing- and punctuation-spacing-insensitive form, so "frame ?" and "Frame?" are one wording."""
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(text.split())).casefold()


def wording_key(record: Record) -> tuple[str, tuple[str, ...]]:
    """What a rollout actually sees: the question text and the option order."""
    return normalize_question(record.question), tuple(record.options)


def distinct_wordings(records: Iterable[Record]) -> int:
    """Number of different (question, option order) renderings among ``records``."""
    return len({wording_key(r) for r in records})


def validate_variant(original: Record, variant: Record) -> None:
    """Raise :class:`VariantError` unless ``variant`` asks the same question with the same answer.

    Checked: the record contract (answer == options[answer_index], non-empty question), the same answer
    text, the same option texts as a multiset (order may differ) — or, for a variant whose distractors were
    drawn anew (``meta["distractors"]``, :mod:`anatomy_r1.augment.distractors`), the same number of
    options —, the same images in the same order, and ``meta["variant_of"]`` naming the original when
    present.
    """
    where = f"variant {variant.id!r} of {original.id!r}"
    try:
        variant.validate(where)
    except DataError as e:
        raise VariantError(str(e)) from None
    if variant.answer != original.answer:
        raise VariantError(
            f"{where}: answer {variant.answer!r} differs from the original {original.answer!r}"
        )
    if variant.meta.get("distractors") in ("same_s_q", "free"):
        if len(variant.options) != len(original.options):
            raise VariantError(
                f"{where}: {len(variant.options)} options where the original has {len(original.options)}"
            )
    elif Counter(variant.options) != Counter(original.options):
        raise VariantError(
            f"{where}: options {variant.options!r} are not a reordering of {original.options!r}"
        )
    if list(variant.images) != list(original.images):
        raise VariantError(f"{where}: images {variant.images!r} differ from {original.images!r}")
    vo = variant.meta.get("variant_of")
    if vo is not None and vo != original.id:
        raise VariantError(f"{where}: meta.variant_of is {vo!r}, expected {original.id!r}")


def variant_id(original_id: str, k: int) -> str:
    """Id of the ``k``-th variant (1-based): ``<id>~v<k>``."""
    return f"{original_id}~v{k}"


def make_variant(
    original: Record,
    k: int,
    kind: str,
    *,
    question: str | None = None,
    options: Sequence[str] | None = None,
    meta_updates: dict[str, Any] | None = None,
    meta_drop: Sequence[str] = (),
) -> Record:
    """Build and validate variant ``k`` of ``original`` with a new question and/or option order.

    The answer index is recomputed from the answer text, so a reordering can never mislabel the answer;
    ``meta`` is deep-copied so variants never share mutable state with the original.
    """
    opts = list(original.options if options is None else options)
    if original.answer not in opts:
        raise VariantError(f"variant of {original.id!r}: answer {original.answer!r} missing from {opts!r}")
    meta = copy.deepcopy(original.meta)
    for key in meta_drop:
        meta.pop(key, None)
    meta.update(meta_updates or {})
    meta["variant_of"] = original.id
    meta["variant_kind"] = kind
    rec = Record(
        id=variant_id(original.id, k),
        images=list(original.images),
        question=original.question if question is None else question,
        options=opts,
        answer_index=opts.index(original.answer),
        answer=original.answer,
        source=original.source,
        meta=meta,
    )
    validate_variant(original, rec)
    return rec


def copy_record(record: Record) -> Record:
    """An independent copy (lists and meta copied) so callers may mutate what they receive."""
    return Record(
        id=record.id,
        images=list(record.images),
        question=record.question,
        options=list(record.options),
        answer_index=record.answer_index,
        answer=record.answer,
        source=record.source,
        meta=copy.deepcopy(record.meta),
    )


# --- option reordering ----------------------------------------------------------------------------------

_ORDER_SENSITIVE = re.compile(
    r"\b(?:all|none|both|neither|either)\s+of\s+the\s+(?:above|options|previous|following)\b"
    r"|\b[A-Z]\s+(?:and|or|&)\s+[A-Z]\b|\b(?:above|previous)\s+options?\b",
    re.IGNORECASE,
)


def order_sensitive(options: Sequence[str]) -> bool:
    """Whether an option refers to other options by position ("All of the above", "A and B").

    Reordering such options would change their meaning, so they are never shuffled.
    """
    return any(_ORDER_SENSITIVE.search(o) for o in options)


class OptionReorderer:
    """Permutes option order, re-lettering the answer; spreads the answer over as many letters as it can.

    Moving the correct answer to a different letter in each variant is what makes the rollouts of a group
    answer differently, which is the point of the augmentation; permutations are therefore picked round-
    robin over answer positions.
    """

    name = "reorder"
    MAX_ENUMERATED = 6  # up to 6 options (720 orders) every permutation is considered; beyond, a sample

    def permutations(
        self, options: Sequence[str], answer: str, n: int, rng: random.Random
    ) -> list[list[str]]:
        """Up to ``n`` option orders different from ``options`` and from each other."""
        opts = list(options)
        if n <= 0 or len(opts) < 2 or order_sensitive(opts):
            return []
        original = tuple(opts)
        if len(opts) <= self.MAX_ENUMERATED:
            cands = [p for p in itertools.permutations(opts) if p != original]
        else:
            seen: set[tuple[str, ...]] = {original}
            cands = []
            for _ in range(max(4 * n, 32)):
                p = opts[:]
                rng.shuffle(p)
                t = tuple(p)
                if t not in seen:
                    seen.add(t)
                    cands.append(t)
        rng.shuffle(cands)
        by_pos: dict[int, list[tuple[str, ...]]] = {}
        for p in cands:
            by_pos.setdefault(p.index(answer), []).append(p)
        # Answer positions other than the current one first, so the first variants move the answer.
        current = opts.index(answer)
        positions = [i for i in range(len(opts)) if i != current]
        rng.shuffle(positions)
        positions.append(current)
        out: list[list[str]] = []
        while len(out) < n and any(by_pos.get(i) for i in positions):
            for i in positions:
                bucket = by_pos.get(i)
                if bucket and len(out) < n:
                    out.append(list(bucket.pop()))
        return out

    def variants(self, record: Record, n: int, rng: random.Random) -> list[Record]:
        perms = self.permutations(record.options, record.answer, n, rng)
        return [make_variant(record, k, self.name, options=p) for k, p in enumerate(perms, start=1)]


# --- template rephrasing --------------------------------------------------------------------------------


class QuestionTemplateRephraser:
    """Re-renders a templated question through other templates of the same :class:`QuestionStructure`.

    The structure comes from ``meta["structure"]`` when present (the synthetic benchmark stores it, which
    is exact) and otherwise from parsing the question. Parses are cached per (id, question) because the
    trainer asks for the same items every epoch; the cache is bounded so long runs do not grow without end.
    """

    name = "template"

    def __init__(self, cache_size: int = 200_000) -> None:
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str, str], tuple[Any, str | None] | None] = OrderedDict()

    def parse(self, record: Record) -> tuple[Any, str | None] | None:
        """``(structure, current_template_id)`` for ``record``, or ``None`` when it is not templated."""
        raw = record.meta.get("structure")
        key = (record.id, record.question, repr(raw))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        result = self._parse_uncached(record)
        self._cache[key] = result
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return result

    @staticmethod
    def _parse_uncached(record: Record) -> tuple[Any, str | None] | None:
        from anatomy_r1.data import question_templates as templates

        parsed = templates.parse_question(record.question)
        raw = record.meta.get("structure")
        if isinstance(raw, dict):
            try:
                structure = templates.QuestionStructure.from_dict(raw)
            except (KeyError, TypeError, ValueError):
                structure = None
            if structure is not None:
                current = parsed[1] if parsed is not None and parsed[0] == structure else None
                tid = record.meta.get("template_id")
                if current is None and isinstance(tid, str) and tid in templates.TEMPLATES:
                    current = tid
                return structure, current
        if parsed is None:
            return None
        return parsed

    def rephrasings(self, record: Record, n: int, rng: random.Random) -> list[tuple[str, str]]:
        """Up to ``n`` ``(question, template_id)`` pairs worded differently from the record's question."""
        if n <= 0:
            return []
        parsed = self.parse(record)
        if parsed is None:
            return []
        from anatomy_r1.data import question_templates as templates

        structure, current = parsed
        seen = {normalize_question(record.question)}
        out: list[tuple[str, str]] = []
        ids = [t for t in templates.template_ids(structure) if t != current]
        rng.shuffle(ids)
        for tid in ids:
            text = templates.render_question(structure, tid)
            key = normalize_question(text)
            if key in seen:
                continue
            seen.add(key)
            out.append((text, tid))
            if len(out) >= n:
                break
        return out

    def variants(self, record: Record, n: int, rng: random.Random) -> list[Record]:
        return [
            make_variant(record, k, self.name, question=q, meta_updates={"template_id": tid})
            for k, (q, tid) in enumerate(self.rephrasings(record, n, rng), start=1)
        ]
