"""``anatomy-r1 check``: a GPU recipe run for a few real steps on a laptop CPU, before GPUs are rented.

The config is read exactly as ``train`` reads it, refused exactly where ``train`` (or the launch it names)
would refuse it, and then trained for a few steps through the same ``run_grpo``/``run_sft`` with only what
a CPU cannot hold swapped out, each swap said out loud:

* the model becomes the shipped tiny Qwen2.5-VL (same architecture family, same processor kind);
* flash attention becomes transformers' default (flash kernels need CUDA);
* a config's data file that is not on this machine becomes a small synthetic benchmark (its numbers are
  then that benchmark's, and the report says so); a ``--data`` file that is not there is an error;
* the generation batch of ``N`` processes is drawn by one (``per_device_train_batch_size x N``), so groups
  are laid out as on the cluster;
* vLLM (either mode) runs through the stand-in engines of :mod:`anatomy_r1.training.vllm_standins`, so
  TRL's own vLLM code carries the rollouts;
* DeepSpeed and FSDP are not started; their effect on precision and their refusals come from the
  accelerate config (``--accelerate-config``).

Everything else (method, curriculum, GDQA, DAPO, GPG, LoRA, freeze_vision, precision policy, group size,
steps per generation, completion length, template) is kept. The report is the run's own start-up summary
plus what the steps measured.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anatomy_r1.data.schema import Record
from anatomy_r1.errors import AnatomyR1Error, ConfigError, DataError
from anatomy_r1.training.config import TrainConfig, apply_overrides, config_from_dict, read_yaml_mapping
from anatomy_r1.training.launch import LaunchSetup
from anatomy_r1.training.precision import precision_plan
from anatomy_r1.training.preflight import launch_refusals

#: Questions in the stand-in benchmark used when the config's data file is not on this machine.
STANDIN_QUESTIONS = 64
#: Frames whose image-token counts are measured.
FRAME_SAMPLE = 16
#: Model types the shipped tiny model stands in for.
QWEN_VL_TYPES = ("qwen2_5_vl", "qwen2_vl")


@dataclass
class CheckResult:
    """One run config's check: what was swapped, what the run says it will do, what the steps measured."""

    name: str
    refusals: list[str] = field(default_factory=list)
    swaps: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    measured: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return not self.refusals

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "refusals": self.refusals,
            "swaps": self.swaps,
            "summary": self.summary,
            "measured": self.measured,
            "skipped": self.skipped,
        }


# ------------------------------------------------------------------------------------------- config files
def run_configs(
    path: Path, overrides: list[str], methods: list[str] | None, workdir: Path
) -> list[tuple[str, TrainConfig | None]]:
    """``(name, config)`` per run the file describes; None for an experiment method that is not trained.

    An experiment YAML has ``methods:`` over a base config; any other file is one run's config, built from
    the mapping already read here as ``load_config`` would build it.
    """
    raw = read_yaml_mapping(path, "config file")
    if "methods" not in raw:
        if methods:
            raise ConfigError(
                "--method applies to experiment configs (with methods:); this is one run's config"
            )
        cfg = config_from_dict(apply_overrides(raw, overrides), str(path))
        return [(cfg.name, cfg)]
    from anatomy_r1.pipelines.experiment.config import load_experiment
    from anatomy_r1.pipelines.experiment.plan import plan_experiment

    exp, base_dir = load_experiment(path)
    plan = plan_experiment(exp, base_dir, workdir / "experiment", seeds=1, only=methods or None)
    out: list[tuple[str, TrainConfig | None]] = []
    for run in plan.runs:
        if not run.train:
            out.append((run.method, None))
            continue
        raw = apply_overrides(run.cfg.model_dump(mode="json"), overrides)
        out.append((run.method, config_from_dict(raw, f"method {run.method!r}")))
    return out


# ------------------------------------------------------------------------------------------------ swaps
def _generation_refusal(cfg: TrainConfig, launch: LaunchSetup) -> str | None:
    """TRL's own check that a generation batch is whole groups, made with the launch's process count."""
    g = cfg.grpo_setting("num_generations")
    per_device = cfg.grpo_setting("per_device_train_batch_size")
    spg = cfg.grpo.get("steps_per_generation") or cfg.grpo_setting("gradient_accumulation_steps")
    rows = per_device * launch.num_processes * spg
    if rows % g:
        return (
            f"grpo: per_device_train_batch_size {per_device} x {launch.num_processes} processes x "
            f"steps_per_generation {spg} = {rows} completions per generation batch, not a multiple of "
            f"num_generations {g}; TRL refuses this at start-up"
        )
    return None


