"""S(q): definitions, batch scoring, and the ``score`` command on files converted from release formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anatomy_r1.cli import main
from anatomy_r1.curriculum.scoring import s_q, score_records, summarize
from anatomy_r1.curriculum.similarity import get_backend
from anatomy_r1.data.converters import convert
from anatomy_r1.data.io import read_records
from anatomy_r1.data.schema import make_record
from anatomy_r1.data.vocab import class_similarity
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
    assert scored[0].meta["s_q_backend"] == "minilm" and scored[0].meta["s_q_mode"] == "mean"

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
