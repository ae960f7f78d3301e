"""A prepared GPU check: Anatomy-R1's GRPO on a random-weight Qwen2.5-VL-3B, against plain TRL.

Run it through ``benchmarks/gpu_check.sh`` from the repository root. Nothing is downloaded: the model is
built from the architecture of Qwen2.5-VL-3B-Instruct (the values of its public ``config.json``, written
out below) with random weights, and its tokenizer is trained on the benchmark's own prompts the way
``anatomy_r1.models.tiny`` does, so the embedding and LM head keep the real 151,936-row shape (ids the
small tokenizer does not know decode to nothing). The data is the synthetic benchmark at 448 px
(256 visual tokens per frame after Qwen's 2x2 merge).

Three training runs of ``--steps`` GRPO steps each, on the same saved model, data, rewards and TRL
arguments (``model.dtype: bf16``, which for full fine-tuning means fp32 master weights under bf16
autocast for both trainers; gradient checkpointing, 8 rollouts of one question per step, 64-token
completions, KL beta 0, no vLLM):

* ``anatomy_r1_full``: ``build_grpo_trainer`` with ASCL (``matrix:prior`` similarities) and GDQA,
  all weights trained;
* ``anatomy_r1_lora``: the same with ``model.lora`` (r 64 on the attention projections);
* ``trl_full``: TRL's own ``GRPOTrainer``, no Anatomy-R1 seams.

For each: median and mean step time (wall clock of a whole optimizer step, generation included, CUDA
synchronised; the first step, which pays for CUDA start-up, is left out), tokens/s (prompt and
completion tokens TRL counts, over step time), completion tokens/s, peak GPU memory and model load
time. Then the Anatomy-R1 / TRL step-time ratio, and evaluation throughput (``generate_with_model``:
items/s and generated tokens/s, k=4 samples plus greedy). Results go to ``OUT/gpu_check.json`` and
``OUT/gpu_check.md``.

``--dry-run`` runs the same code on a CPU with a tiny architecture, 2 steps and fp32, to check the
script itself; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

TEMPLATE = "anatomy_r1"

# Qwen2.5-VL-3B-Instruct's config.json (text model at the top level, vision tower under vision_config).
QWEN2_5_VL_3B: dict[str, Any] = {
    "text": {
        "vocab_size": 151936,
        "hidden_size": 2048,
        "intermediate_size": 11008,
        "num_hidden_layers": 36,
        "num_attention_heads": 16,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "max_position_embeddings": 128000,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "mrope_section": [16, 24, 24],
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "sliding_window": 32768,
        "max_window_layers": 70,
        "attention_dropout": 0.0,
    },
    "vision": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "out_hidden_size": 2048,
        "hidden_act": "silu",
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "in_chans": 3,
    },
}

# The dry run's architecture: the same families of settings at toy sizes.
TINY: dict[str, Any] = {
    "text": {
        **QWEN2_5_VL_3B["text"],
        "vocab_size": 4096,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 4096,
        "mrope_section": [2, 3, 3],
    },
    "vision": {
        **QWEN2_5_VL_3B["vision"],
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "fullatt_block_indexes": [1],
    },
}

FULL = {
    "arch": QWEN2_5_VL_3B,
    "name": "Qwen2.5-VL-3B architecture, random weights",
    "image_size": 448,
    "tokenizer_vocab": 4096,
    "n_train": 64,
    "n_test": 32,
    "num_generations": 8,
    "batch": 8,
    "completion": 64,
    "eval_items": 32,
    "eval_k": 4,
    "eval_batch": 16,
    "dtype": "bf16",
}
DRY = {
    "arch": TINY,
    "name": "tiny Qwen2.5-VL (dry run)",
    "image_size": 56,
    "tokenizer_vocab": 1024,
    "n_train": 16,
    "n_test": 4,
    "num_generations": 4,
    "batch": 4,
    "completion": 8,
    "eval_items": 4,
    "eval_k": 2,
    "eval_batch": 4,
    "dtype": "fp32",
}


def qwen_config(arch: dict[str, Any], tokenizer: Any) -> Any:
    """``Qwen2_5_VLConfig`` of ``arch``, with the special-token ids of ``tokenizer``."""
    from transformers import Qwen2_5_VLConfig

    from anatomy_r1.models.tiny import SPECIAL_TOKENS

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    text = dict(arch["text"])
    mrope = text.pop("mrope_section")
    text["vocab_size"] = max(text["vocab_size"], len(tokenizer))
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": text.pop("rope_theta"),
        "mrope_section": mrope,
    }
    special = {
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
    }
    text.update(special)
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(arch["vision"]),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=text["tie_word_embeddings"],
        **special,
    )


def build_model(
    out: Path, arch: dict[str, Any], corpus: list[str], vocab: int, image_size: int, dtype: str, device: str
) -> tuple[Path, int]:
    """Save a random-weight Qwen2.5-VL of ``arch`` with a tokenizer trained on ``corpus``; returns its size.

    Weights are initialised on ``device`` (a 3B model initialised on a CPU takes minutes).
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from anatomy_r1.models.loading import _torch_dtype
    from anatomy_r1.models.processor import ImageOnlyQwen2_5_VLProcessor
    from anatomy_r1.models.tiny import CHAT_TEMPLATE, train_tokenizer

    tokenizer = train_tokenizer(corpus, vocab)
    config = qwen_config(arch, tokenizer)
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, dtype=_torch_dtype(dtype))
    gen = model.generation_config
    gen.eos_token_id, gen.pad_token_id, gen.bos_token_id = (
        config.text_config.eos_token_id,
        config.text_config.pad_token_id,
        config.text_config.bos_token_id,
    )
    n_params = sum(p.numel() for p in model.parameters())
    pixels = image_size * image_size
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=pixels, max_pixels=pixels, size={"shortest_edge": pixels, "longest_edge": pixels}
    )
    processor = ImageOnlyQwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out, n_params


