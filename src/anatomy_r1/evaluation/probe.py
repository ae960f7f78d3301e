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

The statistics (:mod:`.stats`) are plain functions over arrays and judged completions, testable without a
model; :func:`run_probe` is the only part that loads one and generates, and
:mod:`anatomy_r1.reports.probe_report` writes the outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from anatomy_r1.curriculum.distractors_by_similarity import pose_at_levels
from anatomy_r1.curriculum.scoring import s_q, score_records
from anatomy_r1.curriculum.similarity import SimilarityBackend
from anatomy_r1.data import vocab
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import ConfigError, DataError
from anatomy_r1.evaluation.metrics import ItemResult, aggregate, judge
from anatomy_r1.evaluation.stats import DEFAULT_RESAMPLES, accuracy_by_quartile, paired_bootstrap_ci, spearman

LEVELS: tuple[str, str] = ("easiest", "hardest")
SETS: tuple[str, str, str] = ("original", *LEVELS)
S_Q_MODE = "mean"
_DIGITS = 6
"""S(q) and similarities are rounded to this many decimals (as ``anatomy-r1 score`` writes them): float32
backends give 0.35 as 0.3499999 or 0.3500001 depending on the options, and equal difficulties must tie."""


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


def confusion_similarity(pairs: Iterable[Mapping[str, Any]], labels: Sequence[str]) -> dict[str, Any]:
    """A class-similarity matrix measured from the model's confusions, in the ``matrix:FILE`` format.

    sim(A, B) is the share of completions that answered B when A was right or A when B was right, over all
    offers of the pair in either direction; the diagonal is 1 and a pair never offered together is 0. This
    is the model-aware similarity a next run's curriculum can use (``curriculum.backend:
    matrix:confusion_similarity.json``): what this checkpoint confuses, measured before training resumes.
    """
    labels = list(labels)
    pos = {lab: i for i, lab in enumerate(labels)}
    picks = np.zeros((len(labels), len(labels)))
    offered = np.zeros_like(picks)
    for row in pairs:
        a, b = row["true"], row["answered"]
        if a in pos and b in pos:
            for i, j in ((pos[a], pos[b]), (pos[b], pos[a])):
                picks[i, j] += row["picks"]
                offered[i, j] += row["offered"]
    m = np.divide(picks, offered, out=np.zeros_like(picks), where=offered > 0)
    np.fill_diagonal(m, 1.0)
    return {"labels": labels, "matrix": [[round(float(x), _DIGITS) for x in r] for r in m]}


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
    (``Cystic Plate`` = ``cystic_plate``); duplicates are dropped. On a file that pools datasets or
    question types, ``auto`` pools their labels too; ``build_probe_sets(..., by=...)`` keeps each
    question's distractors within its own group.
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


GROUP_FIELDS: tuple[str, ...] = ("dataset", "question_type")
"""Record fields a vocabulary can be restricted by (``--vocabulary-by``). A file that pools several
source datasets (OmniMedVQA: one per body region and modality) or question types (anatomy, modality,
disease) has labels that make no sense as each other's distractors: a radius X-ray question offered
"Breast Tissue", an eye question offered "Costovertebral Junction"."""
_FIELD_WORDS = {"dataset": ("dataset", "datasets"), "question_type": ("question type", "question types")}
_NO_GROUP = "(none)"

GroupKey = tuple[str | None, ...]


def record_group(record: Record, name: str) -> str | None:
    """The record's ``dataset`` or ``question_type``; None when the record does not say.

    ``meta[name]`` first. A record converted from Med-R1 or OmniMedVQA without ``meta.dataset`` still
    names its dataset in its image path, ``Images/<dataset>/<file>`` (also below a re-rooted prefix).
    """
    value = record.meta.get(name)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if name == "dataset":
        for image in record.images:
            parts = PurePosixPath(image.replace("\\", "/")).parts
            hits = [i for i in range(len(parts) - 2) if parts[i] == "Images"]
            if hits:
                return parts[hits[-1] + 1]
    return None


