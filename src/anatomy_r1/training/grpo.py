"""GRPO on TRL's ``GRPOTrainer``, extended at its documented seams for ASCL and GDQA.

* ``_get_train_sampler`` returns the curriculum sampler (ASCL) instead of TRL's shuffled ``RepeatSampler``;
  it keeps TRL's layout (each index repeated ``num_generations`` times in a row, same order in every
  process) so groups and sharding are untouched.
* ``_generate_and_score_completions`` rewrites, for difficult items only, the prompt each group member
  sees (GDQA). Members are identified by their global position in the generation batch, so a group that
  spans processes is assigned consistently; advantages are still normalised over the whole group by TRL.
* ``_calculate_rewards`` observes the gathered rewards to update the difficulty tracker and to log the
  invalid-gradient ratio per anatomy class, the augmented fraction and the wordings per group.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from trl import GRPOTrainer

from anatomy_r1.data.schema import Record
from anatomy_r1.errors import ConfigError
from anatomy_r1.training.config import TrainConfig, dump_config
from anatomy_r1.training.prompts import render_prompt, user_turn


def _nanmean(xs: list[float]) -> float:
    vals = [x for x in xs if x is not None and not math.isnan(x)]
    return sum(vals) / len(vals) if vals else float("nan")


class AnatomyR1GRPOTrainer(GRPOTrainer):  # type: ignore[misc,valid-type]
    """GRPOTrainer with an optional curriculum sampler, GDQA group variants and group-level metrics."""

    def __init__(
        self,
        *args: Any,
        records: list[Record],
        template: str,
        curriculum: Any = None,
        gdqa: Any = None,
        tracker: Any = None,
        **kwargs: Any,
    ) -> None:
        self._records = {r.id: r for r in records}
        self._template = template
        self._curriculum = curriculum
        self._gdqa = gdqa
        self._tracker = tracker
        self._local_info: dict[str, list[Any]] = {}
        super().__init__(*args, **kwargs)
        self._acc_index = next(
            (i for i, n in enumerate(self.reward_func_names) if n.startswith("accuracy")), None
        )

    # ------------------------------------------------------------------ ASCL: the sampler seam
    def _get_train_sampler(self, dataset: Any = None) -> Any:
        base = super()._get_train_sampler(dataset)
        if self._curriculum is None:
            return base
        return self._curriculum.build_sampler(
            mini_repeat_count=base.mini_repeat_count,
            batch_size=base.batch_size,
            repeat_count=base.repeat_count,
            seed=self.args.seed,
        )

    # ------------------------------------------------------------------ GDQA: the rollout seam
    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        g = self.num_generations if self.model.training else self.num_generations_eval
        offset = self.accelerator.process_index * len(inputs)
        augmented: list[bool] = []
        wordings: list[str] = []
        if self._gdqa is not None and self.model.training:
            new_inputs = []
            for i, row in enumerate(inputs):
                member = (offset + i) % g
                rec = self._records[row["id"]]
                variant, was_aug = self._gdqa.variant_for(
                    rec, member, g, self._tracker, step=self.state.global_step, s_q=row.get("s_q")
                )
                row = dict(row)
                if was_aug:
                    text = render_prompt(variant, self._template)
                    row["prompt"] = user_turn(text, len(row["image_paths"]), self._template)
                    row["prompt_text"] = text
                    row["options"] = list(variant.options)
                    row["answer_index"] = variant.answer_index
                new_inputs.append(row)
                augmented.append(was_aug)
                wordings.append(row["prompt_text"])
            inputs = new_inputs
        else:
            augmented = [False] * len(inputs)
            wordings = [row.get("prompt_text", "") for row in inputs]
        self._local_info = {
            "id": [row["id"] for row in inputs],
            "cls": [row.get("anatomy_class", "unknown") for row in inputs],
            "s_q": [float(row.get("s_q", float("nan"))) for row in inputs],
            "aug": augmented,
            "wording": wordings,
        }
        return super()._generate_and_score_completions(inputs)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[override]
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._observe_groups(rewards_per_func)
        return rewards_per_func

    def _observe_groups(self, rewards_per_func: Any) -> None:
        from accelerate.utils import gather_object

        mode = "train" if self.model.training else "eval"
        g = self.num_generations if self.model.training else self.num_generations_eval
        info = {k: gather_object(v) for k, v in self._local_info.items()}
        weights = self.reward_weights.to(rewards_per_func.device)
        total = (rewards_per_func.nan_to_num(0.0) * weights.unsqueeze(0)).sum(dim=1).tolist()
        acc = (
            rewards_per_func[:, self._acc_index].nan_to_num(0.0).tolist()
            if self._acc_index is not None
            else total
        )
        n_groups = len(total) // g
        invalid_by_cls: dict[str, list[float]] = defaultdict(list)
        aug_groups = 0
        n_wordings = []
        for k in range(n_groups):
            sl = slice(k * g, (k + 1) * g)
            grp = total[sl]
            invalid = float(max(grp) - min(grp) < 1e-6)
            cls = info["cls"][k * g]
            invalid_by_cls["all"].append(invalid)
            invalid_by_cls[cls].append(invalid)
            aug_groups += any(info["aug"][sl])
            n_wordings.append(len(set(info["wording"][sl])))
            if self._tracker is not None and mode == "train":
                self._tracker.update(info["id"][k * g], acc[sl])
        m = self._metrics[mode]
        for cls, vals in invalid_by_cls.items():
            key = "invalid_gradient_ratio" if cls == "all" else f"invalid_gradient_ratio/{cls}"
            m[key].append(sum(vals) / len(vals))
        if n_groups:
            m["gdqa/augmented_fraction"].append(aug_groups / n_groups)
            m["gdqa/wordings_per_group"].append(sum(n_wordings) / n_groups)
        s_q = _nanmean(info["s_q"])
        if not math.isnan(s_q):
            m["curriculum/batch_mean_s_q"].append(s_q)

    # ------------------------------------------------------------------ checkpointed extra state
    def extra_state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self._tracker is not None:
            state["tracker"] = self._tracker.state_dict()
        return state

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if self._tracker is not None and "tracker" in state:
            self._tracker.load_state_dict(state["tracker"])


def common_trainer_args(cfg: TrainConfig, output_dir: str) -> dict[str, Any]:
    """Settings GRPO and SFT share: seeds, precision, logging, saving (our callbacks do the display)."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "output_dir": output_dir,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "bf16": cuda and cfg.model.dtype == "bf16",
        "use_cpu": not cuda,
        "logging_steps": cfg.logging.logging_steps,
        "save_strategy": "steps",
        "save_steps": cfg.saving.save_steps,
        "save_total_limit": cfg.saving.save_total_limit,
        "report_to": ["tensorboard"] if cfg.logging.tensorboard else [],
        "disable_tqdm": True,
        "remove_unused_columns": False,
        "dataloader_num_workers": 0,
    }


