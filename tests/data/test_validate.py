"""``anatomy-r1 data validate``: accepts a good canonical file, refuses every kind of bad one by line."""

from __future__ import annotations

import json
import re
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


# --------------------------------------------------------------------------- images are decoded


def write_png(path: Path, seed: int = 0) -> Path:
    """A real PNG of noise (so its pixel data is most of the file and cutting it cuts pixels)."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def broken_image(path: Path, kind: str) -> Path:
    """``truncated``: a valid PNG cut to half its bytes; ``not_an_image``: text; ``empty``: zero bytes."""
    if kind == "truncated":
        data = write_png(path).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "not_an_image":
        path.write_bytes(b"<html>404 not found</html>\n")
    else:
        path.write_bytes(b"")
    return path


def image_file(tmp_path: Path, images: dict[str, str]) -> Path:
    """A data file whose item ``q{i}`` shows ``images[i]`` (paths relative to ``tmp_path``)."""
    rows = [good(i, images=[img]) for i, img in enumerate(images.values())]
    return write_jsonl(tmp_path / "data.jsonl", rows)


@pytest.mark.parametrize("kind", ["truncated", "not_an_image", "empty"])
def test_broken_image_is_refused_naming_file_item_and_image(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_png(tmp_path / "img" / "ok.png")
    bad = broken_image(tmp_path / "img" / "bad.png", kind)
    f = image_file(tmp_path, {"a": "img/ok.png", "b": "img/bad.png", "c": "img/ok.png"})
    rc = main(["data", "validate", str(f), "--image-root", str(tmp_path)])
    err = refused(capsys, rc, "1 invalid of 3 records")
    problems = [line for line in err.splitlines() if "cannot decode image" in line]
    assert len(problems) == 1, err
    assert problems[0].startswith(f"error: {f}:2: item 'q1': cannot decode image {bad}"), err


def test_no_decode_only_checks_existence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken_image(tmp_path / "img" / "bad.png", "truncated")
    f = image_file(tmp_path, {"a": "img/bad.png"})
    assert main(["data", "validate", str(f), "--image-root", str(tmp_path), "--no-decode"]) == 0
    assert "images not decoded" in capsys.readouterr().out
    f2 = image_file(tmp_path, {"a": "img/none.png"})
    rc = main(["data", "validate", str(f2), "--image-root", str(tmp_path), "--no-decode"])
    refused(capsys, rc, f"{f2}:1", "image not found")


def test_each_image_is_decoded_once_and_every_item_using_a_broken_one_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(3):
        write_png(tmp_path / "img" / f"{i}.png", seed=i)
    broken_image(tmp_path / "img" / "bad.png", "truncated")
    f = image_file(
        tmp_path, {"a": "img/0.png", "b": "img/1.png", "c": "img/0.png", "d": "img/2.png", "e": "img/1.png"}
    )
    assert main(["data", "validate", str(f), "--image-root", str(tmp_path)]) == 0
    assert "5 valid records; 3 images decoded" in capsys.readouterr().out

    rows = [good(i, images=[f"img/{'bad' if i % 2 else i % 3}.png"]) for i in range(6)]
    f = write_jsonl(tmp_path / "shared.jsonl", rows)
    err = refused(capsys, main(["data", "validate", str(f), "--image-root", str(tmp_path)]))
    named = [line.split(": cannot decode")[0] for line in err.splitlines() if "cannot decode" in line]
    assert named == [f"error: {f}:{n}: item 'q{n - 1}'" for n in (2, 4, 6)]
    assert err.splitlines()[-1] == f"error: {f}: 3 invalid of 6 records"


def test_workers_report_the_same_problems_in_the_same_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Decoding in a process pool changes nothing a user sees, including the order of the lines."""
    images = {}
    for i in range(12):
        name = f"img/{i}.png"
        if i in (2, 7, 11):
            broken_image(tmp_path / name, ("truncated", "not_an_image", "empty")[i % 3])
        else:
            write_png(tmp_path / name, seed=i)
        images[str(i)] = name
    rows = [good(i, images=[images[str(i)]]) for i in range(12)]
    rows[5] = good(5, answer="Gut")  # a record problem between the image problems
    f = write_jsonl(tmp_path / "data.jsonl", rows)
    outputs = []
    for workers in ("1", "3"):
        rc = main(["data", "validate", str(f), "--image-root", str(tmp_path), "--workers", workers])
        outputs.append(refused(capsys, rc, "4 invalid of 12 records"))
    assert outputs[0] == outputs[1]
    lines = [re.match(rf"error: {re.escape(str(f))}:(\d+)", line) for line in outputs[0].splitlines()]
    assert [m.group(1) for m in lines[:-1] if m] == ["3", "6", "8", "12"]


def test_workers_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write_jsonl(tmp_path / "ok.jsonl", [good(0)])
    refused(capsys, validate(f, "--workers", "0"), "--workers")
