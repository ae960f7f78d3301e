"""``anatomy-r1 data convert|validate|stats|synth``: getting questions into the canonical format.

Only argparse and the data layer are imported here; the synthetic benchmark (which needs imaging
libraries) and ``rich`` are imported inside the commands that use them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from anatomy_r1.data.converters import AUTO, ConvertProblems, canonical_format_name, convert, formats
from anatomy_r1.data.converters.common import MAX_REPORTED, ImageChecker
from anatomy_r1.data.images import default_image_root
from anatomy_r1.data.io import IMAGE_ROOT_RULE, iter_jsonl
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import ConfigError, DataError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("data", help="convert, validate and summarise question files")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    c = sub.add_parser(
        "convert",
        help="convert a public VQA format to canonical JSON Lines",
        description="Convert INPUT to canonical JSON Lines. Nothing is written unless every item is valid; "
        f"otherwise every bad item is named (the first {MAX_REPORTED}, then a count). "
        "ssgvqa: INPUT is the qa_txt folder; images are <image-root>/VIDxx/<frame>.png.",
    )
    c.add_argument("input", metavar="INPUT", help="input file (ssgvqa: the qa_txt folder)")
    c.add_argument(
        "--format",
        default=AUTO,
        type=_format_name,
        choices=(AUTO, *formats()),
        help="input format (default auto: read from the content; case, '-' and '_' are ignored, "
        "so anatomy_r1 is anatomy-r1)",
    )
    c.add_argument("--out", required=True, metavar="OUT.jsonl", help="output JSON Lines file")
    c.add_argument(
        "--id-prefix",
        metavar="PREFIX",
        help="items without an id of their own are named PREFIX-<position> (default: INPUT's file name "
        "without extension, spaces as '_', so two files converted with defaults never share an id; "
        "ssgvqa: ssgvqa-VIDxx-<frame>-<line>, PREFIX replacing 'ssgvqa'); when given, it also goes in "
        "front of ids the items carry (OmniMedVQA question_id, canonical ids)",
    )
    _image_args(c, "OUT's folder")
    c.add_argument(
        "--classes",
        nargs="+",
        metavar="CLASS",
        help="keep only these anatomy classes (ssgvqa: also the distractor vocabulary; default all 13)",
    )
    c.add_argument("--seed", type=int, default=0, help="seed for ssgvqa distractors (default 0)")
    c.set_defaults(func=cmd_convert)

    v = sub.add_parser(
        "validate",
        help="check a canonical JSON Lines file and decode its images",
        description="Check every record of FILE and fully decode every image it uses (each distinct "
        "file once), as training and evaluation will: a truncated or corrupt frame is refused here.",
    )
    v.add_argument("file", metavar="FILE")
    _image_args(v, "FILE's folder")
    v.add_argument(
        "--no-decode",
        dest="decode",
        action="store_false",
        help="only check that images exist (fast; a truncated file then goes unnoticed)",
    )
    v.add_argument(
        "--workers", type=int, default=1, metavar="N", help="processes decoding images (default 1)"
    )
    v.set_defaults(func=cmd_validate)

    s = sub.add_parser("stats", help="counts per anatomy class, answer letter, family, option count")
    s.add_argument("file", metavar="FILE")
    s.set_defaults(func=cmd_stats)

    y = sub.add_parser("synth", help="generate the synthetic anatomy benchmark")
    y.add_argument("--out", required=True, metavar="DIR", help="output folder")
    y.add_argument("--seed", type=int, required=True)
    y.add_argument("--n-train", type=int, default=2000)
    y.add_argument("--n-val", type=int, default=200)
    y.add_argument("--n-test", type=int, default=600)
    y.add_argument("--n-perception", type=int, default=2000)
    y.add_argument("--image-size", type=int, default=112, metavar="PX")
    y.set_defaults(func=cmd_synth)


def _format_name(text: str) -> str:
    """``--format`` as typed -> its registered spelling; argparse turns the refusal into a usage error."""
    try:
        return canonical_format_name(text)
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _image_args(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument(
        "--image-root",
        metavar="DIR",
        help=f"folder image paths are resolved against (default: {default}, as training does): "
        f"{IMAGE_ROOT_RULE.replace('%', '%%')}",
    )
    p.add_argument(
        "--allow-missing-images",
        action="store_true",
        help="count missing images instead of refusing the input (text-only work)",
    )


def cmd_convert(args: argparse.Namespace) -> int:
    try:
        summary = convert(
            args.format,
            args.input,
            args.out,
            image_root=args.image_root,
            allow_missing_images=args.allow_missing_images,
            classes=args.classes,
            seed=args.seed,
            id_prefix=args.id_prefix,
        )
    except ConvertProblems as e:
        for line in e.lines:
            print(f"error: {line}", file=sys.stderr)
        return 2
    print(summary.line())
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check every line and report each problem, so one run lists everything that needs fixing.

    Decoding problems (bad bytes, broken JSON) still stop at the first one: after them, line numbers and
    item boundaries can no longer be trusted. Images are decoded after every line has been read, so a
    pool of workers can share them; their problems are listed with the others, in line order. Without
    ``--image-root`` images are looked up relative to FILE's folder, where training and evaluation look.
    """
    path = args.file
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    root = default_image_root(path, args.image_root)
    images = ImageChecker(root, allow_missing=args.allow_missing_images, decode=args.decode)
    seen: dict[str, int] = {}
    problems: list[tuple[int, str]] = []
    lines: dict[str, int] = {}
    n = 0
    for line, obj in iter_jsonl(path):
        where = f"{path}:{line}"
        try:
            rec = Record.from_dict(obj, where=where)
            first = seen.setdefault(rec.id, line)
            if first != line:
                raise DataError(f"{where}: duplicate id {rec.id!r} (first on line {first})")
            images.check(rec, where)
        except DataError as e:
            problems.append((line, str(e)))
            continue
        lines[where] = line
        n += 1
    if n == 0 and not problems:
        raise DataError(f"{path}: no records (empty file)")
    broken = images.decode_found(args.workers) if args.decode else []
    bad_lines = {lines[where] for where, _ in broken}
    problems += [(lines[where], msg) for where, msg in broken]
    problems.sort(key=lambda p: p[0])  # stable: a line's own problems keep their order
    n -= len(bad_lines)
    if problems:
        for _, msg in problems[:MAX_REPORTED]:
            print(f"error: {msg}", file=sys.stderr)
        if len(problems) > MAX_REPORTED:
            print(f"error: ... and {len(problems) - MAX_REPORTED} more problems", file=sys.stderr)
        invalid = len({line for line, _ in problems})
        print(f"error: {path}: {invalid} invalid of {n + invalid} records", file=sys.stderr)
        return 2
    extra = f"; {images.missing} missing images" if images.missing else ""
    extra += f"; {images.decoded} images decoded" if args.decode else "; images not decoded (--no-decode)"
    print(f"ok: {path}: {n} valid records{extra}")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from anatomy_r1.data.io import iter_records
    from anatomy_r1.data.stats import compute_stats, render_stats

    stats = compute_stats(iter_records(args.file))
    if stats.n == 0:
        raise DataError(f"{args.file}: no records (empty file)")
    render_stats(stats, title=str(Path(args.file)))
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from anatomy_r1.data.synth import generate_benchmark

    summary = generate_benchmark(
        args.out,
        seed=args.seed,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        n_perception=args.n_perception,
        image_size=args.image_size,
    )
    counts = ", ".join(f"{split} {n}" for split, n in summary.items())
    print(f"wrote synthetic benchmark to {args.out}: {counts}")
    return 0
