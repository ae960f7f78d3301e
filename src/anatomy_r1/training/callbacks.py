"""Trainer callbacks: per-step metrics as JSON Lines and a compact progress bar."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from anatomy_r1.training.summary import gdqa_acting_fraction


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class JsonlMetricsCallback(TrainerCallback):
    """Appends every log event to ``metrics.jsonl``; the report and experiment tables read it back."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[override]
        """On resume, drop rows a killed run logged after its last checkpoint; they are logged again."""
        if not state.is_world_process_zero or state.global_step <= 0 or not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                step = json.loads(line).get("step", 0)
            except (json.JSONDecodeError, AttributeError):
                continue
            if isinstance(step, int) and step <= state.global_step:
                keep.append(line + "\n")
        self.path.write_text("".join(keep), encoding="utf-8")

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[override]
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, **{k: _clean(v) for k, v in logs.items()}}
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


class ProgressCallback(TrainerCallback):
    """One tqdm bar for the run with the latest reward and accuracy, instead of a dict printed per step."""

    def __init__(self, accuracy_key: str = "rewards/accuracy_reward/mean") -> None:
        self.bar: Any = None
        self.accuracy_key = accuracy_key

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[override]
        if state.is_world_process_zero:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=state.max_steps, initial=state.global_step, desc="train", dynamic_ncols=True
            )

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[override]
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[override]
        if self.bar is None or not logs:
            return
        post = {}
        if "reward" in logs:
            post["reward"] = f"{logs['reward']:.3f}"
        if self.accuracy_key in logs:
            post["acc"] = f"{logs[self.accuracy_key]:.3f}"
        if "loss" in logs and "reward" not in logs:
            post["loss"] = f"{logs['loss']:.4f}"
        if post:
            self.bar.set_postfix(post, refresh=False)

    def on_train_end(self, args, state, control, **kwargs):  # type: ignore[override]
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class StateFileCallback(TrainerCallback):
    """Saves extra training state (difficulty tracker, confusion counts) inside each checkpoint folder."""

    FILE = "anatomy_r1_state.json"

    def __init__(self, owner: Any) -> None:
        self.owner = owner

    def on_save(self, args, state, control, **kwargs):  # type: ignore[override]
        if not state.is_world_process_zero:
            return
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            (ckpt / self.FILE).write_text(json.dumps(self.owner.extra_state_dict()), encoding="utf-8")


class CurrentIntervalsCallback(TrainerCallback):
    """Logging, evaluation and save intervals from the current arguments, also on resume.

    transformers restores them from the checkpoint's ``trainer_state.json``, so a resumed run would keep
    the old ``logging.logging_steps`` and ``saving.save_steps`` while its config says otherwise; a resumed
    run may change exactly those sections.
    """

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[override]
        state.compute_steps(args, state.max_steps)


class GDQAIdleCallback(TrainerCallback):
    """Warns once when GDQA has acted on no group for ``idle_steps`` steps in a row.

    A run that names GDQA but never varies a wording trains plain GRPO; without this the only trace would
    be a column of zeros in ``metrics.jsonl``. With ``own_groups`` and difficulty by S(q) alone no group is
    ever reworded at rollout, and GDQA acts only through the variant rows it added, so those count too.
    """

    def __init__(self, idle_steps: int, reason: str = "") -> None:
        self.idle_steps = idle_steps
        self.reason = reason
        self.last_active = 0
        self.warned = False

    def on_train_begin(self, args, state, control, **kwargs):  # type: ignore[override]
        self.last_active = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[override]
        acting = gdqa_acting_fraction(logs or {})
        if acting is None:
            return
        if acting > 0:
            self.last_active = state.global_step
            return
        idle = state.global_step - self.last_active
        if idle >= self.idle_steps and not self.warned and state.is_world_process_zero:
            import sys

            self.warned = True
            why = f" ({self.reason})" if self.reason else ""
            print(
                f"warning: GDQA has augmented no group for {idle} steps{why}; this run trains plain GRPO "
                "until a question counts as difficult (gdqa.difficulty, gdqa.s_q_quantile, "
                "gdqa.accuracy_threshold)",
                file=sys.stderr,
            )


#: What TRL's model card template writes when the base model is a local folder (it links hub ids only).
_NO_BASE = "[None](https://huggingface.co/None)"


def fix_model_card(folder: str | Path, base_model: str) -> None:
    """Name the local base model in the model card TRL wrote into ``folder``, where it says ``None``."""
    card = Path(folder) / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8")
        if _NO_BASE in text:
            card.write_text(text.replace(_NO_BASE, f"the local checkpoint `{base_model}`"), encoding="utf-8")


class ModelCardCallback(TrainerCallback):
    """Keeps the run's model card naming its base model after every checkpoint TRL saves."""

    def __init__(self, base_model: str) -> None:
        self.base_model = base_model

    def on_save(self, args, state, control, **kwargs):  # type: ignore[override]
        if state.is_world_process_zero:
            fix_model_card(args.output_dir, self.base_model)
