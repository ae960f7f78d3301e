"""The synthetic benchmark: determinism, split hygiene, answer correctness, appearance vs. similarity."""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anatomy_r1.data.io import read_records, resolve_image
from anatomy_r1.data.question_templates import QuestionStructure, parse_question
from anatomy_r1.data.schema import Record
from anatomy_r1.data.synth import SPLITS, generate_benchmark
from anatomy_r1.data.synth.appearance import (
    MIN_HOME,
    OVERLAP_SCALE,
    SHARE_THRESHOLD,
    WORDS,
    appearance_model,
)
from anatomy_r1.data.synth.questions import FAMILY_WEIGHTS, matching_anatomy
from anatomy_r1.data.synth.scene import Scene
from anatomy_r1.data.vocab import (
    ANATOMY_LABELS,
    SYNTH_CLASSES,
    class_similarity,
    display_name,
    label_from_display,
)
from anatomy_r1.errors import ConfigError

SIZES = {"n_train": 240, "n_val": 30, "n_test": 40, "n_perception": 60}
IMAGE_SIZE = 96


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("synth_a")
    summary = generate_benchmark(out, seed=7, image_size=IMAGE_SIZE, **SIZES)
    return out, summary


def _records(out: Path, split: str) -> list[Record]:
    return read_records(out / f"{split}.jsonl")