def _model_family_note(path: str) -> str | None:
    p = Path(path).expanduser()
    cfg_file = p / "config.json"
    if not cfg_file.is_file():
        return None
    try:
        model_type = json.loads(cfg_file.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return f"{cfg_file}: not readable as JSON"
    if model_type not in QWEN_VL_TYPES:
        return (
            f"model.path is a {model_type!r} model; the check's stand-in is a Qwen2.5-VL, so prompts, "
            "image tokens and LoRA target modules were checked for that family only"
        )
    return None


def cpu_config(
    cfg: TrainConfig, launch: LaunchSetup, workdir: Path, data: str | None
) -> tuple[TrainConfig, list[str]]:
    """The config the CPU trains, and one line per setting that had to change (module docstring)."""
    from anatomy_r1.pipelines.base_model import resolve_model_path

    c = cfg.model_copy(deep=True)
    swaps: list[str] = []
    tiny = str(resolve_model_path("builtin:tiny-base"))
    if cfg.model.path != "builtin:tiny-base":
        swaps.append(f"model.path {cfg.model.path} -> the shipped tiny Qwen2.5-VL (same architecture family)")
        note = _model_family_note(cfg.model.path)
        if note:
            swaps.append(note)
    c.model.path = tiny
    if c.model.attn_implementation and c.model.attn_implementation.startswith("flash"):
        swaps.append(
            f"model.attn_implementation {c.model.attn_implementation} -> transformers' default (CUDA only)"
        )
        c.model.attn_implementation = None
    train = data or cfg.data.train
    if not train or not Path(train).is_file():
        from anatomy_r1.data.synth import generate_benchmark

        folder = workdir / "standin_data"
        if not (folder / "train.jsonl").is_file():
            generate_benchmark(
                folder, seed=0, n_train=STANDIN_QUESTIONS, n_val=0, n_test=0, n_perception=0, image_size=84
            )
        swaps.append(
            f"data.train {cfg.data.train or '(unset)'} is not on this machine (yet) -> {STANDIN_QUESTIONS} "
            "synthetic questions (records, S(q) and GDQA counts below are theirs)"
        )
        c.data.train, c.data.image_root = str(folder / "train.jsonl"), None
    else:
        c.data.train = str(train)
        if data:
            swaps.append(f"data.train -> {data}")
    if c.data.eval:
        swaps.append("data.eval and its evaluation schedule are left out (checked when the config was read)")
        c.data.eval = None
        c.grpo.pop("eval_strategy", None)
        c.grpo.pop("eval_steps", None)
        c.sft.extra.pop("eval_strategy", None)
    if launch.num_processes > 1 and c.method == "grpo":
        per_device = c.grpo_setting("per_device_train_batch_size")
        c.grpo["per_device_train_batch_size"] = per_device * launch.num_processes
        swaps.append(
            f"one process draws the {launch.num_processes} processes' generation batch: "
            f"per_device_train_batch_size {per_device} -> {per_device * launch.num_processes}"
        )
    if launch.sharded_by:
        swaps.append(
            f"{launch.sharded_by} is not started on a CPU; the precision plan below is the one under it"
        )
    trackers = c.logging.report_to
    if trackers not in ("none", [], ["none"]):
        swaps.append(f"logging.report_to {trackers} -> none (install the tracker where the run will train)")
    c.logging.report_to = "none"
    c.logging.progress_bar = False
    c.logging.logging_steps = 1
    c.saving.save_steps = 10**9
    c.output_dir = str(workdir / "run")
    return c, swaps


# -------------------------------------------------------------------------------------------- measuring
def _image_tokens(cfg: TrainConfig, records: list[Record], proc: Any) -> dict[str, Any]:
    """Image tokens per frame under the run's processor, over a sample of the trained records' frames."""
    from anatomy_r1.data.images import ImageCache, default_image_root

    cache = ImageCache.from_mb(default_image_root(cfg.data.train, cfg.data.image_root), 0)
    paths = list(dict.fromkeys(p for r in records for p in r.images))[:FRAME_SAMPLE]
    if not paths:
        return {}
    frames = [cache.load(p, "frame") for p in paths]
    grid = proc.image_processor(images=frames, return_tensors="pt")["image_grid_thw"]
    merge = int(getattr(proc.image_processor, "merge_size", 2))
    tokens = [int(g.prod()) // (merge * merge) for g in grid]
    return {
        "frames": len(tokens),
        "min": min(tokens),
        "median": statistics.median(tokens),
        "max": max(tokens),
    }


def _moved_fraction(before: Path, after: Path) -> float | None:
    """Share of the language model's weight entries the steps changed (None when nothing comparable)."""
    from safetensors.torch import load_file

    a_file, b_file = before / "model.safetensors", after / "model.safetensors"
    if not (a_file.is_file() and b_file.is_file()):
        return None
    a, b = load_file(str(a_file)), load_file(str(b_file))
    keys = [k for k in a if ".layers." in k and "visual" not in k and k in b and a[k].shape == b[k].shape]
    if not keys:
        return None
    moved = sum(int((a[k].float() != b[k].float()).sum()) for k in keys)
    return moved / sum(a[k].numel() for k in keys)


def _measure(c: TrainConfig, final: Path, records: list[Record], proc: Any) -> dict[str, Any]:
    from anatomy_r1.reports.plots import metric_series, read_metrics_jsonl

    rows = [r for r in read_metrics_jsonl(Path(c.output_dir) / "metrics.jsonl") if "train_runtime" not in r]
    m: dict[str, Any] = {"steps": len(rows)}
    for key, name in (
        ("reward", "reward"),
        ("invalid_gradient_ratio", "invalid_gradient_ratio"),
        ("gdqa/augmented_fraction", "gdqa_augmented_fraction"),
        ("gdqa/wordings_per_group", "gdqa_wordings_per_group"),
        ("rollouts/per_member_requests", "per_member_requests"),
        ("grad_norm", "grad_norm"),
        ("loss", "loss"),
    ):
        _, values = metric_series(rows, key)
        if values:
            m[name] = round(sum(values) / len(values), 4)
    moved = _moved_fraction(Path(c.model.path), final)
    if moved is not None:
        m["weights_moved"] = round(moved, 4)
    m["image_tokens_per_frame"] = _image_tokens(c, records, proc)
    return m


# ------------------------------------------------------------------------------------------------- check
def check_run(
    name: str, cfg: TrainConfig, launch: LaunchSetup, *, steps: int, workdir: Path, data: str | None = None
) -> CheckResult:
    """Refuse ``cfg`` as the real run would, else train it ``steps`` steps on the CPU and report."""
    res = CheckResult(name)
    res.refusals = launch_refusals(cfg, launch)
    if cfg.method == "grpo":
        refusal = _generation_refusal(cfg, launch)
        if refusal:
            res.refusals.append(refusal)
    if res.refusals:
        return res
    c, res.swaps = cpu_config(cfg, launch, workdir, data)
    if c.method == "grpo":
        c.grpo["max_steps"] = steps
    else:
        c.sft.max_steps = steps
    try:
        records, proc, final = _train(c)
    except AnatomyR1Error as e:
        res.refusals.append(str(e))
        return res
    summary_file = Path(c.output_dir) / "run_summary.json"
    if summary_file.is_file():
        res.summary = json.loads(summary_file.read_text(encoding="utf-8"))
    # The CPU run's own launch is one process; what the real run does is the launch's plan.
    lines = res.summary.setdefault("lines", {})
    res.summary.setdefault("warnings", [])
    plan = precision_plan(cfg.model.dtype, lora=cfg.model.lora is not None, launch=launch)
    cpu = lines.get("precision")
    lines["precision"] = plan.describe() + (
        f" (the CPU steps: {cpu})" if cpu and plan.describe() not in cpu else ""
    )
    lines["launch"] = launch.describe()
    res.measured = _measure(c, final, records, proc)
    return res


def _train(c: TrainConfig) -> tuple[list[Record], Any, Path]:
    """``run_grpo``/``run_sft`` on ``c``, quietly, with vLLM through the stand-ins when the config uses it.

    Returns the records read for the run and the run's processor with the final model's folder, so what
    is measured afterwards reads neither again.
    """
    from anatomy_r1.training.dataset import load_records
    from anatomy_r1.training.preflight import prepare_inputs
    from anatomy_r1.training.rollouts import pixel_budget
    from anatomy_r1.training.run import training_processor

    quiet = io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(quiet))
        records = load_records(c.data.train, c.data.limit)
        proc = training_processor(c)
        if c.method == "grpo" and c.grpo.get("use_vllm"):
            from anatomy_r1.training.vllm_standins import standin_vllm

            # The server is assumed started with the run's pixel range (trl vllm-serve --mm-processor-kwargs);
            # one that is not stops the real run at its first rollout, naming the flag.
            stack.enter_context(standin_vllm(server_model=c.model.path, server_pixels=pixel_budget(proc)))
        if c.method == "sft":
            from anatomy_r1.training.sft import run_sft

            return records, proc, run_sft(c, records=records)
        from anatomy_r1.training.grpo import run_grpo

        # What run_grpo does with records it reads itself (S(q) filled in, GDQA's policy), done here once.
        return records, proc, run_grpo(c, inputs=prepare_inputs(c, records))


def check_file(
    path: str | Path,
    overrides: list[str] | None = None,
    *,
    accelerate_config: str | None = None,
    methods: list[str] | None = None,
    steps: int = 2,
    data: str | None = None,
) -> list[CheckResult]:
    """Check every run ``path`` describes (one run config, or each trained method of an experiment)."""
    if steps < 1:
        raise ConfigError("--steps must be at least 1")
    if data is not None and not Path(data).is_file():
        # Only the config's own data file may be missing (it can live on the cluster); a file named on the
        # command line is meant to be trained on, and a stand-in would check the wrong data and pass.
        raise DataError(f"--data {data}: {'is a directory' if Path(data).is_dir() else 'no such file'}")
    p = Path(path)
    with tempfile.TemporaryDirectory(prefix="anatomy_r1_check_") as tmp:
        work = Path(tmp)
        runs = run_configs(p, list(overrides or []), methods, work)
        given = LaunchSetup.from_accelerate_config(accelerate_config) if accelerate_config else None
        results = []
        for i, (name, cfg) in enumerate(runs):
            if cfg is None:
                results.append(CheckResult(name, skipped="not trained (evaluated only)"))
                continue
            launch = given if given is not None else LaunchSetup.from_env(grpo=cfg.grpo)
            run_dir = work / f"run{i}"
            run_dir.mkdir()
            results.append(check_run(name, cfg, launch, steps=steps, workdir=run_dir, data=data))
        return results


def render(path: str | Path, results: list[CheckResult]) -> str:
    """The report printed by ``anatomy-r1 check``."""
    out = [f"check of {path}"]
    for r in results:
        out.append("")
        if r.skipped:
            out.append(f"{r.name}: {r.skipped}")
            continue
        if r.refusals:
            out.append(f"{r.name}: REFUSED, as the real run would be")
            out += [f"  refused: {line}" for line in r.refusals]
            continue
        out.append(f"{r.name}: ran {r.measured.get('steps', 0)} steps on this CPU")
        out += [f"  swapped: {s}" for s in r.swaps]
        for label, text in (r.summary.get("lines") or {}).items():
            out.append(f"  {label}: {text}")
        for w in r.summary.get("warnings") or []:
            out.append(f"  warning: {w}")
        m = r.measured
        shown = ", ".join(f"{k} {v}" for k, v in m.items() if k not in ("steps", "image_tokens_per_frame"))
        out.append(f"  measured: {shown}")
        tok = m.get("image_tokens_per_frame") or {}
        if tok:
            out.append(
                f"  image tokens per frame ({tok['frames']} frames, the run's processor; vLLM gets the same "
                f"range): min {tok['min']}, median {tok['median']}, max {tok['max']}"
            )
    refused = [r for r in results if r.refusals]
    out.append("")
    names = ", ".join(r.name for r in refused)
    passed = len(results) - len(refused)
    out.append(f"{passed} of {len(results)} runs pass; refused: {names}" if refused else "all runs pass")
    return "\n".join(out)
