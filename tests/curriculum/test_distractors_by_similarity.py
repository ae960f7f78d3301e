"""SimilarityDistractors and re-posing a question at several difficulty levels."""

from __future__ import annotations

import random

import numpy as np
import pytest

from anatomy_r1.curriculum.distractors_by_similarity import SimilarityDistractors, pose_at_levels
from anatomy_r1.curriculum.scoring import s_q
from anatomy_r1.data.answer_options import DistractorStrategy
from anatomy_r1.data.schema import make_record
from anatomy_r1.data.vocab import ANATOMY_LABELS, class_similarity, display_name
from anatomy_r1.errors import ConfigError, DataError


def mean_sim(answer: str, chosen: list[str]) -> float:
    return float(np.mean([class_similarity(answer, c) for c in chosen]))


def test_easiest_hardest_target_ordering() -> None:
    rng = random.Random(0)
    easy = SimilarityDistractors("matrix:prior", "easiest").choose("cystic_duct", ANATOMY_LABELS, 3, rng)
    hard = SimilarityDistractors("matrix:prior", "hardest").choose("cystic_duct", ANATOMY_LABELS, 3, rng)
    assert set(hard) == {"cystic_artery", "cystic_pedicle", "blood_vessel"}
    assert "cystic_duct" not in easy and len(set(easy)) == 3
    assert mean_sim("cystic_duct", easy) == pytest.approx(0.1)
    mid = SimilarityDistractors("matrix:prior", "target", target=0.4).choose(
        "cystic_duct", ANATOMY_LABELS, 3, rng
    )
    assert mean_sim("cystic_duct", easy) < mean_sim("cystic_duct", mid) < mean_sim("cystic_duct", hard)
    assert abs(mean_sim("cystic_duct", mid) - 0.4) < 0.02


def test_target_is_closest_subset_and_ties_follow_rng() -> None:
    strat = SimilarityDistractors(class_similarity, "target", target=0.1)
    picks = {tuple(sorted(strat.choose("fluid", ANATOMY_LABELS, 2, random.Random(s)))) for s in range(20)}
    # Many labels sit at the default 0.1 from fluid: the rng picks among the equally good subsets ...
    assert len(picks) > 1
    assert all(mean_sim("fluid", list(p)) == pytest.approx(0.1) for p in picks)
    # ... and the same seed picks the same one.
    a = strat.choose("fluid", ANATOMY_LABELS, 2, random.Random(3))
    assert a == strat.choose("fluid", ANATOMY_LABELS, 2, random.Random(3))


def test_large_vocabulary_target_search() -> None:
    vocab = [f"c{i}" for i in range(60)]
    values = {f"c{i}": i / 60 for i in range(60)}

    def sim(a: str, b: str) -> float:
        return 1.0 if a == b else values[b] if a == "c0" else values[a]

    strat = SimilarityDistractors(sim, "target", target=0.5)
    chosen = strat.choose("c0", vocab, 6, random.Random(0))  # C(59, 6) subsets: too many to enumerate
    assert len(set(chosen)) == 6 and "c0" not in chosen
    assert abs(np.mean([values[c] for c in chosen]) - 0.5) < 0.01


def test_text_backend_uses_display_names(minilm) -> None:
    strat = SimilarityDistractors(minilm, "hardest")
    chosen = strat.choose("cystic_artery", ANATOMY_LABELS, 2, random.Random(0))
    sims = strat.similarities("cystic_artery", [x for x in ANATOMY_LABELS if x != "cystic_artery"])
    assert len(sims) == len(ANATOMY_LABELS) - 1
    top = sorted(zip(sims, [x for x in ANATOMY_LABELS if x != "cystic_artery"], strict=True))[-2:]
    assert set(chosen) == {lab for _, lab in top}


def test_protocol_and_errors() -> None:
    strat = SimilarityDistractors("matrix:prior", "easiest")
    assert isinstance(strat, DistractorStrategy) and strat.name == "similarity-easiest"
    with pytest.raises(ValueError, match="distractors needed"):
        strat.choose("liver", ["liver", "gut"], 2, random.Random(0))
    with pytest.raises(ConfigError, match="target"):
        SimilarityDistractors("matrix:prior", "target")
    with pytest.raises(ConfigError, match="level"):
        SimilarityDistractors("matrix:prior", "medium")


def test_pose_at_levels() -> None:
    rec = make_record(
        id="q7",
        images=["a.png"],
        question="Which anatomy is in the centre?",
        options=["Liver", "Gut", "Fluid", "Cystic Plate"],
        answer_index=3,
        source="ssgvqa",
        meta={"anatomy_class": "cystic_plate"},
    )
    posed = pose_at_levels(rec, ANATOMY_LABELS, ["easiest", 0.4, "hardest"], "matrix:prior", seed=1)
    assert [p.id for p in posed] == ["q7@easiest", "q7@s0.40", "q7@hardest"]
    for p in posed:
        assert p.answer == "Cystic Plate" and len(p.options) == 4
        assert all(o == display_name(o.lower().replace(" ", "_")) for o in p.options)
        assert p.meta["s_q"] == pytest.approx(s_q(p.options, p.answer_index, "matrix:prior"))
        assert p.meta["posed_from"] == "q7" and p.meta["anatomy_class"] == "cystic_plate"
        assert p.question == rec.question and p.images == rec.images
    levels = [p.meta["s_q"] for p in posed]
    assert levels == sorted(levels) and levels[0] < levels[-1]
    assert [p.meta["difficulty_level"] for p in posed] == ["easiest", "s0.40", "hardest"]
    # Deterministic for a seed.
    again = pose_at_levels(rec, ANATOMY_LABELS, ["easiest", 0.4, "hardest"], "matrix:prior", seed=1)
    assert [p.to_dict() for p in again] == [p.to_dict() for p in posed]
    bad = make_record(
        id="x", images=["a.png"], question="Q?", options=["Spleen", "Liver"], answer_index=0, source="t"
    )
    with pytest.raises(DataError, match="not in the vocabulary"):
        pose_at_levels(bad, ANATOMY_LABELS, ["easiest"])
