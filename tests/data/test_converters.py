"""Converters: every format's happy path, round trips, and each way an input is refused.

Refusals are tested through the command line, because what matters to a user is the exit code, one
message naming the file and the item, and that no output file is left behind.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from anatomy_r1.cli import main
from anatomy_r1.data.converters import convert, formats, iter_converted
from anatomy_r1.data.converters.jsonlist import iter_json_list
from anatomy_r1.data.converters.medr1 import parse_problem
from anatomy_r1.data.converters.release import parse_prompt, template_family
from anatomy_r1.data.io import dumps_record, read_records
from anatomy_r1.data.schema import Record
from anatomy_r1.data.vocab import ANATOMY_LABELS, display_name
from anatomy_r1.errors import ConfigError, DataError

FIXTURES = Path(__file__).parent / "fixtures"
ANATOMY_R1 = FIXTURES / "anatomy_r1_small.json"
OMNI = FIXTURES / "omnimedvqa" / "omnimedvqa_small.json"
OMNI_ROOT = FIXTURES / "omnimedvqa"
MEDR1 = FIXTURES / "medr1_small.json"
QA_TXT = FIXTURES / "ssgvqa" / "qa_txt"
FRAMES = FIXTURES / "CholecT45" / "data"

# (format, input, extra args) converting with real images present.
CASES: list[tuple[str, Path, list[str]]] = [
    ("anatomy-r1", ANATOMY_R1, ["--image-root", str(FIXTURES)]),
    ("omnimedvqa", OMNI, ["--image-root", str(OMNI_ROOT)]),
    ("medr1", MEDR1, ["--allow-missing-images"]),
    ("ssgvqa", QA_TXT, ["--image-root", str(FRAMES)]),
]


def run_convert(fmt: str, src: Path, out: Path, extra: Sequence[str] = ()) -> int:
    return main(["data", "convert", "--format", fmt, str(src), "--out", str(out), *extra])


def refused(capsys: pytest.CaptureFixture[str], rc: int, out: Path, *needles: str) -> str:
    """Assert a clean refusal: exit 2, one error line naming what went wrong, no output file."""
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert n in err, (n, err)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")], "temp file left"
    return err


def refused_lines(capsys: pytest.CaptureFixture[str], rc: int, out: Path) -> list[str]:
    """Assert a refusal listing several problems: exit 2, only ``error:`` lines, no output or temp file."""
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and all(ln.startswith("error: ") for ln in lines), err
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")], "temp file left"
    return lines


def write_json(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")
    return path


def release_item(solution: str = "B", answer: str = "Liver", n_options: int = 4) -> dict[str, object]:
    opts = ["Gallbladder", "Liver", "Omentum", "Gut"][:n_options]
    lines = "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(opts))
    return {
        "instruction": "Persona.\nQuestion:\nWhat anatomy is at the top-mid of the frame ?\n"
        f"Anatomy Options:\n{lines}",
        "solution": solution,
        "answer": answer,
        "images": " /CholecT45/data/VID01/000021.png",
    }


# --- happy paths -----------------------------------------------------------------------------------


def test_registry_lists_every_format() -> None:
    assert set(formats()) >= {"anatomy-r1", "omnimedvqa", "medr1", "ssgvqa", "jsonl"}


def test_anatomy_r1_fixture_answers_match_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.jsonl"
    assert run_convert("anatomy-r1", ANATOMY_R1, out, ["--image-root", str(FIXTURES)]) == 0
    assert "wrote 3 records" in capsys.readouterr().out
    recs = read_records(out)
    assert [r.answer for r in recs] == ["Liver", "Abdominal Wall Cavity", "Cystic Plate"]
    assert all(r.answer == r.options[r.answer_index] for r in recs)
    assert recs[0].images == ["/CholecT45/data/VID01/000021.png"]  # stray space stripped
    assert recs[0].question == "What anatomy is at the top-mid of the frame ?"
    assert recs[2].options == ["Cystic Plate", "Liver", "Gut"]  # from sft_instruction, 3 options
    assert [r.meta["anatomy_class"] for r in recs] == ["liver", "abdominal_wall_cavity", "cystic_plate"]
    assert (recs[0].meta["video"], recs[0].meta["frame"]) == ("VID01", "000021")
    assert [r.meta["template_family"] for r in recs] == ["zero_hop", "single_and", "one_hop"]


def test_omnimedvqa_fields(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    convert("omnimedvqa", OMNI, out, image_root=OMNI_ROOT)
    recs = read_records(out)
    assert [r.id for r in recs] == ["Chest CT Scan_0000", "Knee MRI_0001", "Histology_0002"]
    assert [len(r.options) for r in recs] == [4, 2, 3]
    assert recs[1].answer == "Medial meniscus"  # matched ignoring case and spacing
    assert recs[2].options[0] == "Adipose tissue, mature"  # commas survive
    assert recs[2].answer == "Smooth muscle, with fibrosis"
    assert recs[1].meta["modality"] == "MR (Magnetic Resonance Imaging)"  # 'modality' spelling
    assert recs[0].meta["modality"] == "CT(Computed Tomography)"
    assert recs[0].meta["anatomy_class"] == "liver"
    assert "anatomy_class" not in recs[2].meta  # not an anatomy question


def test_medr1_options_with_commas_and_two_options(tmp_path: Path) -> None:
    out = tmp_path / "m.jsonl"
    summary = convert("medr1", MEDR1, out, allow_missing_images=True)
    assert summary.written == 3 and summary.missing_images == 3
    recs = read_records(out)
    assert [r.id for r in recs] == ["medr1_small-0", "medr1_small-1", "medr1_small-2"]  # the file name
    assert recs[1].question == "Which structure, if any, is marked?"
    assert recs[1].options == ["Aorta, ascending part", "Left lung", "Heart"]
    assert recs[1].answer_index == 0
    assert recs[2].options == ["Colon", "Stomach"] and recs[2].answer == "Stomach"
    assert recs[0].meta["orig"] == {"index": 0}


def test_parsers_directly() -> None:
    q, opts = parse_problem("Q, with comma? A)x, y, B)z, C)w")
    assert (q, opts) == ("Q, with comma?", ["x, y", "z", "w"])
    q, opts = parse_prompt("P\nQuestion:\nWhere?\nOptions:\nA. a\nB. b\n")
    assert (q, opts) == ("Where?", ["a", "b"])
    assert template_family("What is the brown anatomy?") == "zero_hop"
    assert template_family("What is the thing that is left of the grasper?") == "one_hop"


def test_ssgvqa_conversion(tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    summary = convert("ssgvqa", QA_TXT, out, image_root=FRAMES)
    recs = read_records(out)
    # 7 anatomy answers; presence lines and 4 non-anatomy answers dropped.
    assert summary.written == len(recs) == 7
    assert summary.skipped["non-anatomy answer"] == 4
    assert all("present" not in r.question for r in recs)
    assert {r.meta["anatomy_class"] for r in recs} == {
        "liver",
        "gallbladder",
        "omentum",
        "abdominal_wall_cavity",
        "cystic_plate",
        "gut",
        "cystic_duct",
    }
    for r in recs:
        assert len(r.options) == 4 and len(set(r.options)) == 4
        assert r.answer == display_name(r.meta["anatomy_class"])
        assert set(r.options) <= {display_name(label) for label in ANATOMY_LABELS}
        assert r.images == [f"{r.meta['video']}/{r.meta['frame']}.png"]
    by_video = {r.meta["video"]: r.meta["split"] for r in recs}
    assert by_video == {"VID01": "val", "VID02": "test", "VID05": "train"}
    first = recs[0]
    assert first.meta["template_family"] == "zero_hop" and first.meta["question_type"] == "query_type"
    assert "Abdominal Wall Cavity" in {r.answer for r in recs}
    # Every record carries what the frame's other lines state, for re-referring GDQA variants.
    vid05 = [r for r in recs if r.meta["video"] == "VID05"]
    assert vid05 and all(
        r.meta["scene_facts"]
        == {
            "anatomy": ["cystic_duct", "gut"],
            "objects": {"gut": {"position": "bottom-mid", "color": "yellow"}},
        }
        for r in vid05
    )


def test_ssgvqa_crlf_and_blank_lines(tmp_path: Path) -> None:
    src = tmp_path / "qa_txt" / "VID18"
    src.mkdir(parents=True)
    (src / "000100.txt").write_bytes(
        b"\r\nWhich anatomical structures are present?|liver,gut\r\n\r\nWhich tools are present?|hook\r\n"
        b"\r\nWhat anatomy is at the top-mid of the frame ?|liver|zero_hop.json|query_type\r\n\r\n"
        b"Is there a hook?|True|zero_hop.json|exist\r\n"
        b"What is the yellow anatomy?|gut|zero_hop.json|query_type\r\n"
    )
    out = tmp_path / "s.jsonl"
    summary = convert("ssgvqa", tmp_path / "qa_txt", out, allow_missing_images=True)
    recs = read_records(out)
    assert [r.answer for r in recs] == ["Liver", "Gut"]
    assert [r.meta["template_family"] for r in recs] == ["zero_hop", "zero_hop"]
    assert not any(r.question.endswith("\r") or "|" in r.question for r in recs)
    assert summary.skipped["non-anatomy answer"] == 1
    assert recs[0].meta["split"] == "val"
    assert summary.missing_images == 2


def test_ssgvqa_classes_restrict_answers_and_distractors(tmp_path: Path) -> None:
    out = tmp_path / "s.jsonl"
    classes = ["liver", "gallbladder", "Cystic Plate", "gut", "omentum"]
    rc = run_convert("ssgvqa", QA_TXT, out, ["--image-root", str(FRAMES), "--classes", *classes])
    assert rc == 0
    recs = read_records(out)
    allowed = {"liver", "gallbladder", "cystic_plate", "gut", "omentum"}
    assert {r.meta["anatomy_class"] for r in recs} <= allowed
    assert len(recs) == 5  # abdominal_wall_cavity and cystic_duct dropped
    shown = {display_name(c) for c in allowed}
    assert all(set(r.options) <= shown for r in recs)


def test_ssgvqa_is_deterministic_per_seed(tmp_path: Path) -> None:
    a, b, c = (tmp_path / f"{n}.jsonl" for n in "abc")
    convert("ssgvqa", QA_TXT, a, image_root=FRAMES, seed=7)
    convert("ssgvqa", QA_TXT, b, image_root=FRAMES, seed=7)
    convert("ssgvqa", QA_TXT, c, image_root=FRAMES, seed=8)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_ssgvqa_strategy_is_injectable(tmp_path: Path) -> None:
    class FirstLabels:
        name = "first"

        def choose(self, answer: str, vocabulary: Sequence[str], k: int, rng: random.Random) -> list[str]:
            return [v for v in vocabulary if v != answer][:k]

    recs = [r for _, r in iter_converted("ssgvqa", QA_TXT, strategy=FirstLabels(), image_root=FRAMES)]
    assert all(r.meta["distractors"] == "first" for r in recs)
    liver = next(r for r in recs if r.meta["anatomy_class"] == "liver")
    assert sorted(liver.options) == sorted(["Liver", "Abdominal Wall Cavity", "Adhesion", "Blood Vessel"])


@pytest.mark.parametrize(("fmt", "src", "extra"), CASES, ids=[c[0] for c in CASES])
def test_round_trip_through_jsonl(
    fmt: str, src: Path, extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    assert run_convert(fmt, src, first, extra) == 0
    root = [a for a in extra if a != "--image-root"]
    again = ["--image-root", root[0]] if "--image-root" in extra else ["--allow-missing-images"]
    assert run_convert("jsonl", first, second, again) == 0
    assert read_records(first) == read_records(second)
    assert first.read_bytes() == second.read_bytes()
    capsys.readouterr()


def test_classes_filter_other_formats(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    summary = convert("anatomy-r1", ANATOMY_R1, out, image_root=FIXTURES, classes=["liver"])
    assert summary.written == 1 and summary.skipped["class not in --classes"] == 2


def test_unknown_class_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.jsonl"
    rc = run_convert("ssgvqa", QA_TXT, out, ["--classes", "spleen", "--allow-missing-images"])
    refused(capsys, rc, out, "unknown anatomy class 'spleen'")
    with pytest.raises(ConfigError):
        convert("ssgvqa", QA_TXT, out, classes=["liver"], allow_missing_images=True)


def test_repeated_wrong_option_is_dropped(tmp_path: Path) -> None:
    src = write_json(
        tmp_path / "in.json",
        [
            {
                "image": "i.png",
                "problem": "Q? A)Right atrium, B)aorta, C)Right Atrium, D)Lungs",
                "solution": "<answer> B </answer>",
            }
        ],
    )
    summary = convert("medr1", src, tmp_path / "o.jsonl", allow_missing_images=True)
    rec = read_records(tmp_path / "o.jsonl")[0]
    assert rec.options == ["Right atrium", "aorta", "Lungs"] and rec.answer == "aorta"
    assert "repeated wrong option" in summary.line()


def test_json_list_reader_small_chunks(tmp_path: Path) -> None:
    items = [{"k": i, "text": "é" * i, "n": 10**12 + i} for i in range(50)] + [123456789, "s"]
    src = write_json(tmp_path / "x.json", items)
    for chunk in (1, 5, 64, 1 << 20):
        assert [obj for _, obj in iter_json_list(src, chunk_size=chunk)] == items


def test_medr1_real_size_scale(tmp_path: Path) -> None:
    """A list bigger than one read chunk streams through with every item converted."""
    n = 3000
    items = [
        {
            "image": f"Images/X/{i}.png",
            "problem": f"Q{i}? A)a{i}, B)b, C)c, D)d",
            "solution": "<answer> A </answer>",
        }
        for i in range(n)
    ]
    src = write_json(tmp_path / "big.json", items)
    summary = convert("medr1", src, tmp_path / "o.jsonl", allow_missing_images=True)
    assert summary.written == n and summary.missing_images == n


def test_record_serialisation_matches_the_json_module() -> None:
    recs = [
        Record(
            'a"b',
            ["x/é.png", "\\y\n"],
            "Q \u2028 ✓?",
            ["o1", "tab\t", "\x00"],
            1,
            "tab\t",
            "s",
            {"k": [1, 2.5, None, True], "é": {"x": "y"}},
        ),
        Record("a", ["p"], "q", ["a", "b"], True, "b", "s", {}),  # type: ignore[arg-type]
        Record("a", [1], "q", ["a", "b"], 0, "a", "s", {}),  # type: ignore[list-item]
    ]
    for r in recs:
        assert dumps_record(r) == json.dumps(r.to_dict(), ensure_ascii=False, separators=(",", ":"))


# --- refusals --------------------------------------------------------------------------------------


def test_truncated_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "t.json"
    src.write_bytes(ANATOMY_R1.read_bytes()[:-200])
    out = tmp_path / "o.jsonl"
    rc = run_convert("anatomy-r1", src, out, ["--allow-missing-images"])
    refused(capsys, rc, out, str(src), "item 2", "truncated")


def test_non_utf8_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "b.json"
    src.write_bytes(MEDR1.read_bytes().replace(b"Muscle", b"M\xffscle"))
    out = tmp_path / "o.jsonl"
    rc = run_convert("medr1", src, out, ["--allow-missing-images"])
    refused(capsys, rc, out, f"{src}:4:", "UTF-8")


def test_non_utf8_bytes_ssgvqa(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = tmp_path / "qa_txt"
    shutil.copytree(QA_TXT, tree)
    bad = tree / "VID02" / "000147.txt"
    bad.write_bytes(bad.read_bytes().replace(b"clipper doing", b"clipper d\xe9ing"))
    out = tmp_path / "o.jsonl"
    rc = run_convert("ssgvqa", tree, out, ["--allow-missing-images"])
    refused(capsys, rc, out, f"{bad}:4:", "UTF-8")


@pytest.mark.parametrize("fmt", ["anatomy-r1", "omnimedvqa", "medr1", "jsonl"])
def test_empty_file(fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "empty.json"
    src.write_bytes(b"")
    out = tmp_path / "o.jsonl"
    rc = run_convert(fmt, src, out, ["--allow-missing-images"])
    refused(capsys, rc, out, str(src), "empty")


def test_empty_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_json(tmp_path / "e.json", [])
    out = tmp_path / "o.jsonl"
    refused(capsys, run_convert("medr1", src, out), out, str(src), "no records")


def test_not_a_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_json(tmp_path / "e.json", {"question": "x"})
    out = tmp_path / "o.jsonl"
    refused(capsys, run_convert("omnimedvqa", src, out), out, str(src), "JSON list")


def test_letter_outside_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = [release_item(), release_item(solution="D", answer="Gut", n_options=3)]
    src = write_json(tmp_path / "r.json", items)
    out = tmp_path / "o.jsonl"
    rc = run_convert("anatomy-r1", src, out, ["--allow-missing-images"])
    refused(capsys, rc, out, f"{src}:item 1", "'D'", "outside the 3 options")


def test_letter_outside_options_medr1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = [{"image": "a.png", "problem": "Q? A)x, B)y", "solution": "<answer> C </answer>"}]
    src = write_json(tmp_path / "m.json", items)
    out = tmp_path / "o.jsonl"
    rc = run_convert("medr1", src, out, ["--allow-missing-images"])
    refused(capsys, rc, out, f"{src}:item 0", "'C'", "outside the 2 options")


def test_solution_disagrees_with_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = [release_item(), release_item(), release_item(solution="A", answer="Liver")]
    src = write_json(tmp_path / "r.json", items)
    out = tmp_path / "o.jsonl"
    rc = run_convert("anatomy-r1", src, out, ["--allow-missing-images"])
    refused(capsys, rc, out, f"{src}:item 2", "disagrees", "'Liver'")


def test_gt_answer_matching_no_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = json.loads(OMNI.read_text())
    items[1]["gt_answer"] = "Lateral meniscus"
    src = write_json(tmp_path / "o.json", items)
    out = tmp_path / "o.jsonl"
    rc = run_convert("omnimedvqa", src, out, ["--allow-missing-images"])
    refused(capsys, rc, out, f"{src}:item 1", "'Lateral meniscus'", "matches none")


def test_duplicate_question_ids(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = json.loads(OMNI.read_text())
    items[2]["question_id"] = items[0]["question_id"]
    src = write_json(tmp_path / "o.json", items)
    out = tmp_path / "o.jsonl"
    rc = run_convert("omnimedvqa", src, out, ["--allow-missing-images"])
    refused(capsys, rc, out, f"{src}:item 2", "duplicate id 'Chest CT Scan_0000'")


@pytest.mark.parametrize("fmt", ["anatomy-r1", "omnimedvqa", "medr1"])
def test_fewer_than_two_options(fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if fmt == "anatomy-r1":
        item: dict[str, object] = release_item(solution="A", answer="Gallbladder", n_options=1)
    elif fmt == "omnimedvqa":
        item = {
            "question": "Q?",
            "option_A": "Liver",
            "gt_answer": "Liver",
            "image_path": "a.png",
            "question_id": "q1",
        }
    else:
        item = {"image": "a.png", "problem": "Q? A)Liver", "solution": "<answer> A </answer>"}
    src = write_json(tmp_path / "in.json", [item])
    out = tmp_path / "o.jsonl"
    rc = run_convert(fmt, src, out, ["--allow-missing-images"])
    refused(capsys, rc, out, f"{src}:item 0", "option")


@pytest.mark.parametrize(("fmt", "src", "extra"), CASES, ids=[c[0] for c in CASES])
def test_missing_image(
    fmt: str, src: Path, extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong image root names every item whose image is missing, then the count; nothing is written."""
    n_items = {"anatomy-r1": 3, "omnimedvqa": 3, "medr1": 3, "ssgvqa": 7}[fmt]
    out = tmp_path / "o.jsonl"
    rc = run_convert(fmt, src, out, ["--image-root", str(tmp_path / "nowhere")])
    lines = refused_lines(capsys, rc, out)
    assert len(lines) == n_items + 1, lines
    for line in lines[:-1]:
        assert str(src) in line and "image not found" in line and "--allow-missing-images" in line
    assert lines[-1] == f"error: {src}: {n_items} problems; nothing was written to {out}"


