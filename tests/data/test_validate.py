"""``anatomy-r1 data validate``: accepts a good canonical file, refuses every kind of bad one by line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from anatomy_r1.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
OMNI_ROOT = FIXTURES / "omnimedvqa"


def good(i: int = 0, **changes: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "id": f"q{i}",
        "images": ["Images/demo/000.png"],
        "question": "Which organ is shown?",
        "options": ["Liver", "Spleen", "Stomach"],
        "answer_index": 0,
        "answer": "Liver",
        "source": "test",
        "meta": {"anatomy_class": "liver"},
    }
    rec.update(changes)
    return rec


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def validate(path: Path, *extra: str) -> int:
    return main(["data", "validate", str(path), "--image-root", str(OMNI_ROOT), *extra])


def test_valid_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_jsonl(tmp_path / "ok.jsonl", [good(0), good(1), good(2)])
    assert validate(f) == 0
    out = capsys.readouterr().out
    assert "3 valid records" in out


def test_valid_file_with_missing_images_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_jsonl(tmp_path / "ok.jsonl", [good(0), good(1, images=["Images/none.png"])])
    assert validate(f, "--allow-missing-images") == 0
    assert "1 missing images" in capsys.readouterr().out


def refused(capsys: pytest.CaptureFixture[str], rc: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert all(line.startswith("error: ") for line in err.splitlines()), err
    for n in needles:
        assert n in err, (n, err)
    return err


BAD_RECORDS: dict[str, tuple[dict[str, Any], str]] = {
    "answer_index_outside": (good(answer_index=3, answer="Liver"), "outside the 3 options"),
    "answer_disagrees": (good(answer="Spleen"), "is not options[0]"),
    "one_option": (good(options=["Liver"]), "1 option(s)"),
    "duplicate_options": (good(options=["Liver", "liver ", "Gut"]), "duplicate option"),
    "missing_field": ({k: v for k, v in good().items() if k != "answer"}, "missing field(s) answer"),
    "unknown_field": (good(letter="A"), "unknown field(s) letter"),
    "missing_image": (good(images=["Images/demo/404.png"]), "image not found"),
}


@pytest.mark.parametrize("kind", sorted(BAD_RECORDS))
def test_bad_record_is_refused_naming_the_line(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad, message = BAD_RECORDS[kind]
    bad = {**bad, "id": "bad"}
    f = write_jsonl(tmp_path / "f.jsonl", [good(0), good(1), bad])
    refused(capsys, validate(f), f"{f}:3", message)


def test_duplicate_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_jsonl(tmp_path / "f.jsonl", [good(0), good(1), good(0)])
    refused(capsys, validate(f), f"{f}:3:", "duplicate id 'q0'", "line 1")


def test_truncated_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_jsonl(tmp_path / "f.jsonl", [good(0), good(1)])
    f.write_bytes(f.read_bytes()[:-20])
    refused(capsys, validate(f), f"{f}:2:", "invalid JSON")


def test_non_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_jsonl(tmp_path / "f.jsonl", [good(0), good(1)])
    f.write_bytes(f.read_bytes().replace(b"Spleen", b"Spl\xfeen", 2))
    refused(capsys, validate(f), f"{f}:1:", "UTF-8")


def test_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "f.jsonl"
    f.write_text("\n\n")
    refused(capsys, validate(f), str(f), "empty")


def test_every_problem_is_listed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_jsonl(
        tmp_path / "f.jsonl",
        [good(0), good(1, answer="Gut"), good(2), good(3, options=["Liver"]), good(4)],
    )
    err = refused(capsys, validate(f), f"{f}:2", f"{f}:4", "2 invalid of 5 records")
    assert f"{f}:1" not in err


def test_validates_converter_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.jsonl"
    src = OMNI_ROOT / "omnimedvqa_small.json"
    assert (
        main(
            [
                "data",
                "convert",
                "--format",
                "omnimedvqa",
                str(src),
                "--out",
                str(out),
                "--image-root",
                str(OMNI_ROOT),
            ]
        )
        == 0
    )
    assert validate(out) == 0
    assert "3 valid records" in capsys.readouterr().out
