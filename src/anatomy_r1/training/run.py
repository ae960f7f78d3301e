"""What every training run does around its trainer: find the resume point, refuse to mix runs or to resume
under a different config, save the config, read the data, load the model as ``model:`` says."""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from anatomy_r1.data.images import default_image_root
from anatomy_r1.data.schema import Record
from anatomy_r1.errors import ConfigError
from anatomy_r1.training.config import TrainConfig, dump_config
from anatomy_r1.training.dataset import load_records

if TYPE_CHECKING:
    from anatomy_r1.training.precision import PrecisionPlan

#: Config keys a resumed run may change: they extend the run (more steps or epochs) or only observe and
#: checkpoint it. A trailing ``.`` covers a whole section. Anything else would make the checkpoint's
#: history disagree with ``config.yaml``.
RESUME_MAY_CHANGE: tuple[str, ...] = (
    "grpo.max_steps",
    "grpo.num_train_epochs",
    "sft.max_steps",
    "sft.num_train_epochs",
    "logging.",
    "saving.",
    "data.image_cache_mb",  # how many decoded frames are kept changes memory, not what is trained
)

#: Written next to ``config.yaml``: one line per resume, with the allowed changes it brought.
HISTORY_FILE = "config_history.jsonl"

Changes = dict[str, tuple[Any, Any]]

_ABSENT: Any = object()
"""Stands for a key one of the two configs does not have."""


def last_checkpoint(output_dir: str | Path) -> str | None:
    """Newest *complete* checkpoint: a run killed mid-save leaves a folder without trainer_state.json."""
    d = Path(output_dir)
    if not d.is_dir():
        return None
    done = [
        p
        for p in d.glob("checkpoint-*")
        if p.name[len("checkpoint-") :].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return str(max(done, key=lambda p: int(p.name[len("checkpoint-") :]))) if done else None


def _grpo_default(path: str) -> Any:
    """TRL's literal default for a ``grpo.`` key a config leaves out, so that leaving a key out and
    writing its default compare equal."""
    from anatomy_r1.training.trl_fields import NO_DEFAULT, grpo_config_fields

    if not path.startswith("grpo.") or path.count(".") != 1:
        return _ABSENT
    default = grpo_config_fields().get(path[len("grpo.") :], NO_DEFAULT)
    return _ABSENT if default is NO_DEFAULT else default


def config_changes(saved: dict[str, Any], new: dict[str, Any], prefix: str = "") -> Changes:
    """Dotted key -> (saved value, new value) for every setting that differs, section by section. A key
    only one side has is :data:`_ABSENT` on the other (a ``grpo`` key left out counts as TRL's default)."""
    changes: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(saved) | set(new), key=str):
        path = f"{prefix}{key}"
        if path == "output_dir":  # where the saved config was read from: the same run by construction
            continue
        old, cur = saved.get(key, _grpo_default(path)), new.get(key, _grpo_default(path))
        if isinstance(old, dict) and isinstance(cur, dict):
            changes.update(config_changes(old, cur, path + "."))
        elif old is _ABSENT or cur is _ABSENT or old != cur:
            changes[path] = (old, cur)
    return changes


def _may_change(key: str) -> bool:
    return any(key.startswith(p) if p.endswith(".") else key == p for p in RESUME_MAY_CHANGE)


def _show(v: Any) -> str:
    return "(absent)" if v is _ABSENT else json.dumps(v)


def _plain(v: Any) -> Any:
    return None if v is _ABSENT else v


def check_resume_config(cfg: TrainConfig, out: Path) -> dict[str, tuple[Any, Any]]:
    """Compare ``cfg`` with the run's saved ``config.yaml``; refuse any change outside
    :data:`RESUME_MAY_CHANGE`, naming each. Returns the allowed changes."""
    saved_file = out / "config.yaml"
    if not saved_file.is_file():
        raise ConfigError(f"--resume: {saved_file} is missing, so the run's config cannot be checked")
    try:
        saved = yaml.safe_load(saved_file.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"--resume: {saved_file}: not valid YAML ({e})") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"--resume: {saved_file}: top level must be a mapping")
    # Through YAML, so both sides carry the same types (tuples become lists, and so on).
    new = yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    changes = config_changes(saved, new)
    refused = [k for k in changes if not _may_change(k)]
    if refused:
        listed = "; ".join(f"{k}: {_show(changes[k][0])} -> {_show(changes[k][1])}" for k in refused)
        raise ConfigError(
            f"--resume: the config differs from the run's {saved_file} in {listed}. A resumed run may change "
            f"only {', '.join(p + '*' if p.endswith('.') else p for p in RESUME_MAY_CHANGE)}; "
            "start a new run (another output_dir) to change the others"
        )
    return changes


def is_main_process() -> bool:
    """Rank 0 under torchrun/accelerate (they export RANK), or the only process otherwise."""
    return os.environ.get("RANK", "0") == "0"


def check_output_dir(out: Path, resume: bool) -> str | None:
    """The run folder's rule: a fresh run never mixes into a folder holding checkpoints, and ``--resume``
    needs a complete one (a run killed mid-save leaves a folder without ``trainer_state.json``). Returns
    the checkpoint to resume from."""
    ckpts = [p for p in out.glob("checkpoint-*") if p.is_dir()] if out.is_dir() else []
    if not resume:
        if ckpts:
            raise ConfigError(
                f"{out} already holds checkpoints ({len(ckpts)}); pass --resume to continue, "
                "or choose another --output-dir"
            )
        return None
    ckpt = last_checkpoint(out)
    if ckpt is None:
        raise ConfigError(f"--resume: no complete checkpoint under {out}")
    return ckpt


