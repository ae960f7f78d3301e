"""Supervised fine-tuning on TRL's ``SFTTrainer``: the SFT baseline and the tiny base model's warm-up.

Targets are ``<think>{meta.rationale}</think> <answer>{letter}</answer>`` in the prompt template's format,
with the loss on the completion only, so SFT and GRPO see the very same prompts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anatomy_r1.errors import ConfigError
from anatomy_r1.training.config import TrainConfig
from anatomy_r1.training.precision import PrecisionPlan


def sft_args(cfg: TrainConfig, output_dir: str, plan: PrecisionPlan | None = None) -> Any:
    from trl import SFTConfig

    from anatomy_r1.training.args import common_trainer_args

    k = cfg.sft
    kwargs: dict[str, Any] = {
        **common_trainer_args(cfg, output_dir, plan),
        "per_device_train_batch_size": k.per_device_train_batch_size,
        "gradient_accumulation_steps": k.gradient_accumulation_steps,
        "learning_rate": k.learning_rate,
        "lr_scheduler_type": k.lr_scheduler_type,
        "warmup_steps": k.warmup_steps,
        "max_steps": k.max_steps,
        "num_train_epochs": k.num_train_epochs,
        "max_length": k.max_length,
        "completion_only_loss": True,
        "gradient_checkpointing": False,
    }
    kwargs.update(k.extra)
    try:
        return SFTConfig(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"sft settings rejected by TRL: {e}") from None


def train_sft(
    model: Any,
    processor: Any,
    dataset: Any,
    args: Any,
    callbacks: list[Any],
    resume_from_checkpoint: str | None = None,
    eval_dataset: Any = None,
    peft_config: Any = None,
) -> Any:
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    from anatomy_r1.training.precision import check_trainable_dtypes

    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        callbacks=callbacks,
        peft_config=peft_config,
    )
    check_trainable_dtypes(trainer)  # peft has attached the adapter; the optimizer does not exist yet
    trainer.remove_callback(PrinterCallback)  # our ProgressCallback/JSONL writer replace the dict dump
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return trainer


def run_sft(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    callbacks: list[Any] | None = None,
    records: list[Any] | None = None,
) -> Path:
    """Train with SFT as ``cfg`` says; returns ``output_dir/final`` (``records``: as ``run_grpo``'s)."""
    from anatomy_r1.data.images import default_image_root
    from anatomy_r1.training.args import run_precision
    from anatomy_r1.training.callbacks import (
        CurrentIntervalsCallback,
        JsonlMetricsCallback,
        ModelCardCallback,
        ProgressCallback,
    )
    from anatomy_r1.training.dataset import build_sft_dataset, load_records
    from anatomy_r1.training.launch import LaunchSetup
    from anatomy_r1.training.preflight import check_launch
    from anatomy_r1.training.run import prepare_run, save_final, training_model, training_processor

    # Refused before anything is written, with sft.extra's deepspeed / fsdp keys: SFT's TrainingArguments
    # take them from there, so a check that reads grpo: alone would let FSDP1 meet a frozen vision tower.
    launch = LaunchSetup.for_run(cfg)
    check_launch(cfg, launch)
    plan = run_precision(cfg, launch)  # and model.lora settings that would train base weights in bf16
    out, ckpt, records, image_root = prepare_run(cfg, resume, records=records)
    args = sft_args(cfg, str(out), plan)
    model, peft_config = training_model(cfg, plan=plan)
    processor = training_processor(cfg)
    dataset = build_sft_dataset(records, cfg.template, image_root, cfg.data.image_cache_mb)
    cbs = [
        JsonlMetricsCallback(out / "metrics.jsonl"),
        CurrentIntervalsCallback(),
        ModelCardCallback(cfg.model.path),
    ]
    if cfg.logging.progress_bar:
        cbs.append(ProgressCallback())
    cbs += list(callbacks or [])
    eval_dataset = None
    if cfg.data.eval:  # evaluated on TRL's schedule (sft.extra.eval_strategy; checked with the config)
        eval_root = default_image_root(cfg.data.eval, cfg.data.image_root)
        eval_dataset = build_sft_dataset(load_records(cfg.data.eval), cfg.template, eval_root)
    trainer = train_sft(model, processor, dataset, args, cbs, ckpt, eval_dataset, peft_config=peft_config)
    final = save_final(trainer, processor, out, cfg, {})
    return final
