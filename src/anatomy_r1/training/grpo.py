"""GRPO runs: one factory that assembles the trainer from a run config, and the script that trains it.

``build_grpo_trainer`` is the only place where data, model, reward functions, ASCL, GDQA and the baseline
method meet TRL, so ``run_grpo``, the benchmarks and the tests all train exactly the same trainer.
``model.path`` must already be a local folder: ``builtin:`` specs are resolved by the caller
(:func:`anatomy_r1.pipelines.base_model.resolve_model_path`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from anatomy_r1.data.schema import Record
from anatomy_r1.training.config import TrainConfig
from anatomy_r1.training.precision import PrecisionPlan
from anatomy_r1.training.preflight import RunInputs


def build_grpo_trainer(
    cfg: TrainConfig,
    records: list[Record] | RunInputs,
    image_root: str | None,
    *,
    output_dir: str | Path | None = None,
    callbacks: list[Any] | None = None,
    model: Any = None,
    processor: Any = None,
    reward_funcs: list[Any] | None = None,
    reward_weights: list[float] | None = None,
    trainer_cls: type | None = None,
    plan: PrecisionPlan | None = None,
) -> Any:
    """The trainer ``cfg`` asks for (GRPO, Dr.GRPO, DAPO or GPG; with ASCL and GDQA when enabled).

    ``model`` and ``processor`` default to loading ``cfg.model.path``; passing them lets a caller reuse a
    loaded model. ``reward_funcs`` (TRL's reward-function contract, weighted by ``reward_weights``,
    default 1 each) replace the accuracy and format rewards, and ``trainer_cls`` a subclass of the class
    :func:`~anatomy_r1.training.methods.trainer_class_for` picks: the seams for a user's own reward or
    method. ``records`` are the training records as read, or the :class:`RunInputs` already prepared from
    them (``preflight``: S(q) scored, GDQA's policy and its variant rows); ``plan`` the run's precision plan
    when the caller has worked it out. Checkpoint state of our own (the GDQA tracker) is saved by a callback
    added here.
    """
    from accelerate import PartialState
    from transformers.trainer_callback import PrinterCallback

    from anatomy_r1.curriculum.plan import CurriculumPlan
    from anatomy_r1.training.args import grpo_args, run_precision
    from anatomy_r1.training.callbacks import (
        CurrentIntervalsCallback,
        JsonlMetricsCallback,
        ModelCardCallback,
        ProgressCallback,
        StateFileCallback,
    )
    from anatomy_r1.training.dataset import build_rl_dataset
    from anatomy_r1.training.methods import trainer_class_for
    from anatomy_r1.training.precision import check_trainable_dtypes
    from anatomy_r1.training.preflight import prepare_inputs
    from anatomy_r1.training.rewards import build_reward_funcs
    from anatomy_r1.training.run import training_model, training_processor

    out = Path(output_dir if output_dir is not None else cfg.output_dir)
    plan = plan or run_precision(cfg)
    args = grpo_args(cfg, str(out), plan)
    inputs = records if isinstance(records, RunInputs) else prepare_inputs(cfg, records)
    records = inputs.records  # with GDQA's own-group variant rows, when it adds any
    curriculum = None
    if cfg.curriculum.enabled:
        scores = [float(r.meta["s_q"]) for r in records]
        curriculum = CurriculumPlan.for_run(cfg.curriculum, args, scores, PartialState().num_processes)
    model, peft_config = training_model(cfg, model, plan)
    processor = training_processor(cfg, processor)
    if reward_funcs is None:
        funcs, weights = build_reward_funcs(cfg.rewards.spec(), cfg.template)
    else:
        funcs = list(reward_funcs)
        weights = list(reward_weights) if reward_weights is not None else [1.0] * len(funcs)
    args.reward_weights = weights
    cbs: list[Any] = [
        JsonlMetricsCallback(out / "metrics.jsonl"),
        CurrentIntervalsCallback(),
        ModelCardCallback(cfg.model.path),
    ]
    if cfg.logging.progress_bar:
        cbs.append(ProgressCallback())
    cls = trainer_class_for(cfg)
    if trainer_cls is not None:
        cls = trainer_cls
    trainer = cls(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=build_rl_dataset(records, cfg.template, image_root, cfg.data.image_cache_mb),
        eval_dataset=_eval_dataset(cfg),
        processing_class=processor,
        peft_config=peft_config,
        callbacks=cbs + list(callbacks or []),
        curriculum=curriculum,
        group_policy=inputs.group_policy,
    )
    check_trainable_dtypes(trainer)  # TRL has attached the adapter; the optimizer does not exist yet
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(StateFileCallback(trainer))
    return trainer


def _eval_dataset(cfg: TrainConfig) -> Any:
    """``data.eval`` as TRL's ``eval_dataset`` (images resolve as for ``data.train``), or None."""
    if not cfg.data.eval:
        return None
    from anatomy_r1.data.images import default_image_root
    from anatomy_r1.training.dataset import build_rl_dataset, load_records

    root = default_image_root(cfg.data.eval, cfg.data.image_root)
    return build_rl_dataset(load_records(cfg.data.eval), cfg.template, root, cfg.data.image_cache_mb)


def run_grpo(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    callbacks: list[Any] | None = None,
    inputs: RunInputs | None = None,
) -> Path:
    """Train with GRPO as ``cfg`` says; returns the folder of the final model (``output_dir/final``).

    ``inputs`` are the training records and GDQA policy already read and checked
    (``preflight_records``); without them they are read and checked here, still before anything is
    written.
    """
    from anatomy_r1.data.images import default_image_root
    from anatomy_r1.training.args import run_precision
    from anatomy_r1.training.callbacks import GDQAIdleCallback, StateFileCallback
    from anatomy_r1.training.dataset import load_records
    from anatomy_r1.training.launch import LaunchSetup
    from anatomy_r1.training.preflight import prepare_inputs
    from anatomy_r1.training.run import open_run, save_final, start_run
    from anatomy_r1.training.summary import describe_run

    launch = LaunchSetup.for_run(cfg)
    plan = run_precision(cfg, launch)  # model.lora settings that would train base weights in bf16 fail here
    out, ckpt = open_run(cfg, resume)
    if inputs is None:  # read and checked before anything is written
        inputs = prepare_inputs(cfg, load_records(cfg.data.train, cfg.data.limit))
    start_run(cfg, out, resume, ckpt)
    image_root = default_image_root(cfg.data.train, cfg.data.image_root)
    trainer = build_grpo_trainer(cfg, inputs, image_root, output_dir=out, callbacks=callbacks, plan=plan)
    summary = describe_run(cfg, inputs.records, trainer, launch)
    if trainer.accelerator.is_main_process:
        print(f"{cfg.name}: what this run will do\n{summary.render()}", flush=True)
        (out / "run_summary.json").write_text(json.dumps(summary.to_dict(), indent=1), encoding="utf-8")
    if cfg.gdqa.enabled:
        trainer.add_callback(GDQAIdleCallback(cfg.gdqa.idle_warning_steps, "; ".join(summary.warnings)))
    if ckpt is not None:
        state_file = Path(ckpt) / StateFileCallback.FILE
        if state_file.is_file():
            trainer.load_extra_state(json.loads(state_file.read_text(encoding="utf-8")))
    from anatomy_r1.training.dataset import check_first_batch_images

    check_first_batch_images(trainer, cfg.data.train)  # a broken frame fails now, not hours in
    trainer.train(resume_from_checkpoint=ckpt)
    final = save_final(trainer, trainer.processing_class, out, cfg, trainer.extra_state_dict())
    trainer.accelerator.wait_for_everyone()
    return final
