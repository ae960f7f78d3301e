"""The one-command demo: synthesize data, measure the base model, train with GRPO, measure again, report.

Everything runs on a CPU in minutes and needs no download: the benchmark is synthesized, the base model
is the cached tiny model (built on first use), and the demo config ships inside the package. The point
is the before/after number on held-out questions, so both evaluations use the same test split, prompt
template, decoding and completion length; the base model answers anatomy questions at chance (see
:mod:`anatomy_r1.pipelines.base_model`), so any gain is learned by GRPO.

Layout of ``OUT``::

    .anatomy-r1-demo        marks the folder as a demo output (``--force`` only clears such folders)
    data/                   the synthesized benchmark
    run/                    the GRPO run: config.yaml, metrics.jsonl, checkpoints, final/
    eval/base/, eval/trained/   items.jsonl, metrics.json, metrics.md, completions.jsonl
    report/                 metrics.json, report.md and the figures

A second run into the same ``OUT`` is refused unless ``force`` is set, which clears it first: results of
two runs (say a different seed) must never end up side by side in one report.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from anatomy_r1.errors import ConfigError
from anatomy_r1.reports import fmt
from anatomy_r1.training.config import TrainConfig, apply_overrides, config_from_dict

__all__ = [
    "DEFAULT_SIZES",
    "MARKER",
    "QUICK_OVERRIDES",
    "QUICK_SIZES",
    "DemoOptions",
    "demo_config",
    "run_demo",
]

MARKER = ".anatomy-r1-demo"
N_STEPS = 7
"""Timed steps; the closing summary lines follow them."""
#: Benchmark sizes of the full demo and of ``--quick``.
DEFAULT_SIZES: dict[str, int] = {"n_train": 2000, "n_test": 500}
QUICK_SIZES: dict[str, int] = {"n_train": 40, "n_test": 40}
#: Applied before the user's ``--set`` overrides in ``--quick`` mode: a few tiny steps, no checkpoints.
QUICK_OVERRIDES: tuple[str, ...] = (
    "grpo.max_steps=4",
    "grpo.num_generations=4",
    "grpo.per_device_train_batch_size=8",
    "saving.save_steps=1000000",
    "logging.progress_bar=false",
)


@dataclass
class DemoOptions:
    """What ``anatomy-r1 demo`` was asked to do; ``None`` sizes mean the mode's defaults."""

    out: Path = Path("demo-out")
    config: str | None = None
    """Experiment YAML; ``None`` uses the demo config shipped in the package."""
    overrides: list[str] = field(default_factory=list)
    seed: int | None = None
    """Seed for the benchmark and training; ``None`` keeps the config's seed."""
    quick: bool = False
    n_train: int | None = None
    n_test: int | None = None
    image_size: int = 84
    k: int = 5
    """Sampled completions per test question for Avg@k; 0 scores the greedy completion only."""
    eval_batch_size: int = 64
    force: bool = False
    command: str | None = None
    """Command line shown in the report; ``None`` uses this process's own."""


def _packaged_config_text() -> tuple[str, str]:
    res = resources.files("anatomy_r1").joinpath("resources", "demo.yaml")
    try:
        return res.read_text(encoding="utf-8"), "anatomy_r1/resources/demo.yaml"
    except FileNotFoundError:
        raise ConfigError(
            "the packaged demo config anatomy_r1/resources/demo.yaml is missing; pass --config FILE"
        ) from None


def demo_config(opts: DemoOptions, out: Path) -> TrainConfig:
    """The training config of this demo: file (or packaged default), the demo's paths, then ``--set``.

    The demo owns where data and outputs live, so those fields are set after the file is read; the
    user's overrides come last and win (``--set grpo.max_steps=50``).
    """
    if opts.config is None:
        text, where = _packaged_config_text()
    else:
        p = Path(opts.config)
        where = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{p}: no such config file") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: top level must be a mapping")
    data = raw.setdefault("data", {})
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: data must be a mapping")
    data["train"] = str(out / "data" / "train.jsonl")
    data["image_root"] = str(out / "data")
    raw["output_dir"] = str(out / "run")
    if opts.seed is not None:
        raw["seed"] = opts.seed
    overrides = [*(QUICK_OVERRIDES if opts.quick else ()), *opts.overrides]
    cfg = config_from_dict(apply_overrides(raw, overrides), where)
    if cfg.method != "grpo":
        raise ConfigError(f"{where}: the demo trains with GRPO, but method is {cfg.method!r}")
    if cfg.model.path.startswith("builtin:") and cfg.model.path != "builtin:tiny-base":
        raise ConfigError(
            f"{where}: unknown builtin model {cfg.model.path!r}; the only one is 'builtin:tiny-base'"
        )
    local = Path(cfg.model.path).expanduser()
    if not cfg.model.path.startswith("builtin:") and not (local / "config.json").is_file():
        raise ConfigError(
            f"{where}: model.path {cfg.model.path!r} is not a local model directory (no config.json)"
        )
    return cfg


