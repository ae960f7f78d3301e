"""How often each training question was drawn in the runs of an experiment, from their own settings.

The draws of a run are a pure function of its config: the curriculum sampler's plan is deterministic
(``CurriculumRepeatSampler.batch_indices``), and without a curriculum TRL's ``RepeatSampler`` draws one
seeded permutation of the data per epoch. This script rebuilds each finished run's sampler from its saved
``train/config.yaml`` and training data (GDQA's own-group variant rows included, rebuilt the same seeded
way) and counts, over the generation batches the run trained, how many times each original question was
drawn, directly or through one of its variant rows. Dynamic sampling's refill draws are not counted: they
come on top.

    python benchmarks/coverage.py runs/experiments/readings --json docs/results/readings_coverage.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any


def draws(run: Path) -> dict[str, Any]:
    """Per-question draw counts of one finished run (``<method>/seed<k>``)."""
    from trl.trainer.utils import RepeatSampler

    from anatomy_r1.curriculum.plan import CurriculumPlan
    from anatomy_r1.training.args import grpo_args
    from anatomy_r1.training.config import load_config
    from anatomy_r1.training.dataset import load_records
    from anatomy_r1.training.preflight import prepare_inputs

    cfg = load_config(run / "train" / "config.yaml")
    records = prepare_inputs(cfg, load_records(cfg.data.train, cfg.data.limit)).records
    with tempfile.TemporaryDirectory() as tmp:
        args = grpo_args(cfg, tmp)
    g = args.num_generations
    per_batch = args.generation_batch_size // g
    repeat = args.num_iterations * args.steps_per_generation
    n_batches = args.max_steps * args.gradient_accumulation_steps // args.steps_per_generation
    indices: list[int] = []
    if cfg.curriculum.enabled:
        scores = [float(r.meta["s_q"]) for r in records]
        sampler = CurriculumPlan.for_run(cfg.curriculum, args, scores).build_sampler(
            mini_repeat_count=g, batch_size=per_batch, repeat_count=repeat, seed=args.seed
        )
        for b in range(n_batches):
            indices += sampler.batch_indices(b)
    else:
        sampler = RepeatSampler(
            data_source=records,
            mini_repeat_count=g,
            batch_size=per_batch,
            repeat_count=repeat,
            seed=args.seed,
        )
        block = per_batch * g * repeat  # one generation batch: its indices, each G times, the whole repeated
        while len(indices) < n_batches * per_batch:
            stream = list(iter(sampler))  # one epoch: a seeded permutation of the data
            for start in range(0, len(stream), block):
                indices += stream[start : start + per_batch * g : g]
        indices = indices[: n_batches * per_batch]
    original = {r.id: r.meta.get("variant_of", r.id) for r in records}
    counts = Counter(original[records[i].id] for i in indices)
    questions = sorted({v for v in original.values()})
    per_q = [counts.get(q, 0) for q in questions]
    return {
        "questions": len(questions),
        "rows": len(records),
        "draws": len(indices),
        "min": min(per_q),
        "median": statistics.median(per_q),
        "max": max(per_q),
        "never_drawn": sum(c == 0 for c in per_q),
        "drawn_once": sum(c == 1 for c in per_q),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", type=Path, help="the experiment's --out folder")
    ap.add_argument("--json", type=Path, help="write the table as JSON too")
    args = ap.parse_args()
    out: dict[str, dict[str, Any]] = {}
    for done in sorted(args.experiment.glob("*/seed*/done.json")):
        run = done.parent
        if not (run / "train" / "config.yaml").is_file():
            continue
        out[f"{run.parent.name}/{run.name}"] = draws(run)
    print("| run | questions | rows | draws | min | median | max | never | once |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, d in out.items():
        print(
            f"| {name} | {d['questions']} | {d['rows']} | {d['draws']} | {d['min']} | {d['median']} "
            f"| {d['max']} | {d['never_drawn']} | {d['drawn_once']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
