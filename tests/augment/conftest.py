"""Shared fixtures: canonical records in the SSG-VQA, synthetic-benchmark and OmniMedVQA styles."""

from __future__ import annotations

from pathlib import Path

import pytest

from anatomy_r1.data.io import read_records
from anatomy_r1.data.schema import Record

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def templated_records() -> list[Record]:
    """SSG-VQA-style questions (parsed from text) and synthetic ones (``meta.structure`` + template id)."""
    return read_records(DATA / "templated.jsonl")


@pytest.fixture(scope="session")
def freeform_records() -> list[Record]:
    """OmniMedVQA-style free-form questions, including option-quoting and order-sensitive ones."""
    return read_records(DATA / "freeform.jsonl")
