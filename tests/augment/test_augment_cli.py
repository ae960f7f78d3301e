"""``anatomy-r1 augment`` end to end, including refused inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anatomy_r1.cli import main
from anatomy_r1.data.io import read_records

DATA = Path(__file__).parent / "data"


def test_augment_writes_variants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "variants.jsonl"
    rc = main(["augment", str(DATA / "templated.jsonl"), "--n", "4", "--out", str(out), "--seed", "3"])
    assert rc == 0
    originals = {r.id: r for r in read_records(DATA / "templated.jsonl")}
    variants = read_records(out)
    assert len(variants) == 4 * len(originals)
    for v in variants:
        orig = originals[v.meta["variant_of"]]
        assert (
            v.answer == orig.answer and sorted(v.options) == sorted(orig.options) and v.images == orig.images
        )
        assert v.id.startswith(orig.id + "~v")
    text = capsys.readouterr().out
    assert f"records in: {len(originals)}" in text
    assert f"variants out: {len(variants)}" in text
    assert "distinct wordings" in text and "100.0%" in text
    assert "ssg-000~v1" in text  # preview of the first records

    again = tmp_path / "again.jsonl"
    main(["augment", str(DATA / "templated.jsonl"), "--n", "4", "--out", str(again), "--seed", "3"])
    assert again.read_bytes() == out.read_bytes()


def test_augment_kinds(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    assert (
        main(
            [
                "augment",
                str(DATA / "freeform.jsonl"),
                "--n",
                "2",
                "--out",
                str(out),
                "--kinds",
                "reorder",
                "--preview",
                "0",
            ]
        )
        == 0
    )
    originals = {r.id: r for r in read_records(DATA / "freeform.jsonl")}
    for v in read_records(out):
        assert v.question == originals[v.meta["variant_of"]].question
        assert v.meta["variant_kind"] == "reorder"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"id": "a"', "bad.jsonl:1: invalid JSON"),
        (
            '{"id":"a","images":["x.png"],"question":"Q?","options":["A1","B1"],"answer_index":0,'
            '"answer":"A1","source":"s"}\n\xff\xfe\n'.encode("latin-1"),
            "bad.jsonl:2: not valid UTF-8",
        ),
        (
            b'{"id":"a","images":["x.png"],"question":"Q?","options":["A1","B1"],"answer_index":1,'
            b'"answer":"A1","source":"s"}\n',
            "bad.jsonl:1",
        ),
        (b"", "no records"),
    ],
)
def test_augment_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    out = tmp_path / "out.jsonl"
    rc = main(["augment", str(bad), "--n", "3", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc != 0
    assert message in err and err.startswith("error: ") and err.count("\n") == 1
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]  # no temporary file left behind either


def test_augment_refuses_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.jsonl"
    assert main(["augment", str(DATA / "freeform.jsonl"), "--out", str(out), "--kinds", "template,llm"]) == 2
    assert "unknown kind(s) llm" in capsys.readouterr().err
    assert main(["augment", str(DATA / "freeform.jsonl"), "--out", str(out), "--n", "0"]) == 2
    assert not out.exists()


def test_augment_nothing_to_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "eye.jsonl"
    src.write_text(
        json.dumps(
            {
                "id": "e",
                "images": ["e.png"],
                "question": "Is this the right eye or the left eye?",
                "options": ["right eye", "left eye"],
                "answer_index": 0,
                "answer": "right eye",
                "source": "s",
            }
        )
        + "\n"
    )
    out = tmp_path / "o.jsonl"
    rc = main(["augment", str(src), "--out", str(out), "--kinds", "template,lexical"])
    assert rc == 2 and "nothing to write" in capsys.readouterr().err
    assert not out.exists()


def upper_paraphraser(question: str, n: int) -> list[str]:
    """A stand-in for an LLM paraphraser: deterministic, one rewording."""
    return [f"Please answer: {question}"][:n]


def test_augment_output_is_a_valid_variants_file_for_training(tmp_path: Path, tiny_data: Path) -> None:
    """What ``augment`` writes (with re-referring and an external paraphraser) passes the training check."""
    from anatomy_r1.augment.prepared import PreparedVariants

    out = tmp_path / "variants.jsonl"
    rc = main(
        [
            "augment", str(tiny_data / "train.jsonl"), "--n", "3", "--out", str(out), "--preview", "0",
            "--kinds", "rerefer,reorder", "--paraphraser", f"{__name__}:upper_paraphraser",
        ]
    )  # fmt: skip
    assert rc == 0
    records = read_records(tiny_data / "train.jsonl")
    prepared = PreparedVariants.from_file(out)
    assert prepared.check(records) == len(records)
    kinds = {v.meta["variant_kind"] for vs in prepared.by_original.values() for v in vs}
    assert {"rerefer", "external"} <= kinds


@pytest.mark.parametrize("spec", ["nope", "no_such_module_xyz:f", "json:no_such_attr", "json:__doc__"])
def test_augment_refuses_a_bad_paraphraser(
    tmp_path: Path, spec: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "v.jsonl"
    assert main(["augment", str(DATA / "templated.jsonl"), "--out", str(out), "--paraphraser", spec]) == 2
    assert "--paraphraser" in capsys.readouterr().err and not out.exists()


def release_like(n: int) -> list[dict[str, object]]:
    """Records as converted from the Anatomy-R1 release: templated questions, no scene facts."""
    return [
        {
            "id": f"GRPO-{i}",
            "images": [f"/CholecT45/data/VID01/{i:06d}.png"],
            "question": "What is the brown anatomy?",
            "options": ["Liver", "Gut", "Omentum", "Cystic Plate"],
            "answer_index": 0,
            "answer": "Liver",
            "source": "anatomy-r1",
            "meta": {"anatomy_class": "liver"},
        }
        for i in range(n)
    ]


def test_rerefer_on_release_records_says_they_have_no_scene_graph(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "train.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in release_like(3)))
    out = tmp_path / "o.jsonl"
    assert main(["augment", str(src), "--out", str(out), "--kinds", "rerefer", "--preview", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {out}: nothing to write: ")
    assert "rerefer needs a scene graph: 3 of 3 records have no meta.scene_facts" in err
    assert str(tmp_path / "scenes" / "*.jsonl") in err
    assert "--format ssgvqa" in err and "--kinds template,lexical,reorder" in err
    assert not out.exists() and sorted(tmp_path.iterdir()) == [src]


def test_rerefer_alongside_other_kinds_notes_the_records_it_could_not_serve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "train.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in release_like(2)))
    out = tmp_path / "o.jsonl"
    rc = main(["augment", str(src), "--out", str(out), "--kinds", "rerefer,reorder", "--preview", "0"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "note: rerefer needs a scene graph: 2 of 2 records" in text
    assert {v.meta["variant_kind"] for v in read_records(out)} == {"reorder"}
