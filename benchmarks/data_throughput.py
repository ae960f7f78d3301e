"""Conversion throughput of ``anatomy-r1 data convert`` per input format, in records per second.

Generates synthetic inputs shaped like the real files (the release's long persona prompts, OmniMedVQA's
option fields, Med-R1's inline options, a ``qa_txt`` tree of per-frame files with ~40% anatomy answers) in a
temporary folder, converts each with ``--allow-missing-images`` (so every image is still looked up) and
prints the median over repeats. Targets: >= 50k records/s for the JSON formats; a million SSG-VQA lines in
<= 30 s.

    python benchmarks/data_throughput.py            # 200k JSON records per format, 1M SSG-VQA lines
    python benchmarks/data_throughput.py --quick    # 20k / 100k, one repeat
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from anatomy_r1.data.converters import convert
from anatomy_r1.data.vocab import ANATOMY_LABELS, PAPER_CLASSES, display_name

PERSONA = (
    "You are an expert in cholecystectomy surgical procedures, and I will provide you with a clinical image "
    "of a cholecystectomy surgery. Please analyze the image and answer the question. You should only return "
    "the answer of the question, not any other text. Output the thinking process in <think> </think> and "
    "final answer in <answer> </answer> tags. The output answer format should be as follows:<think> ... "
    "</think> <answer>YOUR ANSWER HERE</answer>."
)
QUESTIONS = (
    "What anatomy is at the top-mid of the frame ?",
    "What is the brown anatomy?",
    "What is the name of the anatomy that is within the gut thing and above the scissors object?",
    "What is the name of the thing that is below the brown top-mid liver anatomy?",
)
NON_ANATOMY = (
    ("How many instruments are there?", "2", "count"),
    ("Is there a hook?", "True", "exist"),
    ("What color is the top-mid anatomy?", "brown", "query_color"),
    ("What is the clipper doing?", "clip", "query_component"),
)


COLOURS = ("red", "brown", "yellow", "white", "silver")
POSITIONS = ("top-left", "top-mid", "top-right", "bottom-left", "bottom-mid", "bottom-right")


def varied_question(rng: random.Random) -> str:
    """A few hundred distinct wordings, about as repetitive as the released set (~440 per 1000)."""
    c, p, c2 = rng.choice(COLOURS), rng.choice(POSITIONS), rng.choice(COLOURS)
    tool = rng.choice(("grasper", "hook", "scissors", "clipper"))
    return rng.choice(
        (
            f"What anatomy is at the {p} of the frame ?",
            f"What is the {c} {p} anatomy?",
            f"What is the name of the thing that is below the {c} {p} liver anatomy?",
            f"What is the name of the {c} anatomy that is within the {c2} {tool} object "
            f"and above the {p} gut?",
        )
    )


def write_json_list(path: Path, items: list[str]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        fh.write("[\n")
        fh.write(",\n".join(items))
        fh.write("\n]\n")


def make_anatomy_r1(path: Path, n: int, rng: random.Random) -> None:
    items = []
    for i in range(n):
        opts = rng.sample(PAPER_CLASSES, 4)
        k = rng.randrange(4)
        block = "\n".join(f"{'ABCD'[j]}. {display_name(o)}" for j, o in enumerate(opts))
        q = varied_question(rng)
        body = f"Question:\n{q}\nAnatomy Options:\n{block}"
        items.append(
            json.dumps(
                {
                    "instruction": f"{PERSONA}\n{body}",
                    "sft_prompt": f"<image>{PERSONA}\n{body}",
                    "solution": "ABCD"[k],
                    "answer": display_name(opts[k]),
                    "images": f" /CholecT45/data/VID{i % 50 + 1:02d}/{i:06d}.png",
                },
                indent=4,
            )
        )
    write_json_list(path, items)


def make_omnimedvqa(path: Path, n: int, rng: random.Random) -> None:
    organs = ["Liver", "Spleen", "Left kidney", "Stomach", "Pancreas, head", "Gallbladder", "Aorta"]
    items = []
    for i in range(n):
        opts = rng.sample(organs, rng.choice((2, 3, 4)))
        item = {
            "dataset": "Chest CT Scan",
            "question_id": f"Chest CT Scan_{i:07d}",
            "question_type": "Anatomy Identification",
            "question": "Which organ is shown in the upper left part of this CT slice?",
            "gt_answer": rng.choice(opts),
            "image_path": f"Images/Chest CT Scan/{i:07d}.png",
            "modality_type": "CT(Computed Tomography)",
        }
        item.update({f"option_{'ABCD'[j]}": o for j, o in enumerate(opts)})
        items.append(json.dumps(item, indent=4))
    write_json_list(path, items)


def make_medr1(path: Path, n: int, rng: random.Random) -> None:
    tissues = ["Bone tissue", "Breast tissue", "Muscle tissue", "Liver tissue", "Debris, mixed", "Skin"]
    items = []
    for i in range(n):
        opts = rng.sample(tissues, 4 if i % 30 else 2)
        problem = "What is depicted in the image? " + ", ".join(
            f"{'ABCD'[j]}){o}" for j, o in enumerate(opts)
        )
        items.append(
            json.dumps(
                {
                    "image": f"Images/MIAS/mdb{i:07d}.png",
                    "problem": problem,
                    "solution": f"<answer> {'ABCD'[rng.randrange(len(opts))]} </answer>",
                },
                indent=4,
            )
        )
    write_json_list(path, items)


def make_ssgvqa(root: Path, n_lines: int, rng: random.Random, per_file: int = 25) -> int:
    """Write ``n_lines`` question lines (plus two presence lines per file); returns the anatomy count."""
    anatomy = 0
    written = 0
    frame = 0
    while written < n_lines:
        video = root / f"VID{frame % 50 + 1:02d}"
        video.mkdir(parents=True, exist_ok=True)
        lines = ["Which anatomical structures are present?|liver,gut", "Which tools are present?|hook"]
        for _ in range(min(per_file, n_lines - written)):
            if rng.random() < 0.4:
                lines.append(f"{rng.choice(QUESTIONS)}|{rng.choice(ANATOMY_LABELS)}|zero_hop.json|query_type")
                anatomy += 1
            else:
                q, a, t = rng.choice(NON_ANATOMY)
                lines.append(f"{q}|{a}|zero_hop.json|{t}")
            written += 1
        (video / f"{frame:06d}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        frame += 1
    return anatomy


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds; CPU time is the steadier number on a machine shared with other jobs."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small inputs and one repeat")
    ap.add_argument("--records", type=int, help="records per JSON format (default 200000, quick 20000)")
    ap.add_argument("--lines", type=int, help="SSG-VQA question lines (default 1000000, quick 100000)")
    ap.add_argument("--repeats", type=int, help="timed repeats per format (default 3, quick 1)")
    ap.add_argument("--only", nargs="+", choices=("anatomy-r1", "omnimedvqa", "medr1", "ssgvqa"))
    args = ap.parse_args()
    n = args.records or (20_000 if args.quick else 200_000)
    n_lines = args.lines or (100_000 if args.quick else 1_000_000)
    repeats = args.repeats or (1 if args.quick else 3)
    rng = random.Random(0)
    makers = {"anatomy-r1": make_anatomy_r1, "omnimedvqa": make_omnimedvqa, "medr1": make_medr1}
    wanted = args.only or [*makers, "ssgvqa"]

    with tempfile.TemporaryDirectory(prefix="anatomy-r1-bench-") as tmp:
        d = Path(tmp)
        for fmt in wanted:
            out = d / f"{fmt}.jsonl"
            if fmt == "ssgvqa":
                src = d / "qa_txt"
                make_ssgvqa(src, n_lines, rng)
                size = f"{n_lines} lines"
            else:
                src = d / f"{fmt}.json"
                makers[fmt](src, n, rng)
                size = f"{n} items, {src.stat().st_size / 1e6:.0f} MB"
            result: dict[str, int] = {}

            def run(fmt: str = fmt, src: Path = src, out: Path = out, result: dict = result) -> None:
                result["written"] = convert(fmt, src, out, allow_missing_images=True).written

            secs, cpu = timed(run, repeats)
            count = n_lines if fmt == "ssgvqa" else result["written"]
            unit = "lines" if fmt == "ssgvqa" else "records"
            print(
                f"{fmt:<11} {size:<24} wall {secs:6.2f} s {count / secs:>9,.0f} {unit}/s | "
                f"cpu {cpu:6.2f} s {count / cpu:>9,.0f} {unit}/s  "
                f"({result['written']} written, median of {repeats})",
                flush=True,
            )


if __name__ == "__main__":
    main()
