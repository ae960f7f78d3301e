"""``probe --vocabulary auto`` on files that pool datasets or question types: the warning and the restriction.

The fixtures are small files in the shapes users bring: Med-R1's per-question-type split (image paths
``Images/<dataset>/<file>``, the question type in the file name) and OmniMedVQA's own JSON (``dataset``
and ``question_type`` per item), both converted with ``anatomy-r1 data convert``. The similarity matrix
makes every label of a dataset alike and labels of different datasets unalike, so with one vocabulary
for the whole file each question's easiest distractors come from another dataset: the nonsense questions
("oculus dexter or oculus sinister?" offered a spine label) the warning is about.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anatomy_r1.cli import main
from anatomy_r1.curriculum.similarity import get_backend
from anatomy_r1.data.io import read_records
from anatomy_r1.data.schema import make_record
from anatomy_r1.data.vocab import label_from_display
from anatomy_r1.errors import ConfigError
from anatomy_r1.evaluation import probe
from anatomy_r1.evaluation.probe_vocabulary import (
    mixing_warnings,
    parse_vocabulary_by,
    record_group,
    resolve_vocabulary,
)

DATASETS = {
    "Fundus": ["Right Eye", "Left Eye"],
    "SpineXR": ["Costovertebral Junction", "Lumbar Vertebra", "Sacrum", "Thoracic Vertebra"],
    "MURA": ["Radius", "Ulna", "Humerus", "Scaphoid"],
    "MIAS": ["Breast Tissue", "Pectoral Muscle"],
}
MEDR1_ITEMS = [
    ("Fundus", "Is this the oculus dexter or oculus sinister?", ["Right Eye", "Left Eye"], 0),
    ("Fundus", "Which eye does this fundus photograph show?", ["Right Eye", "Left Eye"], 1),
    ("SpineXR", "Which structure is marked?", ["Sacrum", "Costovertebral Junction", "Lumbar Vertebra"], 1),
    ("SpineXR", "Which vertebra is shown?", ["Thoracic Vertebra", "Lumbar Vertebra"], 0),
    ("MURA", "Which bone is fractured?", ["Ulna", "Radius", "Humerus", "Scaphoid"], 1),
    ("MURA", "Which bone is this?", ["Humerus", "Scaphoid"], 1),
    ("MIAS", "What tissue is shown in the upper left?", ["Pectoral Muscle", "Breast Tissue"], 0),
]  # fmt: skip


def _matrix(path: Path, groups: dict[str, list[str]]) -> str:
    """A ``matrix:FILE`` backend: 0.8 within a group, 0.1 across groups."""
    labels = [label_from_display(x) for names in groups.values() for x in names]
    group_of = {label_from_display(x): g for g, names in groups.items() for x in names}
    m = [[1.0 if a == b else 0.8 if group_of[a] == group_of[b] else 0.1 for b in labels] for a in labels]
    path.write_text(json.dumps({"labels": labels, "matrix": m}), encoding="utf-8")
    return f"matrix:{path}"


def _png(path: Path, shade: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (84, 84), (shade, 100, 200 - shade)).save(path)


@pytest.fixture
def medr1_file(tmp_path: Path, capsys) -> Path:
    """Med-R1's ``Anatomy Identification_test.json`` for four datasets, converted to the canonical format."""
    root = tmp_path / "omnimed"
    items = []
    for i, (dataset, question, options, answer) in enumerate(MEDR1_ITEMS):
        image = f"Images/{dataset}/{i:04d}.png"
        _png(root / image, 30 * i)
        problem = f"{question} " + ", ".join(f"{'ABCD'[j]}){o}" for j, o in enumerate(options))
        items.append({"image": image, "problem": problem, "solution": f"<answer> {'ABCD'[answer]} </answer>"})
    src = tmp_path / "Anatomy Identification_test.json"
    src.write_text(json.dumps(items, indent=1), encoding="utf-8")
    out = root / "anatomy_test.jsonl"
    assert main(["data", "convert", "--format", "medr1", str(src), "--out", str(out), "--image-root",
                 str(root)]) == 0  # fmt: skip
    capsys.readouterr()
    return out


