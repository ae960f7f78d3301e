"""S(q): definitions, batch scoring, and the ``score`` command on files converted from release formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anatomy_r1.cli import main
from anatomy_r1.curriculum.scoring import (
    MAX_REPORTED,
    UnscorableOptions,
    check_scorable,
    s_q,
    score_file_records,
    score_records,
    summarize,
)
from anatomy_r1.curriculum.similarity import DEFAULT_BACKEND, get_backend
from anatomy_r1.data.converters import convert
from anatomy_r1.data.io import read_records
from anatomy_r1.data.schema import make_record
from anatomy_r1.data.vocab import ANATOMY_LABELS, class_similarity, label_from_display
from anatomy_r1.errors import ConfigError, DataError

OPTS = ["Gallbladder", "Cystic Plate", "Liver", "Gut"]


def test_modes_follow_their_definitions() -> None:
    prior = get_backend("matrix:prior")
    a = "gallbladder"
    d = ["cystic_plate", "liver", "gut"]
    sims = [class_similarity(a, x) for x in d]
    assert s_q(OPTS, 0, prior, "mean") == pytest.approx(np.mean(sims))
    assert s_q(OPTS, 0, prior, "max") == pytest.approx(max(sims))
    labels = [a, *d]
    pairs = [class_similarity(labels[i], labels[j]) for i in range(4) for j in range(i + 1, 4)]
    assert s_q(OPTS, 0, prior, "pairwise") == pytest.approx(np.mean(pairs))
    # The answer's position matters for mean/max, not for pairwise.
    assert s_q(OPTS, 3, prior, "mean") != pytest.approx(s_q(OPTS, 0, prior, "mean"))
    assert s_q(OPTS, 3, prior, "pairwise") == pytest.approx(s_q(OPTS, 0, prior, "pairwise"))
    with pytest.raises(ConfigError, match="mode"):
        s_q(OPTS, 0, prior, "median")
    with pytest.raises(DataError, match="outside"):
        s_q(OPTS, 4, prior)


def test_batch_scoring_equals_one_by_one(minilm) -> None:
    recs = [
        make_record(
            id=f"q{i}", images=["x.png"], question="Which?", options=opts, answer_index=ai, source="test"
        )
        for i, (opts, ai) in enumerate(
            [
                (OPTS, 0),
                (OPTS, 2),
                (["Cystic Duct", "Cystic Artery", "Blood Vessel"], 1),
                (["Liver", "Fluid"], 1),
                (OPTS[::-1], 1),
            ]
        )
    ]
    for mode in ("mean", "max", "pairwise"):
        batch = score_records(recs, minilm, mode)
        single = [s_q(r.options, r.answer_index, minilm, mode) for r in recs]
        assert batch == pytest.approx(single, abs=1e-5), mode
    assert score_records([], minilm) == []


def test_convert_then_score_release_formats(
    tmp_path: Path, medr1_file: Path, anatomy_r1_file: Path, minilm, capsys: pytest.CaptureFixture[str]
) -> None:
    """Med-R1 and Anatomy-R1 files, converted to canonical JSONL, then scored by the command."""
    med = tmp_path / "med.jsonl"
    convert("medr1", medr1_file, med, allow_missing_images=True)
    out = tmp_path / "med_scored.jsonl"
    assert main(["score", str(med), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "n=3" in printed and "median=" in printed
    assert printed.count("[") >= 10  # the histogram rows
    scored = read_records(out)
    assert [r.id for r in scored] == [r.id for r in read_records(med)]
    near_synonyms, unrelated = scored[0].meta["s_q"], scored[1].meta["s_q"]
    assert near_synonyms > unrelated + 0.2
    assert (
        scored[0].meta["s_q_backend"] == DEFAULT_BACKEND == "anatomy" and scored[0].meta["s_q_mode"] == "mean"
    )

    rel = tmp_path / "rel.jsonl"
    convert("anatomy-r1", anatomy_r1_file, rel, allow_missing_images=True)
    out2 = tmp_path / "rel_scored.jsonl"
    assert (
        main(
            [
                "score",
                str(rel),
                "--out",
                str(out2),
                "--backend",
                "matrix:prior",
                "--mode",
                "max",
                "--allow-missing-images",
            ]
        )
        == 0
    )
    s = [r.meta["s_q"] for r in read_records(out2)]
    # Gallbladder vs cystic plate (0.75) beats liver's best match among fluid/gut/wall (0.2).
    assert s == pytest.approx([0.75, 0.2])


def test_score_refuses_unknown_option_and_writes_nothing(
    tmp_path: Path, medr1_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    med = tmp_path / "med.jsonl"
    convert("medr1", medr1_file, med, allow_missing_images=True)
    out = tmp_path / "out.jsonl"
    assert main(["score", str(med), "--out", str(out), "--backend", "matrix:prior"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "'common bile duct'" in err
    lines = err.splitlines()
    assert all(line.startswith("error: ") for line in lines)
    ids = [r.id for r in read_records(med)]
    # Line 1 of the converted file is the first item, whose four options the prior lacks.
    assert f"error: {med}:1: item {ids[0]!r}: option 'common bile duct' (label 'common_bile_duct'" in err
    assert f"error: {med}:2: item {ids[1]!r}: option 'violin'" in err
    assert "cystic duct" not in [ln.split("option ")[-1] for ln in lines]  # known labels are not listed
    assert lines[-1].startswith(f"error: {med}: 6 option(s) in 2 item(s) cannot be scored by matrix:prior")
    assert not out.exists()
    assert main(["score", str(tmp_path / "missing.jsonl"), "--out", str(out)]) == 2


def test_score_does_not_look_at_images(tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl"
    rec = make_record(
        id="a", images=["/nowhere/at/all.png"], question="Q?", options=OPTS, answer_index=1, source="t"
    )
    p.write_text(json.dumps(rec.to_dict()) + "\n", encoding="utf-8")
    assert main(["score", str(p), "--out", str(tmp_path / "o.jsonl"), "--backend", "matrix:prior"]) == 0


def test_summary_handles_constant_scores() -> None:
    text = summarize([0.5, 0.5, 0.5])
    assert "n=3" in text and "mean=0.5000" in text
    assert summarize([]) == "n=0"


MEDR1_REAL_LABELS = [
    {
        "image": "Images/MIAS/x1.png",
        "problem": "What does this image show? A)Lung tissue, B)Breast Tissue, C)Muscle tissue, "
        "D)Intestinal tissue",
        "solution": "<answer> B </answer>",
    },
    {
        "image": "Images/RUS_CHN/x2.png",
        "problem": "Which joint does the bone in the picture come from? A)Costovertebral Junction, B)Ulna., "
        "C)Radius, D)Wrist",
        "solution": "<answer> B </answer>",
    },
    {
        "image": "Images/OLIVES/x3.png",
        "problem": "Is this the right eye or the left eye? A)Right Eye, B)Left Eye",
        "solution": "<answer> A </answer>",
    },
    {
        "image": "Images/RadImageNet/x4.png",
        "problem": "What organ is shown? A)Liver, B)Kidney, C)Gallbladder, D)Prostate (for males)",
        "solution": "<answer> A </answer>",
    },
]


@pytest.fixture
def medr1_real_labels(tmp_path: Path) -> Path:
    raw = tmp_path / "Anatomy Identification_train.json"
    raw.write_text(json.dumps(MEDR1_REAL_LABELS), encoding="utf-8")
    out = tmp_path / "medr1.jsonl"
    convert("medr1", raw, out, allow_missing_images=True)
    return out


def test_medr1_labels_score_with_the_default_backend(
    tmp_path: Path, medr1_real_labels: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scored.jsonl"
    assert main(["score", str(medr1_real_labels), "--out", str(out)]) == 0
    scored = [r.meta for r in read_records(out)]
    assert {m["s_q_backend"] for m in scored} == {"anatomy"}
    tissues, joints, eyes, organs = (m["s_q"] for m in scored)
    assert all(0.1 <= v <= 1.0 for v in (tissues, joints, eyes, organs))
    # Ulna vs its forearm neighbour radius and the wrist is harder than breast vs other organs' tissue.
    assert joints > tissues
    # Liver vs {kidney, gallbladder, prostate}: the prior's liver/gallbladder value is part of the mean.
    anatomy = get_backend("anatomy")
    expected = np.mean(
        [anatomy.similarity("Liver", x) for x in ("Kidney", "Gallbladder", "Prostate (for males)")]
    )
    assert organs == pytest.approx(expected, abs=1e-6)
    assert anatomy.similarity("Liver", "Gallbladder") == pytest.approx(0.55)


def test_prior_refusal_names_file_line_and_item_and_writes_nothing(
    tmp_path: Path, medr1_real_labels: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scored.jsonl"
    assert main(["score", str(medr1_real_labels), "--out", str(out), "--backend", "matrix:prior"]) == 2
    lines = capsys.readouterr().err.splitlines()
    f = medr1_real_labels
    records = read_records(f)
    expected = [
        f"error: {f}:{n}: item {r.id!r}: option {o!r} (label {label_from_display(o)!r} is not in the "
        "similarity matrix prior)"
        for n, r in enumerate(records, start=1)
        for o in r.options
        if label_from_display(o) not in ANATOMY_LABELS
    ]
    assert lines[:-1] == expected
    assert len(expected) == 12 and any("'Right Eye'" in ln for ln in expected)
    assert not any("'Liver'" in ln or "'Gallbladder'" in ln for ln in lines)  # prior labels are not listed
    assert lines[-1].startswith(f"error: {f}: 12 option(s) in 4 item(s) cannot be scored by matrix:prior")
    assert not out.exists() and not list(tmp_path.glob(".scored*"))


def test_check_scorable_limits_the_list_and_finds_lines_for_a_subset(tmp_path: Path) -> None:
    records = [
        make_record(
            id=f"q{i}",
            images=["x.png"],
            question="Q?",
            options=["Liver", f"Organ {i}"],
            answer_index=0,
            source="t",
        )
        for i in range(MAX_REPORTED + 5)
    ]
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(json.dumps(r.to_dict()) for r in records) + "\n", encoding="utf-8")
    subset = records[3:]
    with pytest.raises(UnscorableOptions) as e:
        score_file_records(subset, "matrix:prior", "mean", path)
    lines = e.value.lines
    assert lines[0].startswith(f"{path}:4: item 'q3': option 'Organ 3'")
    assert len(lines) == MAX_REPORTED + 2 and lines[-2] == "... and 2 more options"
    assert str(e.value).count("\nerror: ") == len(lines) - 1  # every line reads as an error: line
    # A path that is not a JSON Lines file still names the item.
    with pytest.raises(DataError, match=r"^raw.json: item 'q0': option 'Organ 0'"):
        check_scorable(records[:1], "matrix:prior", "raw.json")
    # Nothing to refuse: the same scores as score_records.
    known = [
        make_record(id="k", images=["x.png"], question="Q?", options=OPTS, answer_index=1, source="t"),
    ]
    assert score_file_records(known, "matrix:prior", "max", path) == score_records(
        known, "matrix:prior", "max"
    )
    with pytest.raises(ConfigError, match="mode"):
        score_file_records(known, "matrix:prior", "median", path)