def _prepare_out(out: Path, force: bool) -> None:
    """Refuse to mix runs; with ``force`` clear a previous demo folder, but never an unrelated folder."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ConfigError(
                f"{out} already holds results; pass --force to clear it or choose another --out"
            )
        if not (out / MARKER).is_file():
            raise ConfigError(
                f"{out} is not empty and was not written by 'anatomy-r1 demo'; refusing to clear it "
                "even with --force"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(
        "written by anatomy-r1 demo; --force may delete this folder\n", encoding="utf-8"
    )


class _Steps:
    """Times each pipeline step and announces it with one line on stdout when it finishes."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo = echo
        self.timings: dict[str, float] = {}
        self.index = 0

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, str]]:
        """``note["text"]`` set inside the block becomes the announced line (default: ``name``)."""
        self.index += 1
        note = {"text": name}
        t0 = time.perf_counter()
        yield note
        dt = time.perf_counter() - t0
        self.timings[name] = dt
        self.echo(f"[{self.index}/{N_STEPS}] {note['text']} ({dt:.1f} s)")


def _evaluate(
    model_path: Path, records: list[Any], cfg: TrainConfig, opts: DemoOptions, image_root: Path, out: Path
) -> tuple[dict[str, Any], dict[str, list[str]], dict[str, str]]:
    """Greedy (plus ``k`` samples) on the test split with the training template and completion length:
    ``(metrics, sampled, greedy)``; the probe reuses the completions for the questions as given."""
    from anatomy_r1.evaluation.generate import generate_with_model
    from anatomy_r1.evaluation.predictions import completion_rows, score_completions
    from anatomy_r1.models.loading import load_model, load_processor
    from anatomy_r1.reports.eval_report import write_eval_outputs

    model = load_model(model_path)
    processor = load_processor(model_path)
    sampled, greedy = generate_with_model(
        model,
        processor,
        records,
        k=opts.k,
        greedy=True,
        template=cfg.template,
        max_new_tokens=cfg.grpo_setting("max_completion_length"),
        batch_size=opts.eval_batch_size,
        image_root=str(image_root),
        temperature=cfg.grpo_setting("temperature"),
        seed=cfg.seed,
        image_cache_mb=cfg.data.image_cache_mb,
    )
    if opts.k == 0:
        sampled = {}
    metrics, items = score_completions(records, sampled, greedy)
    write_eval_outputs(out, metrics, items, completion_rows(sampled, greedy))
    return metrics, sampled, greedy


def _probe(
    model_path: Path,
    records: list[Any],
    cfg: TrainConfig,
    opts: DemoOptions,
    image_root: Path,
    out: Path,
    known: tuple[dict[str, list[str]], dict[str, str]],
) -> dict[str, Any]:
    """ASCL's premise on the trained model: the held-out questions re-posed with their least and most
    similar distractors (``anatomy-r1 probe``), with the similarity the curriculum used.

    ``known`` are the evaluation step's completions of the questions as given (same model, template,
    length, temperature and k), so only the two re-posed sets are generated here."""
    from anatomy_r1.curriculum.similarity import get_backend
    from anatomy_r1.data.vocab import SYNTH_CLASSES
    from anatomy_r1.evaluation import probe
    from anatomy_r1.reports.probe_report import write_probe_outputs

    backend = get_backend(cfg.curriculum.backend)
    sets = probe.build_probe_sets(records, list(SYNTH_CLASSES), backend, seed=cfg.seed, where="demo test set")
    k = max(opts.k, 1)
    generate = probe.model_generator(
        str(model_path),
        k=k,
        template=cfg.template,
        max_new_tokens=cfg.grpo_setting("max_completion_length"),
        batch_size=opts.eval_batch_size,
        image_root=str(image_root),
        seed=cfg.seed,
        temperature=cfg.grpo_setting("temperature"),
    )
    known_sampled, known_greedy = known

    def generate_new(batch: list[Any]) -> tuple[dict[str, list[str]], dict[str, str] | None]:
        reuse = {r.id for r in batch if r.id in known_greedy and len(known_sampled.get(r.id, ())) == k}
        todo = [r for r in batch if r.id not in reuse]
        sampled, greedy = generate(todo) if todo else ({}, {})
        greedy = dict(greedy or {})
        for rid in reuse:
            sampled[rid], greedy[rid] = list(known_sampled[rid]), known_greedy[rid]
        return sampled, greedy

    result, rows, completions = probe.run_probe(sets, generate_new, backend, seed=cfg.seed)
    settings = {"model": str(model_path), "backend": cfg.curriculum.backend, "k": k}
    result = {"settings": settings, **result}
    write_probe_outputs(out, result, rows, completions)
    return probe.headline(result)


