"""``anatomy-r1 init``: a ready training config for one's own converted data file.

It copies the packaged ``own_data.yaml`` (the tiny model, GRPO + ASCL + GDQA) with the data file, image
folder and, when given, a local model filled in, and checks the result the way ``train`` reads it, so
the first ``train --config`` starts instead of failing on a key.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from anatomy_r1.errors import ConfigError

RESOURCE = "own_data.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "init",
        help="write a training config for your own converted data file (tiny model on CPU by default)",
        description=(
            "Write CONFIG.yaml from the packaged own_data.yaml: GRPO + ASCL + GDQA on the shipped tiny "
            "Qwen2.5-VL (or --model PATH, a local checkpoint, with the anatomy_r1 prompt), training on FILE. "
            "Then: anatomy-r1 check --config CONFIG.yaml; anatomy-r1 train --config CONFIG.yaml."
        ),
    )
    p.add_argument(
        "--data", required=True, metavar="FILE", help="converted training file (anatomy-r1 data convert)"
    )
    p.add_argument("--image-root", metavar="DIR", help="folder the file's image paths are looked up under")
    p.add_argument("--model", metavar="PATH", help="local model folder (default: the shipped tiny model)")
    p.add_argument(
        "--template",
        metavar="NAME",
        help="prompt template (default: compact_text, or anatomy_r1 with --model)",
    )
    p.add_argument("--name", help="run name; the output folder is runs/NAME (default: the data file's stem)")
    p.add_argument("--out", required=True, metavar="CONFIG", help="where to write the config (.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing CONFIG")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from importlib import resources

    import yaml

    from anatomy_r1.data.io import atomic_writer
    from anatomy_r1.training.config import config_from_dict
    from anatomy_r1.training.dataset import load_records

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ConfigError(f"{out} exists; pass --force to overwrite it")
    data = Path(args.data)
    if not data.is_file():
        raise ConfigError(f"--data: {data}: no such file")
    n = len(load_records(str(data)))  # a file train would refuse is refused now
    raw = yaml.safe_load(
        resources.files("anatomy_r1").joinpath("resources", RESOURCE).read_text(encoding="utf-8")
    )
    name = args.name or data.stem.replace(" ", "_")
    raw["name"] = name
    raw["output_dir"] = f"runs/{name}"
    raw["data"] = {
        "train": str(data.resolve()),
        "image_root": str(Path(args.image_root).resolve()) if args.image_root else None,
    }
    if args.model:
        raw["model"] = {"path": str(Path(args.model).resolve())}
        raw["template"] = "anatomy_r1"
    if args.template:
        raw["template"] = args.template
    config_from_dict(raw, str(out))  # template, backend and keys checked as train reads them
    text = yaml.safe_dump(raw, sort_keys=False)
    with atomic_writer(out) as fh:
        fh.write(
            f"# Written by anatomy-r1 init from anatomy_r1/resources/{RESOURCE} for {data} ({n} questions).\n"
        )
        fh.write(text)
    print(f"wrote {out}: {n} questions, template {raw['template']}, model {raw['model']['path']}")
    print(f"next: anatomy-r1 check --config {out}   then   anatomy-r1 train --config {out}")
    return 0
