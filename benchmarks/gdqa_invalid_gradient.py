"""GDQA on and off at equal steps: the invalid-gradient ratio per anatomy class, side by side.

Runs the demo recipe (``anatomy-r1 demo``: 2000 training questions, 500 GRPO steps with ASCL, the cached
tiny base model) twice per seed, once with GDQA and once without, and nothing else different. Each pair
shares the benchmark, the base model, the curriculum order and the seed, so the two arms draw the same
questions in the same order; only the wordings a difficult question's group sees differ.

    python benchmarks/gdqa_invalid_gradient.py --out runs/gdqa --seeds 0 1 2 --jobs 2

Finished runs (``report/metrics.json`` present) are reused, so an interrupted comparison continues.
Writes ``OUT/summary.json`` and ``OUT/summary.md``: the mean invalid-gradient ratio over all logged steps
and over the second half of training (when the curriculum has reached the questions GDQA treats as
difficult), overall and per class, per seed and as the median over seeds; and held-out Avg@5.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from anatomy_r1.reports.plots import read_metrics_jsonl

ARMS = {"gdqa": "true", "no_gdqa": "false"}
KEY = "invalid_gradient_ratio"


def run_one(out: Path, seed: int, arm: str, extra: list[str]) -> Path:
    run_dir = out / f"seed{seed}-{arm}"
    if (run_dir / "report" / "metrics.json").is_file():
        return run_dir
    cmd = [
        sys.executable,
        "-m",
        "anatomy_r1.cli",
        "demo",
        "--out",
        str(run_dir),
        "--force",
        "--seed",
        str(seed),
        "--set",
        f"gdqa.enabled={ARMS[arm]}",
        "--set",
        "logging.progress_bar=false",
        *extra,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    log = out / f"seed{seed}-{arm}.log"
    with log.open("w", encoding="utf-8") as fh:
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT, env=env)
    return run_dir


def invalid_ratios(all_rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean invalid-gradient ratio per class ('all' = overall) over all steps and over the second half."""
    rows = [r for r in all_rows if KEY in r and "step" in r]
    last = max(r["step"] for r in rows)
    out: dict[str, dict[str, float]] = {}
    for window, keep in (("all", rows), ("second_half", [r for r in rows if r["step"] > last / 2])):
        sums: dict[str, list[float]] = {}
        for r in keep:
            for k, v in r.items():
                if k == KEY:
                    sums.setdefault("all", []).append(float(v))
                elif k.startswith(KEY + "/"):
                    sums.setdefault(k[len(KEY) + 1 :], []).append(float(v))
        out[window] = {c: sum(v) / len(v) for c, v in sorted(sums.items())}
    return out


def summarize(out: Path, seeds: list[int]) -> dict[str, Any]:
    runs: dict[str, dict[int, Any]] = {arm: {} for arm in ARMS}
    for arm in ARMS:
        for seed in seeds:
            d = out / f"seed{seed}-{arm}"
            report = json.loads((d / "report" / "metrics.json").read_text(encoding="utf-8"))
            rows = read_metrics_jsonl(d / "run" / "metrics.jsonl")
            augmented = [r["gdqa/augmented_fraction"] for r in rows if "gdqa/augmented_fraction" in r]
            runs[arm][seed] = {
                "invalid": invalid_ratios(rows),
                "avg_at_5": report["trained_accuracy"],
                "base_avg_at_5": report["base_accuracy"],
                "augmented_fraction_last": augmented[-1] if augmented else None,
            }
    median: dict[str, Any] = {}
    for arm in ARMS:
        med: dict[str, dict[str, float]] = {}
        for window in ("all", "second_half"):
            classes = sorted({c for s in seeds for c in runs[arm][s]["invalid"][window]})
            med[window] = {
                c: statistics.median(
                    runs[arm][s]["invalid"][window][c] for s in seeds if c in runs[arm][s]["invalid"][window]
                )
                for c in classes
            }
        median[arm] = {"invalid": med, "avg_at_5": statistics.median(runs[arm][s]["avg_at_5"] for s in seeds)}
    return {"seeds": seeds, "runs": runs, "median": median}


def to_markdown(summary: dict[str, Any]) -> str:
    med = summary["median"]
    lines = [f"Seeds: {summary['seeds']}; medians over seeds. Invalid-gradient ratio in % of groups.", ""]
    for window, title in (("all", "all logged steps"), ("second_half", "second half of training")):
        classes = sorted(set(med["gdqa"]["invalid"][window]) | set(med["no_gdqa"]["invalid"][window]))
        classes = ["all", *[c for c in classes if c != "all"]]
        lines += [f"### Invalid-gradient ratio, {title}", "", "| arm | " + " | ".join(classes) + " |"]
        lines.append("|---|" + "---:|" * len(classes))
        for arm in ARMS:
            vals = [med[arm]["invalid"][window].get(c) for c in classes]
            cells = " | ".join("–" if v is None else f"{100 * v:.1f}" for v in vals)
            lines.append(f"| {arm} | {cells} |")
        lines.append("")
    lines += ["### Per seed (overall ratio, all steps / second half; held-out Avg@5)", ""]
    lines += ["| seed | arm | invalid (all) | invalid (2nd half) | Avg@5 |", "|---|---|---:|---:|---:|"]
    for seed in summary["seeds"]:
        for arm in ARMS:
            r = summary["runs"][arm][seed]
            lines.append(
                f"| {seed} | {arm} | {100 * r['invalid']['all']['all']:.1f} | "
                f"{100 * r['invalid']['second_half']['all']:.1f} | {100 * r['avg_at_5']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/gdqa"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (one torch thread each)")
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    extra = [x for kv in args.extra for x in ("--set", kv)]
    jobs = [(s, arm) for s in args.seeds for arm in ARMS]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for f in [pool.submit(run_one, args.out, s, arm, extra) for s, arm in jobs]:
            f.result()
    summary = summarize(args.out, args.seeds)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    md = to_markdown(summary)
    (args.out / "summary.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
