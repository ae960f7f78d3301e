"""``anatomy-r1 data stats``: the counts are right and the tables show them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from anatomy_r1.cli import main
from anatomy_r1.data.provenance import dataset_of
from anatomy_r1.data.schema import make_record
from anatomy_r1.data.stats import SQ_BINS, bar, compute_stats, sq_bin


def rec(i: int, cls: str, answer_index: int, n_options: int = 4, **meta: Any) -> Any:
    options = [f"opt{j}" for j in range(n_options)]
    return make_record(
        id=f"r{i}",
        images=["x.png"],
        question="Q?",
        options=options,
        answer_index=answer_index,
        source="test",
        meta={"anatomy_class": cls, **meta},
    )


def test_counts() -> None:
    records = [
        rec(0, "liver", 0, template_family="zero_hop"),
        rec(1, "liver", 1, template_family="one_hop"),
        rec(2, "gut", 1, n_options=2, question_type="query_type"),
    ]
    s = compute_stats(records)
    assert s.n == 3
    assert s.anatomy_class == {"liver": 2, "gut": 1}
    assert s.answer_letter == {"A": 1, "B": 2}
    assert s.family == {"zero_hop": 1, "one_hop": 1, "query_type": 1}
    assert s.n_options == {4: 2, 2: 1}
    assert s.s_q is None


def test_sq_histogram_bins() -> None:
    assert sq_bin(0.0) == 0 and sq_bin(0.05) == 0 and sq_bin(0.1) == 1
    assert sq_bin(0.99) == SQ_BINS - 1 and sq_bin(1.0) == SQ_BINS - 1
    assert sq_bin(-0.1) is None and sq_bin(1.5) is None and sq_bin("0.5") is None and sq_bin(True) is None
    s = compute_stats([rec(i, "liver", 0, s_q=v) for i, v in enumerate([0.05, 0.15, 0.15, 1.0, 7])])
    assert s.s_q is not None and sum(s.s_q) == 4 and s.s_q[1] == 2 and s.s_q[9] == 1
    assert s.s_q_invalid == 1
    assert bar(0, 10) == "" and bar(10, 10) == "█" * 40 and bar(1, 1000) == "█"


def write(path: Path, records: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in records))
    return path


def test_cli_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path / "s.jsonl", [rec(i, ["liver", "cystic_plate"][i % 2], i % 4) for i in range(8)])
    assert main(["data", "stats", str(f)]) == 0
    out = capsys.readouterr().out
    for heading in ("anatomy class", "answer letter", "question family", "number of options"):
        assert heading in out
    assert "cystic_plate" in out and "8 records" in out
    assert "S(q)" not in out


def test_cli_sq_histogram(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path / "s.jsonl", [rec(i, "liver", 0, s_q=i / 10) for i in range(10)])
    assert main(["data", "stats", str(f)]) == 0
    out = capsys.readouterr().out
    assert "S(q) histogram" in out and "[0.9, 1.0]" in out and "█" in out


def test_cli_refuses_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "s.jsonl"
    f.write_text('{"id": "x"}\n')
    assert main(["data", "stats", str(f)]) == 2
    assert f"{f}:1:" in capsys.readouterr().err
    f.write_text("")
    assert main(["data", "stats", str(f)]) == 2
    assert "empty" in capsys.readouterr().err


def test_long_tables_are_cut(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = write(tmp_path / "s.jsonl", [rec(i, f"class_{i:03d}", 0) for i in range(40)])
    assert main(["data", "stats", str(f)]) == 0
    out = capsys.readouterr().out
    assert "(10 more)" in out and "class_039" not in out


# --------------------------------------------------------------------------- datasets and unknown classes


def plain(i: int, answer: str, image: str, source: str = "medr1", **meta: Any) -> Any:
    """A record the way a converter leaves it when it cannot name the anatomy class."""
    return make_record(
        id=f"p{i}",
        images=[image],
        question="Which organ is shown?",
        options=[answer, "Other organ"],
        answer_index=0,
        source=source,
        meta=meta,
    )


def test_datasets_come_from_meta_or_the_omnimedvqa_image_path() -> None:
    s = compute_stats(
        [
            rec(0, "liver", 0, dataset="Chest CT Scan"),
            rec(1, "kidney", 0, dataset="Chest CT Scan"),
            plain(2, "Ulna", "Images/RUS CHN/DIP/7/a.png", question_type="Anatomy Identification"),
            plain(3, "Lungs", "/data/Images/MIAS/b.png", question_type="Anatomy Identification"),
            rec(4, "gut", 0),  # no dataset anywhere: left out of the breakdown
        ]
    )
    assert s.dataset == {"Chest CT Scan": 2, "RUS CHN": 1, "MIAS": 1}
    assert s.dataset_classes["Chest CT Scan"] == {"liver": 1, "kidney": 1}


def test_stats_probe_and_the_medr1_converter_read_the_dataset_from_a_path_alike() -> None:
    from anatomy_r1.data.converters.medr1 import convert_item
    from anatomy_r1.evaluation.probe_vocabulary import record_group

    paths = {
        "Images/MURA/a.png": "MURA",
        "C:\\OmniMedVQA\\Images\\MIAS\\b.png": "MIAS",  # converted on Windows
        "/mnt/Images/OmniMedVQA/Images/SpineXR/c/1.png": "SpineXR",  # the last Images folder
        "Images/MURA/Images/1.png": "MURA",  # Images right above the file names no dataset
        "Images/x.png": None,
        "images/train/s1.png": None,
    }
    for i, (path, dataset) in enumerate(paths.items()):
        item = {"image": path, "problem": "Which bone? A)Ulna, B)Radius", "solution": "<answer> A </answer>"}
        converted = convert_item(item, i, f"item {i}", {"question_type": "Anatomy Identification"})
        assert converted.meta.get("dataset") == dataset, path
        rec = plain(i, "Ulna", path, question_type="Anatomy Identification")
        assert dataset_of(rec) == record_group(rec, "dataset") == dataset, path
    assert dataset_of(plain(9, "Ulna", "Images/MURA/a.png", dataset=" MURA-v1.1 ")) == "MURA-v1.1"


def test_anatomy_identification_without_a_class_counts_under_its_answer() -> None:
    s = compute_stats(
        [
            plain(0, "Right Kidney", "Images/X/a.png", question_type="Anatomy Identification"),
            plain(1, "Right kidney", "Images/X/b.png", question_type="anatomy identification"),
            plain(2, "CT", "Images/X/c.png", source="omnimedvqa", question_type="Modality Recognition"),
            plain(3, "Liver", "Images/Y/d.png"),
            plain(4, "Liver", "e.png", source="test"),
        ]
    )
    assert s.anatomy_class == {"right_kidney": 2, "(unknown)": 3}
    assert s.class_from_answer == 2
    assert s.unknown_why["question type 'Modality Recognition' does not name an anatomy"] == 1
    medr1_why = next(why for why in s.unknown_why if why.startswith("Med-R1 items state no question type"))
    assert "Anatomy Identification_train.json" in medr1_why and s.unknown_why[medr1_why] == 1
    assert s.unknown_why["no meta.anatomy_class and no meta.question_type"] == 1


def test_cli_on_a_medr1_file_converted_without_its_type_says_why_and_breaks_down_by_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from anatomy_r1.data.converters import convert

    items = [
        {"image": f"Images/{ds}/{i}.png", "problem": "Which organ? A)Liver, B)Kidney", "solution": "A"}
        for i, ds in enumerate(["MIAS", "MIAS", "RadImageNet"])
    ]
    src = tmp_path / "train.json"  # renamed: the question type is gone from the name
    src.write_text(json.dumps(items))
    convert("medr1", src, tmp_path / "m.jsonl", allow_missing_images=True)
    assert main(["data", "stats", str(tmp_path / "m.jsonl")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(unknown) 3 records: Med-R1 items state no question type" in out
    assert "records per dataset" in out and "MIAS │ 2 │ 66.7%" in out and "RadImageNet │ 1 │ 33.3%" in out

    typed = tmp_path / "Anatomy Identification_train.json"
    typed.write_text(json.dumps(items))
    convert("medr1", typed, tmp_path / "t.jsonl", allow_missing_images=True)
    assert main(["data", "stats", str(tmp_path / "t.jsonl")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(unknown)" not in out and "liver │ 3 │ 100.0%" in out and "liver (2)" in out