def step_recorder() -> Any:
    """A TrainerCallback recording each step's wall time (CUDA synchronised) and TRL's per-step logs."""
    import torch
    from transformers import TrainerCallback

    class StepRecorder(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.logs: list[dict[str, Any]] = []
            self._t0 = 0.0

        @staticmethod
        def _sync() -> None:
            if torch.cuda.is_available():
                torch.cuda.synchronize()

        def on_step_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            self._sync()
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            self._sync()
            self.times.append(time.perf_counter() - self._t0)

        def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
            if logs and "num_tokens" in logs:
                self.logs.append({"step": state.global_step, **logs})

    return StepRecorder()


def _summarise(rec: Any, completions_per_step: int) -> dict[str, Any]:
    times = rec.times[1:] if len(rec.times) > 1 else rec.times  # step 1 pays for CUDA start-up
    tokens = [b["num_tokens"] - a["num_tokens"] for a, b in zip(rec.logs, rec.logs[1:], strict=False)]
    lengths = [row.get("completions/mean_length", 0.0) for row in rec.logs[1:]]
    step = statistics.median(times)
    return {
        "steps": len(rec.times),
        "step_time_median_s": round(step, 4),
        "step_time_mean_s": round(statistics.fmean(times), 4),
        "first_step_s": round(rec.times[0], 4),
        "tokens_per_s": round(statistics.median(tokens) / step, 1) if tokens else None,
        "completion_tokens_per_s": round(statistics.fmean(lengths) * completions_per_step / step, 1)
        if lengths
        else None,
        "reward_last": rec.logs[-1].get("reward") if rec.logs else None,
    }


def _peak_memory_gib() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None


def _reset_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def train_run(
    kind: str, model_dir: Path, data: Path, out: Path, settings: dict[str, Any], steps: int
) -> dict[str, Any]:
    """``steps`` GRPO steps of one of the three runs; returns its timings and memory."""
    from anatomy_r1.training.config import LoraSettings, TrainConfig

    grpo = {
        "num_generations": settings["num_generations"],
        "per_device_train_batch_size": settings["batch"],
        "max_completion_length": settings["completion"],
        "max_steps": steps,
        "learning_rate": 1e-6,
        "lr_scheduler_type": "constant",
        "beta": 0.0,
        "gradient_checkpointing": True,
        "loss_type": "grpo",
    }
    cfg = TrainConfig(
        name=f"gpu-check-{kind}",
        template=TEMPLATE,
        output_dir=str(out / kind),
        seed=0,
        model={"path": str(model_dir), "dtype": settings["dtype"]},
        data={"train": str(data / "train.jsonl")},
        grpo=grpo,
    )
    cfg.curriculum.backend = "matrix:prior"
    cfg.saving.save_steps = 10**6
    cfg.logging.progress_bar = False
    if kind.startswith("anatomy_r1"):
        cfg.curriculum.enabled = True
        cfg.gdqa.enabled = True
    if kind == "anatomy_r1_lora":
        cfg.model.lora = LoraSettings.model_validate(
            {"r": 64, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}
        )
    _reset_memory()
    rec = step_recorder()
    t0 = time.perf_counter()
    trainer = _trainer(kind, cfg, data, rec)
    load_s = time.perf_counter() - t0
    trainer.train()
    result = {
        **_summarise(rec, settings["batch"]),
        "peak_gpu_memory_gib": _peak_memory_gib(),
        "build_seconds": round(load_s, 2),
        "trainable_parameters": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    }
    del trainer
    _reset_memory()
    return result


def _trainer(kind: str, cfg: Any, data: Path, rec: Any) -> Any:
    from anatomy_r1.data.images import default_image_root
    from anatomy_r1.training.dataset import load_records

    records = load_records(cfg.data.train)
    image_root = default_image_root(cfg.data.train, None)
    if kind != "trl_full":
        from anatomy_r1.training.grpo import build_grpo_trainer

        return build_grpo_trainer(cfg, records, image_root, callbacks=[rec])
    # Plain TRL: the same arguments, rewards, data and model, without the Anatomy-R1 seams.
    from trl import GRPOTrainer

    from anatomy_r1.models.loading import load_model, load_processor
    from anatomy_r1.training.args import grpo_args, run_precision
    from anatomy_r1.training.dataset import build_rl_dataset
    from anatomy_r1.training.rewards import build_reward_funcs

    funcs, weights = build_reward_funcs(
        {"accuracy": cfg.rewards.accuracy, "format": cfg.rewards.format}, TEMPLATE
    )
    args = grpo_args(cfg, cfg.output_dir)
    args.reward_weights = weights
    from transformers.trainer_callback import PrinterCallback

    trainer = GRPOTrainer(
        model=load_model(cfg.model.path, dtype=run_precision(cfg).load_dtype),  # the same precision plan
        reward_funcs=funcs,
        args=args,
        train_dataset=build_rl_dataset(records, TEMPLATE, image_root),
        processing_class=load_processor(cfg.model.path),
        callbacks=[rec],
    )
    trainer.remove_callback(PrinterCallback)  # as build_grpo_trainer does: no dict printed per step
    return trainer


def eval_throughput(model_dir: Path, data: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Items/s and generated tokens/s of ``generate_with_model`` (the ``eval --engine hf`` path)."""
    import torch

    from anatomy_r1.data.io import read_records
    from anatomy_r1.evaluation.generate import generate_with_model
    from anatomy_r1.models.loading import load_model, load_processor

    _reset_memory()
    model = load_model(
        model_dir, dtype=settings["dtype"], device_map="auto" if torch.cuda.is_available() else None
    )
    processor = load_processor(model_dir)
    records = read_records(data / "test.jsonl")[: settings["eval_items"]]
    pad = processor.tokenizer.pad_token_id
    counted = {"tokens": 0}
    original = model.generate

    def counting_generate(**kwargs: Any) -> Any:
        out = original(**kwargs)
        counted["tokens"] += int((out[:, kwargs["input_ids"].shape[1] :] != pad).sum())
        return out

    model.generate = counting_generate
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    sampled, greedy = generate_with_model(
        model,
        processor,
        records,
        k=settings["eval_k"],
        greedy=True,
        template=TEMPLATE,
        max_new_tokens=settings["completion"],
        batch_size=settings["eval_batch"],
        image_root=str(data),
        seed=0,
    )
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    completions = sum(len(v) for v in sampled.values()) + len(greedy or {})
    result = {
        "items": len(records),
        "completions": completions,
        "seconds": round(seconds, 2),
        "items_per_s": round(len(records) / seconds, 2),
        "completions_per_s": round(completions / seconds, 2),
        "generated_tokens_per_s": round(counted["tokens"] / seconds, 1),
        "peak_gpu_memory_gib": _peak_memory_gib(),
    }
    del model
    _reset_memory()
    return result


def _machine() -> dict[str, Any]:
    import torch
    import transformers
    import trl

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "gpu": gpu,
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if gpu else None,
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
    }


def _markdown(r: dict[str, Any]) -> str:
    def cell(v: Any) -> str:
        return "–" if v is None else str(v)

    lines = [
        f"# GPU check: {r['model']['name']}",
        "",
        f"{'DRY RUN on CPU: the numbers check the script, not the hardware. ' if r['dry_run'] else ''}"
        f"Machine: {cell(r['machine']['gpu'])}, torch {r['machine']['torch']}, "
        f"transformers {r['machine']['transformers']}, TRL {r['machine']['trl']}.",
        f"Model: {r['model']['parameters']:,} parameters, {r['settings']['dtype']}; "
        f"{r['settings']['steps']} GRPO steps per run, {r['settings']['num_generations']} rollouts of one "
        f"question per step, {r['settings']['completion']}-token completions, gradient checkpointing.",
        "",
        "| run | median step (s) | mean step (s) | tokens/s | completion tokens/s | peak GPU memory (GiB) "
        "| trainable parameters |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in r["runs"].items():
        lines.append(
            f"| {name} | {run['step_time_median_s']} | {run['step_time_mean_s']} "
            f"| {cell(run['tokens_per_s'])} "
            f"| {cell(run['completion_tokens_per_s'])} | {cell(run['peak_gpu_memory_gib'])} "
            f"| {run['trainable_parameters']:,} |"
        )
    ev = r["eval"]
    lines += [
        "",
        f"Anatomy-R1 / TRL step-time ratio (full fine-tuning, median): **{r['ratio_anatomy_r1_over_trl']}**",
        "",
        f"Evaluation throughput (`generate_with_model`, {ev['items']} items, k={r['settings']['eval_k']} "
        f"+ greedy): {ev['items_per_s']} items/s, {ev['completions_per_s']} completions/s, "
        f"{ev['generated_tokens_per_s']} generated tokens/s, peak {cell(ev['peak_gpu_memory_gib'])} GiB.",
        "",
        f"Total wall time: {r['total_seconds']} s.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu_check_out", help="output folder (default gpu_check_out)")
    p.add_argument("--steps", type=int, default=None, help="GRPO steps per run (default 20; dry run 2)")
    p.add_argument("--dry-run", action="store_true", help="tiny architecture on CPU, 2 steps, fp32")
    p.add_argument(
        "--keep-model", action="store_true", help="keep the saved random-weight model in OUT/model"
    )
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    import torch

    settings = dict(DRY if args.dry_run else FULL)
    steps = args.steps or (2 if args.dry_run else 20)
    if steps < 2:
        print(
            "error: --steps must be at least 2 (the first step is left out of the timings)", file=sys.stderr
        )
        return 2
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA GPU visible; run with --dry-run to check the script on a CPU", file=sys.stderr)
        return 2
    device = "cpu" if args.dry_run else "cuda"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from anatomy_r1.data.io import read_records
    from anatomy_r1.data.synth import generate_benchmark
    from anatomy_r1.task.prompts import format_target, render_prompt

    data = out / "data"
    if not (data / "train.jsonl").is_file():
        generate_benchmark(
            data,
            seed=5,
            n_train=settings["n_train"],
            n_val=0,
            n_test=settings["n_test"],
            n_perception=0,
            image_size=settings["image_size"],
        )
    records = read_records(data / "train.jsonl") + read_records(data / "test.jsonl")
    corpus = [render_prompt(r, TEMPLATE) for r in records]
    corpus += [format_target(r.answer_letter, None, TEMPLATE, r.answer) for r in records]
    print(f"building {settings['name']} ...", flush=True)
    t0 = time.perf_counter()
    model_dir, n_params = build_model(
        out / "model",
        settings["arch"],
        corpus,
        settings["tokenizer_vocab"],
        settings["image_size"],
        settings["dtype"],
        device,
    )
    build_s = time.perf_counter() - t0
    print(f"  {n_params:,} parameters, built and saved in {build_s:.1f} s", flush=True)

    runs: dict[str, Any] = {}
    for kind in ("anatomy_r1_full", "anatomy_r1_lora", "trl_full"):
        print(f"{kind}: {steps} GRPO steps ...", flush=True)
        runs[kind] = train_run(kind, model_dir, data, out / "runs", settings, steps)
        print(
            f"  median step {runs[kind]['step_time_median_s']} s, "
            f"peak {runs[kind]['peak_gpu_memory_gib']} GiB",
            flush=True,
        )
    print("eval throughput ...", flush=True)
    ev = eval_throughput(model_dir, data, settings)
    ratio = runs["anatomy_r1_full"]["step_time_median_s"] / runs["trl_full"]["step_time_median_s"]
    result = {
        "dry_run": args.dry_run,
        "model": {"name": settings["name"], "parameters": n_params, "build_seconds": round(build_s, 1)},
        "settings": {k: v for k, v in settings.items() if k != "arch"}
        | {"steps": steps, "template": TEMPLATE},
        "machine": _machine(),
        "runs": runs,
        "ratio_anatomy_r1_over_trl": round(ratio, 3),
        "eval": ev,
        "total_seconds": round(time.perf_counter() - t_start, 1),
    }
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (out / "gpu_check.md").write_text(_markdown(result), encoding="utf-8")
    if not args.keep_model:
        shutil.rmtree(model_dir, ignore_errors=True)  # 7.5 GB for the 3B architecture
    print(_markdown(result))
    print(f"written: {out / 'gpu_check.json'}, {out / 'gpu_check.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
