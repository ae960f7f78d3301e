"""``anatomy-r1 probe``: measure whether answer-choice similarity predicts difficulty for a model and data.

Every input check (options, data file, backend, vocabulary, model folder) runs before the model is
loaded, so a typo costs seconds, not a model load. The prompt template, completion length and dtype
default to those of the run that trained the model, as in ``anatomy-r1 eval``
(:mod:`anatomy_r1.evaluation.run_settings`): a model probed with a prompt it was not trained on mostly
gives unreadable answers, and the gap between two near-zero accuracies says nothing about the premise.
The library side is :mod:`anatomy_r1.evaluation.probe` (with :mod:`~anatomy_r1.evaluation.probe_vocabulary`);
it and the generation stack are imported inside the command because they pull in numpy, matplotlib, torch
and transformers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from anatomy_r1.curriculum.similarity import DEFAULT_BACKEND
from anatomy_r1.errors import ConfigError
from anatomy_r1.reports import fmt


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "probe",
        help="check whether more alike answer choices make questions harder for a model (before ASCL)",
        description=(
            "Re-pose every question whose answer is in the vocabulary with its least and most similar "
            "distractors and compare the model's accuracy on both (gap with a paired bootstrap 95% CI); "
            "correlate S(q) of the questions as given with their accuracy; and compare how often the "
            "model confuses two classes with their similarity. Writes probe.json, probe.md, "
            "questions.jsonl, completions.jsonl and two PNG plots to --out."
        ),
    )
    p.add_argument("--model", required=True, metavar="DIR", help="local model folder (or builtin:tiny-base)")
    p.add_argument("--data", required=True, metavar="FILE", help="canonical JSONL data file")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--backend",
        default=DEFAULT_BACKEND,
        metavar="SPEC",
        help=f"similarity backend: {DEFAULT_BACKEND} (default), minilm, st:PATH, matrix:FILE, matrix:prior",
    )
    p.add_argument(
        "--vocabulary",
        default="auto",
        metavar="LABELS|auto",
        help="labels distractors are drawn from: comma-separated (liver,gallbladder,...) or auto (default: "
        "every answer and option of the file)",
    )
    p.add_argument(
        "--vocabulary-by",
        default="none",
        metavar="FIELDS",
        help="restrict each question's distractors to the labels of its own group: dataset (meta.dataset, "
        "or Images/<dataset>/ in the image path), question_type (meta.question_type), both as "
        "dataset,question_type, or none (default: one vocabulary for the whole file; a file that pools "
        "datasets or question types gets a warning naming how many questions would mix them)",
    )
    p.add_argument(
        "--k", type=int, metavar="N", default=5, help="sampled completions per question for Avg@k (default 5)"
    )
    p.add_argument(
        "--seed", type=int, metavar="N", default=0, help="seed for distractor choice, sampling and bootstrap"
    )
    p.add_argument(
        "--template",
        default=None,
        metavar="NAME",
        help="prompt template (default: the one the model was trained with, from its run's "
        "anatomy_r1_run.json or ../config.yaml; anatomy_r1 for a model of no run); a different one is "
        "used with a warning",
    )
    p.add_argument("--image-root", metavar="DIR", help="folder image paths are resolved against")
    p.add_argument("--batch-size", type=int, metavar="N", default=8, help="generation batch size (default 8)")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        metavar="N",
        default=None,
        help="completion length limit (default: the run's grpo.max_completion_length, else 1024)",
    )
    p.add_argument(
        "--limit", type=int, metavar="N", default=None, help="probe only the first N eligible questions"
    )
    p.add_argument(
        "--dtype",
        default=None,
        metavar="NAME",
        help="model dtype: fp32, bf16, fp16 or float32, bfloat16, float16 (default: the run's model.dtype, "
        "else fp32)",
    )
    p.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> tuple[str, ...]:
    """Refuse bad options before any file is read; returns the parsed ``--vocabulary-by`` fields."""
    from anatomy_r1.evaluation.probe_vocabulary import parse_vocabulary_by
    from anatomy_r1.evaluation.run_settings import check_generation_options

    check_generation_options(
        template=args.template,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
        dtype=args.dtype,
    )
    if args.k < 1:
        raise ConfigError("--k must be at least 1")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    return parse_vocabulary_by(args.vocabulary_by)


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from anatomy_r1.curriculum.similarity import get_backend
    from anatomy_r1.data.images import default_image_root
    from anatomy_r1.data.io import read_records
    from anatomy_r1.evaluation import probe, probe_vocabulary
    from anatomy_r1.evaluation.run_settings import resolve_run_settings
    from anatomy_r1.evaluation.stats import DEFAULT_RESAMPLES
    from anatomy_r1.pipelines.base_model import BUILTIN_PREFIX, resolve_model_path
    from anatomy_r1.reports.probe_report import write_probe_outputs

    by = _check_args(args)
    model_dir = None  # the built-in base model is no run of ours; it is built only when generating
    if not str(args.model).startswith(BUILTIN_PREFIX):
        model_dir = resolve_model_path(str(args.model))  # a folder without config.json is refused now
    given = {"template": args.template, "max_new_tokens": args.max_new_tokens, "dtype": args.dtype}
    run_settings = resolve_run_settings(model_dir, given)  # checks the template a run's record names
    for line in run_settings.warnings:
        _warn(line)
    records = read_records(args.data)
    backend = get_backend(args.backend)  # built once; every record below is posed and scored with it
    vocabulary = probe_vocabulary.resolve_vocabulary(args.vocabulary, records)
    sets = probe.build_probe_sets(
        records, vocabulary, backend, seed=args.seed, limit=args.limit, where=str(args.data), by=by
    )
    named = "--vocabulary auto" if args.vocabulary.strip().lower() == "auto" else "--vocabulary"
    for line in probe_vocabulary.mixing_warnings(sets.mixing, len(sets.questions), by):
        _warn(f"{named}: {line}")
    if sets.unoffered:
        own = " and ".join(probe_vocabulary.FIELD_WORDS[f][0] for f in by)
        _warn(
            f"{named}: {len(sets.unoffered)} of {len(sets.vocabulary)} labels ({', '.join(sets.unoffered)}) "
            f"are used by no record, so with --vocabulary-by {','.join(by)} no question is offered them "
            f"(each draws its distractors from the labels its own {own} uses)"
        )
    image_root = default_image_root(args.data, args.image_root)
    generate = probe.model_generator(
        # builds the builtin base model only now, if needed
        str(model_dir if model_dir is not None else resolve_model_path(str(args.model))),
        k=args.k,
        template=run_settings.value("template"),
        max_new_tokens=run_settings.value("max_new_tokens"),
        batch_size=args.batch_size,
        image_root=image_root,
        seed=args.seed,
        dtype=run_settings.value("dtype"),
    )
    result, rows, completions = probe.run_probe(
        sets, generate, backend, seed=args.seed, n_resamples=DEFAULT_RESAMPLES
    )
    result = {
        "settings": {
            "model": str(args.model),
            "data": str(args.data),
            "backend": backend.spec or args.backend,
            "vocabulary": args.vocabulary if args.vocabulary.strip().lower() == "auto" else vocabulary,
            "vocabulary_by": list(by),
            "k": args.k,
            "seed": args.seed,
            **run_settings.as_json(),  # template, max_new_tokens, dtype: {value, from[, file, run_value]}
            "image_root": image_root,
            "batch_size": args.batch_size,
            "limit": args.limit,
            "s_q_mode": probe.S_Q_MODE,
            "bootstrap_resamples": DEFAULT_RESAMPLES,
            "levels": list(probe.LEVELS),
        },
        **result,
    }
    write_probe_outputs(args.out, result, rows, completions)
    _report(result, args.out)
    return 0


def _report(result: dict[str, Any], out: str) -> None:
    """The console summary: the numbers of ``probe.md``, with "n/a" for any that could not be computed."""
    na = fmt.NA
    st = result["settings"]
    lv = result["levels"]
    k = st["k"]
    skipped = f"{result['n_skipped']} skipped"
    if result["n_skipped"]:
        skipped += (
            f" ({result['n_skipped_not_in_vocabulary']} answer not in the vocabulary, "
            f"{result['n_skipped_too_few_labels']} too few labels)"
        )
    print(
        f"probe: {result['n_questions']} of {result['n_records']} questions, {skipped}; "
        f"k={k}, backend {st['backend']}, vocabulary {len(result['vocabulary'])} labels"
    )
    print(
        f"  Avg@{k}: easiest {fmt.percent(lv['easiest']['avg_at_k'], missing=na)}, "
        f"hardest {fmt.percent(lv['hardest']['avg_at_k'], missing=na)}, "
        f"gap {fmt.gap_with_ci(result['gap']['avg_at_k'], missing=na)}"
    )
    if "greedy" in result["gap"]:
        print(
            f"  greedy: easiest {fmt.percent(lv['easiest']['greedy_accuracy'], missing=na)}, "
            f"hardest {fmt.percent(lv['hardest']['greedy_accuracy'], missing=na)}, "
            f"gap {fmt.gap_with_ci(result['gap']['greedy'], missing=na)}"
        )
    sq = result["s_q_vs_accuracy"]
    print(
        f"  as given: Avg@{k} {fmt.percent(lv['original']['avg_at_k'], missing=na)}; Spearman rho S(q) vs "
        f"Avg@{k} {fmt.signed(sq['spearman_avg_at_k'], 2, missing=na)}; by quartile "
        + " / ".join(fmt.percent(q["avg_at_k"], missing=na) for q in sq["quartiles"])
    )
    conf = result["confusion"]
    print(
        f"  confusion vs similarity: Spearman rho {fmt.signed(conf['spearman'], 2, missing=na)} "
        f"over {conf['n_pairs']} pairs"
    )
    print(f"-> {out}")
