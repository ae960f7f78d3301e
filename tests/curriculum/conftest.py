"""Shared fixtures: the MiniLM backend (loaded once per session) and small files in the release formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anatomy_r1.curriculum.similarity import get_backend
from anatomy_r1.curriculum.similarity_base import SimilarityBackend


@pytest.fixture(scope="session")
def minilm() -> SimilarityBackend:
    """The default backend; loading the encoder takes seconds, so tests share one instance."""
    return get_backend("minilm")


MEDR1_ITEMS = [
    # Near-synonym distractors: every choice is a kind of bile/hepatic duct.
    {
        "image": "Images/CholecT45/VID01/000021.png",
        "problem": "Which structure is marked? A)common bile duct, B)common hepatic duct, "
        "C)cystic duct, D)bile duct",
        "solution": "<answer> C </answer>",
    },
    # Unrelated distractors: an organ next to a fruit, a vehicle and a musical instrument.
    {
        "image": "Images/CholecT45/VID01/000022.png",
        "problem": "Which structure is marked? A)violin, B)cystic duct, C)banana, D)bicycle",
        "solution": "<answer> B </answer>",
    },
    {
        "image": "Images/CholecT45/VID02/000001.png",
        "problem": "What organ is shown? A)Liver, B)Gallbladder, C)Cystic Plate, D)Omentum",
        "solution": "<answer> A </answer>",
    },
]


def _release_prompt(question: str, options: list[str]) -> str:
    lines = "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(options))
    return (
        "You are an expert in cholecystectomy surgical procedures.\nQuestion:\n"
        f"{question}\nAnatomy Options:\n{lines}"
    )


ANATOMY_R1_ITEMS = [
    {
        "instruction": _release_prompt(
            "What anatomy is at the top-mid of the frame ?",
            ["Gallbladder", "Liver", "Cystic Plate", "Omentum"],
        ),
        "solution": "A",
        "answer": "Gallbladder",
        "images": "/CholecT45/data/VID01/000021.png",
    },
    {
        "instruction": _release_prompt(
            "What anatomy is at the bottom-left of the frame ?",
            ["Fluid", "Liver", "Gut", "Abdominal Wall Cavity"],
        ),
        "solution": "B",
        "answer": "Liver",
        "images": "/CholecT45/data/VID02/000147.png",
    },
]


@pytest.fixture
def medr1_file(tmp_path: Path) -> Path:
    p = tmp_path / "Anatomy Identification_train.json"
    p.write_text(json.dumps(MEDR1_ITEMS), encoding="utf-8")
    return p


@pytest.fixture
def anatomy_r1_file(tmp_path: Path) -> Path:
    p = tmp_path / "GRPO.json"
    p.write_text(json.dumps(ANATOMY_R1_ITEMS), encoding="utf-8")
    return p