@pytest.fixture
def omnimed_file(tmp_path: Path, capsys) -> Path:
    """OmniMedVQA JSON with two question types within each of two datasets."""
    root = tmp_path / "omni"
    rows = [
        ("MURA", "Anatomy Identification", "Which bone is shown?", ["Radius", "Ulna", "Humerus"], "Radius"),
        ("MURA", "Anatomy Identification", "Which bone is this?", ["Humerus", "Scaphoid"], "Scaphoid"),
        ("MURA", "Modality Recognition", "What imaging modality is this?", ["X-Ray", "CT", "MR"], "X-Ray"),
        ("SpineXR", "Anatomy Identification", "Which level?", ["Sacrum", "Lumbar Vertebra"], "Sacrum"),
        ("SpineXR", "Modality Recognition", "What modality was used?", ["CT", "X-Ray"], "X-Ray"),
        ("SpineXR", "Modality Recognition", "Name the modality.", ["MR", "CT", "X-Ray"], "MR"),
    ]  # fmt: skip
    items = []
    for i, (dataset, qtype, question, options, answer) in enumerate(rows):
        image = f"Images/{dataset}/{i:04d}.png"
        _png(root / image, 40 * i)
        item = {"question_id": f"omni-{i}", "question": question, "gt_answer": answer, "image_path": image,
                "question_type": qtype, "dataset": dataset, "modality_type": "X-Ray"}  # fmt: skip
        item.update({f"option_{'ABCD'[j]}": o for j, o in enumerate(options)})
        items.append(item)
    src = tmp_path / "omni.json"
    src.write_text(json.dumps(items), encoding="utf-8")
    out = root / "omni.jsonl"
    assert main(["data", "convert", "--format", "omnimedvqa", str(src), "--out", str(out), "--image-root",
                 str(root)]) == 0  # fmt: skip
    capsys.readouterr()
    return out


# ---------------------------------------------------------------------------------------------- groups


def test_groups_come_from_meta_or_the_image_path() -> None:
    def rec(images: list[str], **meta: str):
        return make_record(id="q", images=images, question="?", options=["A", "B"], answer_index=0,
                           source="t", meta=meta)  # fmt: skip

    assert record_group(rec(["Images/MURA/1.png"], dataset="MURA-v1.1"), "dataset") == "MURA-v1.1"
    assert record_group(rec(["Images/MURA/1.png"]), "dataset") == "MURA"
    assert record_group(rec(["/data/OmniMedVQA/Images/SpineXR/a/1.png"]), "dataset") == "SpineXR"
    assert record_group(rec(["images/train/s000001.png"]), "dataset") is None  # the synthetic set
    assert record_group(rec(["Images/x.png"]), "dataset") is None  # no dataset folder
    assert record_group(rec(["x.png"], question_type="Anatomy Identification"), "question_type") == (
        "Anatomy Identification"
    )
    assert parse_vocabulary_by("none") == () and parse_vocabulary_by(" Dataset ") == ("dataset",)
    assert parse_vocabulary_by("question_type,dataset") == ("question_type", "dataset")
    with pytest.raises(ConfigError, match="unknown field 'region'"):
        parse_vocabulary_by("dataset,region")


def test_medr1_records_carry_their_dataset_and_question_type(medr1_file: Path) -> None:
    records = read_records(medr1_file)
    assert [record_group(r, "dataset") for r in records] == [d for d, *_ in MEDR1_ITEMS]
    assert {record_group(r, "question_type") for r in records} == {"Anatomy Identification"}


# ------------------------------------------------------------------------------------ library behaviour


