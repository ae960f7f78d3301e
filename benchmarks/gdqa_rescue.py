"""GDQA's premise, measured: do a hard question's variants rescue a group that is all wrong?

GRPO learns nothing from a group whose rollouts are all wrong (every advantage is zero). GDQA's bet is that
giving the members other versions of the question lets some of them succeed. On a trained model and its
held-out questions this script reports, for the difficult questions (S(q) at or above the median, the
rule GDQA uses for items it has not seen yet):

* the share whose group of ``G`` rollouts of the original wording is all wrong;
* for each variant kind, the share of those all-wrong groups that get at least one correct member when the
  members see the group GDQA would build with that kind alone (member 0 keeps the original wording);
* the same for a fresh group of ``G`` rollouts of the original wording. A group picked for being all wrong
  once can come out otherwise on a second draw by chance; a kind helps only by what it adds to this, so
  each kind's rescue rate is compared with it on the same groups (paired bootstrap, 95 % interval).

    python benchmarks/gdqa_rescue.py --model RUN/final --data DATA/test.jsonl --out DIR [--kinds ...]

Writes ``DIR/rescue.json`` and ``DIR/rescue.md``. ``--data`` is a canonical file; the re-referring kind
reads the scene graphs in its ``scenes/`` folder (or the records' ``meta.scene_facts``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from anatomy_r1.augment import assign_group_variants
from anatomy_r1.augment.composite import CompositeGenerator
from anatomy_r1.augment.rerefer import SceneIndex
from anatomy_r1.augment.variants import KINDS, distinct_wordings
from anatomy_r1.curriculum.scoring import score_records
from anatomy_r1.curriculum.similarity import get_backend
from anatomy_r1.data.io import read_records
from anatomy_r1.data.schema import Record
from anatomy_r1.evaluation.generate import generate_with_model
from anatomy_r1.evaluation.metrics import judge
from anatomy_r1.reports.machine import machine_info


def _sample(
    model: Any, processor: Any, members: list[Record], args: argparse.Namespace, seed: int
) -> list[bool]:
    """One sampled answer per member, in member order; a record shared by members is sampled that often."""
    counts = Counter(r.id for r in members)
    by_k: dict[int, list[Record]] = {}
    unique = {r.id: r for r in members}
    for rid, k in counts.items():
        by_k.setdefault(k, []).append(unique[rid])
    correct: dict[str, list[bool]] = {}
    for k, recs in sorted(by_k.items()):
        sampled, _ = generate_with_model(
            model,
            processor,
            recs,
            k=k,
            greedy=False,
            template=args.template,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            image_root=str(Path(args.data).parent),
            seed=seed + k,
        )
        for res in judge(recs, sampled):
            correct[res.record.id] = list(res.sampled_correct)
    used: Counter[str] = Counter()
    out = []
    for r in members:
        out.append(correct[r.id][used[r.id]])
        used[r.id] += 1
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument(
        "--kinds", default=",".join(KINDS), help=f"variant kinds to test (default {','.join(KINDS)})"
    )
    ap.add_argument("--group", type=int, default=8, help="rollouts per group (default 8)")
    ap.add_argument("--backend", default="matrix:prior", help="similarity backend for S(q)")
    ap.add_argument("--template", default="compact_text")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from anatomy_r1.models.loading import load_model, load_processor

    records = [r for r in read_records(args.data) if "anatomy_class" in r.meta]
    scores = score_records(records, get_backend(args.backend), mode="mean")
    threshold = float(np.quantile(scores, 0.5))
    difficult = [r for r, s in zip(records, scores, strict=True) if s >= threshold]
    model = load_model(str(args.model), dtype="fp32")
    processor = load_processor(str(args.model))
    torch.set_grad_enabled(False)
    G = args.group

    first = _sample(model, processor, [r for r in difficult for _ in range(G)], args, args.seed)
    all_wrong = [r for i, r in enumerate(difficult) if not any(first[i * G : (i + 1) * G])]
    all_right = sum(all(first[i * G : (i + 1) * G]) for i in range(len(difficult)))
    print(f"{len(difficult)} difficult questions, {len(all_wrong)} all-wrong groups of {G}", file=sys.stderr)

    def rescued(groups: list[list[Record]], seed: int) -> dict[str, Any]:
        flat = [m for g in groups for m in g]
        ok = _sample(model, processor, flat, args, seed) if flat else []
        hits = [any(ok[i * G : (i + 1) * G]) for i in range(len(groups))]
        wordings = [distinct_wordings(g) for g in groups]
        return {
            "n_groups": len(groups),
            "hits": [int(h) for h in hits],
            "rescued": int(sum(hits)),
            "rescue_rate": round(float(np.mean(hits)), 4) if hits else None,
            "member_accuracy": round(float(np.mean(ok)), 4) if ok else None,
            "mean_distinct_wordings": round(float(np.mean(wordings)), 2) if wordings else None,
            "groups_with_a_variant": int(sum(w > 1 for w in wordings)),
        }

    rows: dict[str, Any] = {
        "same wording (resampled)": rescued([[r] * G for r in all_wrong], args.seed + 100)
    }
    scenes = SceneIndex.for_data([args.data])
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        gen = CompositeGenerator((kind,), scenes=scenes)
        groups = [assign_group_variants(r, G, True, gen, args.seed, 0) for r in all_wrong]
        rows[kind] = rescued(groups, args.seed + 200)
        print(f"{kind}: {rows[kind]}", file=sys.stderr)

    # Paired bootstrap over the all-wrong groups: each kind against the resampled same wording.
    control = np.array(rows["same wording (resampled)"]["hits"], dtype=float)
    boot = np.random.default_rng(args.seed).integers(0, len(control), (10_000, len(control)))
    for r in rows.values():
        diff = np.array(r["hits"], dtype=float) - control
        lo, hi = np.quantile(diff[boot].mean(axis=1), [0.025, 0.975]) if len(diff) else (np.nan, np.nan)
        r["vs_resampled_points"] = round(100 * float(diff.mean()), 1) if len(diff) else None
        r["vs_resampled_ci95"] = [round(100 * float(lo), 1), round(100 * float(hi), 1)]

    result = {
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "model": str(args.model),
        "data": str(args.data),
        "host": machine_info(),
        "group": G,
        "backend": args.backend,
        "s_q_threshold": round(threshold, 4),
        "n_questions": len(records),
        "n_difficult": len(difficult),
        "n_all_wrong": len(all_wrong),
        "all_wrong_share": round(len(all_wrong) / len(difficult), 4),
        "all_right_share": round(all_right / len(difficult), 4),
        "first_draw_accuracy": round(float(np.mean(first)), 4),
        "kinds": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rescue.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = [
        f"Difficult questions (S(q) >= {threshold:.3f}, the median): {len(difficult)} of {len(records)}; "
        f"all-wrong groups of {G}: {len(all_wrong)} ({result['all_wrong_share']:.1%}); "
        f"all-right: {result['all_right_share']:.1%}.",
        "",
        "| members see | groups | with a variant | distinct wordings | member accuracy | rescued | rescue "
        "rate | vs resampled, points (95 % CI) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        rate = "n/a" if r["rescue_rate"] is None else f"{r['rescue_rate']:.1%}"
        acc = "n/a" if r["member_accuracy"] is None else f"{r['member_accuracy']:.1%}"
        lines.append(
            f"| {name} | {r['n_groups']} | {r['groups_with_a_variant']} | {r['mean_distinct_wordings']} "
            f"| {acc} | {r['rescued']} | {rate} | {r['vs_resampled_points']:+.1f} "
            f"({r['vs_resampled_ci95'][0]:+.1f} to {r['vs_resampled_ci95'][1]:+.1f}) |"
        )
    (args.out / "rescue.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