def open_run(cfg: TrainConfig, resume: bool) -> tuple[Path, str | None]:
    """The run folder and the checkpoint to resume from, after the checks every trainer shares (data set,
    tracker, no silent overwrite, a complete checkpoint for ``--resume``). Writes nothing: the trainer reads
    and checks its records next, so bad input leaves no output folder behind."""
    from anatomy_r1.training.args import report_to

    if not cfg.data.train:
        raise ConfigError("data.train is not set")
    report_to(cfg.logging.report_to)  # an absent tracker is refused before anything is written
    out = Path(cfg.output_dir)
    return out, check_output_dir(out, resume)


def start_run(cfg: TrainConfig, out: Path, resume: bool, ckpt: str | None) -> None:
    """Record the run's config in its folder once its inputs are checked.

    A fresh run writes ``config.yaml``. A resumed run never rewrites it: its config must match, up to
    :data:`RESUME_MAY_CHANGE`, and what changed is appended to ``config_history.jsonl``.
    """
    if resume:
        changes = check_resume_config(cfg, out)
        if is_main_process():
            entry = {
                "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "event": "resume",
                "checkpoint": Path(str(ckpt)).name,
                "changes": {k: {"from": _plain(a), "to": _plain(b)} for k, (a, b) in changes.items()},
            }
            with (out / HISTORY_FILE).open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry) + "\n")
    else:
        out.mkdir(parents=True, exist_ok=True)
        if is_main_process():
            dump_config(cfg, out / "config.yaml")


def prepare_run(
    cfg: TrainConfig, resume: bool, records: list[Record] | None = None
) -> tuple[Path, str | None, list[Record], str]:
    """:func:`open_run`, the records (``records``, or ``data.train`` read), :func:`start_run`; with the
    folder the records' images resolve against."""
    out, ckpt = open_run(cfg, resume)
    if records is None:  # else read and checked already (training.preflight.preflight_records)
        records = load_records(cfg.data.train, cfg.data.limit)
    start_run(cfg, out, resume, ckpt)
    return out, ckpt, records, default_image_root(cfg.data.train, cfg.data.image_root)


def training_model(cfg: TrainConfig, model: Any = None, plan: PrecisionPlan | None = None) -> tuple[Any, Any]:
    """The model to train (``model``, or ``model.path`` loaded in the dtype the precision plan gives) and
    the ``peft.LoraConfig`` for TRL's ``peft_config=`` (None without ``model.lora``). ``plan`` is the run's
    precision plan when the caller has it (else it is worked out here).

    The vision tower is frozen here even for a model the caller loaded, so ``model.freeze_vision`` is
    never silently ignored; LoRA then leaves it alone too.
    """
    from anatomy_r1.models.loading import freeze_vision_tower, load_model, lora_config
    from anatomy_r1.training.args import run_precision

    m = cfg.model
    load_dtype = (plan or run_precision(cfg)).load_dtype
    if model is None:
        model = load_model(m.path, dtype=load_dtype, attn_implementation=m.attn_implementation)
    else:
        model = to_load_dtype(model, load_dtype)
    vision = freeze_vision_tower(model) if m.freeze_vision else None
    peft_config = None
    if m.lora is not None:
        peft_config = lora_config(m.lora.model_dump(), exclude_module=vision)
    return model, peft_config


def to_load_dtype(model: Any, load_dtype: str) -> Any:
    """A caller's model in the dtype the precision plan loads: a bf16 model handed to full fine-tuning
    without DeepSpeed is upcast, or its optimizer would update bf16 weights (see ``training.precision``)."""
    import torch

    want = {"fp32": torch.float32, "bf16": torch.bfloat16}[load_dtype]
    if any(p.is_floating_point() and p.dtype != want for p in model.parameters()):
        model = model.to(want)
    return model


def training_processor(cfg: TrainConfig, processor: Any = None) -> Any:
    """The processor (``processor``, or that of ``model.path``) with ``model.min_pixels``/``max_pixels``
    applied."""
    from anatomy_r1.models.loading import load_processor, set_pixel_budget

    m = cfg.model
    if processor is None:
        return load_processor(m.path, min_pixels=m.min_pixels, max_pixels=m.max_pixels)
    set_pixel_budget(processor, m.min_pixels, m.max_pixels, "model")
    return processor


def save_final(trainer: Any, processor: Any, out: Path, cfg: TrainConfig, state: dict[str, Any]) -> Path:
    """``out/final``: weights (every rank: ZeRO-3 gathers the sharded weights collectively), then, on the
    main process, the processor, our checkpoint state and the run record ``eval`` and ``probe`` read their
    template, completion length and dtype from."""
    from anatomy_r1.task.run_info import write_run_info

    final = out / "final"
    trainer.save_model(str(final))
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(final)
        (final / "anatomy_r1_state.json").write_text(json.dumps(state), encoding="utf-8")
        write_run_info(
            final,
            name=cfg.name,
            method=cfg.method,
            template=cfg.template,
            dtype=cfg.model.dtype,
            base_model=cfg.model.path,
            max_completion_length=cfg.grpo_setting("max_completion_length") if cfg.method == "grpo" else None,
        )
    return final