def run_demo(
    opts: DemoOptions,
    *,
    recipe: Any = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the demo steps into ``opts.out``; returns the report's metrics (``metrics.json``).

    ``recipe`` is the ``BaseRecipe`` of the base model (default: the library's); the config's
    ``builtin:tiny-base`` then points at exactly the model built or reused in step 2.
    """
    from anatomy_r1.data.io import read_records
    from anatomy_r1.data.synth import generate_benchmark

    sizes = dict(QUICK_SIZES if opts.quick else DEFAULT_SIZES)
    if opts.n_train is not None:
        sizes["n_train"] = opts.n_train
    if opts.n_test is not None:
        sizes["n_test"] = opts.n_test
    for name, value in sizes.items():
        if value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
    if opts.k < 0:
        raise ConfigError("--k must be 0 (greedy only) or more")
    if opts.eval_batch_size < 1:
        raise ConfigError("--eval-batch-size must be at least 1")
    out = Path(opts.out).expanduser().resolve()
    cfg = demo_config(opts, out)  # validated before anything is written or built
    _prepare_out(out, opts.force)
    data_dir = out / "data"
    steps = _Steps(echo)

    with steps.step("synthesize benchmark") as note:
        generate_benchmark(
            data_dir,
            seed=cfg.seed,
            n_train=sizes["n_train"],
            n_val=0,
            n_test=sizes["n_test"],
            n_perception=0,
            image_size=opts.image_size,
        )
        test = read_records(data_dir / "test.jsonl")
        note["text"] = f"synthesized {sizes['n_train']} train / {len(test)} test questions -> {data_dir}"

    with steps.step("base model") as note:
        from anatomy_r1.pipelines.base_model import (
            BUILTIN_PREFIX,
            BaseRecipe,
            ensure_base_model,
            resolve_model_path,
        )

        if cfg.model.path.startswith(BUILTIN_PREFIX):
            base_dir = ensure_base_model(recipe if recipe is not None else BaseRecipe())
            cfg.model.path = str(base_dir)  # train exactly the model that is evaluated
            note["text"] = f"base model ready: {base_dir}"
        else:
            cfg.model.path = str(resolve_model_path(cfg.model.path))
            note["text"] = f"base model from the config: {cfg.model.path}"
    base_path = Path(cfg.model.path)

    with steps.step("evaluate base model") as note:
        base_metrics, _, _ = _evaluate(base_path, test, cfg, opts, data_dir, out / "eval" / "base")
        note["text"] = (
            f"base model on {len(test)} test questions: "
            f"accuracy {fmt.percent(base_metrics.get('accuracy'), missing=fmt.NA)}"
        )

    with steps.step("train with GRPO") as note:
        from anatomy_r1.reports.plots import read_metrics_jsonl
        from anatomy_r1.training.grpo import run_grpo

        final = run_grpo(cfg)
        logged = [
            r["step"] for r in read_metrics_jsonl(Path(cfg.output_dir) / "metrics.jsonl") if "step" in r
        ]
        note["text"] = f"trained {max(logged, default=0)} GRPO steps -> {final}"

    with steps.step("evaluate trained model") as note:
        trained = _evaluate(final, test, cfg, opts, data_dir, out / "eval" / "trained")
        trained_metrics, sampled, greedy = trained
        note["text"] = (
            f"trained model on {len(test)} test questions: "
            f"accuracy {fmt.percent(trained_metrics.get('accuracy'), missing=fmt.NA)}"
        )

    with steps.step("probe trained model") as note:
        probe_summary = _probe(final, test, cfg, opts, data_dir, out / "probe", (sampled, greedy))
        note["text"] = (
            "probe: easiest - hardest distractors "
            f"{fmt.signed_points(probe_summary['gap_points'], missing=fmt.NA)}, "
            f"Spearman rho S(q) vs accuracy {fmt.signed(probe_summary['spearman_s_q'], 2, missing=fmt.NA)} "
            f"-> {out / 'probe'}"
        )

    report_dir = out / "report"
    with steps.step("write report") as note:
        from anatomy_r1.reports.machine import machine_info
        from anatomy_r1.reports.report import write_report

        timings = dict(steps.timings)
        summary = write_report(
            report_dir,
            base_metrics=base_metrics,
            trained_metrics=trained_metrics,
            n_test=len(test),
            train_metrics_jsonl=Path(cfg.output_dir) / "metrics.jsonl",
            config=cfg,
            timings=timings,
            command=opts.command,
            machine=machine_info(),
            probe=probe_summary,
        )
        note["text"] = f"report written -> {report_dir}"

    echo(
        f"base accuracy {fmt.percent(summary.get('base_accuracy'), missing=fmt.NA)} -> trained accuracy "
        f"{fmt.percent(summary.get('trained_accuracy'), missing=fmt.NA)} "
        f"(gain {fmt.signed(summary.get('gain_points'), missing=fmt.NA)} points) "
        f"on {len(test)} held-out questions"
    )
    echo(f"report: {report_dir / 'report.md'}")
    return summary
