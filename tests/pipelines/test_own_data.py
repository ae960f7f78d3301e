"""A user's own data, first try: the README's quick start on release-format files, and Med-R1's format.

The fixtures are written here in the released formats and path shapes (the Anatomy-R1 release's absolute
``/CholecT45/data/VIDxx/NNNNNN.png`` paths with stray whitespace, Med-R1's ``Images/<dataset>/<file>``
paths and ``A)x, B)y`` options), with small stand-in frames. The README block is run line by line
through the CLI as written; only the training length is shortened (``--set grpo.max_steps=3``), and
``check`` runs one step.
"""

from __future__ import annotations

import json
import math
import random
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from anatomy_r1.cli import main

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["Gallbladder", "Liver", "Abdominal Wall Cavity", "Omentum", "Gut", "Cystic Plate"]
PERSONA = (
    "You are an expert in cholecystectomy surgical procedures, and I will provide you with a clinical image "
    "of a cholecystectomy surgery. Please analyze the image and answer the question."
)
QUESTIONS = [
    "What is the name of the anatomy that is within the gut thing and above the scissors object?",
    "Which anatomy is to the left of the grasper?",
    "What anatomy is below the hook tool?",
]


def _frame(path: Path, seed: int) -> None:
    from PIL import Image

    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (96, 54), tuple(rng.randrange(256) for _ in range(3)))
    img.save(path)


def write_release(path: Path, frames: Path, n: int, seed: int) -> None:
    """``n`` questions in the Anatomy-R1 release's JSON format, frames under ``frames/CholecT45/data``."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        answer = CLASSES[i % len(CLASSES)]
        options = [answer, *rng.sample([c for c in CLASSES if c != answer], 3)]
        rng.shuffle(options)
        letter = "ABCD"[options.index(answer)]
        q = QUESTIONS[i % len(QUESTIONS)]
        listed = "\n".join(f"{'ABCD'[k]}. {o}" for k, o in enumerate(options))
        video, frame = 50 + i % 3, 100 + seed * 1000 + i
        _frame(frames / "CholecT45" / "data" / f"VID{video}" / f"{frame:06d}.png", seed * 1000 + i)
        items.append(
            {
                "instruction": f"{PERSONA} Output the thinking process in <think> </think> and final "
                f"answer in <answer> </answer> tags.\nQuestion:\n{q}\nAnatomy Options:\n{listed}",
                "sft_prompt": f"<image>{PERSONA}\nQuestion:\n{q}\nAnatomy Options:\n{listed}",
                "solution": letter,
                "answer": answer,
                "images": f" /CholecT45/data/VID{video}/{frame:06d}.png",
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(items, indent=1), encoding="utf-8")


MEDR1_SETS = {
    "MIAS": ["Bone tissue", "Breast tissue", "Muscle tissue", "Liver tissue"],
    "Chest CT": ["Left lung", "Right lung", "Heart", "Aorta"],
    "MURA": ["Ulna.", "Radius", "Humerus", "Hand"],
}


def write_medr1(path: Path, root: Path, n: int, seed: int) -> None:
    """``n`` questions in Med-R1's split format, frames under ``root/Images/<dataset>/``."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        dataset = list(MEDR1_SETS)[i % len(MEDR1_SETS)]
        options = list(MEDR1_SETS[dataset])
        rng.shuffle(options)
        k = rng.randrange(len(options))
        name = f"Images/{dataset}/img{seed}_{i:03d}.png"
        _frame(root / name, seed * 1000 + i)
        listed = ", ".join(f"{'ABCD'[j]}){o}" for j, o in enumerate(options))
        items.append(
            {
                "image": name,
                "problem": f"What is depicted in the image? {listed}",
                "solution": f"<answer> {'ABCD'[k]} </answer>",
            }
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(items, indent=1), encoding="utf-8")


def _readme_quick_start() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own data, first run", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.startswith("anatomy-r1 ")]


def _difficult(summary: dict[str, Any], n: int) -> int:
    """How many of the ``n`` questions the run's summary says start as difficult (median S(q), ties in)."""
    found = re.search(rf"; (\d+) of {n} at the start", summary["lines"]["GDQA"])
    assert found, summary["lines"]["GDQA"]
    return int(found.group(1))


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


