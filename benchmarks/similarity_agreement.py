"""How far apart the similarity backends' S(q) are on real label sets, and which one reads anatomy.

For every canonical file given (convert real data first with ``anatomy-r1 data convert --format anatomy-r1``
or ``--format medr1 ... --allow-missing-images``), this scores each question's S(q) (``mean`` mode) under
``anatomy`` (the default backend), ``minilm`` and ``matrix:prior``, and reports:

* coverage: which share of option strings, option occurrences and questions ``matrix:prior`` can score,
  and which part of ``anatomy`` (prior, anatomy table, encoder fallback) answers for the options;
* Spearman rho of S(q) between each pair of backends (pairs with ``matrix:prior`` on the questions it covers);
* the question each backend ranks hardest (highest S(q)), with how many questions tie with it;
* once for all files: named option pairs under each backend, how the anatomy table agrees with the prior on
  the prior's own 78 label pairs, and how the encoder agrees with the table on the pairs its calibration is
  fitted on.

``--oracle NAME=FILE`` adds files whose records carry ``meta.oracle_accuracy`` (the synthetic benchmark):
Spearman rho between each backend's S(q) and that per-question accuracy. The synthetic world draws its
appearance from ``matrix:prior``, so there the prior (and ``anatomy``, which equals it on those labels) is
right by construction; it shows how far ``minilm`` is from that, not which backend is right on real data.

    .venv/bin/python benchmarks/similarity_agreement.py release=REL.jsonl medr1=MED.jsonl \
        [--oracle synth=TEST.jsonl] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from anatomy_r1.curriculum.anatomy_similarity import (
    AnatomySimilarity,
    calibration_reference,
    table_similarity,
)
from anatomy_r1.curriculum.scoring import score_records
from anatomy_r1.curriculum.similarity import get_backend
from anatomy_r1.curriculum.similarity_base import SimilarityBackend
from anatomy_r1.data import vocab
from anatomy_r1.data.io import read_records
from anatomy_r1.data.schema import Record
from anatomy_r1.evaluation.stats import spearman
from anatomy_r1.reports import fmt

BACKENDS = ("anatomy", "minilm", "matrix:prior")
PAIRS = (
    ("Gallbladder", "Cystic Plate"),
    ("Omentum", "Gut"),
    ("Cystic Plate", "Cystic Duct"),
    ("Liver", "Kidney"),
    ("Liver tissue", "Kidney tissue"),
    ("Bone tissue", "Breast tissue"),
    ("Neutrophils", "Eosinophils"),
    ("Kidney", "Adrenal gland"),
    ("left eye", "right eye"),
    ("Cancer cells", "Tumor cells"),
)


def _named_file(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=FILE, got {text!r}")
    return name, Path(path)


def _rho(x: list[float] | np.ndarray, y: list[float] | np.ndarray) -> float | None:
    return None if len(x) < 2 else spearman(np.asarray(x, dtype=float), np.asarray(y, dtype=float))


def _hardest(records: list[Record], scores: list[float]) -> dict[str, Any]:
    s = np.round(np.asarray(scores, dtype=float), 6)
    top = float(s.max())
    ties = np.flatnonzero(s == top)
    rec = records[int(ties[0])]
    return {
        "s_q": top,
        "n_tied": len(ties),
        "id": rec.id,
        "answer": rec.answer,
        "distractors": [o for i, o in enumerate(rec.options) if i != rec.answer_index],
    }


def label_set_report(records: list[Record], backends: dict[str, SimilarityBackend]) -> dict[str, Any]:
    """Coverage, agreement and hardest question for one file."""
    anatomy = backends["anatomy"]
    prior = backends["matrix:prior"]
    assert isinstance(anatomy, AnatomySimilarity)
    occurrences = Counter(o.strip() for r in records for o in r.options)
    refused = prior.unscorable(list(occurrences))
    covered = [i for i, r in enumerate(records) if not any(o.strip() in refused for o in r.options)]
    source_of = {text: anatomy.match(text).source for text in occurrences}
    sources: Counter[str] = Counter()
    distinct_sources: Counter[str] = Counter()
    for text, n in occurrences.items():
        sources[source_of[text]] += n
        distinct_sources[source_of[text]] += 1
    total = sum(occurrences.values())
    out: dict[str, Any] = {
        "n_questions": len(records),
        "n_distinct_options": len(occurrences),
        "prior_coverage": {
            "distinct_options": (len(occurrences) - len(refused)) / len(occurrences),
            "option_occurrences": sum(n for t, n in occurrences.items() if t not in refused) / total,
            "questions": len(covered) / len(records),
            "n_questions": len(covered),
        },
        "anatomy_sources": {
            src: {"distinct_options": distinct_sources[src], "option_occurrences": sources[src] / total}
            for src in ("prior", "table", "encoder")
        },
        "unknown_to_table": sorted(t for t, src in source_of.items() if src == "encoder"),
    }
    scores: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    for spec in ("anatomy", "minilm"):
        t0 = time.perf_counter()
        scores[spec] = score_records(records, backends[spec], "mean")
        seconds[spec] = time.perf_counter() - t0
    covered_records = [records[i] for i in covered]
    t0 = time.perf_counter()
    prior_scores = score_records(covered_records, prior, "mean") if covered_records else []
    seconds["matrix:prior"] = time.perf_counter() - t0
    sub = {spec: [scores[spec][i] for i in covered] for spec in scores}
    out["spearman"] = {
        "anatomy~matrix:prior": _rho(sub["anatomy"], prior_scores),
        "anatomy~minilm": _rho(scores["anatomy"], scores["minilm"]),
        "minilm~matrix:prior": _rho(sub["minilm"], prior_scores),
        "n_prior_covered": len(covered),
    }
    out["mean_s_q"] = {spec: float(np.mean(v)) for spec, v in scores.items()}
    out["hardest"] = {spec: _hardest(records, v) for spec, v in scores.items()}
    if covered_records:
        out["hardest"]["matrix:prior"] = _hardest(covered_records, prior_scores)
    out["seconds"] = seconds
    return out


def pair_table(backends: dict[str, SimilarityBackend]) -> list[dict[str, Any]]:
    rows = []
    for a, b in PAIRS:
        row: dict[str, Any] = {"pair": f"{a} / {b}"}
        for spec, backend in backends.items():
            row[spec] = None if backend.unscorable([a, b]) else round(backend.similarity(a, b), 3)
        anatomy = backends["anatomy"]
        assert isinstance(anatomy, AnatomySimilarity)
        row["anatomy_source"] = "/".join(anatomy.match(t).source for t in (a, b))
        rows.append(row)
    return rows


def knowledge_checks(anatomy: AnatomySimilarity) -> dict[str, Any]:
    """Table vs prior on the prior's own pairs; encoder vs table on the calibration pairs."""
    labels = vocab.ANATOMY_LABELS
    prior_v, table_v = [], []
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            na, nb = anatomy.taxonomy.resolve(a), anatomy.taxonomy.resolve(b)
            assert na is not None and nb is not None, (a, b)
            prior_v.append(vocab.class_similarity(a, b))
            table_v.append(table_similarity(na, nb))
    cosine, value = calibration_reference(anatomy.taxonomy, anatomy.encoder)
    cal = anatomy.calibration
    probs = (0.5, 0.75, 0.9, 0.95, 0.99)
    return {
        "table_vs_prior": {
            "n_pairs": len(prior_v),
            "spearman": _rho(prior_v, table_v),
            "mean_abs_diff": float(np.mean(np.abs(np.asarray(prior_v) - np.asarray(table_v)))),
        },
        "encoder_vs_table": {"n_pairs": len(cosine), "spearman": _rho(cosine, value)},
        "calibration": [
            {
                "quantile": p,
                "cosine": float(np.quantile(cal.cosine_quantiles, p)),
                "value": float(np.quantile(cal.value_quantiles, p)),
            }
            for p in probs
        ],
        "n_table_labels": len(anatomy.taxonomy.rows),
    }


