"""Which wording each member of a GRPO group sees: a pure, deterministic function of (seed, id, step).

TRL repeats every prompt G times and may split those G copies over several processes, each of which only
renders its own slice. So the wording of member ``j`` must be computable locally and agree everywhere:
:func:`group_wordings` gives every process the same group, because it derives all randomness from
``random.Random(f"{seed}:{record.id}:{step}")`` (string seeds are hashed with SHA-512, unlike the
per-process salted ``hash()``) and from the record itself. Processes must also agree on whether the
item is difficult; see ``anatomy_r1.augment.group_policy``.

Member 0 keeps the original wording; the other members get the generator's variants, cycling through
original + variants when there are fewer than G wordings. A variant may move the answer to another letter,
so rewards must be computed against the *member's* record (its ``answer_index``/``answer``), never the
original's.
"""

from __future__ import annotations

import random

from anatomy_r1.augment.variants import VariantGenerator, copy_record, validate_variant
from anatomy_r1.data.schema import Record


def group_rng(seed: int, record_id: str, step: int) -> random.Random:
    """The generator of all randomness for one item's group at one step (stable across processes)."""
    return random.Random(f"{seed}:{record_id}:{step}")


def group_wordings(
    record: Record, group_size: int, generator: VariantGenerator, seed: int, step: int
) -> tuple[Record, ...]:
    """The wordings of a difficult item's group at ``step``, member ``j`` at position ``j`` (not copied).

    The original at member 0, the generator's variants after it, cycling through original + variants when
    there are fewer than ``group_size`` wordings. One generator call; callers that ask per member keep the
    result (:class:`~anatomy_r1.augment.group_policy.GroupPolicy` does).
    """
    _check(group_size)
    variants = generator.variants(record, group_size - 1, group_rng(seed, record.id, step))
    for v in variants:
        validate_variant(record, v)
    pool = [record, *variants]
    return tuple(pool[j % len(pool)] for j in range(group_size))


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
    if not difficult:
        _check(group_size)  # group_wordings checks it on the other path
        return [copy_record(record) for _ in range(group_size)]
    return [copy_record(r) for r in group_wordings(record, group_size, generator, seed, step)]