@pytest.mark.slow
def test_readme_quick_start_on_release_files_trains_with_gdqa_and_evaluates_with_the_runs_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    write_release(tmp_path / "release" / "GRPO-ASC-Learning.json", tmp_path / "frames", 36, seed=1)
    write_release(tmp_path / "release" / "test.json", tmp_path / "frames", 12, seed=2)
    lines = _readme_quick_start()
    assert [shlex.split(x)[1] for x in lines] == ["data", "data", "init", "check", "train", "eval", "probe"]
    for line in lines:
        argv = shlex.split(line)[1:]
        if argv[0] == "train":
            argv += ["--set", "grpo.max_steps=3"]
        if argv[0] == "check":
            argv += ["--steps", "1"]
        assert main(argv) == 0, line

    # Converted ids carry the file's name, so the two files validate together.
    assert main(["data", "validate", "data/train.jsonl", "--no-decode", "--allow-missing-images"]) == 0
    ids = {json.loads(x)["id"] for x in Path("data/train.jsonl").read_text().splitlines()}
    assert all(i.startswith("GRPO-ASC-Learning-") for i in ids)

    # GDQA acted with the defaults: half the items start as difficult, and groups were augmented.
    run = Path("runs/train")
    summary = json.loads((run / "run_summary.json").read_text(encoding="utf-8"))
    assert summary["warnings"] == []
    assert "backend anatomy" in summary["lines"]["S(q)"]
    assert 0 < _difficult(summary, 36) < 36
    assert any(r.get("gdqa/augmented_fraction", 0) > 0 for r in _rows(run / "metrics.jsonl"))

    # eval and probe used the run's template and completion length without being told.
    metrics = json.loads((run / "eval" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["settings"]["template"] == {
        "value": "compact_text",
        "from": "run",
        "file": metrics["settings"]["template"]["file"],
    }
    assert metrics["settings"]["max_new_tokens"]["value"] == 24
    assert metrics["settings"]["max_new_tokens"]["from"] == "run"
    assert math.isfinite(metrics["greedy_accuracy"]) and math.isfinite(metrics["avg_at_k"])
    probe = json.loads((run / "probe" / "probe.json").read_text(encoding="utf-8"))
    assert probe["settings"]["template"]["value"] == "compact_text"
    assert probe["settings"]["template"]["from"] == "run"
    assert "warning:" not in capsys.readouterr().err


@pytest.mark.slow
def test_medr1_split_converts_scores_trains_and_evaluates_with_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "OmniMedVQA"
    write_medr1(root / "splits" / "Anatomy Identification_train.json", root, 30, seed=3)
    write_medr1(root / "splits" / "Anatomy Identification_test.json", root, 9, seed=4)
    for split in ("train", "test"):
        src = f"OmniMedVQA/splits/Anatomy Identification_{split}.json"
        assert (
            main(["data", "convert", src, "--out", f"data/{split}.jsonl", "--image-root", "OmniMedVQA"]) == 0
        )
    # The default similarity scores Med-R1's labels (the SSG-VQA prior alone knows none of them).
    assert main(["score", "data/train.jsonl", "--out", "data/train_scored.jsonl"]) == 0
    scored = [json.loads(x) for x in Path("data/train_scored.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["meta"]["s_q"]) for r in scored)
    assert all(not o.endswith(".") for r in scored for o in r["options"])  # "Ulna." lost its period
    assert (
        main(["init", "--data", "data/train_scored.jsonl", "--image-root", "OmniMedVQA", "--out", "m.yaml"])
        == 0
    )
    assert main(["train", "--config", "m.yaml", "--set", "grpo.max_steps=2"]) == 0
    run = Path("runs/train_scored")
    summary = json.loads((run / "run_summary.json").read_text(encoding="utf-8"))
    assert 0 < _difficult(summary, 30) < 30 and summary["warnings"] == []
    out = run / "eval"
    assert (
        main(
            [
                "eval",
                "--model",
                str(run / "final"),
                "--data",
                "data/test.jsonl",
                "--image-root",
                "OmniMedVQA",
                "--out",
                str(out),
                "--k",
                "2",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert (
        metrics["settings"]["max_new_tokens"]["value"] == 24
        and metrics["settings"]["template"]["value"] == "compact_text"
    )
    assert math.isfinite(metrics["avg_at_k"])


@pytest.mark.slow
def test_the_source_prompt_trains_on_each_items_own_instruction_image_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trl

    seen: list[Any] = []
    original = trl.GRPOTrainer._generate_and_score_completions

    def spy(self: Any, inputs: Any) -> Any:
        seen.extend(row["prompt"] for row in inputs)
        return original(self, inputs)

    monkeypatch.setattr(trl.GRPOTrainer, "_generate_and_score_completions", spy)
    monkeypatch.chdir(tmp_path)
    write_release(tmp_path / "release" / "GRPO-GDQA.json", tmp_path / "frames", 16, seed=5)
    root = "frames/CholecT45/data"
    convert = ["data", "convert", "release/GRPO-GDQA.json", "--out", "data/train.jsonl", "--image-root", root]
    assert main(convert) == 0
    assert main(["init", "--data", "data/train.jsonl", "--image-root", root, "--out", "s.yaml"]) == 0
    argv = ["train", "--config", "s.yaml", "--set", "template=source", "--set", "grpo.max_steps=1"]
    assert main([*argv, "--set", "grpo.per_device_train_batch_size=8"]) == 0
    assert seen
    for prompt in seen:
        content = prompt[0]["content"]
        assert content[0] == {"type": "image"}  # the image first, as the release puts it
        text = content[1]["text"]
        assert text.startswith(PERSONA) and "\nQuestion:\n" in text and "\nAnatomy Options:\nA. " in text