def test_one_vocabulary_for_the_file_mixes_datasets_and_says_how_often(medr1_file: Path, tmp_path) -> None:
    records = read_records(medr1_file)
    backend = get_backend(_matrix(tmp_path / "sim.json", DATASETS))
    sets = probe.build_probe_sets(records, resolve_vocabulary("auto", records), backend)
    assert len(sets.questions) == len(records)
    # every easiest set draws from another dataset: the eye questions are offered spine or bone labels
    own = {d: {label_from_display(x) for x in names} for d, names in DATASETS.items()}
    for q, easy in zip(sets.questions, sets.easiest, strict=True):
        labels = {label_from_display(o) for o in easy.options}
        assert labels - own[record_group(q, "dataset")], easy.options
    mix = sets.mixing
    assert set(mix) == {"dataset"}  # a single question type: nothing to mix there
    assert mix["dataset"]["groups"] == 4 and mix["dataset"]["n_questions"] == len(records)
    example = mix["dataset"]["example"]
    assert example["id"] == records[0].id and example["group"] == "Fundus"
    assert example["option"] not in DATASETS["Fundus"] and "Fundus" not in example["option_groups"]
    (line,) = mixing_warnings(mix, len(sets.questions), ())
    assert line.startswith(f"{len(records)} of {len(records)} questions are re-posed with choices")
    assert "another dataset (4 datasets in the file)" in line and "--vocabulary-by dataset" in line


def test_vocabulary_by_dataset_keeps_each_question_within_its_dataset(medr1_file: Path, tmp_path) -> None:
    records = read_records(medr1_file)
    backend = get_backend(_matrix(tmp_path / "sim.json", DATASETS))
    sets = probe.build_probe_sets(records, resolve_vocabulary("auto", records), backend, by=["dataset"])
    assert len(sets.questions) == len(records) and sets.vocabulary_by == ("dataset",)
    own = {d: {label_from_display(x) for x in names} for d, names in DATASETS.items()}
    for q, easy, hard in zip(sets.questions, sets.easiest, sets.hardest, strict=True):
        group = own[record_group(q, "dataset")]
        for posed in (easy, hard):
            assert {label_from_display(o) for o in posed.options} <= group, posed.options
    assert sets.mixing["dataset"]["n_questions"] == 0
    assert mixing_warnings(sets.mixing, len(sets.questions), ("dataset",)) == []
    assert sets.group_vocabularies["dataset=Fundus"] == ["left_eye", "right_eye"]
    assert len(sets.group_vocabularies) == 4


def test_a_group_too_small_for_a_question_is_skipped_not_padded(tmp_path: Path) -> None:
    def rec(rid: str, dataset: str, options: list[str]):
        return make_record(id=rid, images=[f"Images/{dataset}/{rid}.png"], question="?", options=options,
                           answer_index=0, source="medr1")  # fmt: skip

    records = [rec("a", "MIAS", ["Breast Tissue", "Pectoral Muscle"]),
               rec("b", "MIAS", ["Pectoral Muscle", "Breast Tissue"]),
               rec("c", "MURA", ["Radius", "Ulna", "Humerus"])]  # fmt: skip
    groups = {"MIAS": DATASETS["MIAS"], "MURA": ["Radius", "Ulna", "Humerus"]}
    backend = get_backend(_matrix(tmp_path / "sim.json", groups))
    vocabulary = resolve_vocabulary("auto", records)
    assert len(probe.build_probe_sets(records, vocabulary, backend).questions) == 3
    # within MIAS two labels are enough for two options; MURA's three labels too
    sets = probe.build_probe_sets(records, vocabulary, backend, by=["dataset"])
    assert len(sets.questions) == 3 and sets.skipped_too_few_labels == 0
    # an explicit list is restricted the same way: only the labels each dataset itself uses
    sets = probe.build_probe_sets(records, ["radius", "ulna", "breast_tissue", "pectoral_muscle"], backend,
                                  by=["dataset"])  # fmt: skip
    assert [q.id for q in sets.questions] == ["a", "b"]
    assert sets.skipped_not_in_vocabulary == 0 and sets.skipped_too_few_labels == 1  # c: 2 labels, 3 options


