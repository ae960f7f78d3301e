"""Per-step cost of the Anatomy-R1 seams (ASCL sampler + GDQA rewording + group metrics) over plain TRL.

Both trainers get the same random-weight tiny Qwen2.5-VL, the same synthetic questions, the same rewards
and the same TRL settings; one is TRL's ``GRPOTrainer``, the other ``AnatomyR1GRPOTrainer`` with the
curriculum and GDQA on. A step is TRL's ``training_step`` on one generation batch (generation, reward
scoring, reference-free loss, backward; no optimizer update, identical for both). Steps run in alternating
blocks (plain, Anatomy-R1, plain, ...) so load drifting on a shared machine hits both alike, and the
median step time of each is compared.

The curriculum uses ``matrix:prior`` similarities: scoring S(q) with a text encoder happens once before
training and loading it would only add start-up noise that is not a per-step cost.

    python benchmarks/step_overhead.py            # 3 blocks of 4 steps each
    python benchmarks/step_overhead.py --quick    # 2 blocks of 2 steps (< 50 s)

The last line is ``ratio X.XX``: Anatomy-R1's median step time over plain TRL's.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

TEMPLATE = "compact_text"


def _setup(root: Path, n_train: int) -> tuple[Path, list[Any]]:
    from anatomy_r1.data.io import read_records
    from anatomy_r1.data.synth import generate_benchmark
    from anatomy_r1.models.tiny import TinySpec, build_tiny_model
    from anatomy_r1.task.prompts import format_target, render_prompt

    data = root / "data"
    spec = TinySpec()
    generate_benchmark(
        data, seed=11, n_train=n_train, n_val=0, n_test=0, n_perception=0, image_size=spec.image_size
    )
    records = read_records(data / "train.jsonl")
    corpus = [render_prompt(r, TEMPLATE) for r in records]
    corpus += [format_target(r.answer_letter, None, TEMPLATE, r.answer) for r in records]
    model = build_tiny_model(root / "model", corpus, spec)
    return Path(model), records


def _trainers(root: Path, model_dir: Path, records: list[Any], args_kw: dict[str, Any]) -> dict[str, Any]:
    from trl import GRPOTrainer

    from anatomy_r1.models.loading import load_model, load_processor
    from anatomy_r1.training.args import grpo_args
    from anatomy_r1.training.config import TrainConfig
    from anatomy_r1.training.dataset import build_rl_dataset
    from anatomy_r1.training.grpo import build_grpo_trainer
    from anatomy_r1.training.rewards import build_reward_funcs

    cfg = TrainConfig(
        name="bench",
        template=TEMPLATE,
        output_dir=str(root / "out"),
        seed=0,
        model={"path": str(model_dir)},
        grpo=dict(args_kw),
    )
    cfg.curriculum.enabled = True
    cfg.curriculum.backend = "matrix:prior"
    cfg.gdqa.enabled = True
    cfg.saving.save_steps = 10**6
    cfg.logging.progress_bar = False
    image_root = str(root / "data")

    # The TRL baseline gets the same arguments, rewards and data, without the Anatomy-R1 seams.
    funcs, weights = build_reward_funcs({"accuracy": 1.0, "format": 0.5}, TEMPLATE)
    args = grpo_args(cfg, str(root / "out-plain"))
    args.reward_weights = weights
    plain = GRPOTrainer(
        model=load_model(model_dir),
        reward_funcs=funcs,
        args=args,
        train_dataset=build_rl_dataset(records, TEMPLATE, image_root),
        processing_class=load_processor(model_dir),
    )
    anatomy = build_grpo_trainer(cfg, records, image_root)
    return {"plain TRL": plain, "Anatomy-R1": anatomy}


class _Stepper:
    """Feeds one trainer's own dataloader (so the curriculum sampler is used) into ``training_step``."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.loader = trainer.get_train_dataloader()
        self.it = iter(self.loader)
        trainer.model.train()
        # Set by Trainer's own loop, which is bypassed here so both trainers can be stepped alternately.
        trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps

    def step(self) -> float:
        try:
            batch = next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            batch = next(self.it)
        t0 = time.perf_counter()
        self.trainer.training_step(self.trainer.model, batch, None)
        self.trainer.model.zero_grad(set_to_none=True)
        return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 blocks of 2 steps, under 50 s")
    parser.add_argument("--blocks", type=int, default=None)
    parser.add_argument("--steps-per-block", type=int, default=None)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: with the tiny model, more threads mostly add contention noise)",
    )
    args = parser.parse_args()
    blocks = args.blocks or (2 if args.quick else 3)
    per_block = args.steps_per_block or (2 if args.quick else 4)
    warnings.filterwarnings("ignore")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    grpo_kw = {
        "num_generations": 4,
        "per_device_train_batch_size": 16,
        "max_completion_length": 16,
        "max_steps": 1000,
        "learning_rate": 1e-5,
    }
    with tempfile.TemporaryDirectory(prefix="step-overhead-") as tmp:
        root = Path(tmp)
        model_dir, records = _setup(root, n_train=64)
        steppers = {name: _Stepper(t) for name, t in _trainers(root, model_dir, records, grpo_kw).items()}
        for s in steppers.values():  # warm-up: first-call allocations and lazy imports
            s.step()
        times: dict[str, list[float]] = {name: [] for name in steppers}
        for _ in range(blocks):
            for name, s in steppers.items():
                times[name].extend(s.step() for _ in range(per_block))
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    print(
        f"tiny Qwen2.5-VL, {grpo_kw['per_device_train_batch_size']} completions/step "
        f"({grpo_kw['num_generations']} per group), {grpo_kw['max_completion_length']} new tokens max; "
        f"{blocks} blocks x {per_block} steps each, interleaved, {args.threads} thread(s); "
        f"total {time.perf_counter() - t_start:.1f} s"
    )
    for name, m in medians.items():
        print(f"{name:<12} median step {m * 1000:8.1f} ms  (min {min(times[name]) * 1000:.1f} ms)")
    print(f"ratio {medians['Anatomy-R1'] / medians['plain TRL']:.2f}")


if __name__ == "__main__":
    main()
