"""Which wording each member of a GRPO group sees: a pure, deterministic function of (seed, id, step).

TRL repeats every prompt G times and may split those G copies over several processes, each of which only
renders its own slice. So the wording of member ``j`` must be computable locally and agree everywhere:
:func:`variant_for_member` equals :func:`assign_group_variants` ``[j]`` on every process, because both
derive all randomness from ``random.Random(f"{seed}:{record.id}:{step}")`` (string seeds are hashed with
SHA-512, unlike the per-process salted ``hash()``) and from the record itself. Processes must also agree
on ``difficult``; see ``anatomy_r1.augment.tracker``.

Member 0 keeps the original wording; the other members get the generator's variants, cycling through
original + variants when there are fewer than G wordings. A variant may move the answer to another letter,
so rewards must be computed against the *member's* record (its ``answer_index``/``answer``), never the
original's.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from typing import Any

from anatomy_r1.augment.variants import VariantGenerator, copy_record, validate_variant
from anatomy_r1.data.schema import Record

_CACHE_SIZE = 4096
_group_cache: OrderedDict[tuple[Any, ...], tuple[VariantGenerator, tuple[Record, ...]]] = OrderedDict()


def group_rng(seed: int, record_id: str, step: int) -> random.Random:
    """The generator of all randomness for one item's group at one step (stable across processes)."""
    return random.Random(f"{seed}:{record_id}:{step}")


def _fingerprint(record: Record) -> tuple[Any, ...]:
    return (
        record.id,
        record.question,
        tuple(record.options),
        record.answer_index,
        tuple(record.images),
        record.source,
        repr(sorted(record.meta.items(), key=lambda kv: kv[0])),
    )


def _group(
    record: Record, group_size: int, generator: VariantGenerator, seed: int, step: int
) -> tuple[Record, ...]:
    """Wordings of a difficult item's group; memoised because every member of every process asks."""
    key = (id(generator), int(seed), int(step), group_size, _fingerprint(record))
    hit = _group_cache.get(key)
    if hit is not None and hit[0] is generator:
        _group_cache.move_to_end(key)
        return hit[1]
    variants = generator.variants(record, group_size - 1, group_rng(seed, record.id, step))
    for v in variants:
        validate_variant(record, v)
    pool = [record, *variants]
    members = tuple(pool[j % len(pool)] for j in range(group_size))
    # The generator is kept alive by the entry, so its id() cannot be reused by another object meanwhile.
    _group_cache[key] = (generator, members)
    if len(_group_cache) > _CACHE_SIZE:
        _group_cache.popitem(last=False)
    return members


def _check(group_size: int) -> None:
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size!r}")


def assign_group_variants(
    record: Record,
    group_size: int,
    difficult: bool,
    generator: VariantGenerator,
    seed: int,
    step: int,
) -> list[Record]:
    """The ``group_size`` records of one group; member ``j`` is rendered from element ``j``.

    Easy items get ``group_size`` unchanged copies of the original. Difficult items get the original at
    member 0 and distinct variants after it where the generator can produce them. Returned records are
    fresh copies, safe to mutate.
    """
    _check(group_size)
    if not difficult:
        return [copy_record(record) for _ in range(group_size)]
    return [copy_record(r) for r in _group(record, group_size, generator, seed, step)]


def variant_for_member(
    record: Record,
    member_index: int,
    group_size: int,
    difficult: bool,
    generator: VariantGenerator,
    seed: int,
    step: int,
) -> Record:
    """``assign_group_variants(record, group_size, difficult, generator, seed, step)[member_index]``.

    For a process that holds only some members of a group; costs one generator call per (item, step)
    per process thanks to the memo.
    """
    _check(group_size)
    if not 0 <= member_index < group_size:
        raise ValueError(f"member_index {member_index} is outside a group of {group_size}")
    if not difficult:
        return copy_record(record)
    return copy_record(_group(record, group_size, generator, seed, step)[member_index])


def is_variant(record: Record) -> bool:
    """Whether ``record`` is a reworded variant rather than an original."""
    return "variant_of" in record.meta


def clear_cache() -> None:
    """Drop memoised groups (e.g. between tests, or after changing a generator's configuration)."""
    _group_cache.clear()