def oracle_report(records: list[Record], backends: dict[str, SimilarityBackend]) -> dict[str, Any]:
    acc = [r.meta.get("oracle_accuracy") for r in records]
    keep = [i for i, a in enumerate(acc) if isinstance(a, int | float)]
    recs = [records[i] for i in keep]
    y = [float(acc[i]) for i in keep]  # type: ignore[arg-type]
    out: dict[str, Any] = {"n_questions": len(recs)}
    for spec, backend in backends.items():
        if backend.unscorable(list({o for r in recs for o in r.options})):
            out[spec] = None
            continue
        out[spec] = _rho(score_records(recs, backend, "mean"), y)
    return out


def to_markdown(result: dict[str, Any]) -> str:
    def rho(value: float | None) -> str:
        return fmt.signed(value, 2, missing=fmt.NA)

    L: list[str] = []
    k = result["knowledge"]
    L.append("## Named pairs\n")
    L.append("| pair | anatomy | minilm | matrix:prior | anatomy answers from |")
    L.append("|---|---|---|---|---|")
    for r in result["pairs"]:
        cells = [fmt.fixed(r[s]) if r[s] is not None else "not in prior" for s in BACKENDS]
        L.append(f"| {r['pair']} | {' | '.join(cells)} | {r['anatomy_source']} |")
    tv, ev = k["table_vs_prior"], k["encoder_vs_table"]
    L.append(
        f"\nAnatomy table ({k['n_table_labels']} labels) vs the prior on its {tv['n_pairs']} label pairs: "
        f"Spearman {rho(tv['spearman'])}, mean |difference| {tv['mean_abs_diff']:.3f}.  "
    )
    L.append(
        f"Encoder cosine vs anatomy table on the {ev['n_pairs']} calibration pairs: "
        f"Spearman {rho(ev['spearman'])}.  "
    )
    cal = ", ".join(
        f"q{round(c['quantile'] * 100)} {c['cosine']:.3f} -> {c['value']:.3f}" for c in k["calibration"]
    )
    L.append(f"Calibration (encoder cosine -> table scale): {cal}.\n")
    for name, r in result["label_sets"].items():
        pc, sp = r["prior_coverage"], r["spearman"]
        L.append(f"## {name}: {r['n_questions']} questions, {r['n_distinct_options']} distinct options\n")
        L.append(
            f"* matrix:prior covers {pc['distinct_options']:.1%} of distinct options, "
            f"{pc['option_occurrences']:.1%} of option occurrences, {pc['questions']:.1%} of questions "
            f"({pc['n_questions']})"
        )
        srcs = ", ".join(
            f"{src} {v['option_occurrences']:.1%} ({v['distinct_options']} distinct)"
            for src, v in r["anatomy_sources"].items()
        )
        L.append(f"* anatomy answers from: {srcs}")
        L.append(
            f"* Spearman rho of S(q): anatomy~prior {rho(sp['anatomy~matrix:prior'])}, "
            f"anatomy~minilm {rho(sp['anatomy~minilm'])}, "
            f"minilm~prior {rho(sp['minilm~matrix:prior'])} "
            f"(pairs with the prior over the {sp['n_prior_covered']} questions it covers)"
        )
        means = ", ".join(f"{s} {v:.3f}" for s, v in r["mean_s_q"].items())
        L.append(f"* mean S(q): {means}")
        for spec, h in r["hardest"].items():
            L.append(
                f"* hardest under {spec}: S(q) {h['s_q']:.3f} ({h['n_tied']} tied), {h['answer']} vs "
                f"{{{', '.join(h['distractors'])}}} ({h['id']})"
            )
        secs = ", ".join(f"{s} {v:.1f} s" for s, v in r["seconds"].items())
        L.append(f"* scoring time: {secs}")
        if r["unknown_to_table"]:
            L.append(f"* left to the encoder: {', '.join(repr(t) for t in r['unknown_to_table'])}")
        L.append("")
    for name, r in result.get("oracle", {}).items():
        vals = ", ".join(f"{s} {rho(r[s])}" for s in BACKENDS)
        L.append(f"## {name}: Spearman rho of S(q) vs oracle accuracy ({r['n_questions']} questions)\n")
        L.append(f"{vals}\n")
    return "\n".join(L)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=_named_file, metavar="NAME=FILE", help="canonical JSONL files")
    ap.add_argument("--oracle", action="append", type=_named_file, default=[], metavar="NAME=FILE")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args(argv)
    backends = {spec: get_backend(spec) for spec in BACKENDS}
    anatomy = backends["anatomy"]
    assert isinstance(anatomy, AnatomySimilarity)
    result: dict[str, Any] = {
        "knowledge": knowledge_checks(anatomy),
        "pairs": pair_table(backends),
        "label_sets": {name: label_set_report(read_records(path), backends) for name, path in args.files},
        "oracle": {name: oracle_report(read_records(path), backends) for name, path in args.oracle},
    }
    print(to_markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