def grpo_args(cfg: TrainConfig, output_dir: str, n_train: int) -> Any:
    """Translate the experiment config into a ``trl.GRPOConfig`` with CPU-safe defaults."""
    from trl import GRPOConfig

    k = cfg.grpo
    kwargs: dict[str, Any] = {
        **common_trainer_args(cfg, output_dir),
        "num_generations": k.num_generations,
        "per_device_train_batch_size": k.per_device_train_batch_size,
        "gradient_accumulation_steps": k.gradient_accumulation_steps,
        "num_iterations": k.num_iterations,
        "beta": k.beta,
        "epsilon": k.epsilon,
        "loss_type": k.loss_type,
        "scale_rewards": k.scale_rewards,
        "temperature": k.temperature,
        "top_p": k.top_p,
        "learning_rate": k.learning_rate,
        "lr_scheduler_type": k.lr_scheduler_type,
        "warmup_steps": k.warmup_steps,
        "weight_decay": k.weight_decay,
        "max_grad_norm": k.max_grad_norm,
        "max_steps": k.max_steps,
        "num_train_epochs": k.num_train_epochs,
        "max_completion_length": k.max_completion_length,
        "mask_truncated_completions": k.mask_truncated_completions,
        "gradient_checkpointing": k.gradient_checkpointing,
        "reward_weights": [cfg.rewards.accuracy, cfg.rewards.format],
        "use_vllm": k.use_vllm,
        "log_completions": False,
    }
    if k.steps_per_generation is not None:
        kwargs["steps_per_generation"] = k.steps_per_generation
    if k.epsilon_high is not None:
        kwargs["epsilon_high"] = k.epsilon_high
    if k.use_vllm:
        kwargs["vllm_mode"] = k.vllm_mode
        kwargs["vllm_gpu_memory_utilization"] = k.vllm_gpu_memory_utilization
    kwargs.update(k.extra)
    try:
        return GRPOConfig(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"grpo settings rejected by TRL: {e}") from None


