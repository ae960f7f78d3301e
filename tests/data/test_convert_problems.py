"""``data convert`` on the files users actually have: ids per file, formats named or detected, every bad
item listed, and Med-R1's period-marked options made consistent."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from anatomy_r1.cli import main
from anatomy_r1.data.converters import ConvertSummary, canonical_format_name, convert, detect_format
from anatomy_r1.data.converters.common import MAX_REPORTED
from anatomy_r1.data.converters.tidy import drop_label_period
from anatomy_r1.data.io import read_records
from anatomy_r1.errors import ConfigError, DataError

FIXTURES = Path(__file__).parent / "fixtures"
RELEASE = FIXTURES / "anatomy_r1_small.json"
OMNI = FIXTURES / "omnimedvqa" / "omnimedvqa_small.json"
MEDR1 = FIXTURES / "medr1_small.json"
QA_TXT = FIXTURES / "ssgvqa" / "qa_txt"


def run(*argv: str) -> int:
    return main(["data", *argv])


def error_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("error: ") for ln in lines), err
    return lines


def no_output(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")], "temp file left"


def release_item(i: int, answer: int = 1) -> dict[str, Any]:
    opts = ["Gallbladder", "Liver", "Omentum", "Gut"]
    lines = "\n".join(f"{'ABCD'[k]}. {o}" for k, o in enumerate(opts))
    return {
        "instruction": f"Persona.\nQuestion:\nWhat anatomy is at spot {i} ?\nAnatomy Options:\n{lines}",
        "solution": "ABCD"[answer],
        "answer": opts[answer],
        "images": f" /CholecT45/data/VID01/{i:06d}.png",
    }


def write_json(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj, indent=1), encoding="utf-8")
    return path


# --- ids: one prefix per file ------------------------------------------------------------------------


def test_two_release_files_converted_with_defaults_validate_together(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The authors' GRPO-ASC-Learning.json and GRPO-GDQA.json no longer both give ``anatomy-r1-0..N``."""
    asc = shutil.copy(RELEASE, tmp_path / "GRPO-ASC-Learning.json")
    gdqa = shutil.copy(RELEASE, tmp_path / "GRPO-GDQA.json")
    for src in (asc, gdqa):
        assert run("convert", str(src), "--out", f"{src}l", "--allow-missing-images") == 0
    a, b = read_records(f"{asc}l"), read_records(f"{gdqa}l")
    assert [r.id for r in a] == ["GRPO-ASC-Learning-0", "GRPO-ASC-Learning-1", "GRPO-ASC-Learning-2"]
    assert [r.id for r in b] == ["GRPO-GDQA-0", "GRPO-GDQA-1", "GRPO-GDQA-2"]
    both = tmp_path / "both.jsonl"
    both.write_bytes(Path(f"{asc}l").read_bytes() + Path(f"{gdqa}l").read_bytes())
    capsys.readouterr()
    assert run("validate", str(both), "--allow-missing-images", "--no-decode") == 0, capsys.readouterr().err
    assert "6 valid records" in capsys.readouterr().out


def test_spaces_in_the_file_name_become_underscores(tmp_path: Path) -> None:
    src = shutil.copy(MEDR1, tmp_path / "Anatomy Identification_val.json")
    convert("medr1", src, tmp_path / "o.jsonl", allow_missing_images=True)
    assert read_records(tmp_path / "o.jsonl")[0].id == "Anatomy_Identification_val-0"