def parse_vocabulary_by(spec: str | None) -> tuple[str, ...]:
    """``--vocabulary-by``: ``none`` (one vocabulary for the file) or fields from :data:`GROUP_FIELDS`,
    comma-separated."""
    text = (spec or "none").strip().lower()
    if text in ("", "none"):
        return ()
    fields = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [f for f in fields if f not in GROUP_FIELDS]
    if unknown or not fields:
        raise ConfigError(
            f"--vocabulary-by {spec!r}: unknown field {unknown[0] if unknown else ''!r}; use "
            f"{', '.join(GROUP_FIELDS)} (comma-separated to combine them) or none"
        )
    return tuple(dict.fromkeys(fields))


def group_key(record: Record, by: Sequence[str]) -> GroupKey:
    return tuple(record_group(record, name) for name in by)


def group_name(by: Sequence[str], key: GroupKey) -> str:
    """``dataset=ACRIMA, question_type=Anatomy Identification``: a group as the outputs name it."""
    return ", ".join(f"{name}={_NO_GROUP if v is None else v}" for name, v in zip(by, key, strict=True))


def _record_labels(record: Record) -> set[str]:
    labels = {vocab.label_from_display(o) for o in record.options}
    labels.add(vocab.label_from_display(record.answer))
    labels.discard("")
    return labels


def labels_by_group(records: Iterable[Record], by: Sequence[str]) -> dict[GroupKey, set[str]]:
    """Every label each group of records uses, as answer or option."""
    out: dict[GroupKey, set[str]] = {}
    for r in records:
        out.setdefault(group_key(r, by), set()).update(_record_labels(r))
    return out


def record_vocabularies(
    records: Sequence[Record], vocabulary: Sequence[str], by: Sequence[str] = ()
) -> list[list[str]]:
    """The vocabulary each record's distractors are drawn from, aligned with ``records``.

    Without ``by`` it is ``vocabulary`` for every record. With it, a record gets the labels of
    ``vocabulary`` (in its order) that records of its own group use, so a question is re-posed only with
    choices its own dataset or question type offers. Records of one group share one list.
    """
    labels = list(vocabulary)
    if not by:
        return [labels] * len(records)
    used = labels_by_group(records, by)
    per_group = {key: [x for x in labels if x in found] for key, found in used.items()}
    return [per_group[group_key(r, by)] for r in records]


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
    """With ``vocabulary_by``: each group's vocabulary, by :func:`group_name`."""
    mixing: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per field of :data:`GROUP_FIELDS` with two or more groups in the file: how many questions were
    re-posed with a choice only another group uses (see :func:`vocabulary_mixing`)."""

    def all_records(self) -> list[Record]:
        return [*self.questions, *self.easiest, *self.hardest]


def select_questions(
    records: Sequence[Record], vocabulary: Sequence[str], *, by: Sequence[str] = ()
) -> tuple[list[Record], int, int]:
    """``(eligible, n answer not in vocabulary, n vocabulary smaller than the option count)``.

    With ``by``, each record is checked against its own group's vocabulary (:func:`record_vocabularies`).
    """
    eligible: list[Record] = []
    outside = too_few = 0
    known_sets: dict[int, set[str]] = {}
    for r, labels in zip(records, record_vocabularies(records, vocabulary, by), strict=True):
        known = known_sets.setdefault(id(labels), set(labels))
        if vocab.label_from_display(r.answer) not in known:
            outside += 1
        elif len(known) < len(r.options):
            too_few += 1
        else:
            eligible.append(r)
    return eligible, outside, too_few


def vocabulary_mixing(
    records: Sequence[Record],
    questions: Sequence[Record],
    posed: Sequence[Sequence[Record]],
    fields: Sequence[str] = GROUP_FIELDS,
) -> dict[str, dict[str, Any]]:
    """Which re-posed questions offer a choice that, in this file, only another group uses.

    For each field with two or more groups among ``records`` (records that do not say form a group of
    their own), a question counts when one of its re-posed versions (``posed``, aligned with
    ``questions``) offers a label that occurs in the file but never in a record of the question's own
    group. Labels that occur nowhere in the file (from an explicit vocabulary) are not counted: the file
    cannot say where they belong. Returns ``{field: {"groups", "n_questions", "example"}}``, the example
    naming the first such question, its group, the foreign choice and the groups that do use it.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in fields:
        used = labels_by_group(records, (name,))
        if len(used) < 2:
            continue
        owners: dict[str, list[str | None]] = {}
        for key, labels in used.items():
            for lab in labels:
                owners.setdefault(lab, []).append(key[0])
        count = 0
        example: dict[str, Any] | None = None
        for i, rec in enumerate(questions):
            own = record_group(rec, name)
            mine = used.get((own,), set())
            foreign = [
                o
                for versions in posed
                for o in versions[i].options
                if (lab := vocab.label_from_display(o)) in owners and lab not in mine
            ]
            if not foreign:
                continue
            count += 1
            if example is None:
                others = sorted(
                    g if g is not None else _NO_GROUP for g in owners[vocab.label_from_display(foreign[0])]
                )
                example = {
                    "id": rec.id,
                    "group": own if own is not None else _NO_GROUP,
                    "option": foreign[0],
                    "option_groups": others,
                }
        out[name] = {"groups": len(used), "n_questions": count, "example": example}
    return out


