"""Does the model's answer follow its own observation? Per question family, from a demo's eval completions.

The embedded default reasons as ``<think>the {position} region is {colour}</think> <answer>{name}</answer>``.
Its accuracy is the product of two skills that this script separates:

* perception: the observed colour is the colour of the asked region (``meta.observation`` of the record);
* naming: the answer is the offered class that best explains the observed colour (the appearance model's
  Bayes-optimal choice, :meth:`~anatomy_r1.data.synth.appearance.AppearanceModel.bayes_choice`), right
  or wrong.

A model that names classes from the colour word *in the question* scores well on attribute questions (the
colour is given) and at chance elsewhere; its answers then follow its observation only on attribute
questions. Reads ``DEMO/data/test.jsonl`` and ``DEMO/eval/{base,trained}/completions.jsonl``.

    python benchmarks/observation_consistency.py demo_out
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from anatomy_r1.data.io import iter_jsonl, read_records
from anatomy_r1.data.synth.appearance import appearance_model
from anatomy_r1.data.vocab import SYNTH_CLASSES, label_from_display

_REASONING = re.compile(r"<think>.*?\bis (\w+)\s*</think>\s*<answer>(.*?)</answer>", re.S)


def consistency(demo: Path, model: str) -> dict[str, dict[str, float]]:
    records = {r.id: r for r in read_records(demo / "data" / "test.jsonl")}
    world = appearance_model(SYNTH_CLASSES)
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for _, row in iter_jsonl(demo / "eval" / model / "completions.jsonl"):
        rec = records[row["id"]]
        family = str(rec.meta.get("template_family", "unknown"))
        c = counts[f"{family} ({row.get('kind', 'sampled')})"]
        c["n"] += 1
        m = _REASONING.search(row["completion"])
        if m is None:
            continue
        colour, answer = m.group(1), " ".join(m.group(2).split())
        truth = str(rec.meta.get("observation", "")).rpartition(" ")[2]
        c["parsed"] += 1
        c["observation_right"] += colour == truth
        offered = [label_from_display(o) for o in rec.options]
        best = world.bayes_choice(colour, offered) if colour in world.words else []
        c["answer_follows_observation"] += label_from_display(answer) in best
        c["answer_offered"] += answer in rec.options
    return {
        key: {"n": c["n"], **{k: c[k] / c["n"] for k in c if k != "n"}} for key, c in sorted(counts.items())
    }


def to_markdown(result: dict[str, dict[str, dict[str, float]]]) -> str:
    cols = ("parsed", "observation_right", "answer_follows_observation", "answer_offered")
    lines = ["| model | family (decoding) | n | " + " | ".join(cols) + " |"]
    lines.append("|---|---|---:|" + "---:|" * len(cols))
    for model, families in result.items():
        for key, row in families.items():
            cells = " | ".join(f"{100 * row.get(c, 0.0):.0f} %" for c in cols)
            lines.append(f"| {model} | {key} | {int(row['n'])} | {cells} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo", type=Path, help="a demo output folder (anatomy-r1 demo --out DIR)")
    args = ap.parse_args()
    result = {}
    for model in ("base", "trained"):
        if (args.demo / "eval" / model / "completions.jsonl").is_file():
            result[model] = consistency(args.demo, model)
    if not result:
        print(f"{args.demo}: no eval/base or eval/trained completions", file=sys.stderr)
        return 2
    print(to_markdown(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