def test_missing_image_names_the_item(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "root"
    shutil.copytree(OMNI_ROOT / "Images", root / "Images")
    (root / "Images" / "demo" / "001.png").unlink()
    out = tmp_path / "o.jsonl"
    rc = run_convert("omnimedvqa", OMNI, out, ["--image-root", str(root)])
    refused(capsys, rc, out, f"{OMNI}:item 1", "001.png")


def test_allow_missing_images_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.jsonl"
    rc = run_convert("anatomy-r1", ANATOMY_R1, out, ["--allow-missing-images"])
    assert rc == 0
    assert "wrote 3 records" in capsys.readouterr().out
    summary = convert("anatomy-r1", ANATOMY_R1, out, allow_missing_images=True)
    assert "3 missing images" in summary.line()


def test_refused_input_keeps_an_existing_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.jsonl"
    out.write_text("previous\n")
    src = write_json(tmp_path / "bad.json", [release_item(solution="A")])
    refused_rc = run_convert("anatomy-r1", src, out, ["--allow-missing-images"])
    assert refused_rc == 2 and out.read_text() == "previous\n"
    capsys.readouterr()


def test_malformed_ssgvqa_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = tmp_path / "qa_txt" / "VID03"
    tree.mkdir(parents=True)
    (tree / "000001.txt").write_text("p|x\nt|y\nWhat anatomy?|liver\n")
    out = tmp_path / "o.jsonl"
    rc = run_convert("ssgvqa", tmp_path / "qa_txt", out, ["--allow-missing-images"])
    refused(capsys, rc, out, f"{tree / '000001.txt'}:3", "question|answer")


def test_api_raises_data_error(tmp_path: Path) -> None:
    src = write_json(tmp_path / "x.json", [release_item(solution="Z")])
    with pytest.raises(DataError, match=r"item 0.*'Z'"):
        convert("anatomy-r1", src, tmp_path / "o.jsonl", allow_missing_images=True)
    assert not (tmp_path / "o.jsonl").exists()


# --- the release's own instruction ------------------------------------------------------------------

ASKS_TEXT = (
    "You are a surgeon looking at a cholecystectomy frame. Reply with the answer of the question only. "
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
)
ASKS_LETTER = (
    "You are a surgeon looking at a cholecystectomy frame. Reply with the choice letter only. "
    "Output the thinking process in <think> </think> and final answer in <answer> </answer> tags."
)


def release_prompt(instruction: str, options: Sequence[str]) -> str:
    lines = "\n".join(f"{'ABCD'[i]}. {o}" for i, o in enumerate(options))
    return (
        f"{instruction}\nQuestion:\nWhat anatomy is at the top-mid of the frame ?\nAnatomy Options:\n{lines}"
    )


def test_release_keeps_each_items_instruction(tmp_path: Path) -> None:
    """Both instruction versions convert with their wording, header and answer form, and render back
    exactly as the file wrote them; an SFT prompt's ``<image>`` mark is not part of the instruction."""
    from anatomy_r1.task.prompts import build_messages, render_prompt

    opts = ["Gallbladder", "Liver", "Omentum"]
    items = [
        {"instruction": release_prompt(ASKS_TEXT, opts), "solution": "B", "images": "/a/VID01/000001.png"},
        {"instruction": release_prompt(ASKS_LETTER, opts), "solution": "C", "images": "/a/VID01/000002.png"},
        {
            "sft_prompt": "<image>"
            + release_prompt("Answer in <answer> </answer> tags.", [*opts[:2], "Gut"]),
            "answer": "Gut",
            "images": "/a/VID01/000003.png",
        },
        {"instruction": release_prompt("", opts).lstrip(), "solution": "A", "images": "/a/VID01/000004.png"},
    ]
    out = tmp_path / "r.jsonl"
    convert("anatomy-r1", write_json(tmp_path / "GRPO.json", items), out, allow_missing_images=True)
    recs = read_records(out)
    assert [r.meta.get("source_instruction") for r in recs] == [
        ASKS_TEXT,
        ASKS_LETTER,
        "Answer in <answer> </answer> tags.",
        None,  # nothing before the question: no instruction to keep
    ]
    assert [r.meta.get("source_answer_form") for r in recs] == ["text", "letter", "text", None]
    assert [r.meta.get("source_options_header") for r in recs] == ["Anatomy Options:"] * 3 + [None]
    for rec, item in zip(recs[:2], items[:2], strict=True):
        assert render_prompt(rec, "source") == item["instruction"]
        assert [p["type"] for p in build_messages(rec, "source")[0]["content"]] == ["image", "text"]
    assert render_prompt(recs[2], "source") == items[2]["sft_prompt"].removeprefix("<image>")


def test_release_options_header_without_a_label(tmp_path: Path) -> None:
    from anatomy_r1.data.converters.release import split_prompt

    text = "<image>Persona.\n<image>\nQuestion:\nWhere?\nOptions:\nA. a\nB. b\n"
    assert split_prompt(text) == ("Persona.", "Where?", "Options:", ["a", "b"])
    assert parse_prompt(text) == ("Where?", ["a", "b"])


@pytest.mark.parametrize(
    ("instruction", "form"),
    [
        (ASKS_TEXT, "text"),
        (ASKS_LETTER, "letter"),
        ("Return only the LETTER of the correct option.", "letter"),
        ("Answer with one of the letters A-D.", "letter"),
        ("Output the final answer in <answer> </answer> tags.", "text"),
        ("Write the answer, e.g. a lettered list is not wanted.", "text"),  # 'lettered' is not 'letter'
    ],
)
def test_instruction_answer_form_reads_the_wording(instruction: str, form: str) -> None:
    from anatomy_r1.data.converters.release import instruction_answer_form

    assert instruction_answer_form(instruction) == form


@pytest.mark.parametrize(("fmt", "src", "extra"), CASES[1:], ids=[c[0] for c in CASES[1:]])
def test_formats_without_an_instruction_keep_none(
    fmt: str, src: Path, extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o.jsonl"
    assert run_convert(fmt, src, out, extra) == 0
    capsys.readouterr()
    recs = read_records(out)
    assert recs and not [k for r in recs for k in r.meta if k.startswith("source_")]