def planned_generation_batches(cfg: TrainConfig, n_train: int, num_processes: int = 1) -> int:
    """How many generation batches the run draws: the curriculum's time axis."""
    k = cfg.grpo
    spg = k.steps_per_generation or k.gradient_accumulation_steps
    gen_batch = k.per_device_train_batch_size * num_processes * spg
    unique = gen_batch // k.num_generations
    if k.max_steps > 0:
        from anatomy_r1.curriculum.sampler import generation_batches_for

        return generation_batches_for(
            k.max_steps, k.gradient_accumulation_steps, k.steps_per_generation, k.num_iterations
        )
    return max(1, int(k.num_train_epochs * (n_train // max(1, unique))))


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


def prepare_run(cfg: TrainConfig, resume: bool) -> tuple[Path, str | None, list[Record], str]:
    """Checks shared by every trainer: data set, resume point, no silent overwrite; saves the config."""
    from anatomy_r1.training.dataset import default_image_root, load_records

    if not cfg.data.train:
        raise ConfigError("data.train is not set")
    out = Path(cfg.output_dir)
    ckpt = last_checkpoint(out) if resume else None
    if resume and ckpt is None:
        raise ConfigError(f"--resume: no checkpoint under {out}")
    if not resume and out.exists() and any(out.glob("checkpoint-*")):
        raise ConfigError(f"{out} already holds checkpoints; pass --resume or choose another output_dir")
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    records = load_records(cfg.data.train, cfg.data.limit)
    return out, ckpt, records, default_image_root(cfg.data.train, cfg.data.image_root)


def run_grpo(cfg: TrainConfig, *, resume: bool = False, callbacks: list[Any] | None = None) -> Path:
    """Train with GRPO as ``cfg`` says; returns the folder of the final model (``output_dir/final``)."""
    from anatomy_r1.models.base import resolve_model_path
    from anatomy_r1.models.loading import load_model, load_processor
    from anatomy_r1.training.callbacks import JsonlMetricsCallback, ProgressCallback, StateFileCallback
    from anatomy_r1.training.dataset import build_rl_dataset
    from anatomy_r1.training.rewards import build_reward_funcs

    out, ckpt, records, image_root = prepare_run(cfg, resume)
    curriculum = gdqa = tracker = None
    if cfg.curriculum.enabled or cfg.gdqa.enabled or cfg.curriculum.log_s_q:
        from anatomy_r1.training.integration import ensure_s_q

        records = ensure_s_q(records, cfg.curriculum.backend, cfg.curriculum.mode)
    if cfg.curriculum.enabled:
        from accelerate import PartialState

        from anatomy_r1.training.integration import CurriculumPlan

        curriculum = CurriculumPlan.from_config(cfg, records, PartialState().num_processes)
    if cfg.gdqa.enabled:
        from anatomy_r1.training.integration import GDQAPlan

        gdqa, tracker = GDQAPlan.from_config(cfg, records)

    model_path = resolve_model_path(cfg.model.path)
    model = load_model(model_path, dtype=cfg.model.dtype, lora=cfg.model.lora)
    processor = load_processor(model_path)
    dataset = build_rl_dataset(records, cfg.template, image_root)
    funcs, weights = build_reward_funcs(
        {"accuracy": cfg.rewards.accuracy, "format": cfg.rewards.format}, cfg.template
    )
    args = grpo_args(cfg, str(out), len(records))
    args.reward_weights = weights
    cbs = [JsonlMetricsCallback(out / "metrics.jsonl")]
    if cfg.logging.progress_bar:
        cbs.append(ProgressCallback())
    trainer_cls = AnatomyR1GRPOTrainer
    if cfg.dynamic_sampling or cfg.gpg:
        from anatomy_r1.training.variants import trainer_class_for

        trainer_cls = trainer_class_for(cfg)
    trainer = trainer_cls(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=dataset,
        processing_class=processor,
        callbacks=cbs + list(callbacks or []),
        records=records,
        template=cfg.template,
        curriculum=curriculum,
        gdqa=gdqa,
        tracker=tracker,
    )
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(StateFileCallback(trainer))
    if ckpt is not None:
        state_file = Path(ckpt) / StateFileCallback.FILE
        if state_file.is_file():
            trainer.load_extra_state(json.loads(state_file.read_text(encoding="utf-8")))
    trainer.train(resume_from_checkpoint=ckpt)
    final = out / "final"
    trainer.save_model(str(final))  # every rank: ZeRO-3 gathers the sharded weights collectively
    if trainer.accelerator.is_main_process:
        processor.save_pretrained(final)
        (final / "anatomy_r1_state.json").write_text(json.dumps(trainer.extra_state_dict()), encoding="utf-8")
    trainer.accelerator.wait_for_everyone()
    return final
