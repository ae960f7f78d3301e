"""Time S(q) scoring of a large synthetic file: the target is 100k questions in at most 60 s on CPU.

Records mimic real data: options come from a shared vocabulary of a few thousand distinct strings
(anatomy classes, instruments, positions and short descriptive phrases), four options per question.

    python benchmarks/scoring_speed.py            # 100k records, minilm
    python benchmarks/scoring_speed.py --quick    # 5k records, a smoke run
    python benchmarks/scoring_speed.py --backend matrix:prior --vocab labels
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from anatomy_r1.curriculum.encoders import EmbeddingBackend
from anatomy_r1.curriculum.scoring import score_records, summarize
from anatomy_r1.curriculum.similarity import get_backend
from anatomy_r1.data import vocab
from anatomy_r1.data.schema import Record, make_record

_QUALIFIERS = (
    "inflamed",
    "retracted",
    "dissected",
    "partially visible",
    "bleeding",
    "clipped",
    "exposed",
    "fatty",
    "adherent",
    "distended",
    "thin",
    "thickened",
    "lower",
    "upper",
    "lateral",
    "medial",
    "anterior",
    "posterior",
    "proximal",
    "distal",
    "edge of the",
    "surface of the",
    "tip of the",
    "base of the",
    "wall of the",
    "portion of the",
    "border of the",
    "region near the",
)


def option_vocabulary(size: int, seed: int) -> list[str]:
    """``size`` distinct short option strings built from the anatomy and instrument vocabularies."""
    names = [vocab.display_name(x) for x in (*vocab.ANATOMY_LABELS, *vocab.INSTRUMENT_LABELS)]
    names += [p.replace("-", " ") for p in vocab.POSITIONS]
    rng = random.Random(seed)
    out = list(dict.fromkeys(names))
    seen = {o.casefold() for o in out}
    while len(out) < size:
        words = rng.sample(_QUALIFIERS, rng.choice((1, 2)))
        text = " ".join([*words, rng.choice(names).lower()]).capitalize()
        if text.casefold() not in seen:
            seen.add(text.casefold())
            out.append(text)
    return out[:size]


def synthetic_records(n: int, options_vocab: list[str], n_options: int, seed: int) -> list[Record]:
    rng = random.Random(seed)
    recs = []
    for i in range(n):
        options = rng.sample(options_vocab, n_options)
        recs.append(
            make_record(
                id=f"bench-{i}",
                images=[f"images/{i % 997}.png"],
                question="Which structure is highlighted in the image?",
                options=options,
                answer_index=rng.randrange(n_options),
                source="benchmark",
            )
        )
    return recs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="records (default 100000)")
    ap.add_argument("--unique", type=int, default=3_000, help="distinct option strings (default 3000)")
    ap.add_argument("--options", type=int, default=4, help="options per question (default 4)")
    ap.add_argument("--backend", default="minilm")
    ap.add_argument("--mode", default="mean", choices=("mean", "max", "pairwise"))
    ap.add_argument(
        "--vocab",
        choices=("phrases", "labels"),
        default="phrases",
        help="'labels' draws options from the 13 anatomy labels only (for matrix backends)",
    )
    ap.add_argument("--quick", action="store_true", help="5000 records, 500 distinct strings")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.unique = min(args.n, 5_000), min(args.unique, 500)

    if args.vocab == "labels":
        opts = [vocab.display_name(x) for x in vocab.ANATOMY_LABELS]
    else:
        opts = option_vocabulary(args.unique, args.seed)
    t = time.perf_counter()
    records = synthetic_records(args.n, opts, args.options, args.seed)
    t_gen = time.perf_counter() - t

    t = time.perf_counter()
    backend = get_backend(args.backend)
    if isinstance(backend, EmbeddingBackend):
        backend.embed(["warm-up"])  # model load is a one-off cost; reported separately
    t_load = time.perf_counter() - t

    t = time.perf_counter()
    scores = score_records(records, backend, args.mode)
    t_score = time.perf_counter() - t

    encoded = getattr(backend, "encoded_count", None)
    note = f"  (strings encoded: {encoded})" if encoded else ""
    print(
        f"records={len(records)} distinct_options={len(opts)} options/question={args.options} "
        f"backend={backend.spec} mode={args.mode}"
    )
    print(
        f"generate={t_gen:.2f}s  model_load={t_load:.2f}s  score_records={t_score:.2f}s  "
        f"-> {len(records) / t_score:,.0f} items/s{note}"
    )
    print(summarize(scores))
    return 0


if __name__ == "__main__":
    sys.exit(main())