def test_id_prefix_names_positional_ids_and_prefixes_own_ids(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    assert (
        run("convert", str(RELEASE), "--out", str(out), "--allow-missing-images", "--id-prefix", "asc") == 0
    )
    assert [r.id for r in read_records(out)] == ["asc-0", "asc-1", "asc-2"]
    # OmniMedVQA's own question ids are kept by default and prefixed only when asked.
    convert("omnimedvqa", OMNI, out, allow_missing_images=True)
    assert read_records(out)[0].id == "Chest CT Scan_0000"
    convert("omnimedvqa", OMNI, out, allow_missing_images=True, id_prefix="omni")
    assert read_records(out)[0].id == "omni-Chest CT Scan_0000"


def test_ssgvqa_prefix_renames_without_changing_options(tmp_path: Path) -> None:
    plain, named = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    convert("ssgvqa", QA_TXT, plain, allow_missing_images=True)
    convert("ssgvqa", QA_TXT, named, allow_missing_images=True, id_prefix="cholec")
    a, b = read_records(plain), read_records(named)
    assert a[0].id.startswith("ssgvqa-VID01-000021-") and b[0].id == "cholec" + a[0].id.removeprefix("ssgvqa")
    assert [r.options for r in a] == [r.options for r in b]


@pytest.mark.parametrize("prefix", ["", " ", "a b"])
def test_a_blank_or_spaced_prefix_is_refused(
    prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o.jsonl"
    assert (
        run("convert", str(RELEASE), "--out", str(out), "--allow-missing-images", "--id-prefix", prefix) == 2
    )
    assert "--id-prefix" in error_lines(capsys)[0]
    no_output(out)


# --- formats: named loosely, detected, or pointed at -------------------------------------------------


@pytest.mark.parametrize(
    ("src", "fmt"),
    [(RELEASE, "anatomy-r1"), (OMNI, "omnimedvqa"), (MEDR1, "medr1"), (QA_TXT, "ssgvqa")],
    ids=["anatomy-r1", "omnimedvqa", "medr1", "ssgvqa"],
)
def test_format_is_detected_by_default(
    src: Path, fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o.jsonl"
    assert run("convert", str(src), "--out", str(out), "--allow-missing-images") == 0
    assert f"(format {fmt}, detected)" in capsys.readouterr().out
    explicit = tmp_path / "e.jsonl"
    assert run("convert", "--format", fmt, str(src), "--out", str(explicit), "--allow-missing-images") == 0
    assert out.read_bytes() == explicit.read_bytes()
    # A converted file is detected as canonical JSON Lines.
    assert detect_format(out)[0] == "jsonl"


def test_underscore_and_case_spellings_are_the_registered_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for spelling in ("anatomy_r1", "Anatomy-R1", "ANATOMYR1"):
        assert canonical_format_name(spelling) == "anatomy-r1"
    assert canonical_format_name("Med-R1") == "medr1" and canonical_format_name("SSG_VQA") == "ssgvqa"
    out = tmp_path / "o.jsonl"
    assert (
        run("convert", "--format", "anatomy_r1", str(RELEASE), "--out", str(out), "--allow-missing-images")
        == 0
    )
    assert "wrote 3 records" in capsys.readouterr().out


def test_an_unknown_format_suggests_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run("convert", "--format", "omnimed", str(OMNI), "--out", "never.jsonl")
    assert exc.value.code == 2
    assert "did you mean omnimedvqa" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="choose from auto, anatomy-r1"):
        canonical_format_name("xml")


def test_jsonl_format_on_the_release_json_points_to_anatomy_r1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o.jsonl"
    assert run("convert", "--format", "jsonl", str(RELEASE), "--out", str(out), "--allow-missing-images") == 2
    (line,) = error_lines(capsys)
    assert line.startswith(f"error: {RELEASE}:1: invalid JSON")
    assert f"{RELEASE} looks like --format anatomy-r1" in line and "not --format jsonl" in line
    no_output(out)


def test_a_wrong_json_list_format_lists_the_items_and_points_to_the_right_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o.jsonl"
    assert (
        run("convert", "--format", "omnimedvqa", str(MEDR1), "--out", str(out), "--allow-missing-images") == 2
    )
    lines = error_lines(capsys)
    assert [ln.split(": ")[1] for ln in lines[:3]] == [f"{MEDR1}:item {i}" for i in range(3)]
    assert lines[3] == f"error: {MEDR1}: 3 problems; nothing was written to {out}"
    assert lines[4].startswith(
        f"error: {MEDR1} looks like --format medr1 (a JSON list of Med-R1 split items)"
    )
    no_output(out)


def test_auto_refuses_what_it_cannot_recognise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.jsonl"
    odd = write_json(tmp_path / "odd.json", [{"q": "x", "a": 1}])
    assert run("convert", str(odd), "--out", str(out)) == 2
    (line,) = error_lines(capsys)
    assert "cannot tell its format" in line and "(a, q) match no format" in line and "--format" in line
    canonical_list = write_json(
        tmp_path / "list.json",
        [
            {
                "id": "a",
                "images": [],
                "question": "Q?",
                "options": ["x", "y"],
                "answer_index": 0,
                "answer": "x",
            }
        ],
    )
    assert run("convert", str(canonical_list), "--out", str(out)) == 2
    assert "canonical files hold one record per line" in error_lines(capsys)[0]
    empty = tmp_path / "empty.json"
    empty.write_text("  \n")
    assert run("convert", str(empty), "--out", str(out)) == 2
    assert error_lines(capsys) == [f"error: {empty}: empty file"]
    no_output(out)


# --- every bad item, nothing written -----------------------------------------------------------------


def test_every_bad_item_is_named_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [release_item(i) for i in range(8)]
    items[2]["solution"] = "Z"
    items[5]["answer"] = "Gut"  # disagrees with the letter
    items[7] = {"images": "x.png"}
    src = write_json(tmp_path / "r.json", items)
    out = tmp_path / "o.jsonl"
    out.write_text("previous\n")
    assert run("convert", str(src), "--out", str(out), "--allow-missing-images") == 2
    lines = error_lines(capsys)
    assert len(lines) == 4
    assert lines[0].startswith(f"error: {src}:item 2: 'solution' 'Z'")
    assert lines[1].startswith(f"error: {src}:item 5: 'solution' 'B'") and "disagrees" in lines[1]
    assert lines[2].startswith(f"error: {src}:item 7: no prompt text")
    assert lines[3] == f"error: {src}: 3 problems; nothing was written to {out}"
    assert out.read_text() == "previous\n"  # the existing output is left as it was
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.jsonl")]


def test_a_single_bad_item_stays_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = [release_item(0), release_item(1) | {"solution": "Q"}]
    src = write_json(tmp_path / "r.json", items)
    out = tmp_path / "o.jsonl"
    assert (
        run("convert", "--format", "anatomy-r1", str(src), "--out", str(out), "--allow-missing-images") == 2
    )
    assert len(error_lines(capsys)) == 1
    with pytest.raises(DataError, match=r"item 1: 'solution' 'Q'"):
        convert("anatomy-r1", src, out, allow_missing_images=True)
    no_output(out)


def test_problems_past_the_limit_are_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n_bad = MAX_REPORTED + 7
    items = [release_item(i) | {"solution": "Z"} for i in range(n_bad)] + [release_item(99)]
    src = write_json(tmp_path / "r.json", items)
    out = tmp_path / "o.jsonl"
    assert run("convert", str(src), "--out", str(out), "--allow-missing-images") == 2
    lines = error_lines(capsys)
    assert len(lines) == MAX_REPORTED + 2
    assert lines[MAX_REPORTED - 1].startswith(f"error: {src}:item {MAX_REPORTED - 1}:")
    assert lines[MAX_REPORTED] == "error: ... and 7 more problems"
    assert lines[-1] == f"error: {src}: {n_bad} problems; nothing was written to {out}"
    no_output(out)


def test_duplicate_ids_and_missing_images_are_listed_with_item_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = json.loads(OMNI.read_text())
    items[1]["gt_answer"] = "Nothing like it"
    items[2]["question_id"] = items[0]["question_id"]
    src = write_json(tmp_path / "o.json", items)
    root = tmp_path / "root"
    shutil.copytree(OMNI.parent / "Images", root / "Images")
    (root / "Images" / "demo" / "000.png").unlink()
    out = tmp_path / "o.jsonl"
    assert run("convert", str(src), "--out", str(out), "--image-root", str(root)) == 2
    lines = error_lines(capsys)
    assert lines[0].startswith(f"error: {src}:item 0: image not found: Images/demo/000.png")
    assert lines[1].startswith(f"error: {src}:item 1: 'gt_answer' 'Nothing like it' matches none")
    assert lines[2].startswith(f"error: {src}:item 2: duplicate id 'Chest CT Scan_0000'")
    assert lines[3] == f"error: {src}: 3 problems; nothing was written to {out}"
    no_output(out)


def test_a_truncated_file_after_bad_items_reports_them_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [release_item(0) | {"solution": "Z"}, release_item(1), release_item(2) | {"solution": "Y"}]
    src = tmp_path / "t.json"
    src.write_text(json.dumps(items, indent=1).removesuffix("\n]"), encoding="utf-8")  # never closed
    out = tmp_path / "o.jsonl"
    assert (
        run("convert", "--format", "anatomy-r1", str(src), "--out", str(out), "--allow-missing-images") == 2
    )
    lines = error_lines(capsys)
    assert [ln.split(": ")[1] for ln in lines[:2]] == [f"{src}:item 0", f"{src}:item 2"]
    assert lines[2].startswith(f"error: {src}:") and "truncated file" in lines[2]
    assert lines[3] == f"error: {src}: 3 problems; nothing was written to {out}"
    no_output(out)


def test_ssgvqa_and_jsonl_list_every_bad_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = tmp_path / "qa_txt"
    shutil.copytree(QA_TXT, tree)
    one, two = tree / "VID01" / "000021.txt", tree / "VID02" / "000147.txt"
    one.write_text(one.read_text() + "broken line\n")
    two.write_bytes(two.read_bytes().replace(b"clipper doing", b"clipper d\xe9ing"))
    out = tmp_path / "o.jsonl"
    assert run("convert", str(tree), "--out", str(out), "--allow-missing-images") == 2
    lines = error_lines(capsys)
    assert "question|answer" in lines[0] and lines[0].startswith(f"error: {one}:")
    assert lines[1].startswith(f"error: {two}:4:") and "UTF-8" in lines[1]
    assert lines[2] == f"error: {tree}: 2 problems; nothing was written to {out}"

    good = {"images": ["x.png"], "question": "Q?", "options": ["a", "b"], "answer_index": 0, "answer": "a"}
    rows = [good | {"id": "a", "source": "s"}, good | {"id": "b"}, good | {"id": "a", "source": "s"}]
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run("convert", str(src), "--out", str(out), "--allow-missing-images") == 2
    lines = error_lines(capsys)
    assert lines[0].startswith(f"error: {src}:2:") and "source" in lines[0]
    assert lines[1].startswith(f"error: {src}:3: duplicate id 'a'")
    no_output(out)


# --- Med-R1's final periods --------------------------------------------------------------------------


def test_label_periods_are_dropped_only_from_short_labels() -> None:
    assert drop_label_period("Ulna.") == "Ulna"
    assert drop_label_period("Background of histological image.") == "Background of histological image"
    for kept in (
        "Ulna",
        "e.g. liver.",
        "etc...",
        "Is it the liver? Yes.",
        "one two three four five six seven.",
    ):
        assert drop_label_period(kept) == kept


def test_a_period_marked_answer_loses_its_period_with_its_option(tmp_path: Path) -> None:
    """In Med-R1 only the correct option had the period: a giveaway, and a second spelling of the label."""
    items = [
        {"image": "Images/RUS/a.png", "problem": "Which bone? A)Radius, B)Ulna., C)Femur", "solution": "B"},
        {
            "image": "Images/RUS/b.png",
            "problem": "Which bone? A)Ulna, B)Tibia",
            "solution": "<answer> A </answer>",
        },
    ]
    src = write_json(tmp_path / "Anatomy Identification_train.json", items)
    out = tmp_path / "o.jsonl"
    summary = convert("medr1", src, out, allow_missing_images=True)
    first, second = read_records(out)
    assert first.options == ["Radius", "Ulna", "Femur"] and first.answer == "Ulna" == first.options[1]
    assert first.meta["anatomy_class"] == "ulna" == second.meta["anatomy_class"]
    assert first.meta["orig"] == {"index": 0, "options": ["Radius", "Ulna.", "Femur"]}
    assert second.meta["orig"] == {"index": 1}  # nothing changed, nothing kept
    assert "1 items had a final period dropped from an option" in summary.line()


def test_omnimedvqa_answer_with_a_period_matches_and_is_tidied(tmp_path: Path) -> None:
    items = json.loads(OMNI.read_text())
    items[0]["option_A"] = items[0]["gt_answer"] = "Liver."
    src = write_json(tmp_path / "o.json", items)
    convert("omnimedvqa", src, tmp_path / "o.jsonl", allow_missing_images=True)
    rec = read_records(tmp_path / "o.jsonl")[0]
    assert rec.options[0] == rec.answer == "Liver" and rec.meta["anatomy_class"] == "liver"


# --- Med-R1's question type, from whatever the file is called ----------------------------------------


@pytest.mark.parametrize(
    ("name", "info"),
    [
        ("Anatomy Identification_train.json", {"question_type": "Anatomy Identification", "split": "train"}),
        ("anatomy_identification_test.json", {"question_type": "Anatomy Identification", "split": "test"}),
        ("Anatomy Identification/val.json", {"question_type": "Anatomy Identification", "split": "val"}),
        (
            "medr1/Modality Recognition_train.json",
            {"question_type": "Modality Recognition", "split": "train"},
        ),
        ("medr1_train.json", {"split": "train"}),
        ("data.json", {}),
    ],
)
def test_medr1_question_type_and_split_from_the_name(name: str, info: dict[str, str]) -> None:
    from anatomy_r1.data.converters.medr1 import split_info

    assert split_info(Path(name)) == info


def test_only_converted_items_count_as_without_a_question_type(tmp_path: Path) -> None:
    from anatomy_r1.data.converters import iter_converted
    from anatomy_r1.data.converters.common import Problems
    from anatomy_r1.data.converters.medr1 import NO_TYPE_NOTE

    items = json.loads(MEDR1.read_text(encoding="utf-8"))
    src = tmp_path / "train.json"
    src.write_text(json.dumps([*items, {"image": "Images/X/x.png", "problem": "no options"}]), "utf-8")
    summary = ConvertSummary(format="medr1", input=str(src), output=None)
    problems = Problems(MAX_REPORTED)
    kept = list(iter_converted("medr1", src, allow_missing_images=True, summary=summary, problems=problems))
    assert len(kept) == len(items) and problems.count == 1
    assert summary.notes[NO_TYPE_NOTE] == len(items)


def test_a_medr1_file_without_its_type_in_the_name_is_converted_and_said_so(tmp_path: Path) -> None:
    src = shutil.copy(MEDR1, tmp_path / "train.json")
    summary = convert("medr1", src, tmp_path / "o.jsonl", allow_missing_images=True)
    assert "3 items without a question type" in summary.line()
    assert all("anatomy_class" not in r.meta for r in read_records(tmp_path / "o.jsonl"))
    typed = tmp_path / "Anatomy Identification" / "train.json"
    typed.parent.mkdir()
    shutil.copy(MEDR1, typed)
    summary = convert("medr1", typed, tmp_path / "t.jsonl", allow_missing_images=True)
    assert "question type" not in summary.line()
    recs = read_records(tmp_path / "t.jsonl")
    assert [r.meta["anatomy_class"] for r in recs] == ["breast_tissue", "aorta,_ascending_part", "stomach"]
