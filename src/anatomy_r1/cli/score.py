"""``anatomy-r1 score``: attach the difficulty S(q) to every record of a canonical JSONL file.

Scoring is text-only: S(q) depends on the answer choices, never on the pixels, so images are not opened or
checked here (``--allow-missing-images`` is accepted for symmetry with the other data commands and changes
nothing). The output is written atomically: a failure leaves no partial file. Options the backend cannot
score (labels a ``matrix:`` file lacks) are all listed by file, line and item before anything is written.
"""

from __future__ import annotations

import argparse
import time

from anatomy_r1.curriculum.scoring import MODES, score_file_records, summarize
from anatomy_r1.curriculum.similarity import DEFAULT_BACKEND


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="compute question difficulty S(q) (answer-choice similarity) for a JSONL file",
        description=(
            "Write each record with meta['s_q'] = similarity of its answer choices (see docs/curriculum.md), "
            "plus meta['s_q_backend'] and meta['s_q_mode']. Text-only: images are not checked."
        ),
    )
    p.add_argument("input", metavar="INPUT.jsonl", help="canonical records")
    p.add_argument("--out", required=True, metavar="OUT.jsonl", help="where to write the scored records")
    p.add_argument(
        "--backend",
        default=DEFAULT_BACKEND,
        help=(
            "similarity backend: anatomy, anatomy:ENCODER, minilm, st:PATH, matrix:FILE, matrix:prior "
            f"(default: {DEFAULT_BACKEND})"
        ),
    )
    p.add_argument("--mode", choices=MODES, default="mean", help="S(q) definition (default: mean)")
    p.add_argument(
        "--allow-missing-images",
        action="store_true",
        help="accepted for symmetry with other data commands; scoring never reads images",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from anatomy_r1.curriculum.similarity import get_backend
    from anatomy_r1.data.io import read_records, write_records

    records = read_records(args.input)
    backend = get_backend(args.backend)
    t0 = time.perf_counter()
    scores = score_file_records(records, backend, args.mode, args.input)
    elapsed = time.perf_counter() - t0
    for rec, s in zip(records, scores, strict=True):
        rec.meta["s_q"] = round(s, 6)
        rec.meta["s_q_backend"] = backend.spec
        rec.meta["s_q_mode"] = args.mode
    write_records(args.out, records)
    print(f"scored {len(records)} records with {backend.spec} ({args.mode}) in {elapsed:.1f}s -> {args.out}")
    print(summarize(scores))
    return 0
