"""The embedded default's base model: the tiny Qwen2.5-VL after a short SFT that teaches it to look.

The warm-up has two parts, and neither can teach which anatomy is which:

* the perception split (colours, positions, counts; no anatomy names), which teaches the answer format
  (``<think>…</think> <answer>…</answer>``) and to read colours and positions off the frame;
* anatomy questions on their real frames, whose target is ``<think>{observation}</think>
  <answer>{random offered option}</answer>``. The observation (``the top-mid region is green``) says where
  the answer region is and what it looks like, never its class; the answer is an offered option drawn at
  random, independent of the frame and of the question. The model learns to reason about the asked
  region and to answer with one of the options, and nothing about which name goes with which
  appearance: it answers at chance.

GRPO then has exactly one thing to learn from the accuracy reward: the anatomy, i.e. which name goes with
the appearance the model itself described. That is the step the paper's reasoning chains make
("the region is yellow and fatty, so it is the omentum"); a perception-only warm-up instead never names an
anatomy at all (every GRPO group is all-wrong), and a warm-up on true answers would have learned the
anatomy already. The demo measures the base model on the held-out test set to show it is at chance.

Earlier recipes posed the anatomy questions over a blank frame with true answers; docs/results.md
(section 4) records why that base could not be improved by GRPO and leaked a question-text prior when
warmed up longer.

The package ships the model built from the current recipe (``resources/tiny-base``, about 4 MB), so
the demo starts training at once instead of spending minutes on the warm-up. Its ``recipe.json`` records
the recipe, its key and a SHA-256 of every file; the shipped copy is used only when that key is the
library's recipe key, and a test holds the two together. ``anatomy-r1 build-base`` rebuilds it (the
same command refreshes the shipped copy, see docs/synthetic_benchmark.md). Any other recipe is built
once per machine and cached under its key, so changing the recipe builds a fresh model instead of
reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from anatomy_r1 import __version__
from anatomy_r1.models.tiny import TinySpec

BUILTIN_PREFIX = "builtin:"
SHIPPED_FILES = (
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
)
"""What a saved base model consists of (the trainer's pickled arguments are left out)."""


@dataclass(frozen=True)
class BaseRecipe:
    spec: TinySpec = field(default_factory=TinySpec)
    data_seed: int = 20251219
    n_perception: int = 3000
    n_corpus_questions: int = 3000
    """Anatomy questions answered at random after their observation (and the tokenizer corpus)."""
    sft_steps: int = 2400
    """At 800 steps the warm-up named a class that was not offered in a third of its sampled answers and
    read the colour of a region named by position one time in five; at 2400 (on twice the data) it names
    an offered option 90 % of the time and reads that colour twice as often (docs/results.md, section 0).
    GRPO starts from a model that already answers among the options, so similar options can make a
    question harder for it. The shipped model makes the length free for the demo."""
    batch_size: int = 16
    learning_rate: float = 1e-3
    """At 3e-3 the vision tower's output norm grows ~200x during warm-up into a near-constant vector, and
    neither SFT nor GRPO can learn anatomy from pixels afterwards; at 1e-3 both can."""
    template: str = "compact_text"
    world: str = "shared-v4"
    """The synthetic world the warm-up data comes from: another world must not reuse a cached base."""
    version: str = __version__

    def key(self) -> str:
        from anatomy_r1.task.prompts import user_turn

        # The message layout (where the image sits) shapes every prompt the model was trained on, and the
        # world's parameters shape every frame and question of the warm-up.
        fields = {**asdict(self), "layout": user_turn("", 1, self.template), "world_params": _world_params()}
        blob = json.dumps(fields, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _world_params() -> dict:
    from anatomy_r1.data.synth.appearance import appearance_model
    from anatomy_r1.data.synth.questions import FAMILY_WEIGHTS, PERCEPTION_WEIGHTS
    from anatomy_r1.data.vocab import SYNTH_CLASSES

    world = appearance_model(SYNTH_CLASSES)
    return {
        "words": list(world.words),
        "probs": world.probs.round(4).tolist(),
        "families": FAMILY_WEIGHTS,
        "perception": PERCEPTION_WEIGHTS,
    }


def cache_root() -> Path:
    env = os.environ.get("ANATOMY_R1_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "anatomy_r1"


def base_model_dir(recipe: BaseRecipe = BaseRecipe()) -> Path:
    return cache_root() / f"tiny-base-{recipe.key()}"


def shipped_base_dir() -> Path:
    """Where the package keeps its prebuilt base model."""
    return Path(__file__).resolve().parent.parent / "resources" / "tiny-base"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: Path, recipe: BaseRecipe) -> None:
    """Write ``recipe.json``: the recipe, its key and a hash per model file, for ``shipped_model``."""
    manifest = {
        "key": recipe.key(),
        "recipe": asdict(recipe),
        "files": {name: _sha256(folder / name) for name in SHIPPED_FILES},
    }
    (folder / "recipe.json").write_text(json.dumps(manifest, sort_keys=True, indent=1) + "\n", "utf-8")


def shipped_model(recipe: BaseRecipe = BaseRecipe(), folder: Path | None = None) -> Path | None:
    """The shipped base model when it was built from ``recipe`` and its files are intact, else ``None``."""
    folder = shipped_base_dir() if folder is None else folder
    try:
        manifest = json.loads((folder / "recipe.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("key") != recipe.key():
        return None
    files = manifest.get("files")
    if not isinstance(files, dict) or sorted(files) != sorted(SHIPPED_FILES):
        return None
    for name, digest in files.items():
        if not (folder / name).is_file() or _sha256(folder / name) != digest:
            return None
    return folder


def _corpus(records: list, template: str) -> list[str]:
    from anatomy_r1.data.vocab import ANATOMY_LABELS, INSTRUMENT_LABELS, POSITIONS, display_name
    from anatomy_r1.task.prompts import TEMPLATES, format_target, render_prompt

    texts = []
    for r in records:
        for t in TEMPLATES:
            texts.append(render_prompt(r, t))
        texts.append(format_target(r.answer_letter, r.meta.get("rationale"), template, r.answer))
    texts.append(" ".join(display_name(x) for x in ANATOMY_LABELS + INSTRUMENT_LABELS))
    texts.append(" ".join(POSITIONS))
    return texts


def _observation_questions(records: list, seed: int) -> list:
    """The anatomy questions with their observation as reasoning and a random offered option as answer."""
    from anatomy_r1.data.schema import Record
    from anatomy_r1.errors import DataError

    rng = random.Random(f"anatomy-r1-base-answers:{seed}")
    out = []
    for r in records:
        observation = r.meta.get("observation")
        if not observation:
            raise DataError(f"base warm-up: item {r.id!r} has no meta.observation")
        pick = rng.randrange(len(r.options))
        out.append(
            Record(
                id=f"observe-{r.id}",
                images=list(r.images),
                question=r.question,
                options=list(r.options),
                answer_index=pick,
                answer=r.options[pick],
                source="observation-warmup",
                meta={"template_family": r.meta.get("template_family"), "rationale": observation},
            )
        )
    return out


def build_base_model(dest: Path, recipe: BaseRecipe = BaseRecipe(), log: bool = True) -> Path:
    """Synthesize perception data, build the tiny model, warm it up with SFT, and save it to ``dest``."""
    from anatomy_r1.data.io import read_records
    from anatomy_r1.data.synth import generate_benchmark
    from anatomy_r1.models.loading import load_model, load_processor
    from anatomy_r1.models.tiny import build_tiny_model
    from anatomy_r1.training.config import TrainConfig
    from anatomy_r1.training.dataset import build_sft_dataset
    from anatomy_r1.training.sft import sft_args, train_sft

    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        data = work / "data"
        generate_benchmark(
            data,
            seed=recipe.data_seed,
            n_train=recipe.n_corpus_questions,
            n_val=0,
            n_test=0,
            n_perception=recipe.n_perception,
            image_size=recipe.spec.image_size,
        )
        perception = read_records(data / "perception.jsonl")
        questions = read_records(data / "train.jsonl")
        init = work / "init"
        build_tiny_model(init, _corpus(perception + questions, recipe.template), recipe.spec)
        cfg = TrainConfig(
            name="tiny-base",
            method="sft",
            seed=recipe.spec.seed,
            output_dir=str(work / "sft"),
            template=recipe.template,
        )
        cfg.sft.max_steps = recipe.sft_steps
        cfg.sft.per_device_train_batch_size = recipe.batch_size
        cfg.sft.learning_rate = recipe.learning_rate
        cfg.saving.save_steps = 10**9
        cfg.logging.logging_steps = 25
        model = load_model(init)
        processor = load_processor(init)
        warmup = perception + _observation_questions(questions, recipe.data_seed)
        dataset = build_sft_dataset(warmup, recipe.template, str(data))
        if log:
            print(
                f"building the tiny base model: {recipe.sft_steps} SFT steps on perception and "
                "observation questions (once per machine)"
            )
        cbs = []
        if log:
            from anatomy_r1.training.callbacks import ProgressCallback

            cbs.append(ProgressCallback())
        trainer = train_sft(model, processor, dataset, sft_args(cfg, str(work / "sft")), cbs)
        final = work / "model"
        trainer.save_model(str(final))
        processor.save_pretrained(final)
        for extra in final.iterdir():  # only the model's own files: the manifest lists exactly these
            if extra.name in SHIPPED_FILES:
                continue
            if extra.is_dir():
                shutil.rmtree(extra)
            else:
                extra.unlink()
        write_manifest(final, recipe)
        if dest.exists():  # another process finished first
            return dest
        os.replace(final, dest)
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_base_model(recipe: BaseRecipe = BaseRecipe(), log: bool = True) -> Path:
    """The shipped model when it matches ``recipe``, else the cached build, else a fresh build."""
    shipped = shipped_model(recipe)
    if shipped is not None:
        return shipped
    dest = base_model_dir(recipe)
    if (dest / "config.json").is_file():
        return dest
    return build_base_model(dest, recipe, log=log)


def resolve_model_path(spec: str) -> Path:
    """Turn a config's ``model.path`` into a local folder, building the builtin base model on demand."""
    from anatomy_r1.errors import ConfigError

    if spec.startswith(BUILTIN_PREFIX):
        name = spec[len(BUILTIN_PREFIX) :]
        if name != "tiny-base":
            raise ConfigError(f"unknown builtin model {spec!r}; the only one is 'builtin:tiny-base'")
        return ensure_base_model()
    p = Path(spec).expanduser()
    if not (p / "config.json").is_file():
        raise ConfigError(f"{p}: not a local model directory (no config.json); nothing is downloaded")
    return p