def mixing_warnings(
    mixing: Mapping[str, Mapping[str, Any]], n_questions: int, by: Sequence[str]
) -> list[str]:
    """One warning line per field whose groups the re-posed questions mix: how many, an example, and the
    ``--vocabulary-by`` value that keeps each question within its own group."""
    lines = []
    for name, info in mixing.items():
        if not info["n_questions"]:
            continue
        one, many = _FIELD_WORDS.get(name, (name, name))
        ex = info["example"]
        flag = ",".join(dict.fromkeys([*by, name]))
        lines.append(
            f"{info['n_questions']} of {n_questions} questions are re-posed with choices that occur "
            f"only under another {one} ({info['groups']} {many} in the file), e.g. item {ex['id']!r} "
            f"({one} {ex['group']}) is offered {ex['option']!r} ({one} "
            f"{', '.join(ex['option_groups'][:3])}); "
            f"pass --vocabulary-by {flag} to draw each question's distractors from its own {one}"
        )
    return lines


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
    encoder is loaded once however many records there are. ``by`` (fields of :data:`GROUP_FIELDS`)
    draws each question's distractors only from labels its own group uses. Refused with a ``DataError``
    naming ``where``: no question whose answer is in the vocabulary, a vocabulary label the backend
    cannot score, or an original option it cannot score (naming the item).
    """
    if not records:
        raise DataError(f"{where}: no records to probe")
    by = tuple(by)
    labels = list(dict.fromkeys(vocab.label_from_display(v) for v in vocabulary))
    eligible, outside, too_few = select_questions(records, labels, by=by)
    if not eligible:
        if outside == len(records):
            first = records[0]
            raise DataError(
                f"{where}: no question's answer is in the vocabulary ({_shown(labels)}); "
                f"e.g. item {first.id!r} answers {first.answer!r}"
            )
        need = max(len(r.options) for r in records)
        within = f" within its {' and '.join(_FIELD_WORDS[f][0] for f in by)}" if by else ""
        raise DataError(
            f"{where}: the vocabulary has {len(labels)} label(s), too few{within} to re-pose any question "
            f"(they need up to {need} options); {outside} answer(s) outside it"
        )
    if limit is not None:
        eligible = eligible[:limit]
    own_vocabulary = record_vocabularies(records, labels, by)
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
        mixing=vocabulary_mixing(records, eligible, (easiest, hardest)),
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
        "avg": {name: round(float(np.mean(v)), _DIGITS) for name, v in per_set.items()},
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
