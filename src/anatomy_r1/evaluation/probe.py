"""Does answer-choice similarity make questions harder for *this* model on *this* data?

ASCL orders training data by S(q) on the premise that a question is harder when its answer choices are
more alike. That premise is a claim about a model and a data set, so it can be checked before any GPU
hours go into a curriculum. The probe measures it three ways with one loaded model:

1. **Controlled difficulty.** Every question whose answer is in a label vocabulary is re-posed with its
   least and its most similar distractors (:func:`~anatomy_r1.curriculum.distractors.pose_at_levels`);
   the same question, image and answer, only the choices differ. The accuracy gap easiest − hardest,
   with a paired bootstrap confidence interval over questions, is the cleanest test of the premise.
2. **The file as given.** S(q) of each original question against its own accuracy (Spearman ρ and
   accuracy by S(q) quartile): does the natural spread of difficulty in the data predict errors?
3. **Which classes get confused.** For every (true class A, answered class B) pair, how often the model
   answered B when B was on offer and A was right, against sim(A, B): does the backend's notion of
   "alike" match the model's mistakes?

The statistics are plain functions over arrays and judged completions, testable without a model;
:func:`run_probe` is the only part that loads one and generates.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anatomy_r1.curriculum.distractors import pose_at_levels
from anatomy_r1.curriculum.scoring import s_q, score_records
from anatomy_r1.curriculum.similarity import SimilarityBackend
from anatomy_r1.data import vocab
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import ConfigError, DataError
from anatomy_r1.evaluation.metrics import ItemResult, aggregate, judge

LEVELS: tuple[str, str] = ("easiest", "hardest")
SETS: tuple[str, str, str] = ("original", *LEVELS)
DEFAULT_RESAMPLES = 2000
S_Q_MODE = "mean"
QUARTILE_PLOT = "accuracy_by_s_q_quartile.png"
CONFUSION_PLOT = "confusion_vs_similarity.png"
OUTPUT_FILES = (
    "probe.json",
    "probe.md",
    "questions.jsonl",
    "completions.jsonl",
    QUARTILE_PLOT,
    CONFUSION_PLOT,
)
_MD_PAIRS = 25
"""Confusion pairs shown in ``probe.md``; ``probe.json`` has all of them."""
_DIGITS = 6
"""S(q) and similarities are rounded to this many decimals (as ``anatomy-r1 score`` writes them): float32
backends give 0.35 as 0.3499999 or 0.3500001 depending on the options, and equal difficulties must tie."""
_BOOTSTRAP_CELLS = 4_000_000
"""Resampled indices drawn at once: bounds bootstrap memory on 100k-question files."""


# ------------------------------------------------------------------------------------------- statistics
def average_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the mean of the positions they span (``[1, 2, 2, 3]`` -> 1, 2.5, 2.5, 4).

    Averaging ties is what makes Spearman's ρ well defined on S(q) and accuracies, both of which repeat a
    handful of values (k samples give only k + 1 possible accuracies).
    """
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    ranks = np.empty(n, dtype=np.float64)
    if n == 0:
        return ranks
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], n]
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Spearman's ρ (Pearson correlation of tie-averaged ranks), or ``None`` when it is undefined.

    Undefined means fewer than two points or a constant side (a model that is always wrong has no
    ranking of its accuracies); reporting ``None`` there is more honest than 0.
    """
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"spearman needs two equally long 1-d sequences, got {a.shape} and {b.shape}")
    if len(a) < 2:
        return None
    ra = average_ranks(a)
    rb = average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    if denom <= 1e-12:
        return None
    return float(min(1.0, max(-1.0, float(ra @ rb) / denom)))


def paired_bootstrap_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float] | None:
    """Percentile confidence interval of ``mean(a - b)``, resampling questions (pairs) with replacement.

    Resampling pairs rather than the two sides separately keeps each question's own difficulty in both
    arms, which is what makes a few hundred questions enough to see a gap. Seeded, so a report can be
    reproduced exactly; ``None`` when there are no pairs.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError("paired_bootstrap_ci needs 1-d sequences")
    if n_resamples < 1:
        raise ValueError("n_resamples must be at least 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must lie strictly between 0 and 1")
    n = len(d)
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    chunk = max(1, _BOOTSTRAP_CELLS // n)
    for s in range(0, n_resamples, chunk):
        m = min(chunk, n_resamples - s)
        means[s : s + m] = d[rng.integers(0, n, size=(m, n))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(lo), float(hi)


def quartiles(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Quartile (0..3) of each score by its tie-averaged rank, so equal scores share a quartile.

    Splitting by rank gives four equally large groups when scores are distinct; splitting by value at
    the sample quartiles would instead put a large block of equal S(q) values (common with a small label
    vocabulary) on both sides of a boundary. Groups can be uneven, or empty, when ties are large.
    """
    r = average_ranks(scores)
    n = len(r)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    return np.minimum(3, np.floor(4.0 * (r - 0.5) / n)).astype(np.int64)


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if len(x) else None


def accuracy_by_quartile(
    scores: Sequence[float] | np.ndarray,
    accuracy: Sequence[float] | np.ndarray,
    greedy: Sequence[float] | np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One row per S(q) quartile: n, S(q) range and mean, mean accuracy (and greedy accuracy)."""
    s = np.asarray(scores, dtype=np.float64)
    acc = np.asarray(accuracy, dtype=np.float64)
    g = None if greedy is None else np.asarray(greedy, dtype=np.float64)
    if acc.shape != s.shape or (g is not None and g.shape != s.shape):
        raise ValueError("scores and accuracies must have the same length")
    q = quartiles(s)
    rows = []
    for i in range(4):
        mask = q == i
        row: dict[str, Any] = {
            "quartile": i + 1,
            "n": int(mask.sum()),
            "s_q_min": float(s[mask].min()) if mask.any() else None,
            "s_q_max": float(s[mask].max()) if mask.any() else None,
            "s_q_mean": _mean(s[mask]),
            "avg_at_k": _mean(acc[mask]),
        }
        if g is not None:
            row["greedy_accuracy"] = _mean(g[mask])
        rows.append(row)
    return rows


ConfusionCounts = dict[tuple[str, str], list[int]]
"""``(true label, answered label) -> [picks, offered]``."""


def count_confusions(results: Iterable[ItemResult], *, greedy: bool = False) -> ConfusionCounts:
    """Count, per (true class A, other offered class B), the completions that answered B and the offers.

    Every judged completion of a question whose answer is A counts as one offer of each other option B;
    it counts as a pick of B when it chose B. An unreadable answer is an offer without a pick, so the rate
    is "share of completions that went to B", not "share of mistakes". Sampled completions are counted;
    ``greedy=True`` adds the greedy one too. Classes are labels (``label_from_display``), so ``Cystic
    Plate`` and ``cystic_plate`` are one class.
    """
    counts: ConfusionCounts = {}
    for res in results:
        rec = res.record
        labels = [vocab.label_from_display(o) for o in rec.options]
        a = labels[rec.answer_index]
        choices = list(res.sampled_choices)
        if greedy and res.has_greedy:
            choices.append(res.greedy_choice)
        if not choices:
            continue
        for j, b in enumerate(labels):
            if j == rec.answer_index or b == a:
                continue
            cell = counts.setdefault((a, b), [0, 0])
            cell[1] += len(choices)
            cell[0] += sum(c == j for c in choices)
    return counts


def confusion_table(
    counts: Mapping[tuple[str, str], Sequence[int]], similarity: Mapping[tuple[str, str], float]
) -> list[dict[str, Any]]:
    """Rows ``{true, answered, picks, offered, rate, similarity}``, most confused first."""
    rows = []
    for (a, b), (picks, offered) in counts.items():
        if offered <= 0:
            continue
        rows.append(
            {
                "true": a,
                "answered": b,
                "picks": int(picks),
                "offered": int(offered),
                "rate": picks / offered,
                "similarity": float(similarity[(a, b)]),
            }
        )
    rows.sort(key=lambda r: (-r["rate"], -r["similarity"], -r["offered"], r["true"], r["answered"]))
    return rows


def pair_similarities(
    pairs: Iterable[tuple[str, str]], backend: SimilarityBackend
) -> dict[tuple[str, str], float]:
    """sim(A, B) for label pairs, asking the backend once about display names (what the model reads)."""
    pairs = list(pairs)
    labels = sorted({x for p in pairs for x in p})
    if not labels:
        return {}
    pos = {lab: i for i, lab in enumerate(labels)}
    m = np.asarray(backend.similarity_matrix([vocab.display_name(lab) for lab in labels]), dtype=np.float64)
    return {(a, b): round(float(m[pos[a], pos[b]]), _DIGITS) for a, b in pairs}


# --------------------------------------------------------------------------------- vocabulary and sets
def resolve_vocabulary(spec: str, records: Sequence[Record]) -> list[str]:
    """The label vocabulary distractors are drawn from: ``auto`` or comma-separated labels.

    ``auto`` is every answer and every offered option of the file, as labels: the classes the data itself
    uses, so nothing the model was never asked about is introduced. Display names are accepted in a list
    (``Cystic Plate`` = ``cystic_plate``); duplicates are dropped.
    """
    text = spec.strip()
    if text.lower() == "auto":
        found = {vocab.label_from_display(r.answer) for r in records}
        found.update(vocab.label_from_display(o) for r in records for o in r.options)
        return sorted(x for x in found if x)
    labels = [vocab.label_from_display(part) for part in text.split(",")]
    labels = list(dict.fromkeys(x for x in labels if x))
    if not labels:
        raise ConfigError("--vocabulary: no labels given; pass comma-separated labels or 'auto'")
    return labels


@dataclass
class ProbeSets:
    """The questions a probe evaluates: originals and their re-posed easiest and hardest versions."""

    questions: list[Record]
    easiest: list[Record]
    hardest: list[Record]
    vocabulary: list[str]
    n_records: int
    skipped_not_in_vocabulary: int = 0
    skipped_too_few_labels: int = 0
    s_q: list[float] = field(default_factory=list)
    """S(q) of each original question, as given in the file."""

    def all_records(self) -> list[Record]:
        return [*self.questions, *self.easiest, *self.hardest]


def select_questions(records: Sequence[Record], vocabulary: Sequence[str]) -> tuple[list[Record], int, int]:
    """``(eligible, n answer not in vocabulary, n vocabulary smaller than the option count)``."""
    known = set(vocabulary)
    eligible: list[Record] = []
    outside = too_few = 0
    for r in records:
        if vocab.label_from_display(r.answer) not in known:
            outside += 1
        elif len(known) < len(r.options):
            too_few += 1
        else:
            eligible.append(r)
    return eligible, outside, too_few


def _shown(labels: Sequence[str], limit: int = 12) -> str:
    return ", ".join(labels[:limit]) + (" ..." if len(labels) > limit else "")


def build_probe_sets(
    records: Sequence[Record],
    vocabulary: Sequence[str],
    backend: SimilarityBackend,
    *,
    seed: int = 0,
    limit: int | None = None,
    where: str = "data",
) -> ProbeSets:
    """Select the questions that can be re-posed, re-pose them, and score the originals' S(q).

    ``backend`` is one object for the whole file: it is passed to every ``pose_at_levels`` call, so an
    encoder is loaded once however many records there are. Refused with a ``DataError`` naming ``where``:
    no question whose answer is in the vocabulary, a vocabulary label the backend cannot score, or an
    original option it cannot score (naming the item).
    """
    if not records:
        raise DataError(f"{where}: no records to probe")
    labels = list(dict.fromkeys(vocab.label_from_display(v) for v in vocabulary))
    eligible, outside, too_few = select_questions(records, labels)
    if not eligible:
        if outside == len(records):
            first = records[0]
            raise DataError(
                f"{where}: no question's answer is in the vocabulary ({_shown(labels)}); "
                f"e.g. item {first.id!r} answers {first.answer!r}"
            )
        need = max(len(r.options) for r in records)
        raise DataError(
            f"{where}: the vocabulary has {len(labels)} label(s), too few to re-pose any question "
            f"(they need up to {need} options); {outside} answer(s) outside it"
        )
    if limit is not None:
        eligible = eligible[:limit]
    try:
        backend.similarity_matrix([vocab.display_name(x) for x in labels])
    except DataError as e:
        raise DataError(
            f"vocabulary: {e}; leave the label out (--vocabulary) or pick another backend"
        ) from None
    easiest: list[Record] = []
    hardest: list[Record] = []
    for rec in eligible:
        easy, hard = pose_at_levels(rec, labels, LEVELS, backend, seed=seed, mode=S_Q_MODE)
        easiest.append(easy)
        hardest.append(hard)
    return ProbeSets(
        questions=list(eligible),
        easiest=easiest,
        hardest=hardest,
        vocabulary=labels,
        n_records=len(records),
        skipped_not_in_vocabulary=outside,
        skipped_too_few_labels=too_few,
        s_q=score_questions(eligible, backend, where=where),
    )


def score_questions(
    records: Sequence[Record], backend: SimilarityBackend, *, where: str = "data"
) -> list[float]:
    """S(q) of each record in one backend query; a failure is re-checked per item to name the item."""
    try:
        return [round(x, _DIGITS) for x in score_records(records, backend, S_Q_MODE)]
    except DataError:
        for rec in records:
            try:
                s_q(rec.options, rec.answer_index, backend, S_Q_MODE)
            except DataError as e:
                raise DataError(f"{where}: item {rec.id!r}: {e}") from None
        raise


# -------------------------------------------------------------------------------------------- analysis
def _per_question(results: Sequence[ItemResult]) -> tuple[np.ndarray, np.ndarray]:
    """Per-question Avg@k (share of correct samples; 0 without samples) and greedy correctness."""
    avg = np.array([(sum(c) / len(c)) if (c := r.sampled_correct) else 0.0 for r in results], dtype=float)
    greedy = np.array([float(r.greedy_correct) for r in results], dtype=float)
    return avg, greedy


def _level_summary(
    results: Sequence[ItemResult], greedy_given: bool, scores: Sequence[float]
) -> dict[str, Any]:
    m = aggregate(results, greedy_given=greedy_given)
    keep = ("n", "k", "avg_at_k", "greedy_accuracy", "invalid_rate", "greedy_invalid_rate", "missing")
    out = {key: m[key] for key in keep}
    out["mean_s_q"] = round(float(np.mean(scores)), _DIGITS) if len(scores) else None
    return out


def _gap(a: np.ndarray, b: np.ndarray, *, seed: int, n_resamples: int) -> dict[str, Any]:
    ci = paired_bootstrap_ci(a, b, n_resamples=n_resamples, seed=seed)
    return {
        "points": 100.0 * float(np.mean(a - b)) if len(a) else None,
        "ci95": None if ci is None else [100.0 * ci[0], 100.0 * ci[1]],
    }


def analyse(
    sets: ProbeSets,
    sampled: Mapping[str, Sequence[str]],
    greedy: Mapping[str, str] | None,
    backend: SimilarityBackend,
    *,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """All probe numbers from completions of ``sets.all_records()``: ``(result, per-question rows)``.

    Completions are judged with the evaluation rules (``metrics.judge``), so the accuracies here are the
    ones ``anatomy-r1 eval`` would report for the same completions.
    """
    n = len(sets.questions)
    records = sets.all_records()
    results = judge(records, sampled, greedy)
    parts = {name: results[i * n : (i + 1) * n] for i, name in enumerate(SETS)}
    scores = {
        "original": list(sets.s_q),
        "easiest": [round(float(r.meta["s_q"]), _DIGITS) for r in sets.easiest],
        "hardest": [round(float(r.meta["s_q"]), _DIGITS) for r in sets.hardest],
    }
    per_q = {name: _per_question(parts[name]) for name in SETS}
    greedy_given = greedy is not None
    levels = {name: _level_summary(parts[name], greedy_given, scores[name]) for name in SETS}
    gap = {"avg_at_k": _gap(per_q["easiest"][0], per_q["hardest"][0], seed=seed, n_resamples=n_resamples)}
    if greedy_given:
        gap["greedy"] = _gap(per_q["easiest"][1], per_q["hardest"][1], seed=seed, n_resamples=n_resamples)

    s_orig = np.asarray(scores["original"], dtype=float)
    acc_orig, greedy_orig = per_q["original"]
    s_q_block: dict[str, Any] = {
        "spearman_avg_at_k": spearman(s_orig, acc_orig),
        "spearman_greedy": spearman(s_orig, greedy_orig) if greedy_given else None,
        "quartiles": accuracy_by_quartile(s_orig, acc_orig, greedy_orig if greedy_given else None),
    }

    counts = count_confusions(results)
    sims = pair_similarities(counts, backend)
    table = confusion_table(counts, sims)
    confusion = {
        "counted": "sampled completions of the original, easiest and hardest questions",
        "n_pairs": len(table),
        "spearman": spearman([r["similarity"] for r in table], [r["rate"] for r in table]),
        "pairs": table,
    }
    result = {
        "n_records": sets.n_records,
        "n_questions": n,
        "n_skipped": sets.skipped_not_in_vocabulary + sets.skipped_too_few_labels,
        "n_skipped_not_in_vocabulary": sets.skipped_not_in_vocabulary,
        "n_skipped_too_few_labels": sets.skipped_too_few_labels,
        "vocabulary": list(sets.vocabulary),
        "levels": levels,
        "gap": gap,
        "s_q_vs_accuracy": s_q_block,
        "confusion": confusion,
    }
    rows = []
    for i, rec in enumerate(sets.questions):
        row: dict[str, Any] = {"id": rec.id, "answer": rec.answer}
        for name in SETS:
            suffix = "" if name == "original" else f"_{name}"
            row[f"s_q{suffix}"] = scores[name][i]
            row[f"avg_at_k{suffix}"] = float(per_q[name][0][i])
            if greedy_given:
                row[f"greedy_correct{suffix}"] = bool(per_q[name][1][i])
        rows.append(row)
    return result, rows


# --------------------------------------------------------------------------------------------- reports
def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _points(gap: Mapping[str, Any]) -> str:
    if gap.get("points") is None:
        return "–"
    ci = gap.get("ci95")
    text = f"{gap['points']:+.1f} pts"
    return text + (f" (95% CI {ci[0]:+.1f} to {ci[1]:+.1f})" if ci else "")


def probe_to_markdown(probe: Mapping[str, Any]) -> str:
    """The human-readable report: settings, the three measurements as tables, and how to read them."""
    st = probe.get("settings", {})
    k = probe["levels"]["original"].get("k") or st.get("k", "k")
    avg = f"Avg@{k}"
    lines = ["# Does answer-choice similarity predict difficulty?", ""]
    if st:
        lines += ["| setting | value |", "|---|---|"]
        for key in ("model", "data", "backend", "vocabulary", "k", "seed", "template", "image_root"):
            if key in st:
                value = st[key]
                value = ", ".join(value) if isinstance(value, list) else value
                lines.append(f"| {key} | {' '.join(str(value).split()).replace('|', '/')} |")
        lines.append("")
    lines += [
        f"{probe['n_questions']} questions probed out of {probe['n_records']} records; "
        f"{probe['n_skipped_not_in_vocabulary']} skipped because the answer is not in the vocabulary, "
        f"{probe['n_skipped_too_few_labels']} because the vocabulary has fewer labels than the question "
        f"has options. Vocabulary: {len(probe['vocabulary'])} labels.",
        "",
        "## 1. Same questions, easiest vs hardest distractors",
        "",
        f"| set | n | mean S(q) | {avg} | greedy | invalid |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in SETS:
        lv = probe["levels"][name]
        lines.append(
            f"| {name} | {lv['n']} | {_num(lv['mean_s_q'])} | {_pct(lv['avg_at_k'])} | "
            f"{_pct(lv['greedy_accuracy'])} | {_pct(lv['invalid_rate'])} |"
        )
    lines += ["", f"Gap easiest − hardest, {avg}: {_points(probe['gap']['avg_at_k'])}."]
    if "greedy" in probe["gap"]:
        lines.append(f"Gap easiest − hardest, greedy: {_points(probe['gap']['greedy'])}.")
    lines += [
        "",
        "A positive gap whose interval excludes 0 supports the premise: the same question is harder when "
        "its distractors are more alike. (Paired bootstrap over questions.)",
        "",
        "## 2. S(q) of the questions as given vs their accuracy",
        "",
    ]
    sq = probe["s_q_vs_accuracy"]
    lines.append(f"Spearman ρ (S(q), per-question {avg}): {_num(sq['spearman_avg_at_k'])}")
    if sq.get("spearman_greedy") is not None or "greedy" in probe["gap"]:
        lines.append(f"Spearman ρ (S(q), greedy correct): {_num(sq.get('spearman_greedy'))}")
    lines += [
        "",
        f"| S(q) quartile | n | S(q) range | mean S(q) | {avg} | greedy |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for q in sq["quartiles"]:
        rng = "–" if q["n"] == 0 else f"{q['s_q_min']:.3f} – {q['s_q_max']:.3f}"
        lines.append(
            f"| Q{q['quartile']} | {q['n']} | {rng} | {_num(q['s_q_mean'])} | {_pct(q['avg_at_k'])} | "
            f"{_pct(q.get('greedy_accuracy'))} |"
        )
    lines += [
        "",
        "A negative ρ (accuracy falling from Q1 to Q4) means the file's own spread of S(q) predicts errors. "
        "Quartiles split by rank; equal S(q) values stay in one quartile.",
        "",
        "## 3. Confusion between classes vs their similarity",
        "",
    ]
    conf = probe["confusion"]
    lines.append(
        f"Spearman ρ (sim(A, B), confusion rate) over {conf['n_pairs']} pairs: {_num(conf['spearman'])}. "
        f"Rate = completions answering B / completions where B was offered and A was right "
        f"({conf['counted']})."
    )
    lines += [
        "",
        "| true A | answered B | picks | offered | rate | sim(A, B) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in conf["pairs"][:_MD_PAIRS]:
        lines.append(
            f"| {row['true']} | {row['answered']} | {row['picks']} | {row['offered']} | "
            f"{_pct(row['rate'])} | {_num(row['similarity'])} |"
        )
    if len(conf["pairs"]) > _MD_PAIRS:
        lines += [
            "",
            f"{_MD_PAIRS} of {len(conf['pairs'])} pairs shown, most confused first; all are in probe.json.",
        ]
    lines += [
        "",
        f"![accuracy by S(q) quartile]({QUARTILE_PLOT})",
        "",
        f"![confusion vs similarity]({CONFUSION_PLOT})",
    ]
    return "\n".join(lines) + "\n"


_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e")
_DPI = 110


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Any, path: Path) -> Path:
    # Same conventions as anatomy_r1.reports.plots: no machine-specific metadata, so equal inputs give
    # equal bytes.
    fig.savefig(path, format="png", dpi=_DPI, metadata={"Software": None})
    return path


def _no_data(ax: Any, why: str) -> None:
    ax.set_axis_off()
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=14, color="#666666", transform=ax.transAxes)


def plot_quartiles(probe: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Bars of accuracy per S(q) quartile, with the easiest and hardest re-posed sets as reference lines."""
    quarts = probe["s_q_vs_accuracy"]["quartiles"]
    k = probe["levels"]["original"].get("k") or "k"
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    ax.set_title("Accuracy by S(q) quartile (questions as given)")
    if not any(q["n"] for q in quarts):
        _no_data(ax, "no questions")
        return _save_png(fig, Path(path))
    has_greedy = any(q.get("greedy_accuracy") is not None for q in quarts)
    width = 0.38 if has_greedy else 0.6
    xs = np.arange(4)
    avg = [q["avg_at_k"] or 0.0 for q in quarts]
    ax.bar(xs - (width / 2 if has_greedy else 0), avg, width=width, color=_COLORS[0], label=f"Avg@{k}")
    if has_greedy:
        g = [q.get("greedy_accuracy") or 0.0 for q in quarts]
        ax.bar(xs + width / 2, g, width=width, color=_COLORS[2], label="greedy")
    for name, color in (("easiest", _COLORS[3]), ("hardest", _COLORS[1])):
        v = probe["levels"][name]["avg_at_k"]
        if v is not None:
            ax.axhline(v, color=color, linestyle="--", linewidth=1.2, label=f"re-posed {name} (Avg@{k})")
    ax.set_xticks(xs)
    ax.set_xticklabels(
        [
            f"Q{q['quartile']}\n"
            + ("(empty)" if q["n"] == 0 else f"{q['s_q_min']:.2f}–{q['s_q_max']:.2f}")
            + f"\nn={q['n']}"
            for q in quarts
        ],
        fontsize=8,
    )
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_xlabel("S(q) quartile (low = dissimilar choices)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return _save_png(fig, Path(path))


def plot_confusion(probe: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Scatter of confusion rate against sim(A, B), one point per pair, size growing with its offers."""
    conf = probe["confusion"]
    pairs = conf["pairs"]
    fig = _figure(7.0, 4.6)
    ax = fig.add_subplot()
    rho = conf.get("spearman")
    ax.set_title("Confusion rate vs class similarity" + ("" if rho is None else f" (Spearman ρ = {rho:.2f})"))
    if not pairs:
        _no_data(ax, "no confusion pairs")
        return _save_png(fig, Path(path))
    x = np.array([p["similarity"] for p in pairs])
    y = np.array([p["rate"] for p in pairs])
    offered = np.array([p["offered"] for p in pairs], dtype=float)
    sizes = 12.0 + 60.0 * np.sqrt(offered / offered.max())
    ax.scatter(x, y, s=sizes, color=_COLORS[0], alpha=0.6, edgecolors="none")
    for p in pairs[:8]:
        if p["picks"] > 0:
            ax.annotate(
                f"{p['true']}→{p['answered']}".replace("_", " "),
                (p["similarity"], p["rate"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    ax.set_xlabel("sim(A, B) under the backend")
    ax.set_ylabel("rate of answering B when A is right")
    ax.set_ylim(-0.02, max(0.1, float(y.max()) * 1.15))
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _save_png(fig, Path(path))


def _jsonl(rows: Iterable[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows)


def write_probe_outputs(
    out_dir: str | os.PathLike[str],
    probe: Mapping[str, Any],
    question_rows: Sequence[Mapping[str, Any]],
    completions: Sequence[Mapping[str, Any]],
) -> dict[str, Path]:
    """Write every output into a staging folder next to ``out_dir``, then move it into place.

    A new ``out_dir`` appears in one rename, complete; an existing one has its files replaced only after
    all of them were written. Either way a failure (a full disk, a plotting error) leaves no half-filled
    ``out_dir`` and no staging folder behind.
    """
    from anatomy_r1.reports.plots import current_umask

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    texts = {
        "probe.json": json.dumps(probe, indent=2, ensure_ascii=False, allow_nan=False) + "\n",
        "probe.md": probe_to_markdown(probe),
        "questions.jsonl": _jsonl(question_rows),
        "completions.jsonl": _jsonl(completions),
    }
    created_parents = [p for p in reversed(out.absolute().parents) if not p.exists()]
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for name, text in texts.items():
            (stage / name).write_text(text, encoding="utf-8")
        plot_quartiles(probe, stage / QUARTILE_PLOT)
        plot_confusion(probe, stage / CONFUSION_PLOT)
        if out.exists():
            for name in OUTPUT_FILES:
                os.replace(stage / name, out / name)
            stage.rmdir()
        else:
            os.chmod(stage, 0o777 & ~current_umask())  # mkdtemp makes it private; a report folder is not
            os.replace(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for p in reversed(created_parents):
            with contextlib.suppress(OSError):
                p.rmdir()
        raise
    return {name: out / name for name in OUTPUT_FILES}


# ------------------------------------------------------------------------------------------------- run
Generate = Callable[[list[Record]], tuple[dict[str, list[str]], dict[str, str] | None]]
"""``records -> (sampled completions per id, greedy completion per id)``."""


def model_generator(
    model: str,
    *,
    k: int,
    template: str,
    max_new_tokens: int,
    batch_size: int,
    image_root: str | None,
    seed: int = 0,
    dtype: str = "fp32",
    progress: bool = False,
) -> Generate:
    """A :data:`Generate` that loads the checkpoint on first use and keeps it for every later call."""
    state: dict[str, Any] = {}

    def generate(records: list[Record]) -> tuple[dict[str, list[str]], dict[str, str] | None]:
        from anatomy_r1.evaluation.generate import generate_with_model

        if "model" not in state:
            import torch

            from anatomy_r1.models.base import resolve_model_path
            from anatomy_r1.models.loading import load_model, load_processor

            path = resolve_model_path(str(model))
            device_map = "auto" if torch.cuda.is_available() else None
            state["model"] = load_model(path, dtype=dtype, device_map=device_map)
            state["processor"] = load_processor(path)
        return generate_with_model(
            state["model"],
            state["processor"],
            records,
            k=k,
            greedy=True,
            template=template,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            image_root=image_root,
            seed=seed,
            progress=progress,
        )

    return generate


def run_probe(
    sets: ProbeSets,
    generate: Generate,
    backend: SimilarityBackend,
    *,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Generate for all three sets in one call and analyse: ``(result, question rows, completion rows)``.

    One call means one loaded model and batches that mix the sets, so no set is favoured by when it ran.
    """
    from anatomy_r1.evaluation.predictions import completion_rows, missing_ids

    records = sets.all_records()
    sampled, greedy = generate(records)
    missing = missing_ids(records, sampled, greedy)
    if missing:  # a gap would be scored as wrong and bias one set against another
        raise DataError(f"generation returned no completion for {len(missing)} item(s), e.g. {missing[0]!r}")
    result, rows = analyse(sets, sampled, greedy, backend, seed=seed, n_resamples=n_resamples)
    set_of = {
        r.id: name
        for name, recs in zip(SETS, (sets.questions, sets.easiest, sets.hardest), strict=True)
        for r in recs
    }
    completions = [{**row, "set": set_of[row["id"]]} for row in completion_rows(sampled, greedy)]
    return result, rows, completions
