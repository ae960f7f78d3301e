"""Repairing released items into canonical records: tidy option labels, then validate, dropping copies.

Released sets repeat a wrong option up to case ("Right atrium" / "Right Atrium") and end a label with a
period its siblings lack (``Ulna.``). The canonical schema refuses the first and the second is a cue a
model can learn instead of the anatomy, so every reader of a released format builds its records through
:func:`converted_record`, which repairs both (counting each repair) instead of refusing the item.
"""

from __future__ import annotations

from typing import Any

from anatomy_r1.data.converters.common import ConvertOptions
from anatomy_r1.data.schema import Record
from anatomy_r1.data.vocab import label_from_display
from anatomy_r1.errors import DataError


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


LABEL_MAX_WORDS = 6
"""Longest option (in words) still treated as a label whose final period is punctuation, not sentence."""


def drop_label_period(text: str) -> str:
    """``"Ulna."`` -> ``"Ulna"``: a short label's single final period is dropped; anything else is kept.

    Some OmniMedVQA-derived items end one option with a period that its siblings lack, and in Med-R1's
    anatomy split that option is always the correct one: a cue a model can learn instead of the anatomy,
    and a reason the same label is spelled two ways across items. Text with another full stop, question
    mark or colon inside, an ellipsis, or more than :data:`LABEL_MAX_WORDS` words reads as a sentence or
    an abbreviation and is left alone.
    """
    if not text.endswith(".") or text.endswith(".."):
        return text
    body = text[:-1].rstrip()
    if not body or any(c in body for c in ".?!;:") or len(body.split()) > LABEL_MAX_WORDS:
        return text
    return body


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
    class_from_answer: bool = False,
) -> Record:
    """A converter's record: option labels tidied, ``answer`` derived from them, then :func:`validated`.

    The counterpart of :func:`anatomy_r1.data.schema.make_record` for released files, which may repeat a
    wrong option or end a label with a period, and are repaired rather than refused. The answer is
    always ``options[answer_index]`` after tidying, so it loses its period with its option; the options
    as released are kept in ``meta["orig"]["options"]`` when any changed. ``class_from_answer`` (a
    question whose answer names the anatomy) sets ``meta["anatomy_class"]`` to the tidied answer's label,
    so the class is spelled as the answer is.
    """
    tidy = [drop_label_period(o) for o in options]
    if tidy != options:
        orig = meta.get("orig")
        meta["orig"] = {**(orig if isinstance(orig, dict) else {}), "options": list(options)}
        if ctx is not None:
            ctx.repaired["items had a final period dropped from an option"] += 1
        options = tidy
    if class_from_answer:  # first, where the converters have always put it
        meta = {"anatomy_class": label_from_display(options[answer_index]), **meta}
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
