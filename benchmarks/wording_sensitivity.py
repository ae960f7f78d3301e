"""Does rewording a question change a trained model's answer? The lever GDQA relies on, measured directly.

GDQA can only turn an all-equal group into one with a gradient if the members' different wordings lead to
different outcomes. For a trained demo model this script compares, per held-out question, groups of four:

* ``same wording, sampled``: four sampled answers to the original question (GRPO without GDQA);
* ``4 wordings, sampled``: one sampled answer to each of four GDQA variants (GRPO with GDQA);
* ``4 wordings, greedy``: the greedy answer to each variant, so only the wording varies.

It reports the share of groups whose four answers are all right or all wrong. If the second share is no
lower than the first, rewording adds no diversity beyond what sampling already gives.

    python benchmarks/wording_sensitivity.py demo_out [--out DIR]

Uses ``anatomy-r1 augment`` and ``anatomy-r1 eval`` on ``DEMO/data/test.jsonl`` with ``DEMO/run/final``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from anatomy_r1.data.io import iter_jsonl, read_records

GROUP = 4


def _cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "anatomy_r1.cli", *args], check=True, stdout=subprocess.DEVNULL)


def original_ids(variants: Path) -> dict[str, str]:
    """Variant id -> the id of the question it rewords, as ``augment`` records it in ``meta.variant_of``."""
    return {r.id: str(r.meta.get("variant_of", r.id)) for r in read_records(variants)}


def all_equal_share(items: Path, kind: str, originals: dict[str, str]) -> tuple[float, int]:
    """Share of original questions whose ``GROUP`` scored answers of ``kind`` are all right or all wrong."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for _, row in iter_jsonl(items):
        if row.get("kind") == kind:
            item = str(row["id"])
            groups[originals.get(item, item)].append(bool(row["correct"]))
    full = [v for v in groups.values() if len(v) >= GROUP]
    if not full:
        raise SystemExit(f"{items}: no question has {GROUP} {kind} answers")
    return sum(len(set(v[:GROUP])) == 1 for v in full) / len(full), len(full)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("demo", type=Path, help="a finished demo output folder (anatomy-r1 demo --out DIR)")
    ap.add_argument("--out", type=Path, default=None, help="where to keep the variants and evaluations")
    ap.add_argument("--template", default="compact_text")
    ap.add_argument("--max-new-tokens", default="24", help="the demo's max_completion_length")
    args = ap.parse_args()
    data, model = args.demo / "data", args.demo / "run" / "final"
    out = args.out or Path(tempfile.mkdtemp(prefix="wording-"))
    out.mkdir(parents=True, exist_ok=True)
    variants = out / "variants.jsonl"
    common = ["--model", str(model), "--image-root", str(data), "--template", args.template]
    common += ["--max-new-tokens", args.max_new_tokens]
    _cli("augment", str(data / "test.jsonl"), "--n", str(GROUP), "--out", str(variants))
    _cli("eval", *common, "--data", str(data / "test.jsonl"), "--out", str(out / "same"), "--k", str(GROUP))
    _cli("eval", *common, "--data", str(variants), "--out", str(out / "reworded"), "--k", "1", "--greedy")
    originals = original_ids(variants)
    reworded = out / "reworded" / "items.jsonl"
    rows = {
        "same wording, sampled": all_equal_share(out / "same" / "items.jsonl", "sampled", {}),
        f"{GROUP} wordings, sampled": all_equal_share(reworded, "sampled", originals),
        f"{GROUP} wordings, greedy": all_equal_share(reworded, "greedy", originals),
    }
    print(f"| group of {GROUP} answers | all right or all wrong | questions |")
    print("|---|---:|---:|")
    for name, (share, n) in rows.items():
        print(f"| {name} | {100 * share:.1f} % | {n} |")
    (out / "summary.json").write_text(json.dumps({k: v[0] for k, v in rows.items()}, indent=1), "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
