"""``anatomy-r1 build-base``: build the embedded tiny base model from the library's recipe.

The package ships this model prebuilt; the command exists so that anyone can rebuild it and check that
the shipped copy is what the recipe makes, or refresh it after changing the recipe:
``anatomy-r1 build-base --out src/anatomy_r1/resources/tiny-base --force``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from anatomy_r1.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "build-base",
        help="build the embedded tiny base model (builtin:tiny-base) from its recipe",
        description=(
            "Synthesize the warm-up data, build the tiny Qwen2.5-VL and warm it up with SFT, exactly as "
            "the shipped builtin:tiny-base was made. Writes the model and recipe.json (recipe, key, file "
            "hashes) to --out (default: the model cache)."
        ),
    )
    p.add_argument("--out", metavar="DIR", help="where to write the model (default: the model cache)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from anatomy_r1.pipelines.base_model import BaseRecipe, base_model_dir, build_base_model

    recipe = BaseRecipe()
    dest = Path(args.out).expanduser() if args.out else base_model_dir(recipe)
    if dest.exists() and not args.force:
        raise ConfigError(f"{dest} exists; pass --force to replace it")
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"{dest} is not a folder")
    fresh = dest.with_name(dest.name + ".building")
    shutil.rmtree(fresh, ignore_errors=True)
    build_base_model(fresh, recipe)
    if dest.exists():
        shutil.rmtree(dest)
    fresh.rename(dest)
    print(f"built the tiny base model (recipe key {recipe.key()}) -> {dest}")
    return 0
