"""Group assignment is deterministic, cheap, and agrees across processes holding slices of a group."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from anatomy_r1.augment.assign import assign_group_variants, group_rng, group_wordings
from anatomy_r1.augment.composite import CompositeGenerator
from anatomy_r1.augment.variants import distinct_wordings, validate_variant
from anatomy_r1.data.schema import Record

G = 8


def test_easy_items_get_unchanged_copies(freeform_records: list[Record]) -> None:
    r = freeform_records[0]
    group = assign_group_variants(r, G, False, CompositeGenerator(), seed=1, step=5)
    assert len(group) == G
    assert all(m.to_dict() == r.to_dict() for m in group)
    group[0].meta["x"] = 1
    assert "x" not in r.meta  # copies, not the original


def test_difficult_items_get_distinct_wordings(
    templated_records: list[Record], freeform_records: list[Record]
) -> None:
    gen = CompositeGenerator()
    for r in [*templated_records, *freeform_records]:
        group = assign_group_variants(r, G, True, gen, seed=3, step=0)
        assert len(group) == G
        assert group[0].to_dict() == r.to_dict()  # member 0 keeps the original wording
        for m in group[1:]:
            validate_variant(r, m)
        if "oculus" not in r.question:
            assert distinct_wordings(group) == G, r.id


def test_fewer_wordings_than_members_cycle(freeform_records: list[Record]) -> None:
    eye = next(r for r in freeform_records if "oculus" in r.question)
    group = assign_group_variants(eye, 5, True, CompositeGenerator(), seed=0, step=0)
    assert [m.answer_index for m in group] == [1, 0, 1, 0, 1]
    assert distinct_wordings(group) == 2


def test_determinism_depends_on_seed_id_step(templated_records: list[Record]) -> None:
    r = templated_records[8]
    a = assign_group_variants(r, G, True, CompositeGenerator(), seed=7, step=3)
    b = assign_group_variants(r, G, True, CompositeGenerator(), seed=7, step=3)
    assert [m.to_dict() for m in a] == [m.to_dict() for m in b]
    others = [
        assign_group_variants(r, G, True, CompositeGenerator(), seed=s, step=t) for s, t in [(8, 3), (7, 4)]
    ]
    assert all([m.to_dict() for m in o] != [m.to_dict() for m in a] for o in others)
    assert group_rng(7, r.id, 3).random() == random.Random(f"7:{r.id}:3").random()


def test_two_processes_with_slices_agree_with_the_whole(
    templated_records: list[Record], freeform_records: list[Record]
) -> None:
    gen_a, gen_b = CompositeGenerator(), CompositeGenerator()  # each "process" has its own generator
    for r in [*templated_records, *freeform_records]:
        for difficult in (True, False):
            whole = assign_group_variants(r, G, difficult, CompositeGenerator(), seed=11, step=2)
            # Process 0 holds members 0..2, process 1 holds 3..7 (a group split across processes).
            slice_a = assign_group_variants(r, G, difficult, gen_a, 11, 2)[:3]
            slice_b = assign_group_variants(r, G, difficult, gen_b, 11, 2)[3:]
            assert [m.to_dict() for m in slice_a + slice_b] == [m.to_dict() for m in whole]


def test_separate_interpreters_agree(tmp_path: Path, templated_records: list[Record]) -> None:
    """Real processes with different hash seeds compute the same members (no salted hash() anywhere)."""
    script = textwrap.dedent(
        """
        import json, sys
        from anatomy_r1.augment import CompositeGenerator, group_wordings
        from anatomy_r1.data.io import read_records
        lo, hi = int(sys.argv[2]), int(sys.argv[3])
        out = []
        for r in read_records(sys.argv[1]):
            members = group_wordings(r, 8, CompositeGenerator(), 5, 9)
            out.append([members[j].to_dict() for j in range(lo, hi)])
        print(json.dumps(out))
        """
    )
    data = Path(__file__).parent / "data" / "templated.jsonl"
    results = []
    for lo, hi, hashseed in [(0, 4, "1"), (4, 8, "2")]:
        proc = subprocess.run(
            [sys.executable, "-c", script, str(data), str(lo), str(hi)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": hashseed, "PATH": "/usr/bin"},
        )
        import json

        results.append(json.loads(proc.stdout))
    for i, r in enumerate(templated_records):
        whole = [m.to_dict() for m in assign_group_variants(r, 8, True, CompositeGenerator(), 5, 9)]
        assert results[0][i] + results[1][i] == whole


def test_bad_arguments(freeform_records: list[Record]) -> None:
    r = freeform_records[0]
    with pytest.raises(ValueError):
        assign_group_variants(r, 0, True, CompositeGenerator(), 0, 0)
    with pytest.raises(ValueError):
        group_wordings(r, 0, CompositeGenerator(), 0, 0)
