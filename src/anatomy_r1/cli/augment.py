"""``anatomy-r1 augment``: preview and export GDQA question variants of a canonical JSONL file.

Useful to inspect what the trainer's groups will see for hard questions, and to precompute variants
offline (for example with a slow external paraphraser) instead of generating them during training.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

from anatomy_r1.errors import ConfigError, DataError

PREVIEW_RECORDS = 2


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "augment",
        help="write reworded variants (GDQA) of every question in a canonical JSONL file",
        description=(
            "For every record of INPUT, write up to N variants that keep its images and correct answer "
            "but change the wording (template re-render, lexical paraphrase) and/or the option order. "
            "Each variant carries meta.variant_of (the original id) and meta.variant_kind."
        ),
    )
    p.add_argument("input", metavar="INPUT.jsonl", help="canonical records")
    p.add_argument("--out", required=True, metavar="OUT.jsonl", help="where to write the variants")
    p.add_argument("--n", type=int, default=4, help="variants per record, at most (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed; same seed, same output (default 0)")
    p.add_argument(
        "--kinds",
        default="template,lexical,reorder",
        help=(
            "comma-separated generators to combine, from rerefer, template, lexical, reorder "
            "(default: template,lexical,reorder; rerefer uses the scene graphs in INPUT's scenes/ folder "
            "or the records' meta.scene_facts)"
        ),
    )
    p.add_argument(
        "--paraphraser",
        metavar="MODULE:CALLABLE",
        help="an external paraphraser, (question, n) -> list of rewordings, filtered like gdqa.paraphraser",
    )
    p.add_argument(
        "--preview",
        type=int,
        default=PREVIEW_RECORDS,
        metavar="K",
        help=f"print the variants of the first K records (default {PREVIEW_RECORDS}; 0 for none)",
    )
    p.set_defaults(func=run)


def parse_kinds(text: str) -> tuple[str, ...]:
    from anatomy_r1.augment.variants import KINDS

    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if not kinds or unknown:
        raise ConfigError(
            f"--kinds {text!r}: "
            + (f"unknown kind(s) {', '.join(unknown)}; " if unknown else "empty; ")
            + f"choose from {', '.join(KINDS)}"
        )
    return kinds


def run(args: argparse.Namespace) -> int:
    from anatomy_r1.augment.assign import group_rng
    from anatomy_r1.augment.composite import CompositeGenerator
    from anatomy_r1.augment.paraphrase import load_paraphraser
    from anatomy_r1.augment.rerefer import SceneIndex
    from anatomy_r1.augment.variants import distinct_wordings
    from anatomy_r1.data.io import read_records, write_records
    from anatomy_r1.data.schema import Record

    if args.n < 1:
        raise ConfigError(f"--n must be at least 1, got {args.n}")
    kinds = parse_kinds(args.kinds)
    external = None if args.paraphraser is None else load_paraphraser(args.paraphraser, "--paraphraser")
    records = read_records(args.input)  # validates every line before anything is written
    scenes = SceneIndex.for_data([args.input]) if "rerefer" in kinds else None
    generator = CompositeGenerator(kinds, scenes=scenes, external=external)
    rich = 0
    total = 0

    def produce() -> Iterator[Record]:
        nonlocal rich, total
        for i, rec in enumerate(records):
            variants = generator.variants(rec, args.n, group_rng(args.seed, rec.id, 0))
            if distinct_wordings([rec, *variants]) >= 3:
                rich += 1
            total += len(variants)
            if i < args.preview:
                print(f"{rec.id}: {rec.question}  {_options(rec)}")
                for v in variants:
                    print(f"  {v.id} [{v.meta['variant_kind']}]: {v.question}  {_options(v)}")
            yield from variants

    try:
        write_records(args.out, produce())
    except DataError:
        if total == 0 and scenes is not None:
            raise DataError(
                f"{args.out}: nothing to write: {_rerefer_shortfall(records, scenes, args.input)}"
            ) from None
        raise
    if scenes is not None:
        without = sum(1 for rec in records if scenes.graph(rec) is None)
        if without:
            print(f"note: {_rerefer_shortfall(records, scenes, args.input)}")
    share = rich / len(records)
    print(
        f"records in: {len(records)}  variants out: {total}  "
        f"records with >=3 distinct wordings: {rich} ({share:.1%})  -> {args.out}"
    )
    return 0


def _rerefer_shortfall(records: list[Any], scenes: Any, input: str) -> str:
    """Why ``rerefer`` made fewer variants than asked: the records it had no scene graph for.

    Re-referring needs to know every anatomy object of the frame, which only SSG-VQA conversions
    (``meta.scene_facts``) and the synthetic benchmark (``scenes/`` next to the records) provide; a
    release file's records have neither, and without this the user sees only an empty output.
    """
    from anatomy_r1.augment.rerefer import scene_folder

    without = sum(1 for rec in records if scenes.graph(rec) is None)
    if without == 0:
        return (
            "rerefer found a scene graph for every record but could prove no new description unique "
            "(the frames' facts do not single out the targets); add --kinds template,lexical,reorder"
        )
    return (
        f"rerefer needs a scene graph: {without} of {len(records)} records have no meta.scene_facts "
        f"and no scene graph in {scene_folder(input) / '*.jsonl'}; convert SSG-VQA with --format ssgvqa "
        "(its records carry meta.scene_facts), or use --kinds template,lexical,reorder"
    )


def _options(rec: Any) -> str:
    """Options as shown to the model, the correct one starred."""
    return " ".join(
        f"{'*' if i == rec.answer_index else ''}{rec.letters[i]}. {o}" for i, o in enumerate(rec.options)
    )