def _scenes(out: Path, split: str) -> dict[str, Scene]:
    lines = (out / "scenes" / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    scenes = [Scene.from_dict(json.loads(line)) for line in lines]
    return {s.scene_id: s for s in scenes}


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_is_byte_identical_and_other_seed_differs(
    bench: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    out, _ = bench
    generate_benchmark(tmp_path / "again", seed=7, image_size=IMAGE_SIZE, **SIZES)
    assert _digest(out) == _digest(tmp_path / "again")
    generate_benchmark(tmp_path / "other", seed=8, image_size=IMAGE_SIZE, **SIZES)
    a, b = _digest(out), _digest(tmp_path / "other")
    assert a["train.jsonl"] != b["train.jsonl"]
    assert a["images/train/s000000.png"] != b["images/train/s000000.png"]


def test_counts_records_and_images(bench: tuple[Path, dict[str, int]]) -> None:
    out, summary = bench
    assert summary == {s: SIZES[f"n_{s}"] for s in SPLITS}
    for split in SPLITS:
        records = _records(out, split)
        assert len(records) == SIZES[f"n_{split}"]
        for rec in records:
            assert rec.source == "synth"
            assert len(rec.options) == 4
            assert not Path(rec.images[0]).is_absolute()
            path = resolve_image(rec.images[0], out)
            assert path.is_file()
        for image in {r.images[0] for r in records}:
            with Image.open(out / image) as im:
                assert im.size == (IMAGE_SIZE, IMAGE_SIZE)
                assert im.mode == "RGB"


def test_splits_share_no_scene_image_or_video(bench: tuple[Path, dict[str, int]]) -> None:
    out, _ = bench
    seen: dict[str, set[str]] = {"scene": set(), "image": set(), "video": set()}
    for split in SPLITS:
        records = _records(out, split)
        keys = {
            "scene": {r.meta["scene_id"] for r in records},
            "image": {r.images[0] for r in records},
            "video": {r.meta["video"] for r in records},
        }
        for k, values in keys.items():
            assert not values & seen[k], f"{split} shares a {k} with another split"
            seen[k] |= values
        assert {r.meta["split"] for r in records} == {split}


def test_answer_letters_are_balanced(bench: tuple[Path, dict[str, int]]) -> None:
    out, _ = bench
    for split in SPLITS:
        counts = Counter(r.answer_index for r in _records(out, split))
        assert max(counts.values()) - min(counts.values()) <= 1, (split, counts)


def test_anatomy_answers_are_unique_in_their_scene(bench: tuple[Path, dict[str, int]]) -> None:
    out, _ = bench
    for split in ("train", "val", "test"):
        scenes = _scenes(out, split)
        for rec in _records(out, split):
            meta = rec.meta
            structure = QuestionStructure.from_dict(meta["structure"])
            scene = scenes[meta["scene_id"]]
            assert scene.image == rec.images[0]
            matches = matching_anatomy(scene, structure)
            assert [m.label for m in matches] == [meta["anatomy_class"]], rec.question
            assert rec.answer == display_name(meta["anatomy_class"])
            assert parse_question(rec.question) == (structure, meta["template_id"])
            assert meta["template_family"] == structure.family
            assert meta["question_type"] == "query_type"
            assert meta["rationale"]
            assert set(rec.options) <= {display_name(c) for c in SYNTH_CLASSES}
            target = matches[0]
            assert meta["observation"] == f"the {target.position} region is {target.color}"


def test_observations_name_no_anatomy_class(bench: tuple[Path, dict[str, int]]) -> None:
    """The base model's warm-up reasons with observations; one naming the class would teach the answer."""
    out, _ = bench
    names = {w for label in ANATOMY_LABELS for w in display_name(label).lower().split()}
    for split in ("train", "test"):
        for rec in _records(out, split):
            words = set(rec.meta["observation"].lower().split())
            assert not words & names, rec.meta["observation"]


def test_family_mix_is_roughly_as_specified(bench: tuple[Path, dict[str, int]]) -> None:
    out, _ = bench
    records = _records(out, "train")
    share = Counter(r.meta["template_family"] for r in records)
    assert FAMILY_WEIGHTS["attribute"] >= 0.5  # mostly questions that name the colour
    for family, p in FAMILY_WEIGHTS.items():
        assert abs(share[family] / len(records) - p) < 0.1, share


def test_perception_names_no_anatomy(bench: tuple[Path, dict[str, int]]) -> None:
    out, _ = bench
    names = set()
    for label in ANATOMY_LABELS:
        names |= {label, label.replace("_", " "), display_name(label).lower()}
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    pattern = re.compile(rf"\b({alternatives})\b")
    records = _records(out, "perception")
    families = Counter(r.meta["template_family"] for r in records)
    assert set(families) == {"perception_color", "perception_position", "perception_count"}
    for rec in records:
        text = " ".join([rec.question, *rec.options]).lower()
        assert not pattern.search(text), text
        assert rec.meta["rationale"] and not pattern.search(rec.meta["rationale"].lower())


def test_perception_answers_match_the_scene(bench: tuple[Path, dict[str, int]]) -> None:
    out, _ = bench
    scenes = _scenes(out, "perception")
    for rec in _records(out, "perception"):
        scene = scenes[rec.meta["scene_id"]]
        family = rec.meta["template_family"]
        if family == "perception_count":
            kind = "instrument" if "instrument" in rec.question else "anatomy"
            assert rec.answer == str(sum(o.kind == kind for o in scene.objects))
        elif family == "perception_position":
            assert scene.at(rec.answer) is not None
        else:
            assert rec.answer in {o.color for o in scene.objects}


def _average_ranks(x: Sequence[float]) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    order = np.argsort(arr, kind="stable")
    ranks = np.empty(len(arr))
    i = 0
    while i < len(arr):
        j = i
        while j + 1 < len(arr) and arr[order[j + 1]] == arr[order[i]]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2
        i = j + 1
    return ranks


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    return float(np.corrcoef(_average_ranks(a), _average_ranks(b))[0, 1])


def test_appearance_overlap_follows_the_prior() -> None:
    """Similar classes share a word evenly, about as much as the prior says; dissimilar ones share none."""
    for classes in (SYNTH_CLASSES, ANATOMY_LABELS):
        model = appearance_model(classes)
        assert np.allclose(model.probs.sum(axis=1), 1.0)
        for a, b in itertools.combinations(model.labels, 2):
            sim = class_similarity(a, b)
            if sim >= SHARE_THRESHOLD:
                assert model.overlap(a, b) > 0.0, (a, b)
            else:
                assert model.overlap(a, b) == 0.0, (a, b)
        for group, word in zip(model.groups, model.shared_words, strict=True):
            masses = {model.word_probs(c)[word] for c in group}
            assert len(masses) == 1, (group, word)
            # groups are disjoint here, so the least-squares fit is the group's mean target, capped
            pairs = list(itertools.combinations(group, 2))
            want = np.mean([OVERLAP_SCALE * class_similarity(a, b) for a, b in pairs])
            assert masses.pop() == pytest.approx(min(want, 1.0 - MIN_HOME), abs=2e-3), group
            for a, b in pairs:
                assert model.overlap(a, b) == pytest.approx(min(want, 1.0 - MIN_HOME), abs=2e-3)
        # every class keeps a home word no other class shows, on at least MIN_HOME of its mass
        for label in model.labels:
            home = model.home_word(label)
            assert model.word_probs(label)[home] >= MIN_HOME
            assert [c for c in model.labels if model.word_probs(c)[home] > 0] == [label]


def test_similar_groups_are_the_cliques_of_the_prior() -> None:
    groups = appearance_model(SYNTH_CLASSES).groups
    assert set(groups) == {
        ("abdominal_wall_cavity", "gut", "omentum"),
        ("cystic_artery", "cystic_duct"),
        ("cystic_plate", "gallbladder", "liver"),
    }


def test_rendered_colour_is_the_instance_word(bench: tuple[Path, dict[str, int]]) -> None:
    """Each region is painted in its own colour word's prototype, whatever its class."""
    out, _ = bench
    third = IMAGE_SIZE / 3
    words_by_class: dict[str, Counter[str]] = {c: Counter() for c in SYNTH_CLASSES}
    for scene in _scenes(out, "train").values():
        pixels = np.asarray(Image.open(out / scene.image), dtype=float)
        for obj in scene.anatomy:
            r, c = obj.cell
            y0, x0 = int((r + 0.3) * third), int((c + 0.3) * third)
            y1, x1 = int((r + 0.7) * third), int((c + 0.7) * third)
            seen = np.median(pixels[y0:y1, x0:x1].reshape(-1, 3), axis=0)
            nearest = min(WORDS, key=lambda w: float(np.linalg.norm(np.asarray(WORDS[w]) - seen)))
            assert nearest == obj.color, (scene.scene_id, obj)
            words_by_class[obj.label][obj.color] += 1
    # Similar classes show shared words: at least one class shows more than one word.
    assert max(len(c) for c in words_by_class.values()) > 1


def test_word_frequencies_follow_the_appearance_model() -> None:
    model = appearance_model(SYNTH_CLASSES)
    rng = random.Random(0)
    for label in ("liver", "cystic_duct"):
        counts = Counter(model.sample_word(label, rng) for _ in range(4000))
        for word, p in model.word_probs(label).items():
            assert counts[word] / 4000 == pytest.approx(p, abs=0.03), (label, word)


def test_oracle_is_harder_with_similar_choices() -> None:
    """Most-similar distractors lower the Bayes-optimal accuracy for every class, and by a lot on average."""
    model = appearance_model(SYNTH_CLASSES)
    gaps = []
    for answer in model.labels:
        others = sorted((c for c in model.labels if c != answer), key=lambda c: class_similarity(answer, c))
        easiest = model.oracle_accuracy(answer, [answer, *others[:3]])
        hardest = model.oracle_accuracy(answer, [answer, *others[-3:]])
        assert easiest >= hardest, answer
        gaps.append(easiest - hardest)
    assert float(np.mean(gaps)) >= 0.2
    # A word only one offered class can show is always read right; a shared word is a guess among
    # the offered members of its group.
    assert model.oracle_correct("brown", "liver", ["liver", "gut", "omentum", "cystic_artery"]) == 1.0
    shared = model.shared_words[model.groups.index(("cystic_plate", "gallbladder", "liver"))]
    assert model.oracle_correct(shared, "liver", ["liver", "gut", "omentum", "cystic_artery"]) == 1.0
    assert model.oracle_correct(shared, "liver", ["liver", "gallbladder", "omentum", "cystic_artery"]) == 0.5
    assert model.oracle_correct(shared, "liver", ["liver", "gallbladder", "cystic_plate", "gut"]) == 1 / 3


def test_records_carry_their_oracle(bench: tuple[Path, dict[str, int]]) -> None:
    out, _ = bench
    model = appearance_model(SYNTH_CLASSES)
    scenes = _scenes(out, "train")
    records = _records(out, "train")
    for r in records:
        labels = [label_from_display(o) for o in r.options]
        assert r.meta["oracle_accuracy"] == pytest.approx(
            model.oracle_accuracy(r.meta["anatomy_class"], labels), abs=1e-6
        )
        word = scenes[r.meta["scene_id"]].by_label(r.meta["anatomy_class"]).color
        assert r.meta["oracle_correct"] == pytest.approx(
            model.oracle_correct(word, r.meta["anatomy_class"], labels), abs=1e-6
        )
    # Over many questions, being right on the drawn word averages out to the expected accuracy.
    realised = np.mean([r.meta["oracle_correct"] for r in records])
    expected = np.mean([r.meta["oracle_accuracy"] for r in records])
    assert realised == pytest.approx(expected, abs=0.08)


class _FirstK:
    name = "first"

    def choose(self, answer: str, vocabulary: Sequence[str], k: int, rng: random.Random) -> list[str]:
        return [v for v in vocabulary if v != answer][:k]


def test_distractor_strategy_and_classes_are_used(tmp_path: Path) -> None:
    classes = ("liver", "gut", "omentum", "gallbladder", "cystic_plate")
    generate_benchmark(
        tmp_path,
        seed=1,
        n_train=20,
        n_val=0,
        n_test=0,
        n_perception=0,
        classes=classes,
        distractors=_FirstK(),
    )
    records = _records(tmp_path, "train")
    for rec in records:
        expected = [display_name(v) for v in sorted(classes) if v != rec.meta["anatomy_class"]][:3]
        assert sorted(o for o in rec.options if o != rec.answer) == sorted(expected)
        assert rec.meta["distractors"] == "first"
    assert (tmp_path / "val.jsonl").read_text() == ""


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_train": -1},
        {"image_size": 8},
        {"classes": ("liver", "gut", "omentum")},
        {"classes": ("liver", "gut", "omentum", "spleen")},
    ],
)
def test_bad_arguments_are_config_errors(tmp_path: Path, kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        generate_benchmark(tmp_path, seed=0, **kwargs)  # type: ignore[arg-type]
