"""The embedded default's base model: the tiny Qwen2.5-VL after a short SFT on the perception split.

The warm-up has two parts, and neither can teach which anatomy is which:

* the perception split (colours, positions, counts; no anatomy names), which teaches the answer format
  (``<think>…</think> <answer>…</answer>``) and to look at the frame;
* anatomy-format questions posed over a *blank* frame: the model learns that the answer to "what anatomy
  is ..." is one of the offered options, but the pixels carry no information about which, so it answers
  at chance. Without this part a perception-only model answers anatomy questions with colour words, every
  GRPO group is all-wrong, and nothing can be learned.

The question text is not free of information (colour and position words correlate with the class), and a
longer warm-up on these questions learns that prior: at 1000 steps the base reaches 38 % greedy on held-out
anatomy questions without ever seeing an informative frame. The warm-up is kept at 400 steps, where the
base scores below chance (docs/results.md, section 4.1).

Any anatomy accuracy above chance after GRPO is therefore learned by GRPO; the demo measures the base
model on the held-out test set to show it.

The model is built once per machine and cached under a key derived from its recipe, so changing the
recipe (or the library version) builds a fresh one instead of reusing a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from anatomy_r1 import __version__
from anatomy_r1.models.tiny import TinySpec

BUILTIN_PREFIX = "builtin:"


@dataclass(frozen=True)
class BaseRecipe:
    spec: TinySpec = field(default_factory=TinySpec)
    data_seed: int = 20251219
    n_perception: int = 1500
    n_corpus_questions: int = 1000
    """Anatomy questions reused, on a blank frame, as format-only warm-up (and as tokenizer corpus)."""
    sft_steps: int = 400
    batch_size: int = 16
    learning_rate: float = 1e-3
    """At 3e-3 the vision tower's output norm grows ~200x during warm-up into a near-constant vector, and
    neither SFT nor GRPO can learn anatomy from pixels afterwards; at 1e-3 both can."""
    template: str = "compact_text"
    version: str = __version__

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def cache_root() -> Path:
    env = os.environ.get("ANATOMY_R1_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "anatomy_r1"


def base_model_dir(recipe: BaseRecipe = BaseRecipe()) -> Path:
    return cache_root() / f"tiny-base-{recipe.key()}"


def _corpus(records: list, template: str) -> list[str]:
    from anatomy_r1.data.vocab import ANATOMY_LABELS, INSTRUMENT_LABELS, POSITIONS, display_name
    from anatomy_r1.training.prompts import TEMPLATES, format_target, render_prompt

    texts = []
    for r in records:
        for t in TEMPLATES:
            texts.append(render_prompt(r, t))
        texts.append(format_target(r.answer_letter, r.meta.get("rationale"), template, r.answer))
    texts.append(" ".join(display_name(x) for x in ANATOMY_LABELS + INSTRUMENT_LABELS))
    texts.append(" ".join(POSITIONS))
    return texts


def _blank_frame_questions(records: list, frame: Path) -> list:
    """The same questions over one uninformative frame, with no rationale: format without content."""
    from PIL import Image

    from anatomy_r1.data.schema import Record

    img = Image.new("RGB", (64, 64), (96, 32, 28))
    img.save(frame, format="PNG")
    out = []
    for r in records:
        out.append(
            Record(
                id=f"blank-{r.id}",
                images=[frame.name],
                question=r.question,
                options=list(r.options),
                answer_index=r.answer_index,
                answer=r.answer,
                source="blank-frame",
                meta={"template_family": r.meta.get("template_family")},
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
        warmup = perception + _blank_frame_questions(questions, data / "blank.png")
        dataset = build_sft_dataset(warmup, recipe.template, str(data))
        if log:
            print(f"building the tiny base model: {recipe.sft_steps} SFT steps on the perception split")
        cbs = []
        if log:
            from anatomy_r1.training.callbacks import ProgressCallback

            cbs.append(ProgressCallback())
        trainer = train_sft(model, processor, dataset, sft_args(cfg, str(work / "sft")), cbs)
        final = work / "model"
        trainer.save_model(str(final))
        processor.save_pretrained(final)
        (final / "recipe.json").write_text(json.dumps(asdict(recipe), sort_keys=True, indent=1), "utf-8")
        if dest.exists():  # another process finished first
            return dest
        os.replace(final, dest)
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_base_model(recipe: BaseRecipe = BaseRecipe(), log: bool = True) -> Path:
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