def test_question_types_within_a_dataset_are_mixed_until_restricted(omnimed_file: Path, tmp_path) -> None:
    records = read_records(omnimed_file)
    groups = {**{d: DATASETS[d] for d in ("MURA", "SpineXR")}, "modality": ["X-Ray", "CT", "MR"]}
    backend = get_backend(_matrix(tmp_path / "sim.json", groups))
    vocabulary = resolve_vocabulary("auto", records)
    sets = probe.build_probe_sets(records, vocabulary, backend, by=["dataset"])
    n_mixed = sets.mixing["question_type"]["n_questions"]
    assert n_mixed > 0 and sets.mixing["dataset"]["n_questions"] == 0
    (line,) = mixing_warnings(sets.mixing, len(sets.questions), sets.vocabulary_by)
    assert "another question type (2 question types in the file)" in line
    assert "--vocabulary-by dataset,question_type" in line
    both = probe.build_probe_sets(records, vocabulary, backend, by=["dataset", "question_type"])
    assert all(m["n_questions"] == 0 for m in both.mixing.values())
    modality = {"x_ray", "ct", "mr"}
    for q, easy, hard in zip(both.questions, both.easiest, both.hardest, strict=True):
        is_modality = q.meta["question_type"] == "Modality Recognition"
        for posed in (easy, hard):
            assert all((label_from_display(o) in modality) == is_modality for o in posed.options), (
                posed.options
            )


# ------------------------------------------------------------------------------------------ end to end


def _probe(model: Path, data: Path, out: Path, backend: str, *extra: str) -> int:
    return main(
        ["probe", "--model", str(model), "--data", str(data), "--out", str(out), "--backend", backend,
         "--k", "1", "--max-new-tokens", "2", "--template", "compact_text", *extra]
    )  # fmt: skip


def test_probe_warns_about_mixed_datasets_and_restricts_on_request(
    tiny_model: Path, medr1_file: Path, tmp_path: Path, capsys
) -> None:
    backend = _matrix(tmp_path / "sim.json", DATASETS)
    out = tmp_path / "mixed"
    assert _probe(tiny_model, medr1_file, out, backend) == 0
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning: ")]
    n = len(MEDR1_ITEMS)
    assert len(warnings) == 1, err
    assert warnings[0].startswith(
        f"warning: --vocabulary auto: {n} of {n} questions are re-posed with choices"
    )
    assert "--vocabulary-by dataset" in warnings[0]
    res = json.loads((out / "probe.json").read_text())
    assert res["vocabulary_mixing"]["dataset"]["n_questions"] == n
    assert res["settings"]["vocabulary_by"] == [] and res["vocabulary_groups"] == {}
    assert "**Mixed vocabulary:**" in (out / "probe.md").read_text()

    restricted = tmp_path / "restricted"
    assert _probe(tiny_model, medr1_file, restricted, backend, "--vocabulary-by", "dataset") == 0
    assert "warning" not in capsys.readouterr().err
    res = json.loads((restricted / "probe.json").read_text())
    assert res["settings"]["vocabulary_by"] == ["dataset"]
    assert res["n_questions"] == n and res["vocabulary_mixing"]["dataset"]["n_questions"] == 0
    assert res["vocabulary_groups"]["dataset=SpineXR"] == [
        "costovertebral_junction", "lumbar_vertebra", "sacrum", "thoracic_vertebra"
    ]  # fmt: skip
    md = (restricted / "probe.md").read_text()
    assert "Mixed vocabulary" not in md and "own dataset (4 groups)" in md


def test_an_unknown_vocabulary_field_is_refused_before_anything_runs(
    tiny_model: Path, medr1_file: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "o"
    assert _probe(tiny_model, medr1_file, out, "matrix:prior", "--vocabulary-by", "region") == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --vocabulary-by 'region': unknown field")
    assert not out.exists()


def test_explicit_labels_no_group_uses_are_named_when_restricting(
    tiny_model: Path, medr1_file: Path, tmp_path: Path, capsys
) -> None:
    backend = _matrix(tmp_path / "sim.json", {**DATASETS, "Abdomen": ["Liver", "Spleen"]})
    labels = ",".join([*(x for names in DATASETS.values() for x in names), "Liver", "Spleen"])
    out = tmp_path / "o"
    flags = ("--vocabulary", labels, "--vocabulary-by", "dataset")
    assert _probe(tiny_model, medr1_file, out, backend, *flags) == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("warning: --vocabulary: 2 of 14 labels (liver, spleen) are used by no ")
    assert "--vocabulary-by dataset" in warnings[0]
