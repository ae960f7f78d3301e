"""Does answer-choice similarity make questions harder for *this* model on *this* data?

ASCL orders training data by S(q) on the premise that a question is harder when its answer choices are
more alike. That premise is a claim about a model and a data set, so it can be checked before any GPU
hours go into a curriculum. The probe measures it three ways with one loaded model:

1. **Controlled difficulty.** Every question whose answer is in a label vocabulary is re-posed with its
   least and its most similar distractors
   (:func:`~anatomy_r1.curriculum.distractors_by_similarity.pose_at_levels`);
   the same question, image and answer, only the choices differ. The accuracy gap easiest − hardest,
   with a paired bootstrap confidence interval over questions, is the cleanest test of the premise.
2. **The file as given.** S(q) of each original question against its own accuracy (Spearman ρ and
   accuracy by S(q) quartile): does the natural spread of difficulty in the data predict errors?
3. **Which classes get confused.** For every (true class A, answered class B) pair, how often the model
   answered B when B was on offer and A was right, against sim(A, B): does the backend's notion of
   "alike" match the model's mistakes?

This module builds the question sets and turns completions into those numbers. The vocabulary rules
(:mod:`.probe_vocabulary`), the confusion counts (:mod:`.confusion`) and the statistics (:mod:`.stats`)
are plain functions over records, arrays and judged completions, testable without a model;
:func:`run_probe` is the only part that loads one and generates, and
:mod:`anatomy_r1.reports.probe_report` writes the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anatomy_r1.curriculum.distractors_by_similarity import pose_at_levels
from anatomy_r1.curriculum.scoring import s_q, score_records
from anatomy_r1.curriculum.similarity_base import SimilarityBackend
from anatomy_r1.data import vocab
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import DataError
from anatomy_r1.evaluation.confusion import DIGITS, confusion_table, count_confusions, pair_similarities
from anatomy_r1.evaluation.metrics import ItemResult, aggregate, judge
from anatomy_r1.evaluation.probe_vocabulary import (
    FIELD_WORDS,
    group_key,
    group_name,
    record_vocabularies,
    select_questions,
    unoffered_labels,
    vocabulary_mixing,
)
from anatomy_r1.evaluation.stats import DEFAULT_RESAMPLES, accuracy_by_quartile, paired_bootstrap_ci, spearman

LEVELS: tuple[str, str] = ("easiest", "hardest")
SETS: tuple[str, str, str] = ("original", *LEVELS)
S_Q_MODE = "mean"


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
    vocabulary_by: tuple[str, ...] = ()
    """Fields the vocabulary was restricted by (one vocabulary per group); empty for one file-wide list."""
    group_vocabularies: dict[str, list[str]] = field(default_factory=dict)
    """With ``vocabulary_by``: each group's vocabulary, by :func:`~.probe_vocabulary.group_name`."""
    unoffered: list[str] = field(default_factory=list)
    """Vocabulary labels no question can be offered: with ``vocabulary_by``, those no record uses."""
    mixing: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per field of :data:`~.probe_vocabulary.GROUP_FIELDS` with two or more groups in the file: how many
    questions were re-posed with a choice only another group uses (see
    :func:`~.probe_vocabulary.vocabulary_mixing`)."""

    def all_records(self) -> list[Record]:
        return [*self.questions, *self.easiest, *self.hardest]


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
    by: Sequence[str] = (),
) -> ProbeSets:
    """Select the questions that can be re-posed, re-pose them, and score the originals' S(q).

    ``backend`` is one object for the whole file: it is passed to every ``pose_at_levels`` call, so an
    encoder is loaded once however many records there are. ``by`` (fields of
    :data:`~.probe_vocabulary.GROUP_FIELDS`) draws each question's distractors only from labels its own
    group uses. Refused with a ``DataError`` naming ``where``: no question whose answer is in the
    vocabulary, a vocabulary label the backend cannot score, or an original option it cannot score
    (naming the item).
    """
    if not records:
        raise DataError(f"{where}: no records to probe")
    by = tuple(by)
    labels = list(dict.fromkeys(vocab.label_from_display(v) for v in vocabulary))
    own_vocabulary = record_vocabularies(records, labels, by)
    eligible, outside, too_few = select_questions(records, labels, vocabularies=own_vocabulary)
    if not eligible:
        if outside == len(records):
            first = records[0]
            raise DataError(
                f"{where}: no question's answer is in the vocabulary ({_shown(labels)}); "
                f"e.g. item {first.id!r} answers {first.answer!r}"
            )
        need = max(len(r.options) for r in records)
        within = f" within its {' and '.join(FIELD_WORDS[f][0] for f in by)}" if by else ""
        raise DataError(
            f"{where}: the vocabulary has {len(labels)} label(s), too few{within} to re-pose any question "
            f"(they need up to {need} options); {outside} answer(s) outside it"
        )
    if limit is not None:
        eligible = eligible[:limit]
    vocab_of = {id(r): v for r, v in zip(records, own_vocabulary, strict=True)}
    try:
        backend.similarity_matrix([vocab.display_name(x) for x in labels])
    except DataError as e:
        raise DataError(
            f"vocabulary: {e}; leave the label out (--vocabulary) or pick another backend"
        ) from None
    easiest: list[Record] = []
    hardest: list[Record] = []
    for rec in eligible:
        easy, hard = pose_at_levels(rec, vocab_of[id(rec)], LEVELS, backend, seed=seed, mode=S_Q_MODE)
        easiest.append(easy)
        hardest.append(hard)
    groups: dict[str, list[str]] = {}
    if by:
        for rec, own in zip(records, own_vocabulary, strict=True):
            groups.setdefault(group_name(by, group_key(rec, by)), own)
    return ProbeSets(
        questions=list(eligible),
        easiest=easiest,
        hardest=hardest,
        vocabulary=labels,
        n_records=len(records),
        skipped_not_in_vocabulary=outside,
        skipped_too_few_labels=too_few,
        s_q=score_questions(eligible, backend, where=where),
        vocabulary_by=by,
        group_vocabularies=dict(sorted(groups.items())),
        unoffered=unoffered_labels(labels, own_vocabulary),
        mixing=vocabulary_mixing(records, eligible, (easiest, hardest)),
    )


def score_questions(
    records: Sequence[Record], backend: SimilarityBackend, *, where: str = "data"
) -> list[float]:
    """S(q) of each record in one backend query; a failure is re-checked per item to name the item."""
    try:
        return [round(x, DIGITS) for x in score_records(records, backend, S_Q_MODE)]
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
    out["mean_s_q"] = round(float(np.mean(scores)), DIGITS) if len(scores) else None
    return out


def _gap(a: np.ndarray, b: np.ndarray, *, seed: int, n_resamples: int) -> dict[str, Any]:
    ci = paired_bootstrap_ci(a, b, n_resamples=n_resamples, seed=seed)
    return {
        "points": 100.0 * float(np.mean(a - b)) if len(a) else None,
        "ci95": None if ci is None else [100.0 * ci[0], 100.0 * ci[1]],
    }


def oracle_block(sets: ProbeSets) -> dict[str, Any] | None:
    """The synthetic world's ground truth for the same three sets, when the questions come from it.

    Synthetic anatomy questions carry ``meta.oracle_accuracy``: the accuracy of the Bayes-optimal reader
    of the frame given the offered options. Re-posed questions get theirs from the same appearance model,
    so a model's gap can be set against the largest gap the world allows. ``None`` for other data.
    """
    if not sets.questions or not all("oracle_accuracy" in r.meta for r in sets.questions):
        return None
    from anatomy_r1.data.synth.appearance import appearance_model

    try:
        world = appearance_model(sets.vocabulary)
        per_set = {
            name: [
                world.oracle_accuracy(
                    vocab.label_from_display(r.answer), [vocab.label_from_display(o) for o in r.options]
                )
                for r in recs
            ]
            for name, recs in zip(SETS, (sets.questions, sets.easiest, sets.hardest), strict=True)
        }
    except KeyError:  # a class outside the vocabulary the world was fitted on
        return None
    orig = np.asarray(per_set["original"], dtype=float)
    return {
        "source": "meta.oracle_accuracy of the synthetic world (appearance model over the vocabulary)",
        "avg": {name: round(float(np.mean(v)), DIGITS) for name, v in per_set.items()},
        "gap_points": round(100 * float(np.mean(per_set["easiest"]) - np.mean(per_set["hardest"])), 3),
        "spearman_s_q": spearman(np.asarray(sets.s_q, dtype=float), orig),
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
        "easiest": [round(float(r.meta["s_q"]), DIGITS) for r in sets.easiest],
        "hardest": [round(float(r.meta["s_q"]), DIGITS) for r in sets.hardest],
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
        "oracle": oracle_block(sets),
        "n_records": sets.n_records,
        "n_questions": n,
        "n_skipped": sets.skipped_not_in_vocabulary + sets.skipped_too_few_labels,
        "n_skipped_not_in_vocabulary": sets.skipped_not_in_vocabulary,
        "n_skipped_too_few_labels": sets.skipped_too_few_labels,
        "vocabulary": list(sets.vocabulary),
        "vocabulary_by": list(sets.vocabulary_by),
        "vocabulary_groups": dict(sets.group_vocabularies),
        "vocabulary_mixing": dict(sets.mixing),
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


def headline(result: Mapping[str, Any]) -> dict[str, Any]:
    """The two numbers that say whether the premise holds (gap and ρ), with their context, for reports."""
    gap = result["gap"]["avg_at_k"]
    oracle = result.get("oracle") or {}
    return {
        "n_questions": result["n_questions"],
        "k": result["levels"]["original"]["k"],
        "gap_points": gap["points"],
        "gap_ci95": gap.get("ci95"),
        "greedy_gap_points": (result["gap"].get("greedy") or {}).get("points"),
        "spearman_s_q": result["s_q_vs_accuracy"]["spearman_avg_at_k"],
        "easiest_avg_at_k": result["levels"]["easiest"]["avg_at_k"],
        "hardest_avg_at_k": result["levels"]["hardest"]["avg_at_k"],
        "oracle_gap_points": oracle.get("gap_points"),
        "oracle_spearman_s_q": oracle.get("spearman_s_q"),
    }


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
    temperature: float = 1.0,
) -> Generate:
    """A :data:`Generate` that loads the checkpoint on first use and keeps it for every later call."""
    state: dict[str, Any] = {}

    def generate(records: list[Record]) -> tuple[dict[str, list[str]], dict[str, str] | None]:
        from anatomy_r1.evaluation.generate import generate_with_model

        if "model" not in state:
            import torch

            from anatomy_r1.models.loading import load_model, load_processor

            path = model
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
            temperature=temperature,
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
